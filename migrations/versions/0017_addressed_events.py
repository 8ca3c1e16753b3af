"""Events addressed to one agency, and the record of which reads their owners were told of.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

``outbox_event.audience`` names the one agency an event is for (an operational event about its
own subscription, a notice that another agency read one of its children). Such an event is fanned
out only to that agency's subscriptions whose types match, shown only on its feed, and read by
nobody else (app/events/audience.py, the door's ``admit_addressed``). ``about_subscription`` is
the subscription an operational event is about: it is never delivered there (the receiver that
failed is the last place to report its failure).

``access_notice_read`` holds one row per access-log record and child an owner was told of (a
read held back under an open investigation gets its row when it is released): its primary key
is what makes the hourly notice fire exactly once per read, however many workers run the job.
``access_notice_window`` marks the windows already looked at, so a run reads the log of the
hour that just ended, not the whole look-back period.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("outbox_event", sa.Column("audience", sa.String(64), nullable=True))
    op.add_column("outbox_event", sa.Column("about_subscription", sa.Uuid(), nullable=True))
    op.create_table(
        "access_notice_read",
        sa.Column("access_log_id", sa.BigInteger(), primary_key=True),
        sa.Column("child_id", sa.Uuid(), primary_key=True),
        sa.Column("logged_at", TS, nullable=False),
        sa.Column("owner_agency", sa.String(64), nullable=False),
        sa.Column("window_start", TS, nullable=False),
        sa.Column("event_id", sa.Uuid(), sa.ForeignKey("outbox_event.id"), nullable=False),
        sa.Column("notified_at", TS, nullable=False, server_default=sa.text("now()")),
    )
    op.create_index("ix_access_notice_read_child", "access_notice_read", ["child_id", "window_start"])
    # Windows whose reads have all been looked at: each run scans only the windows after them.
    op.create_table(
        "access_notice_window",
        sa.Column("window_start", TS, primary_key=True),
        sa.Column("completed_at", TS, nullable=False, server_default=sa.text("now()")),
    )
    # Reads held back under an investigation are found again when it closes, however old.
    op.execute(
        "CREATE INDEX ix_access_log_investigation_ref ON access_log (agency, investigation_ref) "
        "WHERE investigation_ref IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_access_log_investigation_ref")
    op.drop_table("access_notice_window")
    op.drop_table("access_notice_read")
    op.drop_column("outbox_event", "about_subscription")
    op.drop_column("outbox_event", "audience")
