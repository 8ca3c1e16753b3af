"""The service through PgBouncer in transaction mode (Debian's ``pgbouncer`` package, which
``scripts/test`` installs): a real pgbouncer on a loopback port in front of the test database,
with fewer server connections than the app opens, so consecutive transactions of one client
land on different server connections. Token, registration, a custody read and its access-log
record, an event delivered by webhook and read from the feed all pass through it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from app.config import DatabasePooler, Settings
from app.db import asyncpg_dsn, direct_database_url, listen_dsn
from app.main import create_app
from tests.conftest import bearer, make_client
from tests.events.helpers import DROPOUT, PREFIX, eventually, publish, subscribe
from tests.events.receiver import Receiver
from tests.factories import CIVIL_SCOPES, guardianship_body, make_child, purpose


def _pgbouncer_binary() -> str | None:
    # Debian puts it in /usr/sbin, which an unprivileged user's PATH may leave out.
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


PGBOUNCER = _pgbouncer_binary()
SERVER_CONNECTIONS = 2
"""Server connections PgBouncer may open: fewer than the app's clients (engine pool, audit
writer, sealer, two lookups, the worker), so they must share them transaction by transaction."""

needs_pgbouncer = pytest.mark.skipif(
    PGBOUNCER is None,
    reason="the pgbouncer binary is not installed (apt-get install pgbouncer; scripts/test does it as root)",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_of(url: str) -> tuple[str, int, str, str, str]:
    """(host, port, database, user, password) of a libpq URL, a Unix socket folder as host."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    return host, port, parts.path.lstrip("/"), unquote(parts.username or ""), unquote(parts.password or "")


def _unprivileged_user(host: str) -> str | None:
    """Whom pgbouncer runs as when started as root, which it refuses to stay (it reads its files
    first): the owner of the server's socket folder (the embedded server's, which only its owner
    may enter), otherwise nobody."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
        if owner != "root":
            return owner
    return "nobody"


@contextlib.contextmanager
def pgbouncer(database_url: str, folder: Path) -> Iterator[str]:
    """Run pgbouncer in transaction mode in front of ``database_url``'s database; yields the
    same login's URL through it."""
    assert PGBOUNCER is not None
    host, port, database, user, password = _server_of(database_url)
    listen = _free_port()
    # The server checks the password (or trusts loopback); pgbouncer forwards the login it was
    # given, so it need not check it again.
    (folder / "users.txt").write_text(f'"{user}" "{password}"\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{database} = host={host} port={port} dbname={database}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {listen}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {SERVER_CONNECTIONS}\n"
        "reserve_pool_size = 0\n"
        "max_client_conn = 200\n"
    )
    if (run_as := _unprivileged_user(host)) is not None:
        config.write_text(config.read_text() + f"user = {run_as}\n")
    log = (folder / "pgbouncer.log").open("wb")
    process = subprocess.Popen([PGBOUNCER, str(config)], stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        login = urlsplit(database_url).netloc.rpartition("@")[0]
        url = urlunsplit(
            (
                "postgresql",
                f"{login}@127.0.0.1:{listen}" if login else f"127.0.0.1:{listen}",
                "/" + database,
                "",
                "",
            )
        )
        asyncio.run(_until_it_answers(url, process, folder / "pgbouncer.log"))
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def _until_it_answers(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError("pgbouncer exited: " + _tail(log))
        try:
            conn = await asyncpg.connect(asyncpg_dsn(url), statement_cache_size=0, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        await conn.close()
        return
    raise RuntimeError("pgbouncer did not answer: " + _tail(log))


@pytest.fixture
def pooled_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with pgbouncer(database_url, tmp_path) as url:
        yield url


@pytest.fixture
def pooled_settings(settings: Settings, pooled_url: str, database_url: str) -> Settings:
    """The app through the pooler, its notifier straight to PostgreSQL, an in-process worker
    delivering to loopback."""
    return settings.model_copy(
        update={
            "database_url": pooled_url,
            "database_pooler": DatabasePooler.transaction,
            "database_direct_url": database_url,
            "db_pool_size": 4,
            "run_worker": True,
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_timeout_seconds": 2.0,
            "webhook_lease_seconds": 3.0,
            "worker_poll_seconds": 0.05,
        }
    )


@pytest.fixture
async def pooled(app: Any, pooled_settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    # After the session's app, which made the signing key this one loads.
    application = create_app(pooled_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


async def mint(
    application: Any, http: httpx.AsyncClient, *, agency: str, scopes: list[str], region: str
) -> str:
    client_id, secret = await make_client(application.state.db, agency=agency, scopes=scopes, region=region)
    response = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@needs_pgbouncer
class TestThroughPgBouncerInTransactionMode:
    async def test_a_day_of_work_passes_through_the_pooler(
        self, pooled: tuple[Any, httpx.AsyncClient], database_url: str
    ) -> None:
        application, http = pooled
        region = "510107"
        civil = await mint(
            application,
            http,
            agency="civil-affairs",
            scopes=[*CIVIL_SCOPES, "subscriptions:manage", "events:read"],
            region=region,
        )
        police = await mint(application, http, agency="police", scopes=["custody:read"], region="5101")
        oversight = await mint(application, http, agency="platform", scopes=["audit:read"], region="")
        education = await mint(
            application, http, agency="education", scopes=["events:publish", "events:read"], region=region
        )

        # Registered and given a guardian, as civil affairs does; several at once, so the
        # pooler interleaves their transactions on its two server connections.
        children = await asyncio.gather(
            *(make_child(http, civil, region=region + "005003") for _ in range(4))
        )
        child = children[0]
        recorded = await http.post(
            f"/v1/children/{child['id']}/guardianship", json=guardianship_body(), headers=bearer(civil)
        )
        assert recorded.status_code == 201, recorded.text

        # The police custody check, on the access log before it is served.
        custody = await http.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()}
        )
        assert custody.status_code == 200, custody.text
        assert custody.json()["custody_status"] == "kinship_care"
        log = await http.get(
            "/v1/audit/access-log", params={"child_id": child["id"]}, headers=bearer(oversight)
        )
        assert log.status_code == 200, log.text
        reads = [r for r in log.json()["items"] if r["agency"] == "police"]
        assert [(r["action"], r["decision"], r["request_id"]) for r in reads] == [
            ("custody.read", "allow", custody.headers["x-request-id"])
        ]

        # An event to a webhook (the in-process worker) and to the feed, whose long poll is
        # woken by the notifier listening past the pooler.
        receiver = await Receiver().start()
        try:
            await subscribe(http, civil, receiver.url, [PREFIX + "education.*"])
            pull = await http.post(
                "/v1/subscriptions",
                json={"mode": "pull", "types": [DROPOUT], "purpose_of_use": "child_protection"},
                headers=bearer(civil),
            )
            assert pull.status_code == 201, pull.text
            head = (await http.get("/v1/events/feed", params={"after": 0}, headers=bearer(civil))).json()
            waiting = asyncio.create_task(
                http.get(
                    "/v1/events/feed", params={"after": head["next_after"], "wait": 20}, headers=bearer(civil)
                )
            )
            accepted = (await publish(http, education, DROPOUT, child["id"])).json()

            fed = await waiting
            assert fed.status_code == 200, fed.text
            assert [(e["id"], e["subject"]) for e in fed.json()["events"]] == [(accepted["id"], child["id"])]
            await receiver.wait_for(lambda r: len(r.delivered()) == 1, within=20)
            assert receiver.requests[0].json["id"] == accepted["id"]
        finally:
            await receiver.stop()
        assert application.state.event_notifier.connected

        async def delivered_on_record() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(asyncpg_dsn(database_url))
            try:
                return list(
                    await conn.fetch(
                        "SELECT d.status, a.outcome FROM event_delivery AS d JOIN delivery_attempt AS a "
                        "ON a.delivery_id = d.id WHERE d.status = 'delivered'"
                    )
                )
            finally:
                await conn.close()

        assert [tuple(r) for r in await eventually(delivered_on_record)] == [("delivered", "delivered")]


class TestWhatGoesDirect:
    def test_behind_a_transaction_pooler_the_notifier_listens_only_on_the_direct_url(self) -> None:
        pooled = Settings(
            DATABASE_URL="postgresql://app@pooler:6432/childlink", database_pooler=DatabasePooler.transaction
        )
        assert listen_dsn(pooled, pooled.database_url or "") is None
        direct = pooled.model_copy(update={"database_direct_url": "postgresql://app@primary:5432/childlink"})
        assert listen_dsn(direct, direct.database_url or "") == "postgresql://app@primary:5432/childlink"
        plain = Settings(DATABASE_URL="postgresql://app@primary:5432/childlink")
        assert listen_dsn(plain, plain.database_url or "") == "postgresql://app@primary:5432/childlink"

    def test_an_operator_command_behind_a_transaction_pooler_asks_for_the_direct_url(self) -> None:
        pooled = Settings(
            DATABASE_URL="postgresql://app@pooler:6432/childlink", database_pooler=DatabasePooler.transaction
        )
        with pytest.raises(RuntimeError, match="CHILDLINK_DATABASE_DIRECT_URL"):
            direct_database_url(pooled)

    def test_a_transaction_pooler_without_a_database_url_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("DATABASE_URL", raising=False)  # a shell that exports one would supply it
        with pytest.raises(ValueError, match="needs DATABASE_URL"):
            Settings(database_pooler=DatabasePooler.transaction)
