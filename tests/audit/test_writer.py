"""The group-committing writer: batching under concurrency, failure and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

import asyncpg
import pytest

from app.audit import AuditUnavailable, AuditWriter
from tests.audit.conftest import make_record
from tests.db_faults import (
    KillWindowProxy,
    exclusive_connection_class,
    kill_backends,
    stray_asyncio_errors,
)


def _name() -> str:
    """An application_name of this test's own: killing it never touches the app's writer, nor any
    other database's on a shared server (a benchmark's)."""
    return f"childlink-audit-test-{secrets.token_hex(4)}"


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
        self, dsn: str, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        writer = AuditWriter(dsn, timeout=0.5)
        try:
            await writer.record(make_record())  # connected and working
            async with owner_conn.transaction():  # the service's role may not lock the log
                await owner_conn.execute("LOCK TABLE access_log IN ACCESS EXCLUSIVE MODE")
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

    async def test_a_dropped_connection_is_replaced(self, dsn: str, conn: asyncpg.Connection) -> None:
        name = _name()

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(dsn, server_settings={"application_name": name})

        writer = AuditWriter(dsn, connect=connect)
        try:
            await writer.record(make_record())
            assert await kill_backends(conn, name) == 1
            # The first batch after the drop may fail (503, nothing served); the writer must not
            # stay broken.
            with contextlib.suppress(AuditUnavailable):
                await writer.record(make_record())
            assert isinstance(await writer.record(make_record()), int)
        finally:
            await writer.aclose()

    async def test_a_backend_killed_while_idle_fails_one_batch_and_the_next_is_written(
        self, dsn: str, conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
    ) -> None:
        name = _name()
        async with KillWindowProxy(dsn) as proxy:
            # One record per batch, so records queue behind the batch that meets the dead
            # connection.
            writer = AuditWriter(dsn, max_batch=1, connect=lambda: proxy.connect(name))
            try:
                await writer.record(make_record())  # connected, statement prepared
                assert await kill_backends(conn, name) == 1
                await asyncio.wait_for(proxy.backend_closed.wait(), 5)
                await asyncio.sleep(0.05)  # the FATAL message is read; the close is held back

                records = [make_record() for _ in range(5)]
                results = await asyncio.wait_for(
                    asyncio.gather(*(writer.record(r) for r in records), return_exceptions=True), 10
                )
                # The first batch fails (a 503, nothing served); the next opens a new connection.
                assert isinstance(results[0], AuditUnavailable), results
                rows = await conn.fetch(
                    "SELECT id, request_id FROM access_log WHERE id = ANY($1)", results[1:]
                )
                assert {r["id"]: r["request_id"] for r in rows} == {
                    row_id: str(record.request_id)
                    for row_id, record in zip(results[1:], records[1:], strict=True)
                }
            finally:
                proxy.release()  # a held close would stall a graceful one
                await writer.aclose()
        assert stray_asyncio_errors(caplog) == []
        # The window was hit (asyncpg's InternalClientError), answered and counted like any failure.
        failures = [r.getMessage() for r in caplog.records if r.name == "app.audit.writer"]
        assert [m.rstrip() for m in failures] == ["access log flush of 1 records failed: InternalClientError"]
        assert writer.failed_flushes == 1

    async def test_concurrent_records_while_the_backend_is_killed_again_and_again(
        self, dsn: str, conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
    ) -> None:
        name = _name()
        connection_class = exclusive_connection_class()

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(
                dsn, server_settings={"application_name": name}, connection_class=connection_class
            )

        writer = AuditWriter(dsn, connect=connect)
        stop = asyncio.Event()
        written: dict[int, str] = {}
        refused = kills = 0

        async def reader() -> None:
            nonlocal refused
            while not stop.is_set():
                record = make_record()
                try:
                    written[await writer.record(record)] = str(record.request_id)
                except AuditUnavailable:
                    refused += 1

        async def impatient_reader() -> None:  # callers cancelled while their batch is in flight
            while not stop.is_set():
                with contextlib.suppress(TimeoutError, AuditUnavailable):
                    await asyncio.wait_for(writer.record(make_record()), 0.001)

        async def killer() -> None:
            nonlocal kills
            while not stop.is_set():
                await asyncio.sleep(0.05)
                kills += await kill_backends(conn, name)

        try:
            tasks = [
                *(asyncio.create_task(reader()) for _ in range(24)),
                *(asyncio.create_task(impatient_reader()) for _ in range(8)),
                asyncio.create_task(killer()),
            ]
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*tasks)

            # The last kill may still be found by one batch (a 503); the next is written.
            with contextlib.suppress(AuditUnavailable):
                await writer.record(make_record())
            assert isinstance(await writer.record(make_record()), int)
        finally:
            await writer.aclose()
        assert kills >= 5
        assert len(written) > refused
        rows = await conn.fetch("SELECT id, request_id FROM access_log WHERE id = ANY($1)", list(written))
        assert {r["id"]: r["request_id"] for r in rows} == written  # every id is its caller's record
        assert connection_class.overlaps == 0  # type: ignore[attr-defined]
        assert stray_asyncio_errors(caplog) == []

    async def test_a_closed_writer_refuses(self, dsn: str) -> None:
        writer = AuditWriter(dsn)
        await writer.aclose()
        with pytest.raises(AuditUnavailable):
            await writer.record(make_record())
