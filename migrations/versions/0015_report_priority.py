"""Reports: a child in immediate danger goes ahead of any backlog; the filing answer is kept.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01

An event carries a ``priority`` (0 for ordinary events; 1 for a ``platform.report.received`` of
an ``immediate_danger`` report), copied to each of its deliveries at fan-out. The claim takes a
subscription's due deliveries highest priority first, then oldest due first, so its scan index
leads with the priority. Both columns get a constant default, which PostgreSQL stores in the
catalog: adding them rewrites no table.

A report keeps the agency kinds its routing named but no agency of the county covered
(``unrouted_agency_kinds``), so a replayed filing answers exactly as the first did.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox_event", sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="0"))
    op.add_column("event_delivery", sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="0"))
    # The claim's scan, per subscription: its unleased pending deliveries, highest priority and
    # then oldest due first (replaces the scan index of migration 0011).
    op.create_index(
        "ix_event_delivery_subscription_priority_due",
        "event_delivery",
        ["subscription_id", sa.text("priority DESC"), "next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending' AND lease_token IS NULL"),
    )
    op.drop_index("ix_event_delivery_subscription_due", table_name="event_delivery")
    op.add_column(
        "report",
        sa.Column(
            "unrouted_agency_kinds",
            postgresql.ARRAY(sa.String()),
            nullable=False,
            server_default=sa.text("'{}'::varchar[]"),
        ),
    )


def downgrade() -> None:
    op.drop_column("report", "unrouted_agency_kinds")
    op.create_index(
        "ix_event_delivery_subscription_due",
        "event_delivery",
        ["subscription_id", "next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending' AND lease_token IS NULL"),
    )
    op.drop_index("ix_event_delivery_subscription_priority_due", table_name="event_delivery")
    op.drop_column("event_delivery", "priority")
    op.drop_column("outbox_event", "priority")
