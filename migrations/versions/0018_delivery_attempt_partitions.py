"""Delivery attempts partitioned by month, with retention.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01

``delivery_attempt`` becomes a declaratively partitioned table, by ``sent_at`` month (UTC), named
``delivery_attempt_yYYYYmMM``, with a default partition that catches an attempt whose month has no
partition yet (a delivery is never refused for want of one). ``sent_at`` is new: when the attempt
was put on record (``sending``, at the claim), set once and never changed, unlike ``at`` (when it
finished), which the recorder moves; existing rows take ``at``. The primary key becomes
``(id, sent_at)`` (a partitioned table's unique keys must contain the partition key); ids still
come from one sequence.

``delivery_attempt_create_partitions(months_ahead, at)`` creates this month's and the next
months' partitions; ``delivery_attempt_drop_partitions(before)`` drops the monthly partitions that
end at or before ``before`` (and at least 31 days ago, whatever ``before`` says) and returns their
names.
Both are SECURITY DEFINER, owned by the schema owner: the service's role, which may not create or
drop tables, runs them from the worker's scheduler (retention is
``CHILDLINK_DELIVERY_ATTEMPT_RETENTION_DAYS``), and can do nothing else with them. A new partition
gets the parent's grantees' privileges.

Existing rows are copied into the new table.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "id, delivery_id, attempt, outcome, status_code, error, duration_ms, categories_withheld, worker, at"
)
OUTCOMES = "'sending','delivered','failed','gone','denied','refused','abandoned','aborted'"


def upgrade() -> None:
    op.execute("ALTER TABLE delivery_attempt RENAME TO delivery_attempt_unpartitioned")
    op.execute("ALTER INDEX delivery_attempt_pkey RENAME TO delivery_attempt_unpartitioned_pkey")
    op.execute("ALTER SEQUENCE delivery_attempt_id_seq RENAME TO delivery_attempt_unpartitioned_id_seq")
    op.execute("DROP INDEX ix_delivery_attempt_delivery")
    op.execute("DROP INDEX ix_delivery_attempt_sending")
    op.execute("CREATE SEQUENCE delivery_attempt_id_seq AS bigint")
    op.execute(
        f"""
        CREATE TABLE delivery_attempt (
            id                  bigint NOT NULL DEFAULT nextval('delivery_attempt_id_seq'),
            delivery_id         bigint NOT NULL REFERENCES event_delivery (id) ON DELETE CASCADE,
            attempt             integer NOT NULL,
            outcome             varchar(16) NOT NULL
                                CONSTRAINT delivery_attempt_outcome_valid CHECK (outcome IN ({OUTCOMES})),
            status_code         integer,
            error               varchar(200),
            duration_ms         integer,
            categories_withheld varchar[] NOT NULL DEFAULT '{{}}',
            worker              varchar(64),
            at                  timestamptz NOT NULL DEFAULT now(),
            sent_at             timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (id, sent_at)
        ) PARTITION BY RANGE (sent_at)
        """
    )
    op.execute("ALTER SEQUENCE delivery_attempt_id_seq OWNED BY delivery_attempt.id")
    op.execute(
        "SELECT setval('delivery_attempt_id_seq', "
        "COALESCE((SELECT max(id) FROM delivery_attempt_unpartitioned), 0) + 1, false)"
    )
    op.execute("CREATE INDEX ix_delivery_attempt_delivery ON delivery_attempt (delivery_id, id)")
    op.execute(
        "CREATE INDEX ix_delivery_attempt_sending ON delivery_attempt (delivery_id) WHERE outcome = 'sending'"
    )
    op.execute("CREATE TABLE delivery_attempt_default PARTITION OF delivery_attempt DEFAULT")
    op.execute(
        r"""
        CREATE FUNCTION delivery_attempt_create_partitions(months_ahead integer, at timestamptz)
        RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            month date := date_trunc('month', at AT TIME ZONE 'UTC')::date;
            lower_bound timestamptz;
            upper_bound timestamptz;
            name text;
            grantee record;
            made integer := 0;
        BEGIN
            IF months_ahead < 0 OR months_ahead > 36 THEN
                RAISE EXCEPTION 'months_ahead must be between 0 and 36';
            END IF;
            FOR i IN 0..months_ahead LOOP
                name := 'delivery_attempt_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM');
                lower_bound := (month::text || ' 00:00:00+00')::timestamptz;
                upper_bound := ((month + interval '1 month')::date::text || ' 00:00:00+00')::timestamptz;
                month := (month + interval '1 month')::date;
                CONTINUE WHEN to_regclass('public.' || quote_ident(name)) IS NOT NULL;
                IF EXISTS (SELECT 1 FROM delivery_attempt_default
                           WHERE sent_at >= lower_bound AND sent_at < upper_bound) THEN
                    RAISE WARNING 'delivery attempts of % are in the default partition; % not created',
                        to_char(lower_bound AT TIME ZONE 'UTC', 'YYYY-MM'), name;
                    CONTINUE;
                END IF;
                EXECUTE format('CREATE TABLE %I PARTITION OF delivery_attempt FOR VALUES FROM (%L) TO (%L)',
                               name, lower_bound, upper_bound);
                FOR grantee IN
                    SELECT g.grantee, string_agg(g.privilege_type, ', ') AS privileges
                    FROM information_schema.role_table_grants g
                    WHERE g.table_schema = 'public' AND g.table_name = 'delivery_attempt'
                      AND g.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
                      AND g.grantee <> current_user
                    GROUP BY g.grantee
                LOOP
                    EXECUTE format('GRANT %s ON %I TO %I', grantee.privileges, name, grantee.grantee);
                END LOOP;
                made := made + 1;
            END LOOP;
            RETURN made;
        END
        $$
        """
    )
    op.execute(
        r"""
        CREATE FUNCTION delivery_attempt_drop_partitions(before timestamptz)
        RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            part record;
            upper_bound timestamptz;
            dropped text[] := '{}';
        BEGIN
            -- Whatever the caller's clock says, nothing younger than 31 days goes.
            before := LEAST(before, now() - interval '31 days');
            FOR part IN
                SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'delivery_attempt'::regclass
                  AND c.relname ~ '^delivery_attempt_y[0-9]{4}m[0-9]{2}$'
                ORDER BY c.relname
            LOOP
                upper_bound := ((to_date(substr(part.name, 19, 4) || substr(part.name, 24, 2), 'YYYYMM')
                                 + interval '1 month')::date::text || ' 00:00:00+00')::timestamptz;
                CONTINUE WHEN upper_bound > before;
                EXECUTE format('DROP TABLE %I', part.name);
                dropped := dropped || part.name::text;
            END LOOP;
            RETURN dropped;
        END
        $$
        """
    )
    for function in (
        "delivery_attempt_create_partitions(integer, timestamptz)",
        "delivery_attempt_drop_partitions(timestamptz)",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    # Every month that holds attempts, and the next three: 37 months per call (the function's
    # bound), so a longer history gets all its months and none lands in the default partition.
    op.execute(
        """
        DO $$
        DECLARE
          since timestamptz := COALESCE((SELECT min(at) FROM delivery_attempt_unpartitioned), now());
          months integer;
        BEGIN
          LOOP
            months := ((date_part('year', now() AT TIME ZONE 'UTC')
                        - date_part('year', since AT TIME ZONE 'UTC')) * 12
                       + date_part('month', now() AT TIME ZONE 'UTC')
                       - date_part('month', since AT TIME ZONE 'UTC'))::integer + 3;
            PERFORM delivery_attempt_create_partitions(LEAST(36, months), since);
            EXIT WHEN months <= 36;
            since := (date_trunc('month', since AT TIME ZONE 'UTC') + interval '37 months') AT TIME ZONE 'UTC';
          END LOOP;
        END $$
        """
    )
    op.execute(
        f"INSERT INTO delivery_attempt ({COLUMNS}, sent_at) "  # noqa: S608
        f"SELECT {COLUMNS}, at FROM delivery_attempt_unpartitioned"
    )
    op.execute("DROP TABLE delivery_attempt_unpartitioned")


def downgrade() -> None:
    raise NotImplementedError("the partitioned delivery attempts are not turned back into one table")
