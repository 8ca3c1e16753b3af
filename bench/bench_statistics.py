"""Statistics bench: ``group_by=region(county),category,sex`` over a province and one county's
drill-down (townships x category x sex), at concurrency 8, on N synthetic children.

    python bench/bench_statistics.py --children 1000000 [--url postgresql://postgres@127.0.0.1/postgres]

Makes its own database (``childlink_bench_stats``), migrates it, seeds children with
``generate_series`` (triggers off, then history and tally built in one statement each, as the
registry's trigger would have kept them), and times whole answers of the API in process (the app
over ASGI, a real token, each read's access-log record), p50/p99 over ``--rounds`` requests each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import asyncpg
import httpx
from _common import (
    add_client,
    ensure_agencies,
    env_for,
    fetch_token,
    machine_conditions,
    run_wrk,
    seed_without_triggers,
    start_childlink,
)

from app.cli import migrate
from app.config import Settings
from app.db import asyncpg_dsn
from app.main import create_app
from app.models.agency import Agency, AgencyKind
from app.models.client import ClientCreate
from app.services import client as client_service

DB = "childlink_bench_stats"

SEED = """
INSERT INTO agency (code, name, kind) VALUES ('civil-affairs', 'bench', 'civil-affairs')
    ON CONFLICT DO NOTHING;
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
"""

PROVINCE = {"group_by": "region,category,sex", "level": "county"}
COUNTY = {"group_by": "region,category,sex", "level": "township", "region": "510042"}


async def timed(
    http: httpx.AsyncClient, token: str, params: dict[str, str], rounds: int, concurrency: int
) -> list[float]:
    """Each sample is one whole answer of ``GET /v1/statistics/children``: token check, the
    aggregate access-log record, the tally queries, disclosure control, JSON."""
    samples: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}

    async def worker() -> None:
        while len(samples) < rounds:
            start = time.perf_counter()
            response = await http.get("/v1/statistics/children", params=params, headers=headers)
            samples.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{response.status_code} {response.text[:300]}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{name}: n={len(samples)} p50={statistics.median(samples):.1f} ms p99={p99:.1f} ms")


async def measure(url: str, rounds: int, concurrency: int) -> None:
    settings = Settings(
        DATABASE_URL=url, key_dir=Path(tempfile.mkdtemp(prefix="childlink-stats-bench-")), log_level="WARNING"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.db.sessionmaker() as session:
            if await session.get(Agency, "police") is None:
                session.add(Agency(code="police", name="bench police", kind=AgencyKind.police))
                await session.flush()
            created = await client_service.create(
                session,
                data=ClientCreate(agency="police", name="bench", scopes=["statistics:read"], region="51"),
            )
            await session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            answer = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(created.client_id, created.client_secret),
            )
            token = answer.json()["access_token"]
            await timed(http, token, PROVINCE, concurrency * 2, concurrency)  # warm-up
            report(
                "group_by=region(county),category,sex over the province",
                await timed(http, token, PROVINCE, rounds, concurrency),
            )
            report(
                "one-county drill-down (township,category,sex)",
                await timed(http, token, COUNTY, rounds, concurrency),
            )


def measure_http(url: str, seconds: int, concurrency: int, workers: int) -> None:
    """The same two queries against ``childlink serve --workers N`` over loopback HTTP, driven by
    wrk (C, in its own process, so the client's cost is not the server's)."""
    with tempfile.TemporaryDirectory(prefix="childlink-stats-bench-") as keys:
        env = env_for(url, Path(keys))
        asyncio.run(ensure_agencies(url, env, {"police": "公安"}))
        police = add_client(env, agency="police", scopes="statistics:read", region="51")
        server = start_childlink(env, workers=workers, name="childlink-stats")
        try:
            token = fetch_token(server.base, *police)
            for label, params in (
                ("province by county", PROVINCE),
                ("one-county drill-down", COUNTY),
            ):
                target = f"{server.base}/v1/statistics/children?{urlencode(params)}"
                run_wrk(label, target, "get.lua", [token], connections=concurrency, seconds=3)
                print(
                    run_wrk(
                        label, target, "get.lua", [token], connections=concurrency, seconds=seconds
                    ).line()
                )
        finally:
            server.stop()
    print(f"machine: {machine_conditions()}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=1_000_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="reuse a seeded database of the same size")
    parser.add_argument(
        "--http",
        type=int,
        metavar="WORKERS",
        default=0,
        help="measure over loopback HTTP with wrk against `childlink serve --workers WORKERS`",
    )
    parser.add_argument("--seconds", type=int, default=20, help="wrk's duration per query (with --http)")
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
        await seed_without_triggers(conn, [(SEED.replace("$N", str(int(args.children))), ())])
        await conn.execute("ANALYZE")
        tally = await conn.fetchval("SELECT count(*) FROM child_tally")
        print(f"seeded {args.children} children in {time.perf_counter() - start:.0f} s; tally rows {tally}")
        await conn.close()
    if args.http:
        await asyncio.to_thread(measure_http, url, args.seconds, args.concurrency, args.http)
    else:
        await measure(url, args.rounds, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
