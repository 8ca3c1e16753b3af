"""Inserting an event no longer notifies: a notifying commit holds one lock for every database.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01

PostgreSQL queues a transaction's notifications at commit under a single lock (held through the
commit's disk flush), so transactions that notify commit one after another, on the whole server.
Migration 0020 made every statement that inserts events notify ``childlink_events``, for a
worker to come and number them; with the numbering pass after each publish notifying as well, a
publish made two such commits, and at 100 publishes/s most of a publish's time (75 ms at the
median on a 2-core machine, against 7 ms alone) went to waiting for that lock.

Whoever writes events numbers them right after its commit, and the pass that numbers them
notifies (once per pass, for everything it numbered); the delivery worker numbers whatever is
left before each fan-out, at least every poll interval. So the insert's notification only ever
hurried the rare event whose writer died between its commit and its pass. It goes: such an
event is numbered at the worker's next poll instead.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSERTED_FUNCTION = """
CREATE FUNCTION outbox_event_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit, folded with identical ones: a worker comes to number the events.
    -- Not for a statement that inserted nothing (a replayed publish's INSERT ... SELECT).
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('childlink_events', '');
    END IF;
    RETURN NULL;
END
$$;
"""


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_event_inserted ON outbox_event")
    op.execute("DROP FUNCTION IF EXISTS outbox_event_inserted()")


def downgrade() -> None:
    op.execute(INSERTED_FUNCTION)
    op.execute(
        "CREATE TRIGGER outbox_event_inserted AFTER INSERT ON outbox_event "
        "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION outbox_event_inserted()"
    )
