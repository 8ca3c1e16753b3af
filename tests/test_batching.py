"""The batched lookup behind the custody check: concurrent reads share queries, a failure is a
503 for every waiter, and the next read recovers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.batching import BatchedLookup, LookupUnavailable
from app.db import asyncpg_dsn

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
