"""Consents, break-glass reviews and police investigations (for the guardian's access report).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "consent",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("child_id", sa.Uuid(), sa.ForeignKey("child.id"), nullable=False),
        sa.Column("given_by_role", sa.String(16), nullable=False),
        sa.Column("given_by_name", sa.String(100), nullable=False),
        sa.Column("given_by_relationship", sa.String(40)),
        sa.Column("receiving_agency", sa.String(64), sa.ForeignKey("agency.code")),
        sa.Column("categories", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("purposes", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evidence_ref", sa.String(200), nullable=False),
        sa.Column("recorded_by_agency", sa.String(64), nullable=False),
        sa.Column("recorded_by_client", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_reason", sa.String(500)),
        sa.Column("revoked_by_client", sa.String(64)),
        sa.CheckConstraint("given_by_role IN ('guardian','child')", name="consent_role_valid"),
        sa.CheckConstraint("valid_until > valid_from", name="consent_period_valid"),
        sa.CheckConstraint("cardinality(categories) > 0 AND cardinality(purposes) > 0", name="consent_not_empty"),
    )
    op.create_index("ix_consent_child", "consent", ["child_id"])

    op.create_table(
        "break_glass_review",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("access_log_id", sa.BigInteger(), nullable=True),
        sa.Column("request_id", sa.String(64)),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("reason_code", sa.String(40), nullable=False),
        sa.Column("justification", sa.String(1000), nullable=False),
        sa.Column("categories", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("reviewer_client", sa.String(64)),
        sa.Column("reviewer_agency", sa.String(64)),
        sa.Column("review_note", sa.String(2000)),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('pending','justified','not_justified')", name="break_glass_status_valid"),
    )
    op.create_index("ix_break_glass_client_day", "break_glass_review", ["client_id", "used_at"])
    op.create_index("ix_break_glass_status", "break_glass_review", ["status", "used_at"])

    # The guardian's access report hides reads of open investigations.
    op.create_index("ix_access_log_investigation", "access_log", ["investigation_ref"])

    op.create_table(
        "investigation",
        sa.Column("ref", sa.String(64), primary_key=True),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("investigation")
    op.drop_index("ix_access_log_investigation", "access_log")
    op.drop_table("break_glass_review")
    op.drop_table("consent")
