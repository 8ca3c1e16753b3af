"""How long the owners' access-notice job (``platform.access.recorded``) takes on a busy hour.

    .venv/bin/python bench/bench_access_notice.py --children 100000 --reads 500000

Creates its own database (``childlink_bench_notice`` on the server of ``DATABASE_URL``, default
the local one), migrates it, and seeds ``--children`` children (10 % in the ``guardian_harm``
category, kept by civil affairs; the registry's tally triggers are off while they are
copied) and ``--reads`` police reads of them in the hour that just
ended, plus as many again in the two days before (already looked at), written with COPY as the
owner (row hashes are not valid: this measures the job, not the chain). Then runs the job until
it has nothing left and prints the time per run, notices per second and the total. The database
is dropped at the end (``--keep`` to keep it), also after a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.access.policy import load_policy
from app.cli import migrate
from app.config import Settings
from app.db import asyncpg_dsn
from app.services import access_notice

DB = "childlink_bench_notice"
CHUNK = 50_000
BASIS = orjson.dumps(
    {"identity": {"ground": "statute", "ref": "police-identity", "citation": "未成年人保护法"}}
)


def _url(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit(("postgresql", parts.netloc, "/" + name, parts.query, parts.fragment))


async def seed(conn: asyncpg.Connection, children: int, reads: int, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO agency (code, name, kind) VALUES ('civil-affairs', '民政', 'civil-affairs'), "
        "('police', '公安', 'police') ON CONFLICT DO NOTHING"
    )
    ids = [uuid.uuid4() for _ in range(children)]
    rows = [
        (
            i,
            "演示",
            "female",
            datetime(2016, 5, 12).date(),
            "510107005003",
            ["guardian_harm"] if n % 10 == 0 else ["left_behind"],
            "civil-affairs",
        )
        for n, i in enumerate(ids)
    ]
    # The registry's tally triggers are not what is measured here (and cost minutes per 100,000).
    await conn.execute("ALTER TABLE child DISABLE TRIGGER USER")
    await conn.copy_records_to_table(
        "child",
        records=rows,
        columns=("id", "name", "sex", "birth_date", "region_code", "categories", "owner_agency"),
    )
    await conn.execute("ALTER TABLE child ENABLE TRIGGER USER")
    hour = now.replace(minute=0, second=0, microsecond=0)
    await conn.execute("SELECT access_log_create_partitions(2, $1)", hour - timedelta(days=3))
    rng = random.Random(7)
    columns = (
        "logged_at",
        "client_id",
        "agency",
        "action",
        "child_id",
        "purpose",
        "decision",
        "basis",
        "row_hash",
    )
    # The two days before were looked at already: the job must not read them again.
    for start, count in ((hour - timedelta(hours=49), reads), (hour - timedelta(hours=1), reads)):
        span = 3600.0 if start == hour - timedelta(hours=1) else 48 * 3600.0
        for base in range(0, count, CHUNK):
            batch = [
                (
                    start + timedelta(seconds=rng.random() * span),
                    "police-client",
                    "police",
                    "child.read",
                    rng.choice(ids),
                    "child_protection",
                    "allow",
                    BASIS.decode(),
                    "bench",
                )
                for _ in range(min(CHUNK, count - base))
            ]
            await conn.copy_records_to_table("access_log", records=batch, columns=columns)
    await conn.execute(
        "INSERT INTO access_notice_window (window_start) SELECT generate_series($1::timestamptz, "
        "$2::timestamptz, interval '1 hour')",
        hour - timedelta(hours=72),
        hour - timedelta(hours=2),
    )
    await conn.execute("ANALYZE")


async def measure(url: str, children: int, reads: int) -> None:
    now = datetime.now(UTC)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        began = time.perf_counter()
        await seed(conn, children, reads, now)
        print(f"seeded {children:,} children and {2 * reads:,} reads in {time.perf_counter() - began:.0f} s")
    finally:
        await conn.close()
    engine = create_async_engine(url)
    policy = load_policy()
    total, runs, began = 0, 0, time.perf_counter()
    try:
        while True:
            started = time.perf_counter()
            async with AsyncSession(engine, expire_on_commit=False) as session:
                fired = await access_notice.fire_notices(session, now, policy=policy)
                await session.commit()
            runs += 1
            print(f"run {runs}: {fired} notices in {time.perf_counter() - started:.2f} s")
            total += fired
            if fired == 0:
                break
    finally:
        await engine.dispose()
    elapsed = time.perf_counter() - began
    print(f"{total:,} notices (one per marked child read in the hour) in {runs} runs, {elapsed:.1f} s")


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(_url(server, "postgres")))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=500_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
    asyncio.run(_admin(server, f'CREATE DATABASE "{DB}"'))
    url = _url(server, DB).replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        migrate(Settings(DATABASE_URL=url))
        asyncio.run(measure(url, args.children, args.reads))
    finally:
        if not args.keep:
            asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
