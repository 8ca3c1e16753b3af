"""Coalescing concurrent primary-key reads into one ``= ANY($1)`` query.

The custody check is the service's hot path: at a few thousand requests a second each request's
own round trip to PostgreSQL costs more CPU (driver call, protocol, backend wake-up) than the
lookup itself. Requests that arrive while a query is in flight wait for the next one, which
fetches all of their keys at once; as with the audit writer, the next query starts as soon as the
previous one ends (no timer: at low load a lone request goes out at once). asyncpg is used
directly here, as DESIGN §3 allows on a hot path.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

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
    """``await lookup.get(key)`` returns the row whose ``key_column`` equals ``key`` (or None).

    ``sql`` takes one parameter, the array of keys, and must return ``key_column``.
    """

    def __init__(
        self, dsn: str, sql: str, key_column: str, *, max_batch: int = 500, timeout: float = 5.0
    ) -> None:
        self._dsn = dsn
        self._sql = sql
        self._key = key_column
        self._max_batch = max_batch
        self._timeout = timeout
        self._conn: asyncpg.Connection | None = None
        self._pending: dict[uuid.UUID, list[asyncio.Future[asyncpg.Record | None]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.queries = 0
        self.keys_read = 0

    async def get(self, key: uuid.UUID) -> asyncpg.Record | None:
        if self._closed:
            raise LookupUnavailable()
        future: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_while_pending())
        return await future

    async def _flush_while_pending(self) -> None:
        try:
            while self._pending:
                keys = list(self._pending)[: self._max_batch]
                batch = {key: self._pending.pop(key) for key in keys}
                await self._flush(batch)
        finally:
            # No await between the emptiness check and here (see AuditWriter).
            self._flusher = None

    async def _flush(self, batch: dict[uuid.UUID, list[asyncio.Future[asyncpg.Record | None]]]) -> None:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(
                    self._dsn, timeout=self._timeout, server_settings={"application_name": "childlink-lookup"}
                )
            rows = await self._conn.fetch(self._sql, list(batch), timeout=self._timeout)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            logger.error("batched lookup failed: %s", type(exc).__name__)
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                conn.terminate()
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(LookupUnavailable())
            return
        except BaseException:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(LookupUnavailable())
            raise
        self.queries += 1
        self.keys_read += len(batch)
        found = {row[self._key]: row for row in rows}
        for key, futures in batch.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(key))

    async def aclose(self) -> None:
        self._closed = True
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
