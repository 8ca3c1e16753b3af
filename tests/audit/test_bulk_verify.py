"""The set-based full verify (PostgreSQL recomputes the hashes) reports what the row-by-row walk
reports: the same kind, row, position, words and counts, for every tampering the walk catches.

Attacks run as the tables' owner with the triggers off (see ``test_chain.py``).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from app.audit import AuditWriter, bulk_verify
from app.audit.records import content_from_row, row_hash
from app.audit.sealer import seal_committed
from app.audit.verify import VerifyReport, verify
from app.auth.keys import KeyRing
from tests.audit.conftest import horizon_held, make_record, write_sealed
from tests.audit.test_chain import as_attacker, seed_chain
from tests.audit.test_checkpoints import append_backdated, checkpoint_now, rechain_from


@pytest.fixture
def keys(key_dir: Path) -> KeyRing:
    return KeyRing(key_dir, create_if_empty=True)


async def both(conn: asyncpg.Connection, **options: object) -> VerifyReport:
    """The set-based report, after checking that the walk gives the very same one."""
    walked = await verify(conn, set_based=False, **options)  # type: ignore[arg-type]
    bulk = await verify(conn, set_based=True, **{**options, "seal_first": False})  # type: ignore[arg-type]
    assert bulk.summary() == walked.summary()
    assert bulk == walked
    return bulk


class TestSameVerdictAsTheWalk:
    async def test_an_intact_log(self, writer: AuditWriter, conn: asyncpg.Connection, dsn: str) -> None:
        await write_sealed(writer, conn, 12)
        # and one not yet sealed: a transaction left open holds the horizon below it, so the test
        # app's own sealer cannot chain it between the two verifies
        async with horizon_held(dsn):
            await writer.record(make_record())
            report = await both(conn, seal_first=False)
        assert report.ok
        assert (report.verified, report.unsealed, report.head_position) == (12, 1, 12)

    async def test_an_edited_row(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 10)
        await as_attacker(owner_conn, ("UPDATE access_log SET agency = 'education' WHERE id = $1", (ids[6],)))
        report = await both(conn)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.row_id, report.problem.position) == ("edited", ids[6], 7)
        assert report.verified == 6

    async def test_only_the_first_of_two_edits_is_named(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 10)
        await as_attacker(
            owner_conn,
            ("UPDATE access_log SET purpose = 'statistics' WHERE id = $1", (ids[8],)),
            ("UPDATE access_log SET reason = 'x' WHERE id = $1", (ids[3],)),
        )
        report = await both(conn)
        assert report.problem is not None
        assert (report.problem.row_id, report.problem.position) == (ids[3], 4)

    async def test_an_edited_row_with_a_recomputed_hash(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 5)
        row = await conn.fetchrow("SELECT * FROM access_log WHERE id = $1", ids[2])
        assert row is not None
        forged = dict(content_from_row(row), categories_withheld=[])
        await as_attacker(
            owner_conn,
            (
                "UPDATE access_log SET categories_withheld = '{}', row_hash = $2 WHERE id = $1",
                (ids[2], row_hash(forged, row["logged_at"])),
            ),
        )
        report = await both(conn)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("edited", 3)
        assert "both were rewritten" in report.problem.detail

    async def test_a_deleted_row_and_a_gap(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 8)
        await as_attacker(
            owner_conn,
            ("DELETE FROM access_log WHERE id = $1", (ids[6],)),
            ("DELETE FROM access_log_chain WHERE row_id = ANY($1)", (ids[2:4],)),
            ("DELETE FROM access_log WHERE id = ANY($1)", (ids[2:4],)),
        )
        report = await both(conn)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("deleted", 3)
        assert "chain position 3 to 4 is missing" in report.summary()

    async def test_a_moved_row(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 4)
        await as_attacker(
            owner_conn,
            ("UPDATE access_log SET logged_at = logged_at - interval '1 second' WHERE id = $1", (ids[1],)),
        )
        report = await both(conn)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("deleted", 2)

    async def test_a_row_inserted_behind_the_chain(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 5)
        forged = make_record(agency="police", child_id=uuid.uuid4(), request_id="forged")
        original = await conn.fetchrow("SELECT logged_at FROM access_log WHERE id = $1", ids[1])
        assert original is not None
        logged_at = original["logged_at"] + timedelta(milliseconds=1)
        await as_attacker(
            owner_conn,
            (
                "INSERT INTO access_log (id, logged_at, txid, action, decision, agency, basis, row_hash) "
                "SELECT 100000, $2, txid, $3, 'allow', $4, $5::jsonb, $6 FROM access_log WHERE id = $1",
                (
                    ids[1],
                    logged_at,
                    forged.action,
                    forged.agency,
                    json.dumps(forged.basis),
                    row_hash({**forged.content(), "child_id": None, "request_id": None}, logged_at),
                ),
            ),
        )
        report = await both(conn)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.row_id) == ("inserted", 100_000)

    async def test_a_cut_tail_against_an_anchor(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 6)
        head = await verify(conn)
        await as_attacker(
            owner_conn,
            ("DELETE FROM access_log_chain WHERE row_id = ANY($1)", (ids[4:],)),
            ("DELETE FROM access_log WHERE id = ANY($1)", (ids[4:],)),
        )
        report = await both(conn, anchor=(head.head_position, head.head_hash))
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("deleted", 5)

    async def test_a_rewritten_chain_and_a_backdated_row_against_kept_checkpoints(
        self,
        writer: AuditWriter,
        conn: asyncpg.Connection,
        owner_conn: asyncpg.Connection,
        keys: KeyRing,
    ) -> None:
        await write_sealed(writer, conn, 3)
        kept = [await checkpoint_now(conn, keys)]
        await write_sealed(writer, conn, 2)
        forged = await append_backdated(owner_conn, kept[0].signed_at - timedelta(hours=2))
        await seal_committed(conn)
        report = await both(conn, checkpoints=kept)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.row_id, report.problem.position) == ("forged", forged, 6)

        row = await conn.fetchrow("SELECT * FROM access_log_chain WHERE position = 2")
        assert row is not None
        await as_attacker(owner_conn, ("UPDATE access_log SET reason = 'x' WHERE id = $1", (row["row_id"],)))
        edited = await conn.fetchrow("SELECT * FROM access_log WHERE id = $1", row["row_id"])
        assert edited is not None
        await as_attacker(
            owner_conn,
            (
                "UPDATE access_log SET row_hash = $2 WHERE id = $1",
                (row["row_id"], row_hash(content_from_row(edited), edited["logged_at"])),
            ),
        )
        await rechain_from(owner_conn, 2)
        report = await both(conn, checkpoints=kept)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("rewritten", 3)


class TestWhatTheDatabaseWritesDifferently:
    async def test_a_number_postgresql_prints_otherwise_is_checked_by_the_walk_and_passes(
        self, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        # jsonb keeps 1.50 as typed; Python reads it as 1.5. The row hash was taken over what
        # Python reads, so the SQL's bytes differ: the entry is walked, and it is sound.
        await seed_chain(owner_conn, 3)
        row = await conn.fetchrow("SELECT * FROM access_log WHERE id = 2")
        assert row is not None
        await as_attacker(owner_conn, ("UPDATE access_log SET query = '{\"x\": 1.50}' WHERE id = 2", ()))
        content = content_from_row(await conn.fetchrow("SELECT * FROM access_log WHERE id = 2"))  # type: ignore[arg-type]
        digest = row_hash(content, row["logged_at"])
        await as_attacker(
            owner_conn,
            ("UPDATE access_log SET row_hash = $1 WHERE id = 2", (digest,)),
            ("UPDATE access_log_chain SET row_hash = $1 WHERE position = 2", (digest,)),
        )
        await rechain_from(owner_conn, 2)
        report = await both(conn, seal_first=False)
        assert report.ok, report.summary()
        assert report.verified == 3


class TestTooManySuspects:
    async def test_a_range_cut_short_hands_the_verdict_to_the_walk(
        self, conn: asyncpg.Connection, owner_conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # One suspect per range: the row range returns only its lowest, a sound entry (a jsonb
        # number the walk passes), and leaves out the real edit above it; the links range returns
        # a later, real problem. Confirming what came back would name that later one.
        monkeypatch.setattr(bulk_verify, "SUSPECTS_PER_RANGE", 1)
        await seed_chain(owner_conn, 10)
        await as_attacker(owner_conn, ("UPDATE access_log SET query = '{\"x\": 1.50}' WHERE id = 2", ()))
        row = await conn.fetchrow("SELECT * FROM access_log WHERE id = 2")
        assert row is not None
        digest = row_hash(content_from_row(row), row["logged_at"])
        await as_attacker(
            owner_conn,
            ("UPDATE access_log SET row_hash = $1 WHERE id = 2", (digest,)),
            ("UPDATE access_log_chain SET row_hash = $1 WHERE position = 2", (digest,)),
        )
        await rechain_from(owner_conn, 2)
        await as_attacker(
            owner_conn,
            ("UPDATE access_log SET purpose = 'statistics' WHERE id = 5", ()),
            ("DELETE FROM access_log_chain WHERE position = 8", ()),
        )
        report = await both(conn, seal_first=False)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("edited", 5)


class TestInParallel:
    async def test_ranges_on_several_connections_check_what_one_walk_does(
        self,
        conn: asyncpg.Connection,
        owner_conn: asyncpg.Connection,
        dsn: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(bulk_verify, "RANGE_SIZE", 1_000)  # six ranges of each kind
        await seed_chain(owner_conn, 6_000)
        bulk = await verify(conn, set_based=True, workers=3, dsn=dsn, seal_first=False)
        assert bulk.ok, bulk.summary()
        assert bulk.verified == 6_000

        async def same() -> VerifyReport:
            bulk = await verify(conn, set_based=True, workers=3, dsn=dsn, seal_first=False)
            assert bulk == await verify(conn, set_based=False, seal_first=False)
            assert bulk.problem is not None
            return bulk

        await as_attacker(
            owner_conn, ("UPDATE access_log SET purpose = 'statistics' WHERE id = $1", (5_000,))
        )
        bulk = await same()
        assert (bulk.problem.kind, bulk.problem.position, bulk.verified) == ("edited", 5_000, 4_999)  # type: ignore[union-attr]
        # the first entry of a range, and the last of the one before
        await as_attacker(owner_conn, ("DELETE FROM access_log_chain WHERE position IN (3000, 3001)", ()))
        bulk = await same()
        assert (bulk.problem.kind, bulk.problem.position, bulk.verified) == ("deleted", 3_000, 2_999)  # type: ignore[union-attr]
        assert "chain position 3000 to 3001 is missing" in bulk.summary()
