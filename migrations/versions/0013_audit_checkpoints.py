"""Signed checkpoints of the access-log chain.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

The sealer signs the chain head at a fixed interval with the platform's signing key (a compact
JWS over position, chain hash and time, see ``app/audit/checkpoints.py``) and keeps each one here.
The signature, not this table, is the evidence: an agency that keeps the checkpoints it fetched
from ``GET /v1/audit/checkpoints`` can later prove the chain up to each of them unchanged, with
nothing but the platform's JWKS. Append-only like the log itself.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE access_log_checkpoint (
            position       bigint PRIMARY KEY,
            chain_hash     text NOT NULL,
            signed_at      timestamptz NOT NULL,
            -- Every row logged before this was sealed at or below the position: a row sealed
            -- after it that claims an earlier time was written afterwards (see verify).
            complete_before timestamptz NOT NULL,
            kid            text NOT NULL,
            jws            text NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX ix_access_log_checkpoint_signed_at ON access_log_checkpoint (signed_at)")
    op.execute(
        "CREATE TRIGGER access_log_checkpoint_append_only BEFORE UPDATE OR DELETE ON access_log_checkpoint "
        "FOR EACH ROW EXECUTE FUNCTION access_log_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER access_log_checkpoint_no_truncate BEFORE TRUNCATE ON access_log_checkpoint "
        "FOR EACH STATEMENT EXECUTE FUNCTION access_log_refuse_change()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE access_log_checkpoint")
