"""The group-committing access-log writer: every read awaits its record's commit, yet readers
never queue behind one another's INSERT.

Callers ``await writer.record(rec)``. Records queue up; one flusher task writes everything
pending in ONE multi-row INSERT (its own transaction, synchronous commit) and then resolves each
caller's future with the new row id. The next flush starts as soon as the previous one ends,
with whatever piled up meanwhile: no timer. At low load a record is written alone and at once;
at high load batches grow by themselves. (A flush that waits on a timer to fill its batch is
slower at concurrency 32 - DESIGN §7 - because batches never fill.)

If the INSERT fails, for whatever reason, every caller waiting on that batch gets
:class:`AuditUnavailable` (503), so the read it was recording is not served; the connection is
dropped and the next flush opens a new one. The flusher is the only user of the connection, so no
two operations ever share it, and it survives every failure of a batch: an exception never ends
it (where nobody would retrieve it) and never leaves a caller waiting.

This is the hot path of every read, so it uses asyncpg directly on a dedicated connection: no
ORM unit of work, no pool checkout and reset per record, one round trip per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.audit.records import CONTENT_FIELDS, AccessRecord, canonical_json
from app.db import driver_options
from app.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


class AuditUnavailable(ServiceUnavailable):
    """The access log could not record the read, so the read is not served."""

    code, title = "audit_unavailable", "The access log is unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or "The read could not be recorded in the access log; retry shortly.",
            headers={"Retry-After": "1"},
        )


# json_to_recordset turns one JSON array into typed rows (JSON arrays become uuid[]/text[]), so
# a whole batch is a single parameter; RETURNING row_hash maps ids back to their callers without
# relying on RETURNING order, which PostgreSQL does not promise.
_COLUMNS = ("logged_at", *CONTENT_FIELDS, "row_hash")
_TYPES = {
    "logged_at": "timestamptz",
    "child_id": "uuid",
    "child_ids": "uuid[]",
    "query": "jsonb",
    "categories_returned": "text[]",
    "categories_withheld": "text[]",
    "basis": "jsonb",
    "break_glass": "boolean",
}
INSERT_SQL = (  # built from the constant column list above, no input
    f"INSERT INTO access_log ({', '.join(_COLUMNS)}) "  # noqa: S608
    f"SELECT {', '.join(_COLUMNS)} FROM json_to_recordset($1::json) AS r("
    + ", ".join(f"{c} {_TYPES.get(c, 'text')}" for c in _COLUMNS)
    + ") RETURNING id, row_hash"
)

Connect = Callable[[], Coroutine[Any, Any, asyncpg.Connection]]


def encode_row(record: AccessRecord, logged_at: datetime) -> tuple[str, bytes]:
    """``(row_hash, JSON object)`` of one row for :data:`INSERT_SQL`, whose one parameter is a
    JSON array of such objects: the canonical JSON the hash covers, with ``row_hash`` added."""
    canonical = canonical_json(record.content(), logged_at)
    digest = hashlib.sha256(canonical).hexdigest()
    # canonical is one non-empty JSON object: close it with one more member instead of encoding
    # the whole record a second time.
    return digest, canonical[:-1] + b',"row_hash":"' + digest.encode() + b'"}'


@dataclass(slots=True)
class _Pending:
    rows: list[tuple[str, bytes]]  # (row_hash, JSON of the row) per record
    future: asyncio.Future[list[int]]


class AuditWriter:
    """Group-committing writer on one dedicated asyncpg connection (opened on first use).

    ``flushes`` counts committed INSERT statements and ``records_written`` their rows, so a
    caller (or a test) can see batching at work: under concurrency ``flushes`` stays well below
    ``records_written``. ``failed_flushes`` counts batches answered with
    :class:`AuditUnavailable`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        max_batch: int = 2000,
        timeout: float = 5.0,
        connect: Connect | None = None,
        pooled: bool = False,
    ) -> None:
        self._dsn = dsn
        self._pooled = pooled
        self._max_batch = max_batch
        self._timeout = timeout
        self._connect = connect or self._default_connect
        self._conn: asyncpg.Connection | None = None
        self._pending: deque[_Pending] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.flushes = 0
        self.records_written = 0
        self.failed_flushes = 0

    async def _default_connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            # Durable before the read is served, whatever the database's default says (through a
            # transaction-mode pooler, per transaction instead: see _insert).
            **driver_options(
                pooled=self._pooled,
                server_settings={"application_name": "childlink-audit", "synchronous_commit": "on"},
            ),
        )

    async def record(self, record: AccessRecord) -> int:
        """Write one record durably; returns its ``access_log.id``.

        Raises :class:`AuditUnavailable` when it could not be committed (serve nothing then).
        """
        (row_id,) = await self.record_many((record,))
        return row_id

    async def record_many(self, records: Sequence[AccessRecord]) -> list[int]:
        """Write several records in the same batch (e.g. a list read); ids in the given order."""
        if self._closed:
            raise AuditUnavailable("The access log writer is shut down.")
        if not records:
            return []
        # logged_at is taken here, in Python, so the row hash can cover it.
        logged_at = datetime.now(UTC)
        rows = [encode_row(record, logged_at) for record in records]
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(rows, future))
        # A flusher cancelled before its first step never reaches its finally clause, so a done
        # task counts as none.
        if self._flusher is None or self._flusher.done():
            # Scheduled, not run inline: callers arriving in the same loop turn join this batch.
            self._flusher = asyncio.create_task(self._flush_while_pending(), name="audit-flusher")
        return await future

    async def _flush_while_pending(self) -> None:
        """The only task that touches the connection. Returns when nothing is pending; raises
        only when cancelled (:meth:`aclose`), after failing every record still queued."""
        try:
            while self._pending:
                # One more turn of the event loop first: requests whose lookups just returned
                # reach record() in it and join this batch. Fewer, larger INSERTs cost the
                # database less per record (bench/README.md); the wait is one loop turn.
                await asyncio.sleep(0)
                batch: list[_Pending] = []
                size = 0
                while self._pending and (not batch or size + len(self._pending[0].rows) <= self._max_batch):
                    entry = self._pending.popleft()
                    batch.append(entry)
                    size += len(entry.rows)
                await self._flush(batch)
        except BaseException:
            # Records queued behind the cancelled batch would otherwise wait for a record() call
            # that may never come.
            while self._pending:
                _fail(self._pending.popleft(), AuditUnavailable())
            raise
        finally:
            # No await between the emptiness check and here: a record() arriving now starts a
            # new flusher, never one that is about to exit.
            self._flusher = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            # Held before it is ready, so that a failure below drops it like any other.
            self._conn = conn = await self._connect()
            # The batch goes out as the UTF-8 bytes it was built in: json's binary wire format
            # is its text, so nothing is decoded to str and encoded back per batch.
            await conn.set_type_codec(
                "json", schema="pg_catalog", encoder=bytes, decoder=bytes.decode, format="binary"
            )
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # state unknown after a failure: do not reuse or wait on it

    async def _flush(self, batch: list[_Pending]) -> None:
        """Commit one batch and answer its callers. Raises only when cancelled."""
        count = sum(len(entry.rows) for entry in batch)
        try:
            ids = await self._insert(batch)
        except Exception as exc:
            # Any exception, not a list of expected ones: a PostgreSQL backend killed while this
            # connection was idle sends its FATAL error before closing the socket, and a query
            # sent in between fails inside asyncpg with InternalClientError ("cannot switch to
            # state 12; another operation (2) is in progress"), outside its InterfaceError
            # family. Re-raised, it would end this task with an exception nobody retrieves and
            # strand the records queued behind the batch.
            self.failed_flushes += 1
            # Class and SQLSTATE only: a driver message may quote a value from the batch.
            logger.error(
                "access log flush of %d records failed: %s %s",
                count,
                type(exc).__name__,
                getattr(exc, "sqlstate", "") or "",
            )
            self._drop_connection()
            for entry in batch:
                _fail(entry, AuditUnavailable())
            return
        except BaseException:
            # Cancelled mid-INSERT: the connection is mid-operation, so it is never reused, and
            # nobody may be left waiting forever.
            self._drop_connection()
            for entry in batch:
                _fail(entry, AuditUnavailable())
            raise
        self.flushes += 1
        self.records_written += count
        for entry, entry_ids in zip(batch, ids, strict=True):
            if not entry.future.done():  # the caller may have been cancelled; the row stands
                entry.future.set_result(entry_ids)

    async def _insert(self, batch: list[_Pending]) -> list[list[int]]:
        """The batch's rows in one INSERT; their ids, per entry in the order of its rows."""
        payload = b"[" + b",".join(doc for entry in batch for _, doc in entry.rows) + b"]"
        conn = await self._connection()
        # One statement outside an explicit transaction: it commits by itself, in one round trip.
        # On timeout the INSERT may still commit; a record of an unserved read is the safe side
        # of that race. Through a transaction-mode pooler the connection carries no session
        # setting, so synchronous commit is set for the batch's own transaction (two more round
        # trips per batch, not per record).
        if self._pooled:
            async with conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = on", timeout=self._timeout)
                returned = await conn.fetch(INSERT_SQL, payload, timeout=self._timeout)
        else:
            returned = await conn.fetch(INSERT_SQL, payload, timeout=self._timeout)
        ids_by_hash: dict[str, list[int]] = {}
        for row in returned:
            ids_by_hash.setdefault(row["row_hash"], []).append(row["id"])
        # Equal hashes mean equal content and time, so which of their ids goes where is moot.
        return [[ids_by_hash[digest].pop() for digest, _ in entry.rows] for entry in batch]

    async def aclose(self, grace: float = 5.0) -> None:
        """Refuse new records, let the pending ones commit (up to ``grace`` seconds), disconnect."""
        self._closed = True
        flusher = self._flusher
        if flusher is not None:
            try:
                await asyncio.wait_for(asyncio.shield(flusher), grace)
            except TimeoutError:
                flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
        while self._pending:  # only left behind by a flusher cancelled before its first step
            _fail(self._pending.popleft(), AuditUnavailable("The access log writer is shut down."))
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            # Closing can fail on a connection whose backend went away; asyncpg then aborts it,
            # which is all that shutting down needs.
            with contextlib.suppress(Exception):
                await conn.close(timeout=grace)


def _fail(entry: _Pending, error: AuditUnavailable) -> None:
    if not entry.future.done():  # a cancelled caller's future is done already
        entry.future.set_exception(error)
