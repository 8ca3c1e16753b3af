"""A province's registry: the query plans of the list and lookup routes, and the database's size
per million children and per million access-log records.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/childlink_bench_10m \\
        .venv/bin/python bench/bench_province.py

Run it on a database seeded by ``run_custody.py --children N`` (the registry) and
``bench_verify.py --url ... --rows M`` (the access log); it reads only. Each statement below is
the one its route sends (the ORM's statement written out, with the parameters of a typical call),
run under ``EXPLAIN (ANALYZE, BUFFERS)`` twice, the second one printed (a warm cache, as a
running service has).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.services.guardianship import CUSTODY_SQL

URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/childlink_bench_10m")

# app/services/child.py list_children: a region, oldest change first, a page of 50. A county's
# (6 digits) or a township's (9) prefix is stated as left(region_code, 6 or 9) = ..., which the
# division indexes of migration 0019 are ordered under; {width} is that literal.
LIST = """
SELECT * FROM child
WHERE left(child.region_code, {width}) = $1::varchar
ORDER BY updated_at, id LIMIT 51::integer
"""
# The next page: the cursor is (updated_at, id) of the last child on the page before.
LIST_NEXT = """
SELECT * FROM child
WHERE left(child.region_code, 6) = $1::varchar
  AND (updated_at > $2 OR (updated_at = $2 AND id > $3))
ORDER BY updated_at, id LIMIT 51::integer
"""
# With a category filter (categories @> ARRAY[...]), as the list's category parameter sends it.
LIST_CATEGORY = """
SELECT * FROM child
WHERE left(child.region_code, 6) = $1::varchar AND categories @> ARRAY['left_behind']::varchar[]
ORDER BY updated_at, id LIMIT 51::integer
"""
# The statement before migration 0019 (the prefix alone), for comparison.
LIST_PREFIX_ONLY = """
SELECT * FROM child
WHERE region_code LIKE $1::varchar || '%' ESCAPE '/'
ORDER BY updated_at, id LIMIT 51::integer
"""
# POST /v1/children/lookup: by resident ID number.
LOOKUP = "SELECT * FROM child WHERE resident_id = $1"
# GET /v1/audit/access-log?child_id=...: a child's reads, newest first (app/audit/access_log.py).
LOG_BY_CHILD = """
SELECT * FROM access_log
WHERE (child_id = $1 OR child_ids @> ARRAY[$1]::uuid[])
ORDER BY id DESC LIMIT 51
"""
LOG_BY_AGENCY = "SELECT * FROM access_log WHERE agency = 'education' ORDER BY id DESC LIMIT 51"

REGISTRY = ("child", "guardianship", "child_history", "child_tally")


async def main() -> None:
    conn = await asyncpg.connect(URL)
    try:
        await conn.execute("SET jit = off")  # as the service's short queries run
        children = await conn.fetchval("SELECT count(*) FROM child")
        records = await conn.fetchval("SELECT count(*) FROM access_log_chain")
        print(f"{children:,} children, {records:,} access-log records\n")
        sample = await conn.fetchrow(
            "SELECT id, updated_at, left(region_code, 6) AS county, left(region_code, 9) AS township "
            "FROM child WHERE region_code LIKE '510104%' ORDER BY updated_at, id OFFSET 100 LIMIT 1"
        )
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM child TABLESAMPLE SYSTEM (0.01) LIMIT 8")]
        logged_child = await conn.fetchval(
            "SELECT child_id FROM access_log WHERE child_id IS NOT NULL ORDER BY id DESC LIMIT 1"
        )
        plans = [
            ("custody check (8 children in one batch)", CUSTODY_SQL, [ids]),
            ("list: a county, first page", LIST.format(width=6), [sample["county"]]),
            (
                "list: a county, a later page",
                LIST_NEXT,
                [sample["county"], sample["updated_at"], sample["id"]],
            ),
            ("list: a county and a category", LIST_CATEGORY, [sample["county"]]),
            ("list: a township, first page", LIST.format(width=9), [sample["township"]]),
            ("list: a township, the prefix alone (before 0019)", LIST_PREFIX_ONLY, [sample["township"]]),
            ("lookup by resident ID number", LOOKUP, ["510104201001011234"]),
            ("access log: one child's reads", LOG_BY_CHILD, [logged_child]),
            ("access log: one agency's reads", LOG_BY_AGENCY, []),
        ]
        for title, sql, args in plans:
            explain = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql
            await conn.fetch(explain, *args)
            rows = await conn.fetch(explain, *args)
            print(f"### {title}\n")
            print("\n".join(r[0] for r in rows))
            print()
        print("### sizes\n")
        registry = 0
        for table in REGISTRY:
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            registry += size
            print(f"{table}: {size / 2**20:,.0f} MiB")
        log = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits "
            "WHERE inhparent = 'access_log'::regclass"
        )
        chain = await conn.fetchval("SELECT pg_total_relation_size('access_log_chain')")
        database = await conn.fetchval("SELECT pg_database_size(current_database())")
        print(f"registry per million children: {registry / 2**20 / (children / 1e6):,.0f} MiB")
        print(
            f"access log per million records: {log / 2**20 / (records / 1e6):,.0f} MiB "
            f"+ chain {chain / 2**20 / (records / 1e6):,.0f} MiB"
        )
        print(f"database: {database / 2**30:,.1f} GiB")
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
