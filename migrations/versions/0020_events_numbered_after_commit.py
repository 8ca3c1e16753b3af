"""Events are numbered after their transaction commits, many at a time, instead of inside COMMIT.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01

Until now a deferred trigger numbered each event at the very end of its transaction from the one
counter row (migration 0005), so whoever published held the counter's lock until its commit was
durable: publishes waited for each other's disk flush one at a time, which capped the whole
platform near 120 events/s on a 2-core machine whatever else it had to spare.

From here on a transaction only inserts its events, unnumbered. ``outbox_event_number()`` then
numbers every committed unnumbered event in one pass: it takes an advisory lock (one pass at a
time), and each statement of the function takes a new snapshot, so the pass sees every commit
that finished before it got the lock, the previous pass's numbers included. Numbers become
visible in order and without holes as before: a pass's numbers are all above the previous
pass's, and they appear together when it commits. An uncommitted event is invisible to the pass
and waits for the next one. Within a pass events are numbered by ``ordinal``, drawn from a
sequence at INSERT: an event inserted after another committed always draws a higher ordinal, so
a child's events keep the order they were written in.

Who calls it: the publishing request right after its commit (its receipt carries the number), a
request that emitted events (registry changes, cases, reports) right after its commit, the
delivery worker before each fan-out (for the scheduler's jobs, and for a request whose process
died between its commit and its pass), and the pull feed before it reads the head. A pass with
nothing to number takes no lock and writes nothing.

The insert now notifies ``childlink_events`` once per statement (delivered at commit) so a worker
comes to number what no request did; a pass that numbered something notifies again.

Upgrading: stop API instances of an earlier version before migrating. They read an event's
number right after its commit and would find none.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NUMBER_LOCK_KEY = 7216361  # pg advisory lock id (the migrations use 7216359, the sealer 7216360)
PASS_SIZE = 5000

NUMBER_FUNCTION = f"""
CREATE FUNCTION outbox_event_number(own uuid DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
-- Numbers the committed events that have none yet. Returns own's number when own is given
-- (NULL if there is no such event), else the head: the highest number given.
DECLARE
    own_seq bigint;
    head bigint;
    added bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        -- The pass must see commits made while it waited for the lock: one snapshot per statement.
        RAISE EXCEPTION 'outbox_event_number() needs READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    IF own IS NOT NULL THEN
        SELECT seq INTO own_seq FROM outbox_event WHERE id = own;
        IF own_seq IS NOT NULL OR NOT FOUND THEN
            RETURN own_seq;
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM outbox_event WHERE seq IS NULL) THEN
        RETURN COALESCE((SELECT last_seq FROM event_sequence WHERE id = 1), 0);
    END IF;
    -- One pass at a time. Every statement below takes a new snapshot (READ COMMITTED, a volatile
    -- function), so it sees the previous pass's numbers and every commit made before the lock.
    PERFORM pg_advisory_xact_lock({NUMBER_LOCK_KEY});
    LOOP
        SELECT last_seq INTO head FROM event_sequence WHERE id = 1;
        IF NOT FOUND THEN  -- an emptied counter table (a test's TRUNCATE) starts again at 1
            head := 0;
            INSERT INTO event_sequence (id, last_seq) VALUES (1, 0);
        END IF;
        WITH pending AS (
            SELECT e.id, head + row_number() OVER (ORDER BY e.ordinal, e.id) AS seq
            FROM outbox_event AS e
            WHERE e.seq IS NULL
            ORDER BY e.ordinal, e.id
            LIMIT {PASS_SIZE}
        ),
        numbered AS (
            UPDATE outbox_event AS e SET seq = pending.seq FROM pending WHERE e.id = pending.id
            RETURNING 1
        )
        SELECT count(*) INTO added FROM numbered;
        EXIT WHEN added = 0;
        UPDATE event_sequence SET last_seq = head + added WHERE id = 1;
        PERFORM pg_notify('childlink_events', '');
        EXIT WHEN added < {PASS_SIZE};
        -- A publish waits for its own number, not for a whole backlog (the worker takes that).
        EXIT WHEN own IS NOT NULL AND (SELECT seq FROM outbox_event WHERE id = own) IS NOT NULL;
    END LOOP;
    IF own IS NOT NULL THEN
        SELECT seq INTO own_seq FROM outbox_event WHERE id = own;
        RETURN own_seq;
    END IF;
    RETURN COALESCE((SELECT last_seq FROM event_sequence WHERE id = 1), 0);
END
$$;
"""

INSERTED_FUNCTION = """
CREATE FUNCTION outbox_event_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit, folded with identical ones: a worker comes to number the events.
    -- Not for a statement that inserted nothing (a replayed publish's INSERT ... SELECT).
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('childlink_events', '');
    END IF;
    RETURN NULL;
END
$$;
"""

# The same rule as migration 0005 (the only change an event ever sees is its number, once),
# compared as rows instead of as two jsonb documents: the pass numbers thousands at a time.
GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION outbox_event_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unnumbered outbox_event%ROWTYPE;
BEGIN
    IF OLD.seq IS NULL AND NEW.seq IS NOT NULL THEN
        unnumbered := NEW;
        unnumbered.seq := NULL;
        IF unnumbered IS NOT DISTINCT FROM OLD THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'outbox events are immutable' USING ERRCODE = 'insufficient_privilege';
END
$$;
"""

OLD_SEQUENCE_FUNCTION = """
CREATE FUNCTION outbox_event_assign_seq() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    INSERT INTO event_sequence AS s (id, last_seq) VALUES (1, 1)
    ON CONFLICT (id) DO UPDATE SET last_seq = s.last_seq + 1
    RETURNING last_seq INTO next_seq;
    UPDATE outbox_event SET seq = next_seq WHERE id = NEW.id;
    PERFORM pg_notify('childlink_events', '');
    RETURN NULL;
END
$$;
"""

OLD_GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION outbox_event_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND (to_jsonb(NEW) - 'seq') = (to_jsonb(OLD) - 'seq') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'outbox events are immutable' USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


def upgrade() -> None:
    # Every event so far was numbered inside its commit; only new rows draw an ordinal.
    op.execute("CREATE SEQUENCE outbox_event_ordinal_seq")
    op.execute("ALTER TABLE outbox_event ADD COLUMN ordinal bigint")
    op.execute("ALTER TABLE outbox_event ALTER COLUMN ordinal SET DEFAULT nextval('outbox_event_ordinal_seq')")
    op.execute("ALTER SEQUENCE outbox_event_ordinal_seq OWNED BY outbox_event.ordinal")
    op.execute("CREATE INDEX ix_outbox_event_unnumbered ON outbox_event (ordinal, id) WHERE seq IS NULL")
    op.execute("DROP TRIGGER outbox_event_sequence ON outbox_event")
    op.execute("DROP FUNCTION outbox_event_assign_seq()")
    op.execute(INSERTED_FUNCTION)
    op.execute(
        "CREATE TRIGGER outbox_event_inserted AFTER INSERT ON outbox_event "
        "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION outbox_event_inserted()"
    )
    op.execute(GUARD_FUNCTION)
    op.execute(NUMBER_FUNCTION)


def downgrade() -> None:
    op.execute("SELECT outbox_event_number()")
    op.execute("DROP FUNCTION outbox_event_number(uuid)")
    op.execute(OLD_GUARD_FUNCTION)
    op.execute("DROP TRIGGER outbox_event_inserted ON outbox_event")
    op.execute("DROP FUNCTION outbox_event_inserted()")
    op.execute(OLD_SEQUENCE_FUNCTION)
    op.execute(
        "CREATE CONSTRAINT TRIGGER outbox_event_sequence AFTER INSERT ON outbox_event "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION outbox_event_assign_seq()"
    )
    op.execute("DROP INDEX ix_outbox_event_unnumbered")
    op.execute("ALTER TABLE outbox_event DROP COLUMN ordinal")
