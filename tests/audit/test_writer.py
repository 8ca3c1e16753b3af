"""The group-committing writer: batching under concurrency, failure and recovery."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from app.audit import AuditUnavailable, AuditWriter
from tests.audit.conftest import make_record


class TestGroupCommit:
    async def test_concurrent_records_all_land_in_far_fewer_inserts(
        self, writer: AuditWriter, conn: asyncpg.Connection
    ) -> None:
        written: dict[int, str] = {}

        async def reader(n: int) -> None:
            for _ in range(20):
                record = make_record()
                written[await writer.record(record)] = str(record.request_id)

        await asyncio.gather(*(reader(n) for n in range(50)))

        assert len(written) == 1000  # every caller got its own id
        rows = await conn.fetch("SELECT id, request_id FROM access_log")
        assert {r["id"]: r["request_id"] for r in rows} == written  # ...and it is its own record
        assert writer.records_written == 1000
        assert writer.flushes <= 1000 / 10, f"{writer.flushes} INSERTs for 1000 records"

    async def test_a_lone_record_is_written_at_once(self, writer: AuditWriter) -> None:
        started = time.perf_counter()
        await writer.record(make_record())
        assert writer.flushes == 1
        assert time.perf_counter() - started < 1.0

    async def test_record_many_returns_ids_in_order_even_for_identical_records(
        self, writer: AuditWriter, conn: asyncpg.Connection
    ) -> None:
        twin = make_record(request_id="req-twin")
        other = make_record(request_id="req-other")
        ids = await writer.record_many([twin, twin, other])
        assert len(set(ids)) == 3
        rows = await conn.fetch("SELECT id, request_id FROM access_log WHERE id = ANY($1) ORDER BY id", ids)
        by_id = {r["id"]: r["request_id"] for r in rows}
        assert [by_id[i] for i in ids] == ["req-twin", "req-twin", "req-other"]
        assert writer.flushes == 1


class TestFailure:
    async def test_a_stalled_insert_fails_every_waiter_and_the_writer_recovers(
        self, dsn: str, conn: asyncpg.Connection
    ) -> None:
        writer = AuditWriter(dsn, timeout=0.5)
        try:
            await writer.record(make_record())  # connected and working
            async with conn.transaction():
                await conn.execute("LOCK TABLE access_log IN ACCESS EXCLUSIVE MODE")
                results = await asyncio.gather(
                    *(writer.record(make_record()) for _ in range(20)), return_exceptions=True
                )
            assert all(isinstance(r, AuditUnavailable) for r in results), results
            assert writer.failed_flushes == 1
            error = results[0]
            assert isinstance(error, AuditUnavailable)
            assert (error.status, error.code) == (503, "audit_unavailable")

            row_id = await writer.record(make_record(request_id="after-recovery"))
            assert await conn.fetchval("SELECT request_id FROM access_log WHERE id = $1", row_id) == (
                "after-recovery"
            )
        finally:
            await writer.aclose()

    async def test_an_unreachable_database_fails_the_waiters_and_the_next_call_reconnects(
        self, dsn: str
    ) -> None:
        attempts = 0

        async def flaky_connect() -> asyncpg.Connection:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise ConnectionRefusedError("database down")
            return await asyncpg.connect(dsn)

        writer = AuditWriter(dsn, connect=flaky_connect)
        try:
            results = await asyncio.gather(
                *(writer.record(make_record()) for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(r, AuditUnavailable) for r in results)
            assert isinstance(await writer.record(make_record()), int)
            assert attempts == 2
        finally:
            await writer.aclose()

    async def test_a_dropped_connection_is_replaced(
        self, writer: AuditWriter, conn: asyncpg.Connection
    ) -> None:
        await writer.record(make_record())
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'childlink-audit' AND pid <> pg_backend_pid()"
        )
        # The first batch after the drop may fail (503, nothing served); the writer must not stay
        # broken.
        for _ in range(2):
            try:
                await writer.record(make_record())
                break
            except AuditUnavailable:
                continue
        assert isinstance(await writer.record(make_record()), int)

    async def test_a_closed_writer_refuses(self, dsn: str) -> None:
        writer = AuditWriter(dsn)
        await writer.aclose()
        with pytest.raises(AuditUnavailable):
            await writer.record(make_record())
