"""An event's sequence number in one call: ``outbox_event_number(event_id)``.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-01

Publishing numbers its event as the transaction's last step (``SET CONSTRAINTS
outbox_event_sequence IMMEDIATE``, then reading the number back), and from that moment to the
commit it holds the one counter row's lock: every other publish waits. Those were two round trips
inside the lock, each waiting for the API process to be scheduled again; this function does both
in one, so the lock is held for one statement and the commit. Ordinary (SECURITY INVOKER):
it can do nothing its caller could not.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NUMBER_FUNCTION = """
CREATE FUNCTION outbox_event_number(event_id uuid) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    number bigint;
BEGIN
    -- Fires the transaction's deferred sequencing triggers now (outbox_event_assign_seq).
    SET CONSTRAINTS outbox_event_sequence IMMEDIATE;
    SELECT seq INTO number FROM outbox_event WHERE id = event_id;
    RETURN number;
END
$$;
"""


def upgrade() -> None:
    op.execute(NUMBER_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS outbox_event_number(uuid)")
