"""Investigations are keyed by agency and case reference, and remember the region that opened them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A case reference was global: the first agency to use a string owned it, so another agency's
identical reference was refused (and learnt that the reference was in use), and any client of
the owning agency, in any region, could close it. Now each agency has its own references, and a
case is closed only by its agency with a token region covering ``opened_region`` (the region of
the token that first used the reference). Cases opened before this revision have no known region
and get ``''``: only a nationwide token of their agency closes them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "investigation", sa.Column("opened_region", sa.String(12), nullable=False, server_default="")
    )
    op.drop_constraint("investigation_pkey", "investigation", type_="primary")
    op.create_primary_key("investigation_pkey", "investigation", ["agency", "ref"])


def downgrade() -> None:
    # Fails if two agencies now use the same reference; that is the state it cannot represent.
    op.drop_constraint("investigation_pkey", "investigation", type_="primary")
    op.create_primary_key("investigation_pkey", "investigation", ["ref"])
    op.drop_column("investigation", "opened_region")
