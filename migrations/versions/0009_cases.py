"""Coordinated handling: cases, referrals, the deadline steps the scheduler fired, and the case an
event names.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "case",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("child_id", sa.Uuid(), sa.ForeignKey("child.id"), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("summary", sa.String(2000), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lead_agency", sa.String(64), sa.ForeignKey("agency.code"), nullable=False),
        sa.Column("opened_by_client", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("outcome_note", sa.String(2000)),
        sa.Column("close_reason", sa.String(1000)),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.Column("closed_at", TS),
        sa.CheckConstraint("status IN ('open','closed')", name="case_status_valid"),
    )
    op.create_index("ix_case_lead", "case", ["lead_agency", "created_at", "id"])
    op.create_index("ix_case_child", "case", ["child_id", "created_at"])
    op.create_index("ix_case_created", "case", ["created_at", "id"])

    op.create_table(
        "referral",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("case.id"), nullable=False),
        sa.Column("child_id", sa.Uuid(), sa.ForeignKey("child.id"), nullable=False),
        sa.Column("from_agency", sa.String(64), sa.ForeignKey("agency.code"), nullable=False),
        sa.Column("to_agency", sa.String(64), sa.ForeignKey("agency.code"), nullable=False),
        sa.Column("to_region", sa.String(12)),
        sa.Column("target_region", sa.String(12), nullable=False),
        sa.Column("request", sa.String(2000), nullable=False),
        sa.Column("categories", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("respond_by", TS, nullable=False),
        sa.Column("complete_by", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("next_deadline_at", TS),
        sa.Column("overdue_since", TS),
        sa.Column("decline_reason", sa.String(1000)),
        sa.Column("outcome", sa.String(2000)),
        sa.Column("withdraw_reason", sa.String(1000)),
        sa.Column("created_by_client", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.Column("answered_at", TS),
        sa.CheckConstraint(
            "status IN ('requested','accepted','declined','completed','withdrawn')", name="referral_status_valid"
        ),
        sa.CheckConstraint("complete_by >= respond_by", name="referral_deadlines_ordered"),
    )
    op.create_index("ix_referral_incoming", "referral", ["to_agency", "created_at", "id"])
    op.create_index("ix_referral_outgoing", "referral", ["from_agency", "created_at", "id"])
    op.create_index("ix_referral_case", "referral", ["case_id", "created_at"])
    op.create_index(
        "ix_referral_open_deadline",
        "referral",
        ["next_deadline_at"],
        postgresql_where=sa.text("status IN ('requested', 'accepted')"),
    )

    op.create_table(
        "consultation",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("case.id"), nullable=False),
        sa.Column("held_at", TS, nullable=False),
        sa.Column("agencies", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("summary", sa.String(4000), nullable=False),
        sa.Column("recorded_by_agency", sa.String(64), nullable=False),
        sa.Column("recorded_by_client", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index("ix_consultation_case", "consultation", ["case_id", "held_at"])
    op.create_table(
        "action",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("case.id"), nullable=False),
        sa.Column("consultation_id", sa.Uuid(), sa.ForeignKey("consultation.id"), nullable=False),
        sa.Column("assigned_agency", sa.String(64), sa.ForeignKey("agency.code"), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(2000)),
        sa.Column("next_deadline_at", TS),
        sa.Column("overdue_since", TS),
        sa.Column("completed_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.CheckConstraint("status IN ('open','completed')", name="action_status_valid"),
    )
    op.create_index("ix_action_case", "action", ["case_id", "created_at"])
    op.create_index("ix_action_assigned", "action", ["assigned_agency", "created_at", "id"])
    op.create_index(
        "ix_action_open_deadline", "action", ["next_deadline_at"], postgresql_where=sa.text("status = 'open'")
    )

    # One row per deadline step the scheduler fired (step 0: marked overdue; step n: the n-th
    # escalation). The primary key makes each step happen once, whatever runs it.
    op.create_table(
        "deadline_step",
        sa.Column("subject_kind", sa.String(16), primary_key=True),
        sa.Column("subject_id", sa.Uuid(), primary_key=True),
        sa.Column("deadline", sa.String(16), primary_key=True),
        sa.Column("step", sa.Integer(), primary_key=True),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("escalated_to_region", sa.String(12)),
        sa.Column("fired_at", TS, nullable=False, server_default=NOW),
    )

    op.add_column("outbox_event", sa.Column("case_id", sa.Uuid()))
    # A child's timeline: its events newest first, one index range per page.
    op.create_index("ix_outbox_event_subject_seq", "outbox_event", ["subject", "seq"])
    op.create_index(
        "ix_outbox_event_case", "outbox_event", ["case_id", "seq"], postgresql_where=sa.text("case_id IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_event_case", "outbox_event")
    op.drop_index("ix_outbox_event_subject_seq", "outbox_event")
    op.drop_column("outbox_event", "case_id")
    op.drop_table("deadline_step")
    op.drop_table("action")
    op.drop_table("consultation")
    op.drop_table("referral")
    op.drop_table("case")
