"""Sealing and verification: an intact log verifies; an edited, deleted or inserted row is named.

The attacks run as the tables' owner or a superuser could (the service's role cannot):
``session_replication_role = replica`` switches the append-only triggers off, so only the hash
chain stands in the way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from app.audit import AuditWriter
from app.audit.records import content_from_row, row_hash
from app.audit.sealer import seal, seal_committed
from app.audit.verify import parse_anchor, verify
from app.audit.writer import INSERT_SQL, encode_row
from tests.audit.conftest import make_record, write_sealed


async def as_attacker(conn: asyncpg.Connection, *statements: tuple[str, tuple[object, ...]]) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql, args in statements:
            await conn.execute(sql, *args)


class TestIntactLog:
    async def test_an_empty_log_verifies(self, conn: asyncpg.Connection) -> None:
        report = await verify(conn)
        assert report.ok
        assert (report.verified, report.unsealed, report.head_position) == (0, 0, 0)

    async def test_written_records_are_sealed_and_verify(
        self, writer: AuditWriter, conn: asyncpg.Connection
    ) -> None:
        await asyncio.gather(*(writer.record(make_record()) for _ in range(40)))
        report = await verify(conn)
        assert report.ok, report.summary()
        assert (report.verified, report.unsealed, report.head_position) == (40, 0, 40)
        positions = await conn.fetch("SELECT position FROM access_log_chain ORDER BY position")
        assert [p["position"] for p in positions] == list(range(1, 41))
        assert "intact: 40 records verified, 0 not yet sealed" in report.summary()

    async def test_a_lower_row_committed_late_is_waited_for_then_sealed(
        self, writer: AuditWriter, dsn: str, conn: asyncpg.Connection
    ) -> None:
        # A slow transaction takes the lower id; faster ones commit higher ids meanwhile. The
        # sealer must neither skip the slow row nor, later, take it for a forged one.
        slow = await asyncpg.connect(dsn)
        try:
            transaction = slow.transaction()
            await transaction.start()
            _, document = encode_row(make_record(request_id="slow"), datetime.now(UTC))
            (slow_row,) = await slow.fetch(INSERT_SQL, "[" + document.decode() + "]")
            fast_ids = [await writer.record(make_record()) for _ in range(3)]

            assert await seal(conn, wait=True) == 0  # all wait behind the open transaction
            report = await verify(conn, seal_within=0.2)
            assert report.ok
            assert (report.verified, report.unsealed) == (0, 3)

            await transaction.commit()
        finally:
            await slow.close()
        report = await verify(conn)
        assert report.ok, report.summary()
        assert (report.verified, report.unsealed) == (4, 0)
        chained = await conn.fetch("SELECT row_id FROM access_log_chain ORDER BY position")
        assert slow_row["id"] < min(fast_ids)
        assert sorted(r["row_id"] for r in chained) == sorted([slow_row["id"], *fast_ids])


class TestTampering:
    async def test_an_edited_row_is_named(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 10)
        await as_attacker(owner_conn, ("UPDATE access_log SET agency = 'education' WHERE id = $1", (ids[4],)))
        report = await verify(conn)
        assert not report.ok
        assert report.problem is not None
        assert (report.problem.kind, report.problem.row_id, report.problem.position) == ("edited", ids[4], 5)
        assert report.verified == 4
        assert f"row {ids[4]}" in report.summary()

    async def test_an_edited_row_with_a_recomputed_hash_breaks_the_chain(
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
        report = await verify(conn)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.row_id) == ("edited", ids[2])
        assert "chain" in report.problem.detail

    async def test_a_deleted_row_is_named(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 6)
        await as_attacker(owner_conn, ("DELETE FROM access_log WHERE id = $1", (ids[3],)))
        report = await verify(conn)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.row_id, report.problem.position) == ("deleted", ids[3], 4)

    async def test_a_row_deleted_with_its_chain_entry_leaves_a_gap(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 6)
        await as_attacker(
            owner_conn,
            ("DELETE FROM access_log_chain WHERE row_id = $1", (ids[1],)),
            ("DELETE FROM access_log WHERE id = $1", (ids[1],)),
        )
        report = await verify(conn)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("deleted", 2)
        assert "position 2 is missing" in report.summary()

    async def test_a_forged_row_backdated_behind_the_chain_is_named(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 5)
        original = await conn.fetchrow("SELECT * FROM access_log WHERE id = $1", ids[1])
        assert original is not None
        # A plausible record, with a valid row hash, dated and numbered among the sealed ones.
        forged = make_record(agency="police", child_id=uuid.uuid4(), request_id="forged")
        logged_at = original["logged_at"] + timedelta(milliseconds=1)
        forged_id = 100_000
        await as_attacker(
            owner_conn,
            (
                "INSERT INTO access_log (id, logged_at, txid, request_id, client_id, agency, action, "
                "child_id, purpose, decision, categories_returned, categories_withheld, basis, row_hash) "
                "SELECT $1, $2, txid, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13 "
                "FROM access_log WHERE id = $14",
                (
                    forged_id,
                    logged_at,
                    forged.request_id,
                    forged.client_id,
                    forged.agency,
                    forged.action,
                    forged.child_id,
                    forged.purpose,
                    str(forged.decision),
                    list(forged.categories_returned),
                    list(forged.categories_withheld),
                    json.dumps(forged.basis),
                    row_hash(forged.content(), logged_at),
                    ids[1],
                ),
            ),
        )
        report = await verify(conn)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.row_id) == ("inserted", forged_id)
        assert report.verified == 5
        # The sealer refuses to launder it into the chain.
        await seal_committed(conn)
        assert await conn.fetchval("SELECT count(*) FROM access_log_chain WHERE row_id = $1", forged_id) == 0

    async def test_a_truncated_tail_is_caught_by_an_anchor(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        ids = await write_sealed(writer, conn, 5)
        report = await verify(conn)
        anchor = parse_anchor(f"{report.head_position}:{report.head_hash}")
        assert (await verify(conn, anchor=anchor)).ok
        await as_attacker(
            owner_conn,
            ("DELETE FROM access_log_chain WHERE row_id = ANY($1)", (ids[3:],)),
            ("DELETE FROM access_log WHERE id = ANY($1)", (ids[3:],)),
        )
        assert (await verify(conn)).ok  # the chain alone cannot see a cut tail...
        report = await verify(conn, anchor=anchor)  # ...the anchor can
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("deleted", 4)


async def seed_chain(conn: asyncpg.Connection, count: int) -> None:
    """``count`` records with valid hashes and chain, copied in directly (quicker than writing and
    sealing them one batch at a time).

    Rows and entries commit together, and the entries carry the watermark a sealing pass after
    that commit would give them: the test app's own sealer, running in the background, then
    finds nothing of theirs to seal, even once a test has deleted some of the entries."""
    async with conn.transaction():
        own = int(await conn.fetchval("SELECT pg_current_xact_id()::text"))
        await _copy_chain(conn, count, watermark=own + 1)


async def _copy_chain(conn: asyncpg.Connection, count: int, *, watermark: int) -> None:
    previous = "0" * 64
    start = datetime.now(UTC) - timedelta(hours=1)
    log, chain = [], []
    for i in range(1, count + 1):
        record, logged_at = make_record(request_id=f"r{i}"), start + timedelta(milliseconds=i)
        digest = row_hash(record.content(), logged_at)
        previous = hashlib.sha256((previous + digest).encode()).hexdigest()
        log.append(
            (
                i,
                logged_at,
                record.request_id,
                record.client_id,
                record.agency,
                record.action,
                record.child_id,
                record.purpose,
                "allow",
                list(record.categories_returned),
                list(record.categories_withheld),
                json.dumps(record.basis),
                digest,
            )
        )
        chain.append((i, i, previous, watermark, digest, logged_at))
    await conn.copy_records_to_table(
        "access_log",
        records=log,
        columns=(
            "id",
            "logged_at",
            "request_id",
            "client_id",
            "agency",
            "action",
            "child_id",
            "purpose",
            "decision",
            "categories_returned",
            "categories_withheld",
            "basis",
            "row_hash",
        ),
    )
    await conn.copy_records_to_table(
        "access_log_chain",
        records=chain,
        columns=("row_id", "position", "chain_hash", "watermark", "row_hash", "logged_at"),
    )
    await conn.execute("SELECT setval('access_log_id_seq', $1)", count)


class TestParallelVerify:
    async def test_ranges_walked_by_several_processes_check_what_one_walk_would(
        self, conn: asyncpg.Connection, owner_conn: asyncpg.Connection, dsn: str
    ) -> None:
        await seed_chain(owner_conn, 24_000)
        report = await verify(conn, workers=2, dsn=dsn, seal_first=False)
        assert report.ok, report.summary()
        assert (report.verified, report.head_position) == (24_000, 24_000)
        single = await verify(conn, seal_first=False)
        assert single.head_hash == report.head_hash
        await as_attacker(
            owner_conn, ("UPDATE access_log SET purpose = 'statistics' WHERE id = $1", (20_000,))
        )
        report = await verify(conn, workers=2, dsn=dsn, seal_first=False)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position, report.verified) == ("edited", 20_000, 19_999)
