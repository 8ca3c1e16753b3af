"""The delivery engine: fair shares, subscription back-off, poison events, every secret's own overlap.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

A subscription may choose that a dead letter blocks its child's later events (``blocking``);
it carries its health (``consecutive_failures``, ``failing_since``, ``backoff_until``: a failing
endpoint backs off as a whole) and the secrets retired by rotation, each with its own end of
overlap (``retired_secrets``, replacing the single previous secret). A delivery may be
``skipped`` by an operator; ``retry_base`` is the attempt count at which its retry schedule last
started again. An attempt is on record (``sending``) before it is sent; ``aborted`` is the
receiver's ``webhook-delivery: abort-message``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("subscription", sa.Column("blocking", sa.Boolean(), nullable=False, server_default="false"))
    op.add_column(
        "subscription", sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("subscription", sa.Column("failing_since", sa.DateTime(timezone=True)))
    op.add_column("subscription", sa.Column("backoff_until", sa.DateTime(timezone=True)))
    op.add_column(
        "subscription",
        sa.Column("retired_secrets", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    op.execute(
        "UPDATE subscription SET retired_secrets = jsonb_build_array(jsonb_build_object("
        "'secret', previous_secret, 'expires_at', previous_secret_expires_at)) "
        "WHERE previous_secret IS NOT NULL AND previous_secret_expires_at > now()"
    )
    op.drop_column("subscription", "previous_secret")
    op.drop_column("subscription", "previous_secret_expires_at")

    op.add_column("event_delivery", sa.Column("retry_base", sa.Integer(), nullable=False, server_default="0"))
    op.drop_constraint("event_delivery_status_valid", "event_delivery", type_="check")
    op.create_check_constraint(
        "event_delivery_status_valid",
        "event_delivery",
        "status IN ('pending','delivered','dead','denied','gone','skipped')",
    )
    # The fair-share count: live leases per subscription.
    op.create_index(
        "ix_event_delivery_leased",
        "event_delivery",
        ["subscription_id"],
        postgresql_where=sa.text("status = 'pending' AND lease_token IS NOT NULL"),
    )
    # The claim's scan, per subscription: its unleased pending deliveries, oldest due first.
    op.create_index(
        "ix_event_delivery_subscription_due",
        "event_delivery",
        ["subscription_id", "next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending' AND lease_token IS NULL"),
    )
    # A blocking subscription's dead letters hold back the child's later events.
    op.create_index(
        "ix_event_delivery_dead_order",
        "event_delivery",
        ["subscription_id", "child_id", "event_seq", "id"],
        postgresql_where=sa.text("status = 'dead'"),
    )
    op.drop_constraint("delivery_attempt_outcome_valid", "delivery_attempt", type_="check")
    op.create_check_constraint(
        "delivery_attempt_outcome_valid",
        "delivery_attempt",
        "outcome IN ('sending','delivered','failed','gone','denied','refused','abandoned','aborted')",
    )
    op.create_index(
        "ix_delivery_attempt_sending",
        "delivery_attempt",
        ["delivery_id"],
        postgresql_where=sa.text("outcome = 'sending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_attempt_sending", table_name="delivery_attempt")
    op.execute("UPDATE delivery_attempt SET outcome = 'abandoned' WHERE outcome = 'sending'")
    op.execute("UPDATE delivery_attempt SET outcome = 'failed' WHERE outcome = 'aborted'")
    op.drop_constraint("delivery_attempt_outcome_valid", "delivery_attempt", type_="check")
    op.create_check_constraint(
        "delivery_attempt_outcome_valid",
        "delivery_attempt",
        "outcome IN ('delivered','failed','gone','denied','refused','abandoned')",
    )
    op.drop_index("ix_event_delivery_dead_order", table_name="event_delivery")
    op.drop_index("ix_event_delivery_subscription_due", table_name="event_delivery")
    op.drop_index("ix_event_delivery_leased", table_name="event_delivery")
    op.execute("UPDATE event_delivery SET status = 'dead' WHERE status = 'skipped'")
    op.drop_constraint("event_delivery_status_valid", "event_delivery", type_="check")
    op.create_check_constraint(
        "event_delivery_status_valid", "event_delivery", "status IN ('pending','delivered','dead','denied','gone')"
    )
    op.drop_column("event_delivery", "retry_base")
    op.add_column("subscription", sa.Column("previous_secret", sa.String(100)))
    op.add_column("subscription", sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE subscription SET previous_secret = retired_secrets -> -1 ->> 'secret', "
        "previous_secret_expires_at = (retired_secrets -> -1 ->> 'expires_at')::timestamptz "
        "WHERE jsonb_array_length(retired_secrets) > 0"
    )
    for column in ("retired_secrets", "backoff_until", "failing_since", "consecutive_failures", "blocking"):
        op.drop_column("subscription", column)
