"""Coordinated handling (issue 13): the referral inbox and a child's timeline under load.

Steps: create and migrate its own database (``childlink_bench_cases``, never the shared
``childlink_bench``: its schema is this branch's); seed 1,000,000 children (the custody bench's
set-based statement), 100,000 open dropout cases led by education each with a referral to civil
affairs, and one child with a 200-entry timeline (absence alerts, home visits, the steps of its
own case); start ``childlink serve --workers 2`` and drive, with wrk at concurrency 32,

* ``GET /v1/referrals?direction=incoming`` as civil affairs for all of Sichuan (region ``51``):
  the newest 50 of 100,000 incoming referrals, each case's record decided by the door and logged;
* ``GET /v1/children/{id}/timeline?limit=200`` as education: 200 entries, decided per
  (publisher, categories, case) and logged.

    .venv/bin/python bench/run_cases.py               # ~2 min after the first seed (~1.5 min)
    .venv/bin/python bench/run_cases.py --seconds 30

Loopback only. Results are printed and written to ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from _common import (
    DEFAULT_SERVER_URL,
    add_client,
    childlink,
    ensure_agencies,
    ensure_database,
    env_for,
    fetch_token,
    machine_conditions,
    plain_dsn,
    run_wrk,
    seed_without_triggers,
    start_childlink,
    write_result,
)
from run_custody import COUNTIES, SEED_CHILDREN_SQL

CASES_DB = "childlink_bench_cases"
SEED_CLIENT = "bench-seed"

SEED_CASES_SQL = """
INSERT INTO "case" (id, child_id, region_code, kind, priority, summary, status, lead_agency,
                    opened_by_client, created_at, updated_at)
SELECT gen_random_uuid(), c.id, c.region_code, 'dropout', 'soon', 'Absent from school (bench).', 'open',
       'education', $1::text, now() - make_interval(secs => c.n::int), now()
FROM (SELECT id, region_code, row_number() OVER () AS n FROM child LIMIT $2) AS c
"""

SEED_REFERRALS_SQL = """
INSERT INTO referral (id, case_id, child_id, from_agency, to_agency, target_region, request, categories,
                      respond_by, complete_by, status, next_deadline_at, created_by_client, created_at,
                      updated_at)
SELECT gen_random_uuid(), k.id, k.child_id, 'education', 'civil-affairs', k.region_code,
       'Home visit (bench).', ARRAY['contact', 'education', 'identity'], now() + interval '3 days',
       now() + interval '30 days', 'requested', now() + interval '3 days', $1::text,
       k.created_at, k.created_at
FROM "case" AS k WHERE k.opened_by_client = $1::text
"""

TIMELINE_SQL = """
INSERT INTO outbox_event (id, type, source, subject, time, data, data_categories, region_code,
                          publisher_agency, publisher_client, case_id)
SELECT gen_random_uuid(),
       CASE WHEN i % 2 = 0 THEN 'cn.gov.childlink.education.attendance.absence-alert.v1'
            ELSE 'cn.gov.childlink.civil-affairs.home-visit.recorded.v1' END,
       '/bench', $1, now() - make_interval(days => 200 - i),
       CASE WHEN i % 2 = 0
            THEN jsonb_build_object('school', '簇桥小学', 'absent_since', '2026-11-01', 'consecutive_days', i)
            ELSE jsonb_build_object('visited_on', '2026-11-02', 'visitor_role', 'child_director',
                                    'child_seen', true) END,
       CASE WHEN i % 2 = 0 THEN ARRAY['education'] ELSE ARRAY['welfare'] END,
       $2::text, CASE WHEN i % 2 = 0 THEN 'education' ELSE 'civil-affairs' END, $3::text,
       CASE WHEN i % 4 = 1 THEN $4::uuid END
FROM generate_series(1, 200) AS i
"""


def cases_database_url() -> str:
    parts = urlsplit(DEFAULT_SERVER_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + CASES_DB, parts.query, parts.fragment))


async def seed(url: str, children: int, cases: int) -> dict[str, Any]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        started = time.perf_counter()
        have = await conn.fetchval("SELECT count(*) FROM child")
        if have < children:
            await seed_without_triggers(conn, [(SEED_CHILDREN_SQL, (COUNTIES, children - have))])
            await conn.execute("VACUUM (ANALYZE) child")
            await conn.execute("VACUUM (ANALYZE) child_history")
        have_cases = await conn.fetchval(
            'SELECT count(*) FROM "case" WHERE opened_by_client = $1', SEED_CLIENT
        )
        if have_cases < cases:
            # The seeded rows name existing children, so the subject check trigger has nothing to add.
            await seed_without_triggers(
                conn,
                [
                    (SEED_CASES_SQL, (SEED_CLIENT, cases - have_cases)),
                    ("DELETE FROM referral WHERE created_by_client = $1", (SEED_CLIENT,)),
                    (SEED_REFERRALS_SQL, (SEED_CLIENT,)),
                ],
            )
            await conn.execute('VACUUM (ANALYZE) "case"')
            await conn.execute("VACUUM (ANALYZE) referral")
        row = await conn.fetchrow(
            'SELECT k.id AS case_id, k.child_id, k.region_code FROM "case" AS k '
            "WHERE k.opened_by_client = $1 ORDER BY k.created_at DESC LIMIT 1",
            SEED_CLIENT,
        )
        entries = await conn.fetchval("SELECT count(*) FROM outbox_event WHERE subject = $1", row["child_id"])
        if entries < 200:
            await conn.execute(TIMELINE_SQL, row["child_id"], row["region_code"], SEED_CLIENT, row["case_id"])
        took = time.perf_counter() - started
        print(
            f"seed: {children:,} children, {cases:,} open cases and referrals, "
            f"a 200-entry timeline ({took:.0f} s)"
        )
        return {"child_id": str(row["child_id"]), "seconds": round(took, 1)}
    finally:
        await conn.close()


async def prepare(url: str, env: dict[str, str], children: int, cases: int) -> dict[str, Any]:
    await ensure_database(url)
    childlink(env, "migrate")
    await ensure_agencies(
        url,
        env,
        {"civil-affairs": "民政", "education": "教育", "police": "公安", "womens-federation": "妇联"},
    )
    return await seed(url, children, cases)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--children", type=int, default=1_000_000)
    parser.add_argument("--cases", type=int, default=100_000)
    args = parser.parse_args()
    url = cases_database_url()
    with tempfile.TemporaryDirectory() as keys:
        env = env_for(url, Path(keys))
        seeded = asyncio.run(prepare(url, env, args.children, args.cases))
        civil = add_client(env, agency="civil-affairs", scopes="children:read cases:write", region="51")
        education = add_client(env, agency="education", scopes="children:read", region="51")
        server = start_childlink(env, workers=2, name="childlink-cases")
        try:
            base = server.base
            civil_token = fetch_token(base, *civil)
            education_token = fetch_token(base, *education)
            results = []
            for label, path, tok in (
                ("referral inbox", "/v1/referrals?direction=incoming", civil_token),
                (
                    "timeline (200 entries)",
                    f"/v1/children/{seeded['child_id']}/timeline?limit=200",
                    education_token,
                ),
            ):
                run_wrk(label, base + path, "get_purpose.lua", [tok], connections=args.connections, seconds=3)
                result = run_wrk(
                    label,
                    base + path,
                    "get_purpose.lua",
                    [tok],
                    connections=args.connections,
                    seconds=args.seconds,
                )
                print(result.line())
                results.append(result)
        finally:
            server.stop()
    report = {
        "seed": seeded,
        "machine": machine_conditions(),
        "results": [{**r.__dict__, "rps": round(r.rps)} for r in results],
    }
    print(f"results: {write_result('cases', report)}")
    return 0 if all(r.non_2xx == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
