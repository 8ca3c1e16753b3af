"""The access log partitioned by month; chain entries carry their row's hash and time.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

``access_log`` becomes a declaratively partitioned table, by ``logged_at`` month (UTC), named
``access_log_yYYYYmMM``, with a default partition that catches a record whose month has no
partition yet (a read is never refused for want of one; ``access_log_create_partitions`` then
leaves that month to the default and says so). The append-only row triggers sit on the parent and
PostgreSQL clones them onto every partition; TRUNCATE triggers do not propagate, so each partition
gets its own. The primary key becomes ``(id, logged_at)`` (a partitioned table's unique keys must
contain the partition key); ids still come from the one sequence.

``access_log_create_partitions(months_ahead, at)`` creates this month's and the next months'
partitions. It is SECURITY DEFINER, owned by the schema owner: the service's role, which may not
create tables, runs it from the worker's scheduler to keep partitions ahead, and it can do nothing
else with it. A new partition gets the parent's INSERT/SELECT grantees, nothing more.

Chain entries now store ``row_hash`` and ``logged_at`` of their row (both set by the sealer,
backfilled here): the chain alone then proves its own links, and a verifier joining a range of
entries to their rows reaches each row in its one partition instead of probing every partition.
``access_log_archive`` records each partition exported to a signed archive and detached.

Existing rows are copied into the new table (a one-time cost of the upgrade, about a minute per
ten million rows on the benchmark machine).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "id, logged_at, txid, request_id, client_id, agency, action, child_id, child_ids, query, purpose, "
    "decision, reason, categories_returned, categories_withheld, basis, break_glass, investigation_ref, "
    "row_hash"
)


def _append_only(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION access_log_refuse_change()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION access_log_refuse_change()"
    )


def upgrade() -> None:
    op.execute("ALTER TABLE access_log RENAME TO access_log_unpartitioned")
    op.execute("ALTER INDEX access_log_pkey RENAME TO access_log_unpartitioned_pkey")
    for index in ("child_id", "child_ids", "agency", "client_id", "decision", "logged_at", "txid"):
        op.execute(f"DROP INDEX ix_access_log_{index}")
    op.execute(
        """
        CREATE TABLE access_log (
            id                  bigint NOT NULL DEFAULT nextval('access_log_id_seq'),
            logged_at           timestamptz NOT NULL DEFAULT now(),
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
            row_hash            text NOT NULL,
            PRIMARY KEY (id, logged_at)
        ) PARTITION BY RANGE (logged_at)
        """
    )
    op.execute("ALTER SEQUENCE access_log_id_seq OWNED BY access_log.id")
    op.execute("CREATE INDEX ix_access_log_child_id ON access_log (child_id, id) WHERE child_id IS NOT NULL")
    op.execute("CREATE INDEX ix_access_log_child_ids ON access_log USING gin (child_ids)")
    op.execute("CREATE INDEX ix_access_log_agency ON access_log (agency, id)")
    op.execute("CREATE INDEX ix_access_log_client_id ON access_log (client_id, id)")
    op.execute("CREATE INDEX ix_access_log_decision ON access_log (decision, id)")
    op.execute("CREATE INDEX ix_access_log_logged_at ON access_log (logged_at)")
    op.execute("CREATE INDEX ix_access_log_txid ON access_log (txid)")
    _append_only("access_log")
    op.execute("CREATE TABLE access_log_default PARTITION OF access_log DEFAULT")
    op.execute(
        "CREATE TRIGGER access_log_default_no_truncate BEFORE TRUNCATE ON access_log_default "
        "FOR EACH STATEMENT EXECUTE FUNCTION access_log_refuse_change()"
    )
    op.execute(
        r"""
        CREATE FUNCTION access_log_create_partitions(months_ahead integer, at timestamptz)
        RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            month date := date_trunc('month', at AT TIME ZONE 'UTC')::date;
            lower_bound timestamptz;
            upper_bound timestamptz;
            name text;
            grantee text;
            made integer := 0;
        BEGIN
            IF months_ahead < 0 OR months_ahead > 36 THEN
                RAISE EXCEPTION 'months_ahead must be between 0 and 36';
            END IF;
            FOR i IN 0..months_ahead LOOP
                name := 'access_log_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM');
                lower_bound := (month::text || ' 00:00:00+00')::timestamptz;
                upper_bound := ((month + interval '1 month')::date::text || ' 00:00:00+00')::timestamptz;
                month := (month + interval '1 month')::date;
                CONTINUE WHEN to_regclass('public.' || quote_ident(name)) IS NOT NULL;
                IF EXISTS (SELECT 1 FROM access_log_default
                           WHERE logged_at >= lower_bound AND logged_at < upper_bound) THEN
                    RAISE WARNING 'access log records of % are in the default partition; % not created',
                        to_char(lower_bound AT TIME ZONE 'UTC', 'YYYY-MM'), name;
                    CONTINUE;
                END IF;
                EXECUTE format('CREATE TABLE %I PARTITION OF access_log FOR VALUES FROM (%L) TO (%L)',
                               name, lower_bound, upper_bound);
                EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                               'EXECUTE FUNCTION access_log_refuse_change()', name || '_no_truncate', name);
                FOR grantee IN
                    SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
                    WHERE g.table_schema = 'public' AND g.table_name = 'access_log'
                      AND g.privilege_type = 'INSERT' AND g.grantee <> current_user
                LOOP
                    EXECUTE format('GRANT SELECT, INSERT ON %I TO %I', name, grantee);
                END LOOP;
                made := made + 1;
            END LOOP;
            RETURN made;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION access_log_create_partitions(integer, timestamptz) FROM PUBLIC")
    # Every month that holds records, and the next three.
    op.execute(
        """
        WITH oldest AS (
            SELECT COALESCE(min(logged_at), now()) AT TIME ZONE 'UTC' AS at FROM access_log_unpartitioned
        )
        SELECT access_log_create_partitions(
            LEAST(36, ((date_part('year', now() AT TIME ZONE 'UTC') - date_part('year', at)) * 12
                       + date_part('month', now() AT TIME ZONE 'UTC') - date_part('month', at))::integer + 3),
            at AT TIME ZONE 'UTC')
        FROM oldest
        """
    )
    op.execute(f"INSERT INTO access_log ({COLUMNS}) SELECT {COLUMNS} FROM access_log_unpartitioned")  # noqa: S608
    op.execute("DROP TABLE access_log_unpartitioned")

    op.execute("ALTER TABLE access_log_chain ADD COLUMN row_hash text, ADD COLUMN logged_at timestamptz")
    op.execute("ALTER TABLE access_log_chain DISABLE TRIGGER access_log_chain_append_only")
    op.execute(
        "UPDATE access_log_chain c SET row_hash = a.row_hash, logged_at = a.logged_at "
        "FROM access_log a WHERE a.id = c.row_id"
    )
    op.execute("ALTER TABLE access_log_chain ENABLE TRIGGER access_log_chain_append_only")

    op.execute(
        """
        CREATE TABLE access_log_archive (
            partition       text PRIMARY KEY,
            range_from      timestamptz NOT NULL,
            range_until     timestamptz NOT NULL,
            rows            bigint NOT NULL,
            first_position  bigint,
            last_position   bigint,
            min_row_id      bigint,
            max_row_id      bigint,
            chain_head      text,
            data_sha256     text NOT NULL,
            manifest        jsonb NOT NULL,
            archived_at     timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    _append_only("access_log_archive")


def downgrade() -> None:
    raise NotImplementedError("the partitioned access log is not turned back into one table")
