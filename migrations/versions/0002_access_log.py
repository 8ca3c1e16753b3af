"""The access log: one append-only, hash-chained record per cross-agency read or denial.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

``access_log`` holds the records; ``access_log_chain`` holds the tamper-evidence (one entry per
sealed row, ``chain_hash = sha256(prev_chain_hash || row_hash)``, see ``app/audit/sealer.py``).
Triggers refuse UPDATE, DELETE and TRUNCATE on both, so the database itself keeps them
append-only. Triggers do not fire under ``session_replication_role = replica`` (a superuser can
always get round them; tests reset tables that way), which is why the hash chain, not the
trigger, is what ``childlink audit verify`` relies on.

Written in plain SQL: ``xid8`` has no SQLAlchemy type.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_TABLES = ("access_log", "access_log_chain")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE access_log (
            id                  bigserial PRIMARY KEY,
            logged_at           timestamptz NOT NULL DEFAULT now(),
            -- The writing transaction: the sealer chains a row only once every transaction that
            -- could still add a lower row has finished (64-bit xid8: no wraparound).
            txid                xid8 NOT NULL DEFAULT pg_current_xact_id(),
            request_id          text,
            client_id           text,
            agency              text,
            action              text NOT NULL,
            child_id            uuid,
            child_ids           uuid[],
            query               jsonb,
            purpose             text,
            decision            text NOT NULL
                                CONSTRAINT access_log_decision_valid
                                CHECK (decision IN ('allow', 'allow_redacted', 'deny')),
            reason              text,
            categories_returned text[] NOT NULL DEFAULT '{}',
            categories_withheld text[] NOT NULL DEFAULT '{}',
            basis               jsonb NOT NULL DEFAULT '{}',
            break_glass         boolean NOT NULL DEFAULT false,
            investigation_ref   text,
            row_hash            text NOT NULL
        )
        """
    )
    # The filters of GET /v1/audit/access-log, each paired with id (pages run on id desc).
    op.execute("CREATE INDEX ix_access_log_child_id ON access_log (child_id, id) WHERE child_id IS NOT NULL")
    op.execute("CREATE INDEX ix_access_log_child_ids ON access_log USING gin (child_ids)")
    op.execute("CREATE INDEX ix_access_log_agency ON access_log (agency, id)")
    op.execute("CREATE INDEX ix_access_log_client_id ON access_log (client_id, id)")
    op.execute("CREATE INDEX ix_access_log_decision ON access_log (decision, id)")
    op.execute("CREATE INDEX ix_access_log_logged_at ON access_log (logged_at)")
    # The sealer finds the unsealed rows as a txid range, not by an anti-join over the table.
    op.execute("CREATE INDEX ix_access_log_txid ON access_log (txid)")

    op.execute(
        """
        CREATE TABLE access_log_chain (
            row_id     bigint PRIMARY KEY REFERENCES access_log (id),
            position   bigint NOT NULL UNIQUE,
            chain_hash text NOT NULL,
            sealed_at  timestamptz NOT NULL DEFAULT now(),
            -- Every access_log row with a txid below this had been sealed when this entry was
            -- written; an unsealed row below the highest watermark was slipped in afterwards.
            watermark  xid8 NOT NULL
        )
        """
    )

    op.execute(
        """
        CREATE FUNCTION access_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION access_log_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION access_log_refuse_change()"
        )


def downgrade() -> None:
    op.execute("DROP TABLE access_log_chain")
    op.execute("DROP TABLE access_log")
    op.execute("DROP FUNCTION access_log_refuse_change()")
