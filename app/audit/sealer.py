"""Sealing: appending access-log rows to the hash chain, behind the writers and never in their way.

Writers only INSERT into ``access_log``; nothing they do waits for the chain. The sealer, a
background task, later appends one ``access_log_chain`` entry per row:
``chain_hash = sha256(prev_chain_hash || row_hash)`` (the two hex strings concatenated, ASCII;
the first entry's ``prev_chain_hash`` is :data:`GENESIS`), with consecutive positions from 1.
Editing a row breaks its row hash, deleting one leaves a chain entry without a row (or a gap in
positions), and a row slipped in behind the sealer is caught by the watermark (see
:mod:`app.audit.verify`).

One sealer at a time: every worker runs the task, a transaction-scoped advisory lock lets one
of them in and the others skip that round.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

SEAL_LOCK_KEY = 7216360  # pg advisory lock id (the migrations use 7216359)
GENESIS = "0" * 64
DEFAULT_BATCH = 10_000
YIELD_EVERY = 256  # rows hashed between turns of the event loop

# Which rows are safe to seal? Row ids come from a sequence when the INSERT runs, but rows become
# visible when their transaction commits, so a row with a LOWER id can still appear after we have
# read a higher one. Chaining the higher one first would be fine; forgetting the lower one would
# not, and neither would mistaking it later for a forged row. So we seal only rows whose writing
# transaction (txid) is older than pg_snapshot_xmin(pg_current_snapshot()): every transaction below
# that horizon has finished, so no row from any of them can still appear. Everything committed
# below the horizon is visible to this statement (the horizon comes from the statement's own
# snapshot), and rows of transactions still running wait for a later pass.
#
# Each chain entry stores the horizon of the pass that wrote it (its watermark). Passes seal every
# unsealed row between the previous watermark and the new horizon, so once the watermark is W no
# legitimate row below W is unsealed, ever. Scanning only [W, horizon) keeps each pass an index
# range scan on txid, and leaves any row slipped in below W unsealed for `audit verify` to report
# instead of quietly chaining it.
#
# The horizon is cluster-wide: a long transaction anywhere on the server (even in another database)
# delays sealing while it runs. It never delays writing, and rows are sealed as soon as it ends.
_CANDIDATES = """
SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon, a.id, a.row_hash, a.logged_at::text
FROM access_log AS a
WHERE a.txid >= $1::text::xid8
  AND a.txid < pg_snapshot_xmin(pg_current_snapshot())
  AND NOT EXISTS (SELECT 1 FROM access_log_chain AS c WHERE c.row_id = a.id)
ORDER BY a.id
LIMIT $2
"""

_HEAD = """
SELECT position, chain_hash, watermark::text AS watermark
FROM access_log_chain ORDER BY position DESC LIMIT 1
"""

# Each entry repeats its row's hash and time: the chain then proves its own links, and a verifier
# reaches the row in its one monthly partition (see migration 0014). The time travels as text and
# back: the sealer shares the API's process, and building a datetime per row is CPU it would take
# from requests.
_APPEND = """
INSERT INTO access_log_chain (row_id, position, chain_hash, watermark, row_hash, logged_at)
SELECT r.row_id, r.position, r.chain_hash, $4::text::xid8, r.row_hash, r.logged_at::timestamptz
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $5::text[], $6::text[])
     AS r(row_id, position, chain_hash, row_hash, logged_at)
"""


def chain_hash(previous: str, row_hash: str) -> str:
    return hashlib.sha256((previous + row_hash).encode("ascii")).hexdigest()


async def seal(conn: asyncpg.Connection, *, wait: bool = False, batch_size: int = DEFAULT_BATCH) -> int:
    """Append every sealable row to the chain; returns how many were sealed.

    With ``wait=False`` (the background task) a round is skipped when another sealer holds the
    lock; ``wait=True`` (verification) waits for it, so everything committed before the call and
    below the horizon is sealed on return. Runs in transactions of at most ``batch_size`` rows.
    """
    sealed = 0
    while True:
        async with conn.transaction():
            if wait:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", SEAL_LOCK_KEY)
            elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEAL_LOCK_KEY):
                return sealed
            head = await conn.fetchrow(_HEAD)
            position, previous, watermark = (
                (head["position"], head["chain_hash"], head["watermark"]) if head else (0, GENESIS, "0")
            )
            rows = await conn.fetch(_CANDIDATES, watermark, batch_size)
            if not rows:
                return sealed
            # A batch cut short by the limit has not covered everything below the horizon, so it
            # must not raise the watermark; the pass that finishes the range does.
            complete = len(rows) < batch_size
            new_watermark = rows[0]["horizon"] if complete else watermark
            row_ids, positions, hashes, row_hashes, times = [], [], [], [], []
            for index, row in enumerate(rows, 1):
                position += 1
                previous = chain_hash(previous, row["row_hash"])
                row_ids.append(row["id"])
                positions.append(position)
                hashes.append(previous)
                row_hashes.append(row["row_hash"])
                times.append(row["logged_at"])
                if index % YIELD_EVERY == 0:
                    # The sealer shares its worker's event loop with requests: hashing a second's
                    # worth of rows in one go held every request on that worker for tens of
                    # milliseconds (bench/README.md).
                    await asyncio.sleep(0)
            await conn.execute(_APPEND, row_ids, positions, hashes, new_watermark, row_hashes, times)
        sealed += len(rows)
        if complete:
            return sealed


_LEFT_BEHIND = """
SELECT EXISTS (
    SELECT 1 FROM access_log AS a
    WHERE a.txid >= COALESCE(
            (SELECT watermark FROM access_log_chain ORDER BY position DESC LIMIT 1), '0'::xid8)
      AND a.txid < $1::text::xid8
      AND NOT EXISTS (SELECT 1 FROM access_log_chain AS c WHERE c.row_id = a.id)
)
"""


async def seal_committed(conn: asyncpg.Connection, *, within: float = 10.0) -> int:
    """Seal until every row committed before this call is chained; returns how many were sealed.

    One :func:`seal` round may leave recent rows unsealed: any transaction still running (even an
    unrelated one, such as autovacuum analysing a table) holds the horizon below them. So this
    retries until the rows of every transaction that had started before the call are chained, or
    ``within`` seconds pass (a long transaction can hold the horizon back for as long as it runs; those
    rows then count as not yet sealed, which is not an error).
    """
    target = await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
    deadline = asyncio.get_running_loop().time() + within
    sealed = 0
    while True:
        sealed += await seal(conn, wait=True)
        if not await conn.fetchval(_LEFT_BEHIND, target):
            return sealed
        if asyncio.get_running_loop().time() >= deadline:
            return sealed
        await asyncio.sleep(0.05)


Connect = Callable[[], Coroutine[Any, Any, asyncpg.Connection]]
AfterRound = Callable[[asyncpg.Connection], Coroutine[Any, Any, object]]


async def seal_forever(
    connect: Connect,
    *,
    interval: float = 1.0,
    batch_size: int = DEFAULT_BATCH,
    after_round: AfterRound | None = None,
) -> None:
    """The background task: a sealing round every ``interval`` seconds until cancelled, each
    followed by ``after_round`` (the checkpointer) on the same connection.

    Errors are logged and retried on a fresh connection next round; an unsealed row is only
    sealed late, never lost, so nothing here fails a request.
    """
    conn: asyncpg.Connection | None = None
    try:
        while True:
            try:
                if conn is None or conn.is_closed():
                    conn = await connect()
                await seal(conn, batch_size=batch_size)
                if after_round is not None:
                    await after_round(conn)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                logger.warning(
                    "access log sealing failed: %s %s", type(exc).__name__, getattr(exc, "sqlstate", "") or ""
                )
                if conn is not None:
                    conn.terminate()
                conn = None
            await asyncio.sleep(interval)
    finally:
        if conn is not None and not conn.is_closed():
            conn.terminate()
