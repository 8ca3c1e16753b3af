"""The access-log chain no longer holds a foreign key to the log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

The key checked, for every chain entry the sealer appended, that its row existed, and locked that
row while the sealing transaction ran: about a third of what sealing cost the database per read
(bench/README.md). Neither protects the log. Both tables refuse UPDATE, DELETE and TRUNCATE by
trigger, and ``childlink audit verify`` reports a chain entry whose row is gone as a deleted row,
with its position. A key never stopped the role that owns the tables, which can drop it as
easily as it can disable the triggers; the chain is what catches that role.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE access_log_chain DROP CONSTRAINT IF EXISTS access_log_chain_row_id_fkey")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE access_log_chain ADD CONSTRAINT access_log_chain_row_id_fkey "
        "FOREIGN KEY (row_id) REFERENCES access_log (id)"
    )
