"""Identity: agencies and API clients.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agency",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "kind IN ('civil-affairs','education','health','police','womens-federation','platform')",
            name="agency_kind_valid",
        ),
    )
    op.create_table(
        "api_client",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("agency_code", sa.String(64), sa.ForeignKey("agency.code"), nullable=False),
        sa.Column("allowed_scopes", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("region", sa.String(12), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("secret_hash", sa.String(128), nullable=False),
        sa.Column("secret_rotated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('active','revoked')", name="api_client_status_valid"),
        sa.CheckConstraint("region ~ '^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9}|[0-9]{12})?$'", name="api_client_region_valid"),
    )
    op.create_index("ix_api_client_agency_code", "api_client", ["agency_code"])


def downgrade() -> None:
    op.drop_table("api_client")
    op.drop_table("agency")
