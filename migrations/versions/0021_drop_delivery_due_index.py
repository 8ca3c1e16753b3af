"""Drop the index on every pending delivery's due time: it let the claim go quadratic.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01

``ix_event_delivery_due`` (``next_attempt_at, id`` of every pending delivery) served the first
claim, which took the oldest due deliveries of all subscriptions together. The claim has long
taken each subscription's own (``ix_event_delivery_subscription_priority_due``, migration
0015) and checks a candidate's place in its child's line on ``ix_event_delivery_order``; no
statement needs this index any more, but the planner could still choose it. It did, with
statistics taken while almost nothing was pending (the usual state of a busy platform, which
autovacuum analyzes every minute or so) and a backlog formed afterwards: it scanned the whole
index for every candidate's line check, 32 s for one claim behind 14,000 pending deliveries on a
2-core machine, and the worker stood still. Without it, the same claim takes 1.5 ms.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_event_delivery_due")


def downgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_event_delivery_due ON event_delivery (next_attempt_at, id) "
        "WHERE status = 'pending'"
    )
