"""How fast ``childlink audit verify`` walks a large access log, and how big the log is on disk.

    .venv/bin/python bench/bench_verify.py --rows 5000000 --workers 1 2

Creates its own database (``childlink_bench_verify`` on the server of ``DATABASE_URL``, default
the local one), migrates it, and seeds ``--rows`` records spread over the last 36 monthly
partitions with valid row hashes and a valid chain, written with COPY as the tables' owner (the
writer and sealer are measured elsewhere: ``bench_audit.py``). Then times a full verify for each
``--workers`` value and prints records/s, and the size of the log and its chain per million
records. The database is dropped at the end (``--keep`` to keep it), also after a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.audit.records import canonical_json
from app.audit.sealer import GENESIS
from app.audit.verify import verify
from app.cli import migrate
from app.config import Settings
from tests.audit.conftest import make_record

DB = "childlink_bench_verify"
CHUNK = 50_000
COLUMNS = (
    "id",
    "logged_at",
    "request_id",
    "client_id",
    "agency",
    "action",
    "child_id",
    "purpose",
    "decision",
    "categories_returned",
    "categories_withheld",
    "basis",
    "row_hash",
)
CHAIN_COLUMNS = ("row_id", "position", "chain_hash", "watermark", "row_hash", "logged_at")


def _url(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit(("postgresql", parts.netloc, "/" + name, parts.query, parts.fragment))


async def seed(conn: asyncpg.Connection, rows: int) -> None:
    start = datetime.now(UTC) - timedelta(days=36 * 30)
    await conn.execute("SELECT access_log_create_partitions(36, $1)", start)
    step = (36 * 30 * 86_400) / rows
    template = make_record()
    basis = orjson.dumps(template.basis).decode()
    previous = GENESIS
    await conn.execute("ALTER TABLE access_log_chain DISABLE TRIGGER USER")
    for base in range(0, rows, CHUNK):
        log, chain = [], []
        for i in range(base + 1, min(rows, base + CHUNK) + 1):
            logged_at = start + timedelta(seconds=i * step)
            child = uuid.UUID(int=i)
            content = template.content()
            content.update(child_id=str(child), request_id=f"r{i}")
            digest = hashlib.sha256(canonical_json(content, logged_at)).hexdigest()
            previous = hashlib.sha256((previous + digest).encode()).hexdigest()
            log.append(
                (
                    i,
                    logged_at,
                    f"r{i}",
                    template.client_id,
                    template.agency,
                    template.action,
                    child,
                    template.purpose,
                    "allow",
                    list(template.categories_returned),
                    list(template.categories_withheld),
                    basis,
                    digest,
                )
            )
            chain.append((i, i, previous, 0, digest, logged_at))
        await conn.copy_records_to_table("access_log", records=log, columns=COLUMNS)
        await conn.copy_records_to_table("access_log_chain", records=chain, columns=CHAIN_COLUMNS)
        print(f"  seeded {min(rows, base + CHUNK):,}", end="\r", flush=True)
    await conn.execute("ALTER TABLE access_log_chain ENABLE TRIGGER USER")
    await conn.execute("SELECT setval('access_log_id_seq', $1)", rows)
    await conn.execute("ANALYZE access_log; ANALYZE access_log_chain")
    print()


async def measure(url: str, rows: int, workers_list: list[int]) -> None:
    conn = await asyncpg.connect(url)
    try:
        began = time.perf_counter()
        await seed(conn, rows)
        print(f"seeded {rows:,} records in {time.perf_counter() - began:.0f} s")
        sizes = await conn.fetchrow(
            "SELECT (SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits "
            "        WHERE inhparent = 'access_log'::regclass) AS log, "
            "       pg_total_relation_size('access_log_chain') AS chain"
        )
        per_million = 1_000_000 / rows / 2**20
        print(
            f"size per million records: log {sizes['log'] * per_million:.0f} MiB, "
            f"chain {sizes['chain'] * per_million:.0f} MiB"
        )
        for workers in workers_list:
            began = time.perf_counter()
            report = await verify(conn, seal_first=False, workers=workers, dsn=url)
            elapsed = time.perf_counter() - began
            assert report.ok, report.summary()
            print(
                f"verify, {workers} worker(s): {report.verified:,} records in {elapsed:.1f} s = "
                f"{report.verified / elapsed:,.0f} records/s"
            )
    finally:
        await conn.close()


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(_url(server, "postgres"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
    asyncio.run(_admin(server, f'CREATE DATABASE "{DB}"'))
    url = _url(server, DB)
    try:
        migrate(Settings(DATABASE_URL=url))
        asyncio.run(measure(url, args.rows, args.workers))
    finally:
        if not args.keep:
            asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
