"""Registry: children, guardianship records and the event outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "child",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("sex", sa.String(8), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("ethnicity", sa.String(40)),
        sa.Column("resident_id", sa.String(18)),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("address", sa.String(300)),
        sa.Column("school", sa.String(200)),
        sa.Column("categories", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("care_arrangement", sa.String(40)),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("exit_reason", sa.String(32)),
        sa.Column("exit_date", sa.Date()),
        sa.Column("exit_note", sa.String(500)),
        sa.Column("owner_agency", sa.String(64), sa.ForeignKey("agency.code"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("sex IN ('male','female')", name="child_sex_valid"),
        sa.CheckConstraint("status IN ('active','exited')", name="child_status_valid"),
        sa.CheckConstraint("region_code ~ '^([0-9]{6}|[0-9]{9}|[0-9]{12})$'", name="child_region_valid"),
        sa.CheckConstraint("resident_id IS NULL OR resident_id ~ '^[0-9]{17}[0-9X]$'", name="child_resident_id_form"),
        sa.CheckConstraint("cardinality(categories) > 0", name="child_has_category"),
        sa.CheckConstraint("(status = 'exited') = (exit_reason IS NOT NULL)", name="child_exit_consistent"),
    )
    op.create_index("ix_child_region_code", "child", ["region_code"], postgresql_ops={"region_code": "text_pattern_ops"})
    op.create_index("ix_child_updated", "child", ["updated_at", "id"])
    op.create_index(
        "uq_child_resident_id", "child", ["resident_id"], unique=True, postgresql_where=sa.text("resident_id IS NOT NULL")
    )

    op.create_table(
        "guardianship",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("child_id", sa.Uuid(), sa.ForeignKey("child.id"), nullable=False),
        sa.Column("custody_status", sa.String(32), nullable=False),
        sa.Column("guardian_name", sa.String(100)),
        sa.Column("guardian_relationship", sa.String(40)),
        sa.Column("guardian_phone", sa.String(24)),
        sa.Column("responsible_org", sa.String(200)),
        sa.Column("responsible_org_duty_phone", sa.String(24)),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date()),
        sa.Column("entrustment_confirmation_ref", sa.String(100)),
        sa.Column("entrustment_confirmed_on", sa.Date()),
        sa.Column("last_assessment_date", sa.Date()),
        sa.Column("last_assessment_result", sa.String(24)),
        sa.Column("risk_flags", postgresql.ARRAY(sa.String()), nullable=False, server_default="{}"),
        sa.Column("emergency_intervention", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("recorded_by_agency", sa.String(64), nullable=False),
        sa.Column("recorded_by_client", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("superseded_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "custody_status IN ('with_parents','entrusted','kinship_care','institution','temporary_state',"
            "'long_term_state','no_effective_guardian')",
            name="guardianship_status_valid",
        ),
        sa.CheckConstraint("effective_to IS NULL OR effective_to >= effective_from", name="guardianship_period_valid"),
    )
    op.create_index("ix_guardianship_child", "guardianship", ["child_id", "recorded_at"])
    op.create_index(
        "uq_guardianship_current", "guardianship", ["child_id"], unique=True,
        postgresql_where=sa.text("superseded_at IS NULL"),
    )

    op.create_table(
        "outbox_event",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False, unique=True),
        sa.Column("type", sa.String(120), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("subject", sa.Uuid()),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("data_categories", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("region_code", sa.String(12)),
        sa.Column("publisher_agency", sa.String(64), nullable=False),
        sa.Column("publisher_client", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_outbox_event_type", "outbox_event", ["type"])
    op.create_index("ix_outbox_event_subject", "outbox_event", ["subject"])


def downgrade() -> None:
    op.drop_table("outbox_event")
    op.drop_table("guardianship")
    op.drop_table("child")
