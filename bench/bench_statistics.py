"""Statistics bench: ``group_by=region(county),category,sex`` over a province and one county's
drill-down (townships x category x sex), at concurrency 8, on N synthetic children.

    python bench/bench_statistics.py --children 1000000 [--url postgresql://postgres@127.0.0.1/postgres]

Makes its own database (``childlink_bench_stats``), migrates it, seeds children with
``generate_series`` (triggers off, then history and tally built in one statement each, as the
registry's trigger would have kept them), and times the exact SQL the service runs on the tally
(``app.services.statistics``), through asyncpg, p50/p99 over ``--rounds`` queries each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from app.cli import migrate
from app.config import Settings
from app.db import asyncpg_dsn

DB = "childlink_bench_stats"

SEED = """
INSERT INTO agency (code, name, kind) VALUES ('civil-affairs', 'bench', 'civil-affairs')
    ON CONFLICT DO NOTHING;
SET session_replication_role = replica;
INSERT INTO child (id, name, sex, birth_date, region_code, categories, status, owner_agency, version,
                   created_at, updated_at)
SELECT gen_random_uuid(), 'x', CASE WHEN g % 2 = 0 THEN 'male' ELSE 'female' END,
       date '2008-01-01' + (g % 6000),
       -- 100 counties x 15 townships x 10 villages
       '51' || lpad(((g / 7) % 100)::text, 4, '0') || lpad(((g / 11) % 15)::text, 3, '0')
            || lpad(((g / 13) % 10)::text, 3, '0'),
       ARRAY[(ARRAY['left_behind','orphan','low_income','disability','serious_illness',
                    'de_facto_unsupported','guardian_harm','other'])[1 + (g % 8)]]::varchar[],
       'active', 'civil-affairs', 1, now(), now()
FROM generate_series(1, $N) AS g;
INSERT INTO child_history (child_id, valid_from, region_code, sex, birth_date, ethnicity, categories,
                           care_arrangement, status, owner_agency, exit_reason, exit_date)
SELECT id, created_at, region_code, sex, birth_date, ethnicity, categories, care_arrangement, status,
       owner_agency, exit_reason, exit_date FROM child;
INSERT INTO child_tally (region_code, category, sex, status, owner_agency, n)
SELECT region_code, c, sex, status, owner_agency, count(*) FROM child,
       unnest(array['*']::varchar[] || categories::varchar[]) AS c
GROUP BY region_code, c, sex, status, owner_agency;
SET session_replication_role = origin;
ANALYZE;
"""

PROVINCE = """SELECT left(t.region_code, 6) AS d0, t.category AS d1, t.sex AS d2, sum(t.n) AS n
FROM child_tally t WHERE t.region_code LIKE $1 AND t.category <> '*' AND t.status = 'active'
GROUP BY d0, d1, d2"""
PROVINCE_ONCE = """SELECT left(t.region_code, 6) AS d0, t.sex AS d1, sum(t.n) AS n
FROM child_tally t WHERE t.region_code LIKE $1 AND t.category = '*' AND t.status = 'active'
GROUP BY d0, d1"""
COUNTY = """SELECT left(t.region_code, 9) AS d0, t.category AS d1, t.sex AS d2, sum(t.n) AS n
FROM child_tally t WHERE t.region_code LIKE $1 AND t.category <> '*' AND t.status = 'active'
GROUP BY d0, d1, d2"""
COUNTY_ONCE = """SELECT left(t.region_code, 9) AS d0, t.sex AS d1, sum(t.n) AS n
FROM child_tally t WHERE t.region_code LIKE $1 AND t.category = '*' AND t.status = 'active'
GROUP BY d0, d1"""


async def timed(
    pool: asyncpg.Pool, queries: list[tuple[str, str]], rounds: int, concurrency: int
) -> list[float]:
    """Each sample is one API answer's SQL (the cells and the child-level margins)."""
    samples: list[float] = []

    async def worker() -> None:
        while len(samples) < rounds:
            start = time.perf_counter()
            async with pool.acquire() as conn:
                for sql, arg in queries:
                    await conn.fetch(sql, arg)
            samples.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{name}: n={len(samples)} p50={statistics.median(samples):.1f} ms p99={p99:.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=1_000_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="reuse a seeded database of the same size")
    args = parser.parse_args()
    server = asyncpg_dsn(args.url)
    url = args.url.rsplit("/", 1)[0] + "/" + DB
    conn = await asyncpg.connect(server)
    exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB)
    if not (args.keep and exists):
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB}"')
    await conn.close()
    if not (args.keep and exists):
        await asyncio.to_thread(migrate, Settings(DATABASE_URL=url), url)  # Alembic runs its own loop
        conn = await asyncpg.connect(asyncpg_dsn(url))
        start = time.perf_counter()
        await conn.execute(SEED.replace("$N", str(int(args.children))))
        tally = await conn.fetchval("SELECT count(*) FROM child_tally")
        print(f"seeded {args.children} children in {time.perf_counter() - start:.0f} s; tally rows {tally}")
        await conn.close()
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=args.concurrency, max_size=args.concurrency)
    assert pool is not None
    report(
        "group_by=region(county),category,sex, province",
        await timed(pool, [(PROVINCE, "51%"), (PROVINCE_ONCE, "51%")], args.rounds, args.concurrency),
    )
    report(
        "one-county drill-down (township,category,sex)",
        await timed(pool, [(COUNTY, "510042%"), (COUNTY_ONCE, "510042%")], args.rounds, args.concurrency),
    )
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
