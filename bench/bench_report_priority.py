"""Mandatory reports behind a backlog: publish-to-receipt latency of ``immediate_danger`` reports
while the exchange carries 10,000 ordinary deliveries. Run by hand:

    .venv/bin/python bench/bench_report_priority.py --backlog 10000 --reports 50

Uses ``BENCH_DATABASE_URL`` as is, or the database ``childlink_bench_reports`` on the server named
by ``DATABASE_URL`` (default: the local PostgreSQL on 127.0.0.1:5432): the bench's own database,
dropped, created and migrated to head first.

The API (uvicorn, one process) and ``--workers`` ``childlink worker`` processes run as
subprocesses; police and civil affairs of the county each have a webhook subscription (on a real
loopback receiver answering 204 at once) to ``police.missing-child.reported`` and the platform's
events. The backlog: ``--backlog`` / 2 missing-child events about 50 children (one published
through the API, the rest copies of it written to the outbox), fanned out by the worker's own
fan-out statement before the workers start, so ``--backlog`` deliveries are pending when they do.
Then a school files ``--reports`` reports (``--urgency``, default ``immediate_danger``) about
other children through ``POST /v1/reports``, one every ``--every`` seconds, while the backlog
drains. Prints, per receipt at police and civil affairs, the latency from sending the filing
request to the receiver having the signed ``platform.report.received``: p50/p99/max, and the
backlog still pending when the last report was filed (it must not have drained).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
from bench_events import create_clients, free_port, start, stop, token

from app.cli import migrate
from app.config import Settings
from app.db import asyncpg_dsn
from app.events.worker import _DISPATCH, DISPATCH_BATCH

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "childlink_bench_reports"
BACKLOG_TYPE = "cn.gov.childlink.police.missing-child.reported.v1"
RECEIVED = "cn.gov.childlink.platform.report.received.v1"
RECEIVERS = ("police", "civil-affairs")
REGION = "510107"


def bench_url() -> str:
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        return explicit
    parts = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + BENCH_DB, parts.query, parts.fragment))


async def prepare(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if name != BENCH_DB and "BENCH_DATABASE_URL" not in os.environ:
        raise SystemExit(f"refusing to drop {name!r}")
    maintenance = asyncpg_dsn(urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, "")))
    conn = await asyncpg.connect(maintenance)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await asyncio.to_thread(migrate, Settings(), url)


async def make_clients(url: str) -> dict[str, tuple[str, str]]:
    """The publisher of the backlog, the registrar, the school, and a subscription manager for
    each receiver (its live client is also what makes its agency a receiver of the county)."""
    roles = [
        ("publisher", "police", ["events:publish"]),
        ("registrar", "civil-affairs", ["children:write", "children:read"]),
        ("school", "education", ["reports:file"]),
    ] + [(agency, agency, ["subscriptions:manage", "events:read"]) for agency in RECEIVERS]
    return await create_clients(url, roles, REGION)


class Receivers:
    """One loopback HTTP server per receiver, answering 204 at once; notes when each report's
    event arrived and counts the rest."""

    def __init__(self) -> None:
        self.reports: dict[str, dict[str, float]] = defaultdict(dict)
        self.ordinary: dict[str, int] = defaultdict(int)
        self.servers: list[asyncio.Server] = []

    async def start(self) -> dict[str, str]:
        urls = {}
        for name in RECEIVERS:
            server = await asyncio.start_server(lambda r, w, n=name: self._serve(n, r, w), "127.0.0.1", 0)
            self.servers.append(server)
            urls[name] = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
        return urls

    async def _serve(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    key, _, value = header.partition(b":")
                    if key.strip().lower() == b"content-length":
                        length = int(value)
                body = orjson.loads(await reader.readexactly(length))
                now = time.monotonic()
                if body["type"] == RECEIVED:
                    self.reports[name].setdefault(body["data"]["report_id"], now)
                else:
                    self.ordinary[name] += 1
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        for server in self.servers:
            server.close()


def child_body(index: int) -> dict[str, object]:
    return {
        "name": "扎西·多吉",
        "sex": "female",
        "birth_date": "2016-05-12",
        "region_code": f"{REGION}005{index % 9 + 1:03d}",
        "categories": ["left_behind"],
    }


async def queue_backlog(url: str, template_id: str, children: list[str], events: int) -> int:
    """Copy the template event ``events - 1`` times (about the backlog's children), then fan
    everything out with the worker's own statement; returns the deliveries pending."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            """
            INSERT INTO outbox_event (id, type, source, subject, time, data, data_categories, region_code,
                                      publisher_agency, publisher_client, publisher_event_id, created_at)
            SELECT gen_random_uuid(), e.type, e.source, (CAST($2 AS uuid[]))[1 + n % cardinality($2)],
                   now(), e.data, e.data_categories, e.region_code, e.publisher_agency, e.publisher_client,
                   e.publisher_event_id || '-' || n, now()
            FROM outbox_event AS e, generate_series(1, $3) AS n
            WHERE e.id = $1
            """,
            uuid.UUID(template_id),
            [uuid.UUID(c) for c in children],
            events - 1,
        )
        sql = _DISPATCH.replace(":batch", "$1")
        while (await conn.fetchrow(sql, DISPATCH_BATCH))["queued"]:
            pass
        return int(await conn.fetchval("SELECT count(*) FROM event_delivery WHERE status = 'pending'"))
    finally:
        await conn.close()


async def pending(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM event_delivery AS d JOIN outbox_event AS e ON e.id = d.event_id "
                "WHERE d.status = 'pending' AND e.type = $1",
                BACKLOG_TYPE,
            )
        )
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> int:
    url = bench_url()
    print(f"database: {urlsplit(url).path.lstrip('/')}; preparing", flush=True)
    await prepare(url)
    clients = await make_clients(url)
    receivers = Receivers()
    hook_urls = await receivers.start()
    key_dir = tempfile.mkdtemp(prefix="childlink-bench-keys-")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CHILDLINK_KEY_DIR": key_dir,
        "CHILDLINK_LOG_LEVEL": "WARNING",
        "CHILDLINK_RUN_WORKER": "false",
        "CHILDLINK_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "CHILDLINK_WORKER_CONCURRENCY": str(args.worker_concurrency),
        "CHILDLINK_WORKER_POLL_SECONDS": "0.5",
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--port", str(port)]
    api = start([*uvicorn, "--log-level", "warning", "--no-access-log"], env)
    workers = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(100):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            registrar = {"Authorization": f"Bearer {await token(http, clients['registrar'])}"}
            children = []
            for index in range(50 + args.reports):
                created = await http.post("/v1/children", json=child_body(index), headers=registrar)
                created.raise_for_status()
                children.append(created.json()["id"])
            backlog_children, report_children = children[:50], children[50:]
            for name in RECEIVERS:
                manager = await token(http, clients[name])
                created = await http.post(
                    "/v1/subscriptions",
                    json={
                        "mode": "webhook",
                        "url": hook_urls[name],
                        "types": ["cn.gov.childlink.police.*", "cn.gov.childlink.platform.*"],
                        "purpose_of_use": "child_protection",
                    },
                    headers={"Authorization": f"Bearer {manager}"},
                )
                created.raise_for_status()
            publisher = await token(http, clients["publisher"])
            template = await http.post(
                "/v1/events",
                content=orjson.dumps(
                    {
                        "specversion": "1.0",
                        "id": f"bench-{secrets.token_hex(4)}",
                        "source": "/bench/police",
                        "type": BACKLOG_TYPE,
                        "subject": backlog_children[0],
                        "data": {
                            "reported_at": "2026-11-28T08:00:00+08:00",
                            "last_seen_at": "2026-11-28T06:30:00+08:00",
                            "case_ref": "B-1",
                            "description": "red jacket, about 1.3 m",
                            "handling_unit": {"name": "簇桥派出所", "duty_phone": "028-85001110"},
                        },
                    }
                ),
                headers={
                    "Authorization": f"Bearer {publisher}",
                    "Idempotency-Key": secrets.token_hex(12),
                    "Content-Type": "application/cloudevents+json",
                },
            )
            template.raise_for_status()
            queued = await queue_backlog(
                url, template.json()["id"], backlog_children, args.backlog // len(RECEIVERS)
            )
            print(f"backlog: {queued} deliveries pending before the workers start", flush=True)

            school = {"Authorization": f"Bearer {await token(http, clients['school'])}"}
            for _ in range(args.workers):
                workers.append(start([sys.executable, "-m", "app.cli", "worker"], env))
            await asyncio.sleep(args.warmup)  # imports, then the workers start on the backlog
            sent_at: dict[str, float] = {}
            for index in range(args.reports):
                started = time.monotonic()
                filed = await http.post(
                    "/v1/reports",
                    json={
                        "child_id": report_children[index],
                        "concern": "physical_abuse",
                        "urgency": args.urgency,
                        "observed": "Bruises on both forearms; the child says an adult hit them.",
                        "observed_at": datetime.now(UTC).isoformat(),
                        "reporter": {"role": "班主任", "name": "王晓梅", "phone": "13812345678"},
                    },
                    headers={**school, "Idempotency-Key": str(uuid.uuid4())},
                )
                filed.raise_for_status()
                sent_at[filed.json()["id"]] = started
                await asyncio.sleep(max(0.0, started + args.every - time.monotonic()))
            left_at_last_filing = await pending(url)
            expected = len(sent_at) * len(RECEIVERS)
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline:
                if sum(len(r) for r in receivers.reports.values()) >= expected:
                    break
                await asyncio.sleep(0.05)
            left_at_last_receipt = await pending(url)
            latencies = [
                (arrived - sent_at[report_id]) * 1000
                for arrivals in receivers.reports.values()
                for report_id, arrived in arrivals.items()
                if report_id in sent_at
            ]
            cuts = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
            print(
                f"{len(sent_at)} {args.urgency} reports, one every {args.every} s, "
                f"{len(latencies)} of {expected} receipts at police and civil affairs; "
                f"{args.workers} worker(s) x {args.worker_concurrency} slots",
                flush=True,
            )
            if latencies:
                print(
                    f"publish-to-receipt latency: p50 {cuts[49]:.0f} ms, p99 {cuts[98]:.0f} ms, "
                    f"max {max(latencies):.0f} ms",
                    flush=True,
                )
            print(
                f"ordinary backlog still pending: {left_at_last_filing} at the last filing, "
                f"{left_at_last_receipt} at the last receipt "
                f"({sum(receivers.ordinary.values())} ordinary delivered meanwhile); "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            return 0 if len(latencies) == expected else 1
    finally:
        for worker in workers:
            stop(worker)
        stop(api)
        await asyncio.sleep(0.5)  # the receivers' connections see the workers' sockets close
        receivers.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=10_000, help="ordinary deliveries queued")
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument("--every", type=float, default=0.2, help="seconds between filings")
    parser.add_argument(
        "--urgency", default="immediate_danger", choices=["immediate_danger", "urgent", "routine"]
    )
    parser.add_argument("--workers", type=int, default=2, help="childlink worker processes")
    parser.add_argument("--worker-concurrency", type=int, default=32)
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds between starting workers and filing"
    )
    parser.add_argument("--drain", type=float, default=300, help="seconds to wait for the last receipt")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
