"""Mandatory reports: the report beside its case, the filer's idempotency keys, each receiver's
outcome, and the unregistered children reports are about.

A report about a child not in the registry stands on a ``report_subject`` until it is linked:
the subject's id takes the child's place on the case and its referrals. Their foreign keys to
``child`` become a trigger that admits a child or a report subject.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
TS = sa.DateTime(timezone=True)


CHILD_OR_SUBJECT = """
CREATE FUNCTION child_or_report_subject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM child WHERE id = NEW.child_id)
     AND NOT EXISTS (SELECT 1 FROM report_subject WHERE id = NEW.child_id) THEN
    RAISE EXCEPTION 'child_id % is neither a child nor a report subject', NEW.child_id
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NEW;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "report_subject",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("name", sa.String(100)),
        sa.Column("sex", sa.String(8)),
        sa.Column("birth_date", sa.Date()),
        sa.Column("approximate_age", sa.Integer()),
        sa.Column("location_note", sa.String(500)),
        sa.Column("linked_child_id", sa.Uuid(), sa.ForeignKey("child.id")),
        sa.Column("linked_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.drop_constraint("case_child_id_fkey", "case", type_="foreignkey")
    op.drop_constraint("referral_child_id_fkey", "referral", type_="foreignkey")
    op.execute(CHILD_OR_SUBJECT)
    for table in ("case", "referral"):
        op.execute(
            f'CREATE TRIGGER {table}_child_or_subject BEFORE INSERT OR UPDATE OF child_id ON "{table}" '
            "FOR EACH ROW EXECUTE FUNCTION child_or_report_subject()"
        )
    op.create_table(
        "report",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("case.id"), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), sa.ForeignKey("report_subject.id")),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("concern", sa.String(32), nullable=False),
        sa.Column("urgency", sa.String(24), nullable=False),
        sa.Column("observed", sa.String(4000), nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("reporter_role", sa.String(100), nullable=False),
        sa.Column("reporter_name", sa.String(100), nullable=False),
        sa.Column("reporter_phone", sa.String(32), nullable=False),
        sa.Column("filed_by_agency", sa.String(64), sa.ForeignKey("agency.code"), nullable=False),
        sa.Column("filed_by_client", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.UniqueConstraint("case_id", name="report_case_unique"),
    )
    op.create_index("ix_report_filer", "report", ["filed_by_agency", "created_at", "id"])
    op.create_index("ix_report_created", "report", ["created_at", "id"])
    op.create_table(
        "report_idempotency",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("report_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "report_outcome",
        sa.Column("referral_id", sa.Uuid(), sa.ForeignKey("referral.id"), primary_key=True),
        sa.Column("report_id", sa.Uuid(), sa.ForeignKey("report.id"), nullable=False),
        sa.Column("agency", sa.String(64), sa.ForeignKey("agency.code"), nullable=False),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("case_reference", sa.String(64)),
        sa.Column("note", sa.String(2000)),
        sa.Column("recorded_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index("ix_report_outcome_report_id", "report_outcome", ["report_id"])


def downgrade() -> None:
    op.drop_index("ix_report_outcome_report_id", table_name="report_outcome")
    op.drop_table("report_outcome")
    op.drop_table("report_idempotency")
    op.drop_index("ix_report_created", table_name="report")
    op.drop_index("ix_report_filer", table_name="report")
    op.drop_table("report")
    for table in ("case", "referral"):
        op.execute(f'DROP TRIGGER {table}_child_or_subject ON "{table}"')
    op.execute("DROP FUNCTION child_or_report_subject()")
    op.create_foreign_key("referral_child_id_fkey", "referral", "child", ["child_id"], ["id"])
    op.create_foreign_key("case_child_id_fkey", "case", "child", ["child_id"], ["id"])
    op.drop_table("report_subject")
