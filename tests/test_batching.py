"""The batched lookup behind the custody check: concurrent reads share queries, a failure is a
503 for every waiter, and the next read recovers."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid

import asyncpg
import pytest

from app.batching import BatchedLookup, LookupUnavailable
from app.db import asyncpg_dsn
from tests.db_faults import KillWindowProxy, exclusive_connection_class, kill_backends, stray_asyncio_errors

SQL = "SELECT k AS key, k::text AS label FROM unnest($1::uuid[]) AS k WHERE k::text NOT LIKE '0%'"


def _key(prefix: str = "a") -> uuid.UUID:
    return uuid.UUID(prefix + uuid.uuid4().hex[1:])


class TestBatchedLookup:
    async def test_concurrent_reads_share_queries_and_each_gets_its_own_row(self, database_url: str) -> None:
        lookup = BatchedLookup(asyncpg_dsn(database_url), SQL, "key")
        try:
            keys = [_key() for _ in range(200)]
            rows = await asyncio.gather(*(lookup.get(k) for k in keys))
            assert [r["label"] for r in rows if r is not None] == [str(k) for k in keys]
            assert lookup.keys_read == 200
            assert lookup.queries < 50
        finally:
            await lookup.aclose()

    async def test_absent_key_is_none_and_duplicates_are_both_answered(self, database_url: str) -> None:
        lookup = BatchedLookup(asyncpg_dsn(database_url), SQL, "key")
        try:
            present = _key()
            absent = _key("0")
            a, b, c = await asyncio.gather(lookup.get(present), lookup.get(present), lookup.get(absent))
            assert a is not None and b is not None and a["label"] == b["label"] == str(present)
            assert c is None
        finally:
            await lookup.aclose()

    async def test_unreachable_database_is_503_for_every_waiter_then_recovers(
        self, database_url: str
    ) -> None:
        lookup = BatchedLookup("postgresql://postgres@127.0.0.1:1/none", SQL, "key", timeout=1.0)
        results = await asyncio.gather(*(lookup.get(_key()) for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, LookupUnavailable) for r in results)
        assert results[0].status == 503  # type: ignore[union-attr]
        lookup._dsn = asyncpg_dsn(database_url)  # the database is back
        try:
            key = _key()
            row = await lookup.get(key)
            assert row is not None and row["label"] == str(key)
        finally:
            await lookup.aclose()

    async def test_closed_lookup_refuses(self, database_url: str) -> None:
        lookup = BatchedLookup(asyncpg_dsn(database_url), SQL, "key")
        await lookup.aclose()
        with pytest.raises(LookupUnavailable):
            await lookup.get(_key())


class TestKilledConnection:
    async def test_a_backend_killed_while_idle_fails_one_batch_and_the_next_read_is_served(
        self, database_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        dsn = asyncpg_dsn(database_url)
        name = f"childlink-lookup-test-{secrets.token_hex(4)}"
        admin = await asyncpg.connect(dsn)
        try:
            async with KillWindowProxy(dsn) as proxy:
                # One key per query, so reads queue behind the one that meets the dead connection.
                lookup = BatchedLookup(dsn, SQL, "key", max_batch=1, connect=lambda: proxy.connect(name))
                try:
                    assert await lookup.get(_key()) is not None  # connected, statement prepared
                    assert await kill_backends(admin, name) == 1
                    await asyncio.wait_for(proxy.backend_closed.wait(), 5)
                    await asyncio.sleep(0.05)  # the FATAL message is read; the close is held back

                    keys = [_key() for _ in range(5)]
                    results = await asyncio.wait_for(
                        asyncio.gather(*(lookup.get(k) for k in keys), return_exceptions=True), 10
                    )
                    # The first query fails (a 503, nothing read); the next opens a new connection.
                    assert isinstance(results[0], LookupUnavailable), results
                    assert [r["label"] for r in results[1:]] == [str(k) for k in keys[1:]]  # type: ignore[index]
                finally:
                    proxy.release()  # a held close would stall a graceful one
                    await lookup.aclose()
        finally:
            await admin.close()
        assert stray_asyncio_errors(caplog) == []
        # The window was hit (asyncpg's InternalClientError), answered and counted like any failure.
        failures = [r.getMessage() for r in caplog.records if r.name == "app.batching"]
        assert failures == ["batched lookup failed: InternalClientError"]
        assert lookup.failed_queries == 1

    async def test_concurrent_reads_while_the_backend_is_killed_again_and_again(
        self, database_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        dsn = asyncpg_dsn(database_url)
        name = f"childlink-lookup-test-{secrets.token_hex(4)}"
        connection_class = exclusive_connection_class()

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(
                dsn, server_settings={"application_name": name}, connection_class=connection_class
            )

        lookup = BatchedLookup(dsn, SQL, "key", connect=connect)
        admin = await asyncpg.connect(dsn)
        stop = asyncio.Event()
        answered = refused = kills = 0

        async def reader() -> None:
            nonlocal answered, refused
            while not stop.is_set():
                key = _key()
                try:
                    row = await lookup.get(key)
                except LookupUnavailable:
                    refused += 1
                    continue
                assert row is not None and row["label"] == str(key)  # its own row, never another's
                answered += 1

        async def impatient_reader() -> None:  # callers cancelled while their query is in flight
            while not stop.is_set():
                with contextlib.suppress(TimeoutError, LookupUnavailable):
                    await asyncio.wait_for(lookup.get(_key()), 0.001)

        async def killer() -> None:
            nonlocal kills
            while not stop.is_set():
                await asyncio.sleep(0.05)
                kills += await kill_backends(admin, name)

        try:
            tasks = [
                *(asyncio.create_task(reader()) for _ in range(24)),
                *(asyncio.create_task(impatient_reader()) for _ in range(8)),
                asyncio.create_task(killer()),
            ]
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*tasks)

            # The last kill may still be found by one batch (a 503, nothing read); the next read
            # is served.
            with contextlib.suppress(LookupUnavailable):
                await lookup.get(_key())
            key = _key()
            row = await lookup.get(key)
            assert row is not None and row["label"] == str(key)
        finally:
            await lookup.aclose()
            await admin.close()
        assert kills >= 5
        assert answered > refused
        assert connection_class.overlaps == 0  # type: ignore[attr-defined]
        assert stray_asyncio_errors(caplog) == []


class TestOneToMany:
    async def test_get_all_returns_every_row_of_each_key_and_none_for_others(self, database_url: str) -> None:
        sql = (
            "SELECT k AS key, n FROM unnest($1::uuid[]) AS k, generate_series(1, 2) AS n "
            "WHERE k::text NOT LIKE '0%'"
        )
        lookup = BatchedLookup(asyncpg_dsn(database_url), sql, "key")
        try:
            two, none = _key(), _key("0")
            rows, empty = await asyncio.gather(lookup.get_all(two), lookup.get_all(none))
            assert sorted(r["n"] for r in rows) == [1, 2]
            assert empty == []
            assert lookup.queries == 1
        finally:
            await lookup.aclose()
