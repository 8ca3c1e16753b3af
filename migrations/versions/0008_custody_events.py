"""Custody-changing events change custody; missing reports, home visits and overdue notices.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

A guardianship record now names the event that made it (``changed_by_event_id``) and the event
that recorded its last assessment; custody may be ``emergency_protection`` after a police
intervention. ``missing_report`` holds open and resolved missing-child reports (at most one open
per child), ``home_visit`` the visits reported by event, and ``overdue_notice`` the scheduler's
record of each (child, what, due date) the township was told about, keyed so it fires once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
_OLD_STATUSES = (
    "'with_parents','entrusted','kinship_care','institution','temporary_state','long_term_state',"
    "'no_effective_guardian'"
)


def upgrade() -> None:
    op.add_column("guardianship", sa.Column("changed_by_event_id", sa.Uuid()))
    op.add_column("guardianship", sa.Column("last_assessment_event_id", sa.Uuid()))
    op.add_column("guardianship", sa.Column("next_assessment_due", sa.Date()))
    op.drop_constraint("guardianship_status_valid", "guardianship", type_="check")
    op.create_check_constraint(
        "guardianship_status_valid",
        "guardianship",
        f"custody_status IN ({_OLD_STATUSES},'emergency_protection')",
    )

    op.create_table(
        "missing_report",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("child_id", sa.Uuid(), sa.ForeignKey("child.id"), nullable=False),
        sa.Column("reported_event_id", sa.Uuid(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handling_unit", sa.String(200)),
        sa.Column("handling_unit_duty_phone", sa.String(24)),
        sa.Column("resolved_event_id", sa.Uuid()),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "uq_missing_report_open", "missing_report", ["child_id"], unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )

    op.create_table(
        "home_visit",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("child_id", sa.Uuid(), sa.ForeignKey("child.id"), nullable=False),
        sa.Column("visited_on", sa.Date(), nullable=False),
        sa.Column("follow_up_due", sa.Date()),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_home_visit_child", "home_visit", ["child_id", "visited_on"])

    op.create_table(
        "overdue_notice",
        sa.Column("child_id", sa.Uuid(), sa.ForeignKey("child.id"), primary_key=True),
        sa.Column("what", sa.String(16), primary_key=True),
        sa.Column("due_on", sa.Date(), primary_key=True),
        sa.Column("event_id", sa.Uuid()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("what IN ('assessment','home_visit')", name="overdue_notice_what_valid"),
    )


def downgrade() -> None:
    op.drop_table("overdue_notice")
    op.drop_table("home_visit")
    op.drop_table("missing_report")
    # The older vocabulary has no word for it; the police unit stays the responsible organisation.
    op.execute(
        "UPDATE guardianship SET custody_status = 'no_effective_guardian' "
        "WHERE custody_status = 'emergency_protection'"
    )
    op.drop_constraint("guardianship_status_valid", "guardianship", type_="check")
    op.create_check_constraint("guardianship_status_valid", "guardianship", f"custody_status IN ({_OLD_STATUSES})")
    op.drop_column("guardianship", "next_assessment_due")
    op.drop_column("guardianship", "last_assessment_event_id")
    op.drop_column("guardianship", "changed_by_event_id")
