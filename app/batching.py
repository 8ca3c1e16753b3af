"""Coalescing concurrent primary-key reads into one ``= ANY($1)`` query.

The custody check is the service's hot path: at a few thousand requests a second each request's
own round trip to PostgreSQL costs more CPU (driver call, protocol, backend wake-up) than the
lookup itself. Requests that arrive while a query is in flight wait for the next one, which
fetches all of their keys at once; as with the audit writer, the next query starts as soon as the
previous one ends (no timer: at low load a lone request goes out at once). asyncpg is used
directly here, as DESIGN §3 allows on a hot path.

One flusher task is the only user of the connection, so no two queries ever share it. Any failure
of a query (the driver's own ``InternalClientError`` included) is a 503 for that batch's waiters
and drops the connection; the task carries on with the next batch on a new one and never ends
with an exception nobody retrieves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from app.db import driver_options
from app.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


class LookupUnavailable(ServiceUnavailable):
    code = "database_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The database cannot be reached; nothing was read. Retry shortly.", headers={"Retry-After": "2"}
        )


Connect = Callable[[], Coroutine[Any, Any, asyncpg.Connection]]


class BatchedLookup:
    """``await lookup.get(key)`` returns the row whose ``key_column`` equals ``key`` (or None);
    ``await lookup.get_all(key)`` every such row (for a one-to-many lookup).

    ``sql`` takes one parameter, the array of keys, and must return ``key_column``.
    """

    def __init__(
        self,
        dsn: str,
        sql: str,
        key_column: str,
        *,
        max_batch: int = 500,
        timeout: float = 5.0,
        connect: Connect | None = None,
        pooled: bool = False,
    ) -> None:
        self._dsn = dsn
        self._pooled = pooled
        self._sql = sql
        self._key = key_column
        self._max_batch = max_batch
        self._timeout = timeout
        self._connect = connect or self._default_connect
        self._conn: asyncpg.Connection | None = None
        self._pending: dict[uuid.UUID, list[asyncio.Future[list[asyncpg.Record]]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.queries = 0
        self.keys_read = 0
        self.failed_queries = 0

    async def _default_connect(self) -> asyncpg.Connection:
        # One statement whose only parameter is an array of keys: PostgreSQL's default re-planned
        # it for every batch (a custom plan per array), which was half the database CPU of a
        # custody check. Its generic plan is the same index scans. Through a transaction-mode
        # pooler the statement is unnamed and planned at each batch whatever this says, and the
        # pooler would refuse the parameter: it is left out there (driver_options).
        return await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            **driver_options(
                pooled=self._pooled,
                server_settings={
                    "application_name": "childlink-lookup",
                    "plan_cache_mode": "force_generic_plan",
                },
            ),
        )

    async def get(self, key: uuid.UUID) -> asyncpg.Record | None:
        rows = await self.get_all(key)
        return rows[0] if rows else None

    async def get_all(self, key: uuid.UUID) -> list[asyncpg.Record]:
        if self._closed:
            raise LookupUnavailable()
        future: asyncio.Future[list[asyncpg.Record]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)
        # A done task counts as none (see AuditWriter.record_many).
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_while_pending(), name="lookup-flusher")
        return await future

    async def _flush_while_pending(self) -> None:
        """The only task that touches the connection; raises only when cancelled, after failing
        every key still queued."""
        try:
            while self._pending:
                await asyncio.sleep(0)  # one more loop turn to gather keys (see AuditWriter)
                keys = list(self._pending)[: self._max_batch]
                batch = {key: self._pending.pop(key) for key in keys}
                await self._flush(batch)
        except BaseException:
            _fail(self._pending)
            self._pending.clear()
            raise
        finally:
            # No await between the emptiness check and here (see AuditWriter).
            self._flusher = None

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # state unknown after a failure: do not reuse or wait on it

    async def _flush(self, batch: dict[uuid.UUID, list[asyncio.Future[list[asyncpg.Record]]]]) -> None:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            rows = await self._conn.fetch(self._sql, list(batch), timeout=self._timeout)
        except Exception as exc:
            # Any exception (see AuditWriter._flush): re-raised, it would end the task unretrieved.
            self.failed_queries += 1
            logger.error("batched lookup failed: %s", type(exc).__name__)
            self._drop_connection()
            _fail(batch)
            return
        except BaseException:
            # Cancelled mid-query: the connection is mid-operation, so it is never reused.
            self._drop_connection()
            _fail(batch)
            raise
        self.queries += 1
        self.keys_read += len(batch)
        found: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for row in rows:
            found.setdefault(row[self._key], []).append(row)
        for key, futures in batch.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(key, []))

    async def aclose(self) -> None:
        self._closed = True
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        _fail(self._pending)  # only left behind by a flusher cancelled before its first step
        self._pending.clear()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):  # backend gone: asyncpg aborts it, enough here
                await conn.close(timeout=self._timeout)


def _fail(batch: dict[uuid.UUID, list[asyncio.Future[list[asyncpg.Record]]]]) -> None:
    for futures in batch.values():
        for future in futures:
            if not future.done():  # a cancelled caller's future is done already
                future.set_exception(LookupUnavailable())
