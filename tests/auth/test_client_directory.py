"""The client-status cache read on every request: concurrent requests of one client share one
query, and a revocation is seen at once on the instance that made it, even with a read of the
client in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.auth.clients import ClientDirectory
from app.db import Database
from tests.conftest import make_client
from tests.statements import Statements

STATUS = "SELECT status, agency_code, allowed_scopes, region FROM api_client"


class HeldEngine:
    """An engine whose first connection, once its query has run, waits for :attr:`release`
    before answering: a read that has seen the database and not yet come back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.read, self.release = asyncio.Event(), asyncio.Event()
        self._first = True

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        async with self.engine.connect() as conn:
            first, self._first = self._first, False
            yield _Held(conn, self) if first else conn


class _Held:
    def __init__(self, conn: AsyncConnection, engine: HeldEngine) -> None:
        self.conn, self.engine = conn, engine

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.conn.execute(*args, **kwargs)
        self.engine.read.set()
        await self.engine.release.wait()
        return result


async def test_concurrent_requests_of_one_client_share_one_status_query(db: Database) -> None:
    client_id, _ = await make_client(db, agency="police")
    other_id, _ = await make_client(db, agency="health")
    directory = ClientDirectory(db.engine, ttl_seconds=2.0)
    with Statements(db, STATUS) as queries:
        states = await asyncio.gather(
            *(directory.get(client_id) for _ in range(64)), *(directory.get(other_id) for _ in range(8))
        )
    assert [s.agency for s in states if s is not None] == ["police"] * 64 + ["health"] * 8
    assert queries.count == 2


async def test_a_revocation_is_seen_at_once_even_with_a_read_in_flight(db: Database) -> None:
    client_id, _ = await make_client(db, agency="police")
    engine = HeldEngine(db.engine)
    directory = ClientDirectory(engine, ttl_seconds=60.0)  # type: ignore[arg-type]
    in_flight = asyncio.create_task(directory.get(client_id))
    try:
        await asyncio.wait_for(engine.read.wait(), 10)  # it has read the client, still active
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE api_client SET status = 'revoked' WHERE id = :id"), {"id": client_id}
            )
        directory.forget(client_id)
        # A new read, not the one in flight (joining it would wait for the release below).
        after = await asyncio.wait_for(directory.get(client_id), 10)
        assert after is not None and not after.active
    finally:
        engine.release.set()  # the held read's transaction would block the tables' cleanup
    earlier = await in_flight
    assert earlier is not None and earlier.active  # it did read before the revocation
    cached = await directory.get(client_id)
    assert cached is not None and not cached.active  # and it did not overwrite the fresh read
