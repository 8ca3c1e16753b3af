"""The event exchange under sustained publishing: the API and the delivery worker as real
processes, five webhook subscribers as real HTTP servers on loopback. Run by hand:

    .venv/bin/python bench/bench_events.py --seconds 20 --rate 100

Uses ``BENCH_DATABASE_URL`` as is, or the database ``childlink_bench_events`` on the server named by
``DATABASE_URL`` (default: the local PostgreSQL on 127.0.0.1:5432), migrated to head and emptied
of events, subscriptions and access-log rows first (it is the bench's own database).

The API (uvicorn, one process) and ``childlink worker`` run as subprocesses; this process
publishes ``police.missing-child.reported`` events about ``--children`` children (50) with a few concurrent
publishers at ``--rate`` events/s (0: as fast as the API takes them), and runs the five receivers.
Every delivery passes the access layer (each of the five agencies gets a redacted payload and an
access-log record). Prints publishes/s, deliveries/s over the run, and publish-to-delivery
latency p50/p99/max (from sending the publish request to the receiver having the signed
webhook), and checks that every subscriber got every event exactly once and that every
delivery received is on the access log.

``--hanging N`` adds N more subscriptions (of the first subscriber's agency), after the warm-up,
whose receiver accepts connections, reads the request and never answers: the isolation check.
The figures are then the five healthy subscribers'; compare them with a run without it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
import uvloop
from _common import backend_pids, cpu_seconds

from app.cli import migrate
from app.config import Settings
from app.db import asyncpg_dsn, create_database
from app.models.agency import Agency, AgencyKind
from app.models.client import ClientCreate
from app.services import client as client_service

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "childlink_bench_events"
TYPE = "cn.gov.childlink.police.missing-child.reported.v1"
SUBSCRIBERS = ("civil-affairs", "education", "health", "womens-federation", "civil-affairs")
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
    maintenance = asyncpg_dsn(urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, "")))
    conn = await asyncpg.connect(maintenance)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await asyncio.to_thread(migrate, Settings(), url)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        # The bench's own database: empty it as a superuser would (append-only triggers off).
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "TRUNCATE delivery_attempt, event_delivery, subscription, event_idempotency, outbox_event, "
            "event_sequence, access_log_chain, access_log, guardianship, consent, child, api_client, agency "
            "RESTART IDENTITY CASCADE"
        )
    finally:
        await conn.close()


async def make_clients(url: str) -> dict[str, tuple[str, str]]:
    """One client per role: the publisher, the registrar and the five subscribers."""
    roles = [
        ("publisher", "police", ["events:publish"]),
        ("registrar", "civil-affairs", ["children:write", "children:read"]),
    ] + [(f"sub{i}", agency, ["subscriptions:manage", "events:read"]) for i, agency in enumerate(SUBSCRIBERS)]
    return await create_clients(url, roles, REGION)


async def create_clients(
    url: str, roles: list[tuple[str, str, list[str]]], region: str
) -> dict[str, tuple[str, str]]:
    """For each (role, agency, scopes): the agency if new and a client of it in ``region``;
    the (client id, secret) by role."""
    db = create_database(url, pool_size=2)
    out: dict[str, tuple[str, str]] = {}
    try:
        async with db.sessionmaker() as session:
            for kind in {agency for _, agency, _ in roles}:
                session.add(Agency(code=kind, name=f"bench {kind}", kind=AgencyKind(kind)))
            await session.flush()
            for role, agency, scopes in roles:
                created = await client_service.create(
                    session,
                    data=ClientCreate(agency=agency, name=f"bench {role}", scopes=scopes, region=region),
                )
                out[role] = (created.client_id, created.client_secret)
            await session.commit()
    finally:
        await db.dispose()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Its own session, so stop() can end it and anything it started by its process-group id.
    return subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Receivers:
    """Five loopback HTTP servers answering 204 at once, noting when each event arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[int, dict[str, float]] = defaultdict(dict)
        self.webhook_ids: set[str] = set()
        self.duplicates = 0
        self.servers: list[asyncio.Server] = []

    async def start(self, count: int) -> list[str]:
        urls = []
        for index in range(count):
            server = await asyncio.start_server(lambda r, w, i=index: self._serve(i, r, w), "127.0.0.1", 0)
            self.servers.append(server)
            urls.append(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook")
        return urls

    async def _serve(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                length, webhook_id = 0, b""
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        webhook_id = value.strip()
                body = await reader.readexactly(length)
                now = time.monotonic()
                event_id = orjson.loads(body)["id"]
                if event_id in self.arrivals[index]:
                    self.duplicates += 1
                else:
                    self.arrivals[index][event_id] = now
                    self.webhook_ids.add(webhook_id.decode())
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                del line
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the sender hung up, or the bench is closing its kept-alive connections
        finally:
            writer.close()

    def close(self) -> None:
        for server in self.servers:
            server.close()


class Hanging:
    """Loopback servers that take every request and never answer it (until the bench closes)."""

    def __init__(self) -> None:
        self.requests = 0
        self.servers: list[asyncio.Server] = []
        self.open: set[asyncio.StreamWriter] = set()

    async def start(self, count: int) -> list[str]:
        urls = []
        for _ in range(count):
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.servers.append(server)
            urls.append(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook")
        return urls

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open.add(writer)
        try:
            while chunk := await reader.read(65536):
                self.requests += chunk.count(b"POST ")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open.discard(writer)
            writer.close()

    def close(self) -> None:
        for writer in list(self.open):
            writer.close()
        for server in self.servers:
            server.close()


class Publisher:
    """One kept-alive HTTP/1.1 connection to the API that publishes, one request at a time.

    A general client (httpx) cost this process about a millisecond of CPU per publish, on the
    same cores as the service it measures; this writes each request in one piece and reads the
    answer by its ``content-length``, as uvicorn frames it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str) -> None:
        self.reader, self.writer = reader, writer
        self.head = (
            "POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            f"authorization: Bearer {token}\r\ncontent-type: application/cloudevents+json\r\n"
        ).encode()

    @classmethod
    async def open(cls, port: int, token: str) -> Publisher:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, token)

    async def publish(self, body: bytes) -> tuple[int, bytes]:
        key = secrets.token_hex(12)
        self.writer.write(
            self.head + f"idempotency-key: {key}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")
        )
        return int(lines[0].split(b" ", 2)[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def token(http: httpx.AsyncClient, credentials: tuple[str, str]) -> str:
    response = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=credentials)
    response.raise_for_status()
    return str(response.json()["access_token"])


async def run(args: argparse.Namespace) -> int:
    url = bench_url()
    print(f"database: {urlsplit(url).path.lstrip('/')}; preparing", flush=True)
    await prepare(url)
    clients = await make_clients(url)
    receivers = Receivers()
    hook_urls = await receivers.start(len(SUBSCRIBERS))
    hanging = Hanging()
    hanging_urls = await hanging.start(args.hanging)
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
    api = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(100):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            registrar = await token(http, clients["registrar"])
            children = []
            for index in range(args.children):
                body = {
                    "name": "扎西·多吉",
                    "sex": "female",
                    "birth_date": "2016-05-12",
                    "region_code": f"{REGION}005{index % 9 + 1:03d}",
                    "categories": ["left_behind"],
                }
                created = await http.post(
                    "/v1/children", json=body, headers={"Authorization": f"Bearer {registrar}"}
                )
                created.raise_for_status()
                children.append(created.json()["id"])

            async def subscribe(role: str, hook: str) -> None:
                subscriber = await token(http, clients[role])
                created = await http.post(
                    "/v1/subscriptions",
                    json={
                        "mode": "webhook",
                        "url": hook,
                        "types": ["cn.gov.childlink.police.*"],
                        "purpose_of_use": "child_protection",
                    },
                    headers={"Authorization": f"Bearer {subscriber}"},
                )
                created.raise_for_status()

            for index, hook in enumerate(hook_urls):
                await subscribe(f"sub{index}", hook)
            for _ in range(args.workers):
                workers.append(start([sys.executable, "-m", "app.cli", "worker"], env))
            await asyncio.sleep(3)  # let the workers start (imports, migration check)

            publisher = await token(http, clients["publisher"])
            sent_at: dict[str, float] = {}
            answered: list[float] = []
            failures = 0
            interval = args.publishers / args.rate if args.rate else 0.0
            run_name = "warmup"

            async def publish_loop(worker_index: int, stop_at: float) -> None:
                nonlocal failures
                next_at = time.monotonic()
                sequence = 0
                connection = await Publisher.open(port, publisher)
                while time.monotonic() < stop_at:
                    sequence += 1
                    body = {
                        "specversion": "1.0",
                        "id": f"bench-{run_name}-{worker_index}-{sequence}",
                        "source": "/bench/police",
                        "type": TYPE,
                        "subject": children[(worker_index * 7 + sequence) % len(children)],
                        "data": {
                            "reported_at": "2026-11-28T08:00:00+08:00",
                            "last_seen_at": "2026-11-28T06:30:00+08:00",
                            "case_ref": f"B-{worker_index}-{sequence}",
                            "description": "red jacket, about 1.3 m",
                            "handling_unit": {"name": "簇桥派出所", "duty_phone": "028-85001110"},
                        },
                    }
                    started = time.monotonic()
                    status, answer = await connection.publish(orjson.dumps(body))
                    if status == 202:
                        sent_at[orjson.loads(answer)["id"]] = started
                        answered.append((time.monotonic() - started) * 1000)
                    else:
                        failures += 1
                    if interval:
                        next_at += interval
                        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                connection.close()

            if args.warmup > 0:
                # A running platform's tables have statistics (autovacuum analyzes them within a
                # minute or so of activity); the bench's start from empty, and statements planned
                # against empty tables scan them whole. So: publish for a while, wait for its
                # deliveries, analyze what autovacuum would, then measure from a clean slate.
                warm_until = time.monotonic() + args.warmup
                await asyncio.gather(*(publish_loop(i, warm_until) for i in range(args.publishers)))
                warm_expected = len(sent_at) * len(SUBSCRIBERS)
                deadline = time.monotonic() + args.drain
                while time.monotonic() < deadline:
                    if sum(len(a) for a in receivers.arrivals.values()) >= warm_expected:
                        break
                    await asyncio.sleep(0.1)
                analyzer = await asyncpg.connect(asyncpg_dsn(url))
                try:
                    await analyzer.execute(
                        "ANALYZE outbox_event, event_delivery, delivery_attempt, subscription, "
                        "event_idempotency, access_log, access_log_chain, missing_report"
                    )
                finally:
                    await analyzer.close()
                print(f"warmed up: {len(sent_at)} events in {args.warmup:.0f} s, then ANALYZE", flush=True)
                sent_at.clear()
                answered.clear()
                receivers.arrivals.clear()
                receivers.webhook_ids.clear()
                failures = 0
                run_name = "run"
            # The hanging receivers join now: their first deliveries, at the full share, hang
            # inside the measured run (once they have timed out, the subscription backs off).
            for hook in hanging_urls:
                await subscribe("sub0", hook)
            worker_pids = [w.pid for w in workers]
            cpu_before = {
                "api": cpu_seconds([api.pid]),
                "worker": cpu_seconds(worker_pids),
                "postgres": cpu_seconds(await backend_pids(url)),
            }
            load_before = os.getloadavg()[0]
            began = time.monotonic()
            stop_at = began + args.seconds
            await asyncio.gather(*(publish_loop(i, stop_at) for i in range(args.publishers)))
            published_for = time.monotonic() - began
            expected = len(sent_at) * len(SUBSCRIBERS)
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline:
                if sum(len(a) for a in receivers.arrivals.values()) >= expected:
                    break
                await asyncio.sleep(0.1)
            backends = await backend_pids(url)
            cpu_after = {
                "api": cpu_seconds([api.pid]),
                "worker": cpu_seconds(worker_pids),
                "postgres": cpu_seconds(backends),
            }
            cpu_used = {
                part: sum(v - cpu_before[part].get(pid, 0.0) for pid, v in cpu_after[part].items())
                for part in cpu_after
            }
            latencies = [
                (arrived - sent_at[event_id]) * 1000
                for arrivals in receivers.arrivals.values()
                for event_id, arrived in arrivals.items()
                if event_id in sent_at
            ]
            received = len(latencies)
            last = max((t for a in receivers.arrivals.values() for t in a.values()), default=began)
            window = max(last - began, 1e-9)
            cuts = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
            print(
                f"published {len(sent_at)} events in {published_for:.1f} s "
                f"({len(sent_at) / published_for:.0f}/s, {args.publishers} publishers, "
                f"rate {'max' if not args.rate else args.rate}/s), {failures} refused",
                flush=True,
            )
            print(
                f"delivered {received} of {expected} webhooks to {len(SUBSCRIBERS)} subscribers "
                f"in {window:.1f} s: "
                f"{received / window:.0f} deliveries/s; {receivers.duplicates} duplicates",
                flush=True,
            )
            if args.hanging:
                print(
                    f"{args.hanging} hanging subscription(s) were sent {hanging.requests} requests "
                    f"and answered none",
                    flush=True,
                )
            if len(answered) >= 2:
                answer_cuts = statistics.quantiles(answered, n=100)
                print(
                    f"publish answered (202): p50 {answer_cuts[49]:.0f} ms, p99 {answer_cuts[98]:.0f} ms",
                    flush=True,
                )
            if latencies:
                print(
                    f"publish-to-delivery latency: p50 {cuts[49]:.0f} ms, p99 {cuts[98]:.0f} ms, "
                    f"max {max(latencies):.0f} ms",
                    flush=True,
                )
            # Every delivery a receiver got passed the door: its access-log record carries the
            # webhook-id as its request id.
            checker = await asyncpg.connect(asyncpg_dsn(url))
            try:
                on_record = await checker.fetchval(
                    "SELECT count(DISTINCT request_id) FROM access_log "
                    "WHERE action = 'event.deliver' AND request_id = ANY($1::text[])",
                    sorted(receivers.webhook_ids),
                )
            finally:
                await checker.close()
            print(
                f"access log: {on_record} of {len(receivers.webhook_ids)} received deliveries on record",
                flush=True,
            )
            per = max(received, 1)
            print(
                "CPU per delivery: "
                + ", ".join(f"{part} {1e6 * used / per:.0f} us" for part, used in cpu_used.items())
                + f" (total {1e6 * sum(cpu_used.values()) / per:.0f} us); "
                f"load {load_before:.1f} -> {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            return 0 if received == expected and on_record == len(receivers.webhook_ids) else 1
    finally:
        for worker in workers:
            stop(worker)
        stop(api)
        receivers.close()
        hanging.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--rate", type=float, default=100, help="events/s to publish; 0 for as fast as possible"
    )
    # Each publisher waits for its answer before the next publish, so the offered rate is at most
    # publishers / publish latency; 16 keep 200/s offered while a publish takes up to 80 ms.
    parser.add_argument("--publishers", type=int, default=16)
    # Each subscription delivers a child's events one after another, so with few children a
    # child's second event often waits for its first to be sent and recorded.
    parser.add_argument("--children", type=int, default=50, help="children the events are about")
    parser.add_argument("--workers", type=int, default=1, help="childlink worker processes")
    # Slots per worker: a delivery holds its slot for two group commits (its access-log record,
    # then its result), so a worker's throughput is about slots / that time.
    parser.add_argument("--worker-concurrency", type=int, default=64)
    parser.add_argument(
        "--hanging", type=int, default=0, help="more subscriptions whose receiver never answers"
    )
    parser.add_argument(
        "--drain", type=float, default=60, help="seconds to wait for the backlog after publishing"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=10,
        help="seconds of publishing before the measured run, followed by ANALYZE (0: none)",
    )
    # On uvloop, as the API and the worker run: this process's own receivers and publishers share
    # the machine with what it measures.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
