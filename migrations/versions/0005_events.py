"""The event exchange: commit-ordered outbox sequence, idempotency keys, subscriptions, deliveries.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

The outbox's ``seq`` was an identity assigned at INSERT. Transactions commit in a different order
than they insert, so a feed reader at ``after=N`` could see N+1 commit before N and then skip N
forever. From here on ``seq`` is assigned by a DEFERRED constraint trigger, i.e. at the very end
of the publishing transaction, from a single counter row: whoever holds the counter's row lock
holds it until its commit completes, and the next transaction only reads the counter after that
commit is visible. So numbers become visible in order, without holes (the counter is
transactional: a rolled-back publish gives its number back). The price is that publishing
transactions serialize for the duration of their commit; see app/events/sequence.py.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")

SEQUENCE_FUNCTION = """
CREATE FUNCTION outbox_event_assign_seq() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    -- Upsert rather than UPDATE: an emptied counter table (a test's TRUNCATE) starts again at 1.
    INSERT INTO event_sequence AS s (id, last_seq) VALUES (1, 1)
    ON CONFLICT (id) DO UPDATE SET last_seq = s.last_seq + 1
    RETURNING last_seq INTO next_seq;
    UPDATE outbox_event SET seq = next_seq WHERE id = NEW.id;
    -- One wake-up per transaction (identical payloads are folded), delivered at commit.
    PERFORM pg_notify('childlink_events', '');
    RETURN NULL;
END
$$;
"""

GUARD_FUNCTION = """
CREATE FUNCTION outbox_event_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The only change an event ever sees is its sequence number, once, at commit.
    IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND (to_jsonb(NEW) - 'seq') = (to_jsonb(OLD) - 'seq') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'outbox events are immutable' USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


def upgrade() -> None:
    op.execute("ALTER TABLE outbox_event ALTER COLUMN seq DROP IDENTITY IF EXISTS")
    op.alter_column("outbox_event", "seq", nullable=True)
    op.add_column("outbox_event", sa.Column("publisher_event_id", sa.String(128)))
    # Nothing queries by type alone (the feed scans a seq range), and every index costs a write
    # twice here (the row is inserted, then its seq is set at commit).
    op.drop_index("ix_outbox_event_type", table_name="outbox_event")
    op.create_index(
        "uq_outbox_event_publisher_id",
        "outbox_event",
        ["publisher_agency", "source", "publisher_event_id"],
        unique=True,
        postgresql_where=sa.text("publisher_event_id IS NOT NULL"),
    )

    op.create_table(
        "event_sequence",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="event_sequence_single_row"),
    )
    op.execute("INSERT INTO event_sequence (id, last_seq) SELECT 1, COALESCE(max(seq), 0) FROM outbox_event")
    op.execute(SEQUENCE_FUNCTION)
    op.execute(
        "CREATE CONSTRAINT TRIGGER outbox_event_sequence AFTER INSERT ON outbox_event "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION outbox_event_assign_seq()"
    )
    op.execute(GUARD_FUNCTION)
    op.execute(
        "CREATE TRIGGER outbox_event_immutable BEFORE UPDATE ON outbox_event "
        "FOR EACH ROW EXECUTE FUNCTION outbox_event_immutable()"
    )

    op.create_table(
        "event_idempotency",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_event_idempotency_created", "event_idempotency", ["created_at"])

    op.create_table(
        "subscription",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("agency", sa.String(64), sa.ForeignKey("agency.code"), nullable=False),
        sa.Column("created_by_client", sa.String(64), nullable=False),
        sa.Column("reader_region", sa.String(12), nullable=False, server_default=""),
        sa.Column("description", sa.String(200), nullable=False, server_default=""),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("url", sa.String(2000)),
        sa.Column("secret", sa.String(100)),
        sa.Column("previous_secret", sa.String(100)),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True)),
        sa.Column("type_patterns", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("region_prefix", sa.String(12), nullable=False, server_default=""),
        sa.Column("categories", postgresql.ARRAY(sa.String()), nullable=False, server_default="{}"),
        sa.Column("purpose_of_use", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("disabled_reason", sa.String(64)),
        sa.Column("dispatched_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("mode IN ('webhook','pull')", name="subscription_mode_valid"),
        sa.CheckConstraint("status IN ('active','paused','disabled')", name="subscription_status_valid"),
        sa.CheckConstraint(
            "(mode = 'webhook') = (url IS NOT NULL AND secret IS NOT NULL)", name="subscription_webhook_has_url"
        ),
        sa.CheckConstraint("cardinality(type_patterns) > 0", name="subscription_has_types"),
        sa.CheckConstraint("region_prefix LIKE reader_region || '%'", name="subscription_inside_region"),
    )
    op.create_index("ix_subscription_agency", "subscription", ["agency", "created_at"])

    op.create_table(
        "event_delivery",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column(
            "subscription_id", sa.Uuid(), sa.ForeignKey("subscription.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(8), nullable=False, server_default="event"),
        sa.Column("event_id", sa.Uuid(), sa.ForeignKey("outbox_event.id")),
        sa.Column("event_seq", sa.BigInteger()),
        sa.Column("child_id", sa.Uuid()),
        sa.Column("webhook_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("lease_token", sa.Uuid()),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("kind IN ('event','replay','ping')", name="event_delivery_kind_valid"),
        sa.CheckConstraint(
            "status IN ('pending','delivered','dead','denied','gone')", name="event_delivery_status_valid"
        ),
        sa.CheckConstraint("kind = 'ping' OR (event_id IS NOT NULL AND event_seq IS NOT NULL)", name="event_delivery_has_event"),
    )
    op.create_index("uq_event_delivery_webhook_id", "event_delivery", ["webhook_id"], unique=True)
    op.create_index("ix_event_delivery_subscription", "event_delivery", ["subscription_id", "id"])
    # The claim scan: due pending deliveries, oldest first.
    op.create_index(
        "ix_event_delivery_due", "event_delivery", ["next_attempt_at", "id"], postgresql_where=sa.text("status = 'pending'")
    )
    # The ordering check: is an earlier delivery for this (subscription, child) still pending?
    op.create_index(
        "ix_event_delivery_order",
        "event_delivery",
        ["subscription_id", "child_id", "event_seq", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )

    op.create_table(
        "delivery_attempt",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column(
            "delivery_id", sa.BigInteger(), sa.ForeignKey("event_delivery.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("error", sa.String(200)),
        sa.Column("duration_ms", sa.Integer()),
        sa.Column("categories_withheld", postgresql.ARRAY(sa.String()), nullable=False, server_default="{}"),
        sa.Column("worker", sa.String(64)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "outcome IN ('delivered','failed','gone','denied','refused','abandoned')",
            name="delivery_attempt_outcome_valid",
        ),
    )
    op.create_index("ix_delivery_attempt_delivery", "delivery_attempt", ["delivery_id", "id"])


def downgrade() -> None:
    op.drop_table("delivery_attempt")
    op.drop_table("event_delivery")
    op.drop_table("subscription")
    op.drop_table("event_idempotency")
    op.execute("DROP TRIGGER IF EXISTS outbox_event_immutable ON outbox_event")
    op.execute("DROP FUNCTION IF EXISTS outbox_event_immutable()")
    op.execute("DROP TRIGGER IF EXISTS outbox_event_sequence ON outbox_event")
    op.execute("DROP FUNCTION IF EXISTS outbox_event_assign_seq()")
    op.drop_table("event_sequence")
    op.drop_index("uq_outbox_event_publisher_id", table_name="outbox_event")
    op.create_index("ix_outbox_event_type", "outbox_event", ["type"])
    op.drop_column("outbox_event", "publisher_event_id")
    op.execute("UPDATE outbox_event SET seq = 0 WHERE seq IS NULL")
    op.alter_column("outbox_event", "seq", nullable=False)
    op.execute("ALTER TABLE outbox_event ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY")
    op.execute("SELECT setval(pg_get_serial_sequence('outbox_event', 'seq'), COALESCE(max(seq), 0) + 1, false) FROM outbox_event")
