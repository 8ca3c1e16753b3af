"""Cases and referrals name a child or a report subject: keep that reference as safe as the
foreign keys it replaced (migration 0012).

The insert check now locks the row it found (``FOR KEY SHARE``, as a foreign key does), so a
concurrent delete waits for the referencing transaction and then fails; and deleting a child or a
report subject, or changing its id, while a case or referral names it is refused
(``foreign_key_violation``), as ``ON DELETE RESTRICT`` would.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHILD_OR_SUBJECT = """
CREATE OR REPLACE FUNCTION child_or_report_subject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM child WHERE id = NEW.child_id FOR KEY SHARE;
  IF NOT FOUND THEN
    PERFORM 1 FROM report_subject WHERE id = NEW.child_id FOR KEY SHARE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'child_id % is neither a child nor a report subject', NEW.child_id
        USING ERRCODE = 'foreign_key_violation';
    END IF;
  END IF;
  RETURN NEW;
END $$
"""

PREVIOUS = """
CREATE OR REPLACE FUNCTION child_or_report_subject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM child WHERE id = NEW.child_id)
     AND NOT EXISTS (SELECT 1 FROM report_subject WHERE id = NEW.child_id) THEN
    RAISE EXCEPTION 'child_id % is neither a child nor a report subject', NEW.child_id
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NEW;
END $$
"""

STILL_NAMED = """
CREATE FUNCTION child_or_subject_still_named() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
    RETURN NEW;
  END IF;
  IF EXISTS (SELECT 1 FROM "case" WHERE child_id = OLD.id)
     OR EXISTS (SELECT 1 FROM referral WHERE child_id = OLD.id) THEN
    RAISE EXCEPTION '% % is still named by a case or referral', TG_TABLE_NAME, OLD.id
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$
"""


def upgrade() -> None:
    op.execute(CHILD_OR_SUBJECT)
    op.execute(STILL_NAMED)
    for table in ("child", "report_subject"):
        op.execute(
            f"CREATE TRIGGER {table}_still_named BEFORE DELETE OR UPDATE OF id ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION child_or_subject_still_named()"
        )


def downgrade() -> None:
    for table in ("child", "report_subject"):
        op.execute(f"DROP TRIGGER {table}_still_named ON {table}")
    op.execute("DROP FUNCTION child_or_subject_still_named()")
    op.execute(PREVIOUS)
