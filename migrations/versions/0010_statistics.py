"""Statistics: the registry's history and a running tally, both kept by the registry's own writes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

``child_history`` holds every state of a child's countable fields (region, sex, birth date,
ethnicity, categories, care arrangement, status, keeping agency) with the interval it was valid
in, so a count ``as_of`` a past date sees the registry as it stood then. ``child_tally`` counts
children per (level, region code cut to that level, category, sex, status, keeping agency) at
three levels (county 6, township 9, village 12 digits), so a province grouped by county reads a
few thousand county rows rather than every village's; category ``*`` counts each child once. A trigger on ``child`` writes both in the transaction that changes
the child, whatever path writes it, so neither can drift from the rows. History starts here:
existing children get one row valid from their registration.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTED = (
    "region_code, sex, birth_date, ethnicity, categories, care_arrangement, status, owner_agency, "
    "exit_reason, exit_date"
)

_FUNCTION = f"""
CREATE FUNCTION child_statistics_keep() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  since timestamptz;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF (OLD.region_code, OLD.sex, OLD.birth_date, OLD.ethnicity, OLD.categories, OLD.care_arrangement,
        OLD.status, OLD.owner_agency, OLD.exit_reason, OLD.exit_date)
       IS NOT DISTINCT FROM
       (NEW.region_code, NEW.sex, NEW.birth_date, NEW.ethnicity, NEW.categories, NEW.care_arrangement,
        NEW.status, NEW.owner_agency, NEW.exit_reason, NEW.exit_date) THEN
      RETURN NULL;
    END IF;
    -- The change is valid from the record's own change time, never before the state it ends.
    UPDATE child_history SET valid_to = greatest(NEW.updated_at, valid_from)
      WHERE child_id = OLD.id AND valid_to IS NULL
      RETURNING valid_to INTO since;
    -- Rows in a fixed order, so concurrent registrations never lock tally rows crosswise.
    INSERT INTO child_tally (level, region_code, category, sex, status, owner_agency, n)
      SELECT lv, left(OLD.region_code, lv), c, OLD.sex, OLD.status, OLD.owner_agency, -1
      FROM unnest(ARRAY[6, 9, 12]) AS lv,
           unnest(array['*']::varchar[] || OLD.categories::varchar[]) AS c ORDER BY lv, c
      ON CONFLICT (level, region_code, category, sex, status, owner_agency)
      DO UPDATE SET n = child_tally.n + EXCLUDED.n;
  ELSE
    since := NEW.created_at;
  END IF;
  INSERT INTO child_history (child_id, valid_from, {_COUNTED})
    VALUES (NEW.id, coalesce(since, NEW.updated_at), NEW.region_code, NEW.sex, NEW.birth_date,
            NEW.ethnicity, NEW.categories, NEW.care_arrangement, NEW.status, NEW.owner_agency,
            NEW.exit_reason, NEW.exit_date);
  INSERT INTO child_tally (level, region_code, category, sex, status, owner_agency, n)
    SELECT lv, left(NEW.region_code, lv), c, NEW.sex, NEW.status, NEW.owner_agency, 1
    FROM unnest(ARRAY[6, 9, 12]) AS lv,
         unnest(array['*']::varchar[] || NEW.categories::varchar[]) AS c ORDER BY lv, c
    ON CONFLICT (level, region_code, category, sex, status, owner_agency)
    DO UPDATE SET n = child_tally.n + EXCLUDED.n;
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "child_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("child_id", sa.Uuid(), sa.ForeignKey("child.id"), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True)),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("sex", sa.String(8), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("ethnicity", sa.String(40)),
        sa.Column("categories", sa.ARRAY(sa.String()), nullable=False),
        sa.Column("care_arrangement", sa.String(40)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner_agency", sa.String(64), nullable=False),
        sa.Column("exit_reason", sa.String(32)),
        sa.Column("exit_date", sa.Date()),
    )
    op.create_index("ix_child_history_child", "child_history", ["child_id"], unique=True,
                    postgresql_where=sa.text("valid_to IS NULL"))
    op.create_index("ix_child_history_current_region", "child_history", ["region_code"],
                    postgresql_ops={"region_code": "text_pattern_ops"},
                    postgresql_where=sa.text("valid_to IS NULL"))
    op.create_index("ix_child_history_period", "child_history", ["valid_from", "valid_to"])
    op.create_table(
        "child_tally",
        sa.Column("level", sa.SmallInteger(), primary_key=True),
        sa.Column("region_code", sa.String(12), primary_key=True),
        sa.Column("category", sa.String(32), primary_key=True),
        sa.Column("sex", sa.String(8), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("owner_agency", sa.String(64), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_child_tally_region", "child_tally", ["level", "region_code"],
                    postgresql_ops={"region_code": "text_pattern_ops"})
    op.create_index("ix_outbox_event_time", "outbox_event", ["time"])
    op.execute(_FUNCTION)
    op.execute(
        "CREATE TRIGGER child_statistics AFTER INSERT OR UPDATE ON child "
        "FOR EACH ROW EXECUTE FUNCTION child_statistics_keep()"
    )
    op.execute(
        f"INSERT INTO child_history (child_id, valid_from, {_COUNTED}) "
        f"SELECT id, created_at, {_COUNTED} FROM child"
    )
    op.execute(
        "INSERT INTO child_tally (level, region_code, category, sex, status, owner_agency, n) "
        "SELECT lv, left(region_code, lv), c, sex, status, owner_agency, count(*) FROM child, "
        "unnest(ARRAY[6, 9, 12]) AS lv, unnest(array['*']::varchar[] || categories::varchar[]) AS c "
        "GROUP BY lv, left(region_code, lv), c, sex, status, owner_agency"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER child_statistics ON child")
    op.execute("DROP FUNCTION child_statistics_keep()")
    op.drop_index("ix_outbox_event_time", "outbox_event")
    op.drop_table("child_tally")
    op.drop_table("child_history")
