"""Shared plumbing for the hand-run benchmarks: the bench database, the CLI, servers and wrk.

Nothing here is imported by the app or the test suite. Every process started here is started in
its own session and stopped by its own process-group id, so a crashed run leaves nothing behind
(see :class:`Server`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"  # git-ignored
WRK_DIR = BENCH_DIR / "wrk"
VENV_BIN = Path(sys.executable).parent
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "childlink_bench"


def bench_database_url() -> str:
    """``BENCH_DATABASE_URL`` if set (used as is), else ``childlink_bench`` on the server named by
    ``DATABASE_URL`` (or the local default)."""
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        return explicit
    server = os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, "/" + BENCH_DB, parts.query, parts.fragment))


def _maintenance_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, parts.fragment))


def plain_dsn(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql", *parts[1:]))


async def ensure_database(url: str) -> bool:
    """Create the bench database if missing; returns True when it was created. Never drops."""
    name = urlsplit(url).path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise SystemExit(f"refusing odd database name {name!r}")
    conn = await asyncpg.connect(_maintenance_url(url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
        return not exists
    finally:
        await conn.close()


# What the registry's statistics trigger (migration 0010) keeps row by row, derived in one statement
# each from the child table: a set-based seed runs with triggers off, then these. Children that
# already have a history row keep it; the tally counts the table as it now stands.
STATISTICS_REBUILD_SQL = (
    """
    INSERT INTO child_history (child_id, valid_from, region_code, sex, birth_date, ethnicity, categories,
                               care_arrangement, status, owner_agency, exit_reason, exit_date)
    SELECT c.id, c.created_at, c.region_code, c.sex, c.birth_date, c.ethnicity, c.categories,
           c.care_arrangement, c.status, c.owner_agency, c.exit_reason, c.exit_date
    FROM child AS c
    WHERE NOT EXISTS (SELECT 1 FROM child_history AS h WHERE h.child_id = c.id AND h.valid_to IS NULL)
    """,
    "TRUNCATE child_tally",
    """
    INSERT INTO child_tally (level, region_code, category, sex, status, owner_agency, n)
    SELECT lv, left(region_code, lv), c, sex, status, owner_agency, count(*) FROM child,
           unnest(ARRAY[6, 9, 12]) AS lv, unnest(array['*']::varchar[] || categories::varchar[]) AS c
    GROUP BY lv, left(region_code, lv), c, sex, status, owner_agency
    """,
)


async def seed_without_triggers(conn: Any, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Run set-based seed statements in one transaction with every trigger off
    (``session_replication_role = replica``: the per-row statistics trigger would make a million-row
    seed take many minutes), then rebuild the statistics tables from the child table."""
    async with conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql, args in statements:
            await conn.execute(sql, *args)
        await conn.execute("SET LOCAL session_replication_role = origin")
        for sql in STATISTICS_REBUILD_SQL:
            await conn.execute(sql)


def env_for(database_url: str, key_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        CHILDLINK_KEY_DIR=str(key_dir),
        CHILDLINK_LOG_LEVEL="WARNING",
        CHILDLINK_TOKEN_LIFETIME_SECONDS="900",
    )
    return env


def childlink(env: dict[str, str], *args: str) -> str:
    """Run the ``childlink`` CLI from the venv; returns stdout, fails loudly."""
    result = subprocess.run(
        [str(VENV_BIN / "childlink"), *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"childlink {' '.join(args[:2])} failed:\n{result.stderr[-2000:]}")
    return result.stdout


async def ensure_agencies(database_url: str, env: dict[str, str], codes: dict[str, str]) -> None:
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        present = {r["code"] for r in await conn.fetch("SELECT code FROM agency")}
    finally:
        await conn.close()
    for code, name in codes.items():
        if code not in present:
            childlink(env, "agency", "add", code, "--name", name)


def add_client(env: dict[str, str], *, agency: str, scopes: str, region: str) -> tuple[str, str]:
    out = childlink(
        env, "client", "add", "--agency", agency, "--scopes", scopes, "--region", region, "--name", "bench"
    )
    created = json.loads(out)
    return created["client_id"], created["client_secret"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server process in its own session (process group), stopped by that group's id."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the supervisor)."""
        try:
            out = subprocess.run(
                ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
            ).stdout
        except FileNotFoundError:
            return []
        pids = [int(p) for p in out.split()]
        # uvicorn's multiprocess supervisor may also spawn a resource tracker; keep python workers.
        workers = []
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"multiprocessing.resource_tracker" not in cmdline:
                workers.append(pid)
        return workers

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
            except ProcessLookupError:
                pass


def start_server(name: str, argv: list[str], env: dict[str, str], port: int, ready_path: str) -> Server:
    RESULTS_DIR.mkdir(exist_ok=True)
    log = RESULTS_DIR / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, process, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited early; see {log}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(server.base + ready_path, timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"{name} did not become ready; see {log}")


def wait_workers(server: Server, count: int, timeout: float = 30) -> None:
    """Wait until every worker answers (the first ready one does not mean all are up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(server.worker_pids()) < count:
        time.sleep(0.2)
    time.sleep(1.0)


def start_childlink(env: dict[str, str], workers: int, name: str = "childlink") -> Server:
    port = free_port()
    argv = [
        str(VENV_BIN / "childlink"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    server = start_server(name, argv, env, port, "/healthz")
    wait_workers(server, workers)
    return server


def start_bare_fastapi(workers: int) -> Server:
    port = free_port()
    argv = [
        str(VENV_BIN / "uvicorn"),
        "--app-dir",
        str(BENCH_DIR),
        "bare_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = start_server("bare-fastapi", argv, dict(os.environ), port, "/")
    wait_workers(server, workers)
    return server


def http_json(method: str, url: str, *, headers: dict[str, str], body: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (loopback)
        return json.loads(response.read())


def fetch_token(base: str, client_id: str, secret: str) -> str:
    import base64

    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    document = http_json(
        "POST",
        base + "/oauth/token",
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        body=b"grant_type=client_credentials",
    )
    return str(document["access_token"])


@dataclass
class WrkResult:
    label: str
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    def line(self) -> str:
        return (
            f"{self.label:<28} {self.rps:>9.0f} req/s  p50 {self.p50_ms:6.2f} ms  p90 {self.p90_ms:6.2f} ms"
            f"  p99 {self.p99_ms:6.2f} ms  max {self.max_ms:7.2f} ms  "
            f"({self.requests} requests, {self.non_2xx} non-2xx, {self.socket_errors} socket errors)"
        )


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk not found: apt-get update && apt-get install -y wrk")
    return path


def run_wrk(
    label: str,
    url: str,
    script: str,
    script_args: list[str],
    *,
    connections: int,
    seconds: int,
    threads: int = 2,
) -> WrkResult:
    """Run wrk with one of the scripts in ``bench/wrk/`` (each reports through report.lua's
    ``done`` hook a ``BENCH_JSON`` line with counts and latency percentiles in microseconds)."""
    argv = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_DIR / script),
        url,
        "--",
        *script_args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
    match = re.search(r"^BENCH_JSON (.*)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    data = json.loads(match.group(1))
    return WrkResult(
        label=label,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        non_2xx=data["status_errors"],
        socket_errors=data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )


_HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds consumed so far by each live process."""
    used = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        used[pid] = (int(fields[11]) + int(fields[12])) / _HZ
    return used


async def backend_pids(url: str, application_prefix: str = "childlink") -> list[int]:
    """The PostgreSQL backends serving the app (pool, audit writer, sealer) on this database."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE $1",
            application_prefix + "%",
        )
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


class CpuMeter:
    """CPU seconds spent by the server's workers and by its PostgreSQL backends over a window,
    so a run on a busy machine still tells what one request costs (CPU per request is far less
    sensitive to other load than throughput is)."""

    def __init__(self, server: Server, url: str) -> None:
        self.server = server
        self.url = url

    def __enter__(self) -> CpuMeter:
        self.workers = self.server.worker_pids()
        self.backends = asyncio.run(backend_pids(self.url))
        self.load_before = os.getloadavg()[0]
        self._w0 = cpu_seconds(self.workers)
        self._b0 = cpu_seconds(self.backends)
        self._t0 = _machine_busy()
        self._c0 = _children_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        w1 = cpu_seconds(self.workers)
        backends = asyncio.run(backend_pids(self.url))
        b1 = cpu_seconds(backends)
        t1 = _machine_busy()
        self.wrk_cpu = _children_cpu() - self._c0  # wrk is the only child waited for meanwhile
        self.worker_cpu = sum(v - self._w0.get(p, 0.0) for p, v in w1.items())
        self.postgres_cpu = sum(v - self._b0.get(p, 0.0) for p, v in b1.items())
        self.machine_busy = t1[0] - self._t0[0]
        self.machine_total = t1[1] - self._t0[1]
        self.load_after = os.getloadavg()[0]

    def summary(self, requests: int) -> dict[str, float]:
        n = max(requests, 1)
        total = max(self.machine_total, 1e-9)
        ours = self.worker_cpu + self.postgres_cpu + self.wrk_cpu
        return {
            "worker_cpu_us_per_request": round(1e6 * self.worker_cpu / n),
            "postgres_cpu_us_per_request": round(1e6 * self.postgres_cpu / n),
            "wrk_cpu_us_per_request": round(1e6 * self.wrk_cpu / n),
            "machine_cpu_busy_pct": round(100 * self.machine_busy / total),
            # the kernel's own work (softirq, scheduling) and every other job on the machine
            "other_cpu_pct": round(100 * (self.machine_busy - ours) / total),
            # what the measured CPU per request would allow if the server, PostgreSQL and wrk had
            # every core to themselves: a rough ceiling, not a measurement
            "cpu_bound_estimate_rps": round((os.cpu_count() or 1) * n / ours) if ours else 0,
            "loadavg_before": self.load_before,
            "loadavg_after": self.load_after,
        }


def cpu_line(entry: dict[str, Any]) -> str:
    return (
        f"{'':<28} CPU/request: server {entry['worker_cpu_us_per_request']} us, PostgreSQL "
        f"{entry['postgres_cpu_us_per_request']} us, wrk {entry['wrk_cpu_us_per_request']} us | machine "
        f"{entry['machine_cpu_busy_pct']}% busy, {entry['other_cpu_pct']}% of it kernel + other jobs, load "
        f"{entry['loadavg_before']:.1f}->{entry['loadavg_after']:.1f} | alone on the cores: "
        f"~{entry['cpu_bound_estimate_rps']} req/s"
    )


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])
    idle = fields[3] + fields[4]
    return (total - idle) / _HZ, total / _HZ


def machine_conditions() -> dict[str, Any]:
    """What the numbers were measured on: cores, load, versions."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        info["cpu_model"] = model
    except (OSError, StopIteration):
        pass
    info["python"] = sys.version.split()[0]
    try:
        info["wrk"] = subprocess.run(
            [require_wrk(), "-v"], capture_output=True, text=True, check=False
        ).stdout.split("\n")[0]
    except SystemExit:
        pass
    return info


async def server_version(url: str) -> str:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def run(coro: Any) -> Any:
    return asyncio.run(coro)
