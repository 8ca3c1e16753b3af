"""The raw-asyncpg ceiling: what one Python process can do against this PostgreSQL when each
operation is the custody check's database work and nothing else: SELECT the child joined with its
current guardianship by primary key, then INSERT one audit row (durable, synchronous commit).

Three variants, each at the same concurrency:

- ``pool``: an asyncpg pool; SELECT and INSERT on the checked-out connection; the pool runs its
  reset query on every release (asyncpg's default);
- ``pool-noreset``: the same with the per-release reset skipped;
- ``group-commit``: SELECT on the no-reset pool, INSERTs queued and written by one flusher as one
  multi-row INSERT as soon as the previous flush ends, each caller awaiting its batch's commit
  (the shape of app/audit/writer.py).

Audit rows go to ``bench_audit``, a copy of ``access_log``'s columns and indexes without its
append-only triggers, so the bench never writes unchained rows into the real log. Run by
``run_custody.py``, or alone:

    .venv/bin/python bench/raw_asyncpg.py --seconds 10 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

SELECT_SQL = """
SELECT c.id, c.owner_agency, c.region_code, c.status, g.*
FROM child c
LEFT JOIN guardianship g ON g.child_id = c.id AND g.superseded_at IS NULL
WHERE c.id = $1
"""

PREPARE_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_audit (LIKE access_log INCLUDING DEFAULTS INCLUDING INDEXES);
CREATE SEQUENCE IF NOT EXISTS bench_audit_id_seq OWNED BY bench_audit.id;
ALTER TABLE bench_audit ALTER COLUMN id SET DEFAULT nextval('bench_audit_id_seq');
"""

_COLS = (
    "request_id, client_id, agency, action, child_id, purpose, decision, categories_returned, basis, row_hash"
)
INSERT_ONE_SQL = f"INSERT INTO bench_audit ({_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"  # noqa: S608
INSERT_MANY_SQL = (
    f"INSERT INTO bench_audit ({_COLS}) "  # noqa: S608
    "SELECT r, 'bench', 'police', 'custody.read', c, 'child_protection', 'allow', "
    "'{custody,contact}', '{}'::jsonb, h FROM unnest($1::text[], $2::uuid[], $3::text[]) AS u(r, c, h)"
)


def audit_args(child_id: uuid.UUID) -> tuple[Any, ...]:
    request_id = os.urandom(8).hex()
    digest = hashlib.sha256(f"{request_id}|{child_id}|{time.time_ns()}".encode()).hexdigest()
    return (
        request_id,
        "bench",
        "police",
        "custody.read",
        child_id,
        "child_protection",
        "allow",
        ["custody", "contact"],
        "{}",
        digest,
    )


class GroupCommit:
    """Flush-when-idle group commit on one dedicated connection (no timer)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.pending: list[tuple[tuple[str, uuid.UUID, str], asyncio.Future[None]]] = []
        self.flusher: asyncio.Task[None] | None = None
        self.flushes = 0
        self.rows = 0

    async def record(self, child_id: uuid.UUID) -> None:
        args = audit_args(child_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(((args[0], child_id, args[-1]), future))
        if self.flusher is None:
            self.flusher = asyncio.create_task(self._run())
        await future

    async def _run(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    await self.conn.execute(
                        INSERT_MANY_SQL,
                        [b[0][0] for b in batch],
                        [b[0][1] for b in batch],
                        [b[0][2] for b in batch],
                    )
                except Exception as exc:
                    for _, f in batch:
                        f.set_exception(exc)
                    continue
                self.flushes += 1
                self.rows += len(batch)
                for _, f in batch:
                    f.set_result(None)
        finally:
            self.flusher = None


@dataclass
class Ceiling:
    variant: str
    ops: int
    seconds: float
    p50_ms: float
    p99_ms: float
    extra: str = ""

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.seconds

    def line(self) -> str:
        return (
            f"raw asyncpg {self.variant:<16} {self.ops_per_second:>9.0f} ops/s  p50 {self.p50_ms:6.2f} ms"
            f"  p99 {self.p99_ms:6.2f} ms  ({self.ops} ops) {self.extra}"
        )


async def _drive(
    op: Callable[[uuid.UUID], Awaitable[None]],
    ids: list[uuid.UUID],
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> tuple[int, float, list[float]]:
    start_measuring = time.perf_counter() + warmup
    stop = start_measuring + seconds
    latencies: list[float] = []
    counted = 0

    async def worker() -> None:
        nonlocal counted
        rng = random.Random()
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            await op(rng.choice(ids))
            t1 = time.perf_counter()
            if t0 >= start_measuring:
                counted += 1
                latencies.append(t1 - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counted, seconds, latencies


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


def _operation(
    variant: str, pool: asyncpg.Pool, group: GroupCommit
) -> Callable[[uuid.UUID], Awaitable[None]]:
    if variant == "group-commit":

        async def grouped(child_id: uuid.UUID) -> None:
            async with pool.acquire() as conn:
                row = await conn.fetchrow(SELECT_SQL, child_id)
            assert row is not None
            await group.record(child_id)

        return grouped

    async def pooled(child_id: uuid.UUID) -> None:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(SELECT_SQL, child_id)
            assert row is not None
            await conn.execute(INSERT_ONE_SQL, *audit_args(child_id))

    return pooled


async def _noreset(conn: asyncpg.Connection) -> None:
    return None


async def measure(
    dsn: str,
    ids: list[uuid.UUID],
    *,
    concurrency: int = 32,
    seconds: float = 10,
    warmup: float = 2,
    variants: tuple[str, ...] = ("pool", "pool-noreset", "group-commit"),
) -> list[Ceiling]:
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(PREPARE_TABLE_SQL)
    finally:
        await setup.close()
    results = []
    for variant in variants:
        kwargs: dict[str, Any] = {"min_size": concurrency, "max_size": concurrency}
        if variant != "pool":
            kwargs["reset"] = _noreset
        pool = await asyncpg.create_pool(
            dsn, server_settings={"synchronous_commit": "on", "application_name": "bench-raw"}, **kwargs
        )
        writer_conn = await asyncpg.connect(dsn, server_settings={"synchronous_commit": "on"})
        group = GroupCommit(writer_conn)
        try:
            op = _operation(variant, pool, group)
            ops, secs, latencies = await _drive(
                op, ids, concurrency=concurrency, seconds=seconds, warmup=warmup
            )
            extra = f"(avg batch {group.rows / max(group.flushes, 1):.1f} rows)" if group.flushes else ""
            results.append(Ceiling(variant, ops, secs, _pct(latencies, 50), _pct(latencies, 99), extra))
        finally:
            await pool.close()
            await writer_conn.close()
    return results


def main() -> None:
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import bench_database_url, plain_dsn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    dsn = plain_dsn(bench_database_url())

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            ids = [r["id"] for r in await conn.fetch("SELECT id FROM child ORDER BY random() LIMIT 100000")]
        finally:
            await conn.close()
        if not ids:
            raise SystemExit("no children in the bench database: run bench/run_custody.py first")
        for result in await measure(dsn, ids, concurrency=args.concurrency, seconds=args.seconds):
            print(result.line())

    _install_uvloop()
    asyncio.run(go())


def _install_uvloop() -> None:
    """Use uvloop when installed, as uvicorn does for the service."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    main()
