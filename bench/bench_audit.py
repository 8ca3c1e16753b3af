"""The access-log writer under load: many concurrent ``record()`` calls for a while, then the
sealer catching up and ``verify`` walking the chain. Run by hand, not by the test suite:

    .venv/bin/python bench/bench_audit.py --seconds 10 --concurrency 64

Uses ``BENCH_DATABASE_URL`` as is, or the database ``childlink_bench_audit`` on the server named by
``DATABASE_URL`` (the embedded server when unset), migrated to head. The bench database's log is
emptied first (as a superuser would: triggers off), so every run starts from nothing.

Prints records/s, INSERT batches and their mean size, and p50/p99/max of the time each caller
waits for its record's commit; with ``--baseline``, the same load written one INSERT per record
through an asyncpg pool, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.audit import AccessRecord, AuditWriter
from app.audit.sealer import seal_committed, seal_forever
from app.audit.verify import verify
from app.audit.writer import INSERT_SQL, encode_row
from app.cli import migrate as run_migrations
from app.config import Settings
from app.db import asyncpg_dsn, resolve_database_url

BENCH_DB = "childlink_bench_audit"


def bench_url() -> str:
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        return explicit
    server = resolve_database_url(Settings())
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, "/" + BENCH_DB, parts.query, parts.fragment))


async def prepare(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = asyncpg_dsn(urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, "")))
    conn = await asyncpg.connect(maintenance)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def empty_log(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("TRUNCATE access_log, access_log_chain RESTART IDENTITY")
    finally:
        await conn.close()


def a_record() -> AccessRecord:
    return AccessRecord(
        request_id=uuid.uuid4().hex[:16],
        client_id="cl_bench_police",
        agency="police",
        action="custody.read",
        child_id=uuid.uuid4(),
        purpose="child_protection",
        decision="allow",
        categories_returned=("custody", "contact"),
        categories_withheld=("health", "law_enforcement"),
        basis={
            "custody": {"ground": "statute", "ref": "police-custody", "citation": "未成年人保护法 第十一条"},
            "contact": {"ground": "statute", "ref": "police-contact", "citation": "PIPL art. 13(4)"},
        },
    )


def report(label: str, latencies: list[float], seconds: float, extra: str = "") -> None:
    latencies.sort()
    n = len(latencies)
    p50 = latencies[n // 2] * 1000
    p99 = latencies[min(n - 1, int(n * 0.99))] * 1000
    print(
        f"{label:<14} {n / seconds:>9,.0f} records/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
        f"max {latencies[-1] * 1000:7.2f} ms   mean {statistics.fmean(latencies) * 1000:6.2f} ms{extra}"
    )


async def drive(
    write: Callable[[AccessRecord], Awaitable[object]], concurrency: int, seconds: float
) -> tuple[list[float], float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            record = a_record()
            started = time.perf_counter()
            await write(record)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-sealer", action="store_true", help="do not seal in the background meanwhile")
    parser.add_argument("--baseline", action="store_true", help="also run one INSERT per record via a pool")
    args = parser.parse_args()

    url = bench_url()
    asyncio.run(prepare(url))
    run_migrations(Settings(), url)  # Alembic runs its own event loop: outside ours
    asyncio.run(run(asyncpg_dsn(url), args))


async def run(dsn: str, args: argparse.Namespace) -> None:
    await empty_log(dsn)
    print(f"{args.concurrency} concurrent callers for {args.seconds:.0f} s, python {sys.version.split()[0]}")

    writer = AuditWriter(dsn)
    sealer = None
    if not args.no_sealer:

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(dsn)

        sealer = asyncio.create_task(seal_forever(connect, interval=1.0))
    await writer.record(a_record())  # connect outside the measurement
    flushes0, written0 = writer.flushes, writer.records_written
    latencies, elapsed = await drive(writer.record, args.concurrency, args.seconds)
    flushes = writer.flushes - flushes0
    batch = (writer.records_written - written0) / max(flushes, 1)
    report(
        "group commit",
        latencies,
        elapsed,
        f"   {flushes} INSERTs, {batch:.1f} records each, {writer.failed_flushes} failed",
    )
    await writer.aclose()
    if sealer is not None:
        sealer.cancel()
        await asyncio.gather(sealer, return_exceptions=True)

    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        sealed = await seal_committed(conn)
        print(
            f"sealer catch-up: {sealed} records left to seal, sealed in {time.perf_counter() - started:.2f} s"
        )
        started = time.perf_counter()
        result = await verify(conn, seal_first=False)
        took = time.perf_counter() - started
        print(f"verify: {result.summary()}  ({took:.2f} s, {result.verified / took:,.0f} records/s)")
    finally:
        await conn.close()

    if args.baseline:
        pool = await asyncpg.create_pool(
            dsn, min_size=min(args.concurrency, 20), max_size=min(args.concurrency, 20)
        )
        assert pool is not None

        async def one_insert(record: AccessRecord) -> None:
            _, document = encode_row(record, datetime.now(UTC))
            async with pool.acquire() as c:
                await c.fetch(INSERT_SQL, "[" + document.decode() + "]")

        latencies, elapsed = await drive(one_insert, args.concurrency, args.seconds)
        report("insert each", latencies, elapsed, f"   pool of {min(args.concurrency, 20)}")
        await pool.close()


if __name__ == "__main__":
    main()
