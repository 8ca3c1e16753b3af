"""The child list in a county or a township keeps an index plan at a province's size.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01

``GET /v1/children`` filters by a region prefix and pages in ``(updated_at, id)`` order. No index
served both: a prefix spans many region codes, so the planner read ``ix_child_updated`` and
filtered on the region, which for a township (0.2% of 10,000,000 children) threw away about a
thousand rows per row kept. A child's region code is 6, 9 or 12 digits (county, township,
village), so the county and the township are fixed-width prefixes: ``left(region_code, 6)`` and
``left(region_code, 9)``, each indexed with the page order, turn the prefix into an equality
the index is ordered under. The list query states a county's or a township's prefix that way
instead of as a ``LIKE``.

Built inside the migration's transaction (the migrations hold one advisory lock from start to
end, which ``CREATE INDEX CONCURRENTLY`` would give up): writes to ``child`` wait while it runs,
reads do not. At 10,000,000 children each index took 26 s to build on a 2-core machine; each is
about 50 MiB per million children when built, 60-64 MiB after the registry has grown through it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_child_county_updated ON child (left(region_code, 6), updated_at, id)")
    op.execute("CREATE INDEX ix_child_township_updated ON child (left(region_code, 9), updated_at, id)")
    op.execute("ANALYZE child")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_child_township_updated")
    op.execute("DROP INDEX IF EXISTS ix_child_county_updated")
