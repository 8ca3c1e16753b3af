"""What a full ``audit verify`` would cost if each access-log record kept its canonical bytes.

Issue 17 asks a full verify to run at 500,000 records/s; the set-based verify spends most of its
PostgreSQL CPU rebuilding each row's canonical JSON (bench/README.md). The alternative is a format
change: keep, beside the columns, the exact bytes the row hash was taken over, so that a verify
only hashes. This script measures that alternative without adopting it, on a log seeded by
``bench_verify.py --keep``:

    .venv/bin/python bench/bench_verify.py --rows 2000000 --workers 2 --keep
    .venv/bin/python bench/bench_verify_stored.py --workers 1 2

It copies every record's canonical bytes, built in SQL exactly as the set-based verify builds
them (``app/audit/bulk_verify.py``), into a table of its own (``bench_stored_bytes``), checks that
each one hashes to its row's ``row_hash``, and then times the checks a verify of that format would
make, over ranges spread across ``--workers`` connections in one snapshot, as the set-based verify
does: per row, ``sha256(bytes)`` against the chain entry's ``row_hash`` and time (a ``FULL JOIN``
of the ranges' chain entries and stored rows), and the chain's links (the set-based verify's own
``lag()`` pass, unchanged). It prints records/s, PostgreSQL CPU per record and the size the bytes
add. The copy is dropped at the end unless ``--keep``. Nothing of the service's own tables changes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_verify import DB, BackendCpu

from app.audit import bulk_verify
from app.audit.sealer import GENESIS

RANGE = 1_000_000

_COPY = f"""
CREATE TABLE bench_stored_bytes AS
SELECT l.id, l.logged_at, l.row_hash, convert_to({bulk_verify._CANONICAL}, 'UTF8') AS body
FROM access_log AS l,
     LATERAL (SELECT pg_temp.childlink_canonical_json(l.basis)::json AS basis OFFSET 0) AS jb,
     LATERAL (SELECT pg_temp.childlink_canonical_json(l.query)::json AS query OFFSET 0) AS jq
"""  # noqa: S608 (constant fragments)

# One range of row ids: what a verify of the stored-bytes format checks per row.
_ROWS = """
SELECT count(*) FILTER (WHERE r.bad) AS bad, count(*) AS rows
FROM (
    SELECT c.row_id IS NULL OR s.id IS NULL
           OR c.logged_at IS DISTINCT FROM s.logged_at
           OR c.row_hash IS DISTINCT FROM s.row_hash
           OR encode(sha256(s.body), 'hex') <> c.row_hash AS bad
    FROM (SELECT row_id, logged_at, row_hash FROM access_log_chain WHERE row_id > $1 AND row_id <= $2) AS c
    FULL JOIN (SELECT id, logged_at, row_hash, body FROM bench_stored_bytes WHERE id > $1 AND id <= $2) AS s
        ON s.id = c.row_id
) AS r
"""

_LINKS = bulk_verify._LINKS.replace("{forged}", "").replace("{limit}", str(bulk_verify.SUSPECTS_PER_RANGE))


async def run(url: str, workers_list: list[int], keep: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        records = await conn.fetchval("SELECT count(*) FROM access_log_chain")
        database = await conn.fetchval("SELECT current_database()")
        if not await conn.fetchval("SELECT to_regclass('bench_stored_bytes') IS NOT NULL"):
            began = time.perf_counter()
            await conn.execute(bulk_verify._CANONICAL_FUNCTION)
            await conn.execute(bulk_verify._RECORD_TYPE)
            await conn.execute(_COPY)
            await conn.execute("ALTER TABLE bench_stored_bytes ADD PRIMARY KEY (id)")
            await conn.execute("VACUUM ANALYZE bench_stored_bytes")
            print(f"copied {records:,} records' canonical bytes in {time.perf_counter() - began:.0f} s")
        mismatched = await conn.fetchval(
            "SELECT count(*) FROM bench_stored_bytes WHERE encode(sha256(body), 'hex') <> row_hash"
        )
        assert mismatched == 0, f"{mismatched} stored records do not hash to their row_hash"
        size = await conn.fetchrow(
            "SELECT pg_relation_size('bench_stored_bytes') AS heap, "
            "       pg_total_relation_size('bench_stored_bytes') AS total, "
            "       (SELECT sum(pg_relation_size(inhrelid))::bigint FROM pg_inherits "
            "        WHERE inhparent = 'access_log'::regclass) AS log_heap, "
            "       (SELECT avg(octet_length(body)) FROM bench_stored_bytes) AS body_bytes"
        )
        per_million = 1_000_000 / max(records, 1) / 2**20
        print(
            f"{records:,} records; the bytes alone {size['heap'] * per_million:.0f} MiB per million records "
            f"(average {size['body_bytes']:.0f} bytes a record; the log's heap is "
            f"{size['log_heap'] * per_million:.0f} MiB per million: "
            f"+{100 * size['heap'] / size['log_heap']:.0f}%)"
        )
        low, high = (
            await conn.fetchval("SELECT min(row_id) - 1 FROM access_log_chain"),
            await conn.fetchval("SELECT max(row_id) FROM access_log_chain"),
        )
        head = await conn.fetchval("SELECT max(position) FROM access_log_chain")
        row_ranges = [(a, min(a + RANGE, high)) for a in range(low, high, RANGE)]
        link_ranges = [(a, min(a + RANGE, head)) for a in range(0, head, RANGE)]
        for workers in workers_list:
            load = os.getloadavg()[0]
            with BackendCpu(database) as cpu:
                began = time.perf_counter()
                bad = await _spread(url, workers, row_ranges, link_ranges)
                elapsed = time.perf_counter() - began
            assert bad == 0, f"{bad} records failed"
            print(
                f"stored-bytes verify, {workers} connection(s): {records:,} records in {elapsed:.1f} s = "
                f"{records / elapsed:,.0f} records/s (load {load:.1f} before; PostgreSQL CPU "
                f"{cpu.seconds * 1e6 / records:.1f} µs/record)"
            )
    finally:
        if not keep:
            await conn.execute("DROP TABLE IF EXISTS bench_stored_bytes")
        await conn.close()


async def _spread(
    url: str, workers: int, row_ranges: list[tuple[int, int]], link_ranges: list[tuple[int, int]]
) -> int:
    """Every range, on ``workers`` connections sharing one snapshot; returns the failed rows."""
    lead = await asyncpg.connect(url)
    others = [await asyncpg.connect(url) for _ in range(workers - 1)]
    try:
        transaction = lead.transaction(isolation="repeatable_read", readonly=True)
        await transaction.start()
        snapshot = await lead.fetchval("SELECT pg_export_snapshot()")
        for other in others:
            await other.execute(
                f"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'"
            )
        connections = [lead, *others]
        for c in connections:
            await c.execute(bulk_verify._SESSION)
        work: asyncio.Queue[tuple[str, int, int]] = asyncio.Queue()
        for a, b in row_ranges:
            work.put_nowait(("rows", a, b))
        for a, b in link_ranges:
            work.put_nowait(("links", a, b))
        bad = 0

        async def drain(c: asyncpg.Connection) -> None:
            nonlocal bad
            while not work.empty():
                kind, a, b = work.get_nowait()
                if kind == "rows":
                    bad += (await c.fetchrow(_ROWS, a, b))["bad"]
                else:
                    row = await c.fetchrow(_LINKS, a, b, GENESIS if a == 0 else None)
                    bad += len(row["suspects"] or [])

        await asyncio.gather(*(drain(c) for c in connections))
        await transaction.rollback()
        for other in others:
            await other.execute("ROLLBACK")
        return bad
    finally:
        for c in [lead, *others]:
            await c.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="the database bench_verify.py kept (default: its own)")
    parser.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 1])
    parser.add_argument("--keep", action="store_true", help="keep the copied bytes")
    args = parser.parse_args()
    url = args.url
    if not url:
        parts = urlsplit(os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres")
        url = urlunsplit(("postgresql", parts.netloc, "/" + DB, parts.query, parts.fragment))
    asyncio.run(run(url, args.workers, args.keep))


if __name__ == "__main__":
    main()
