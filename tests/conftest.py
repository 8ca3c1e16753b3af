"""Test fixtures: a real PostgreSQL migrated by Alembic once per run, the real app driven over
ASGI, and real tokens minted through the token endpoint.

The database is ``TEST_DATABASE_URL`` or ``DATABASE_URL`` when set, otherwise an embedded server
in ``.childlink/test-pgdata``. Each run creates its own database on that server
(``childlink_pytest_<pid>``) and drops it at the end, so it never touches another one's data and
two runs on the same server (two checkouts, two terminals) do not drop each other's database.
Each test starts from empty tables.

Migrations run as the server's superuser, the schema owner here; the app and every test connect
as a restricted role made for the run (``childlink_pytest_<pid>_app``, granted what production's
``childlink_app`` is granted), so the suite runs the service as production should. A test that
needs more (tampering with the access log, resetting tables) asks for ``owner_database_url``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Environment, Settings
from app.db import Database, asyncpg_dsn
from app.main import create_app
from app.models.agency import Agency, AgencyKind
from app.models.client import ClientCreate
from app.services import client as client_service

ROOT = Path(__file__).resolve().parent.parent
TEST_DB_PREFIX = "childlink_pytest_"
TEST_DB_NAME = f"{TEST_DB_PREFIX}{os.getpid()}"
TEST_APP_ROLE = f"{TEST_DB_NAME}_app"
"""Databases and roles a run makes are named ``childlink_pytest_<pid>`` or ``..._<pid>_<what>``."""


def _server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url
    from app.db import start_embedded_postgres

    return start_embedded_postgres(
        Settings(data_dir=ROOT / ".childlink", pgdata=ROOT / ".childlink" / "test-pgdata")
    )


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _with_login(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def _test_database() -> Iterator[tuple[str, str]]:
    """(owner URL, restricted URL) of this run's own database, migrated."""
    server = _server_url()
    password = secrets.token_urlsafe(16)

    async def recreate() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(server))
        try:
            await _drop_abandoned_databases(conn)
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB_NAME}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{TEST_DB_NAME}"')
            return _with_database(server, TEST_DB_NAME)
        except asyncpg.InsufficientPrivilegeError:
            return server  # no CREATEDB: use the given database as it is
        finally:
            await conn.close()

    async def create_role() -> bool:
        conn = await asyncpg.connect(asyncpg_dsn(server))
        try:
            await conn.execute(f'DROP ROLE IF EXISTS "{TEST_APP_ROLE}"')
            await conn.execute(
                f'CREATE ROLE "{TEST_APP_ROLE}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
                f"PASSWORD '{password}'"
            )
            return True
        except asyncpg.InsufficientPrivilegeError:
            return False  # no CREATEROLE: the app runs as the given role
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(server))
        try:
            if owner != server:
                await conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB_NAME}" WITH (FORCE)')
            if restricted != owner:
                await conn.execute(f'DROP ROLE IF EXISTS "{TEST_APP_ROLE}"')
        finally:
            await conn.close()

    owner = asyncio.run(recreate())
    restricted = _with_login(owner, TEST_APP_ROLE, password) if asyncio.run(create_role()) else owner
    from app.cli import migrate

    # Migrating as the owner grants the service's role (DATABASE_URL's) its privileges.
    migrate(Settings(DATABASE_URL=restricted), owner)
    yield owner, restricted
    if owner != server or restricted != owner:
        asyncio.run(drop())


@pytest.fixture(scope="session")
def owner_database_url(_test_database: tuple[str, str]) -> str:
    """The schema owner's (the server's superuser's) URL: for tests that must get round the
    grants, never for the app."""
    return _test_database[0]


@pytest.fixture(scope="session")
def database_url(_test_database: tuple[str, str]) -> str:
    """The restricted role's URL, the one the app runs with."""
    return _test_database[1]


async def _drop_abandoned_databases(conn: asyncpg.Connection) -> None:
    """Drop test databases, and then their roles, left by runs that were killed. One still in
    use by a live run refuses a plain DROP (it has connections), so only the abandoned ones go."""
    pattern = TEST_DB_PREFIX.replace("_", r"\_") + "%"
    names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", pattern)
    for row in names:
        suffix = row["datname"].removeprefix(TEST_DB_PREFIX).partition("_")[0]
        if suffix.isdigit() and suffix != str(os.getpid()) and not _pid_alive(int(suffix)):
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}"')
            except asyncpg.PostgresError:
                pass
    roles = await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", pattern)
    for row in roles:
        suffix = row["rolname"].removeprefix(TEST_DB_PREFIX).partition("_")[0]
        if suffix.isdigit() and suffix != str(os.getpid()) and not _pid_alive(int(suffix)):
            try:  # refused while a database of a live run still grants it something
                await conn.execute(f'DROP ROLE IF EXISTS "{row["rolname"]}"')
            except asyncpg.PostgresError:
                pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def settings(database_url: str, key_dir: Path) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        key_dir=key_dir,
        log_level="WARNING",
        client_status_ttl_seconds=1.0,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def db(app: Any) -> Database:
    database: Database = app.state.db
    return database


@pytest.fixture(autouse=True)
async def _clean_tables(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    uses_database = {"database_url", "owner_database_url"} & set(request.fixturenames)
    url = request.getfixturevalue("owner_database_url") if uses_database else None
    yield
    if url is None:
        return
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(f'"{r["tablename"]}"' for r in tables)
            # Append-only tables refuse TRUNCATE through a trigger; tests may reset them.
            await conn.execute("SET session_replication_role = replica")
            # The app's background tasks (the audit sealer, the delivery worker) may hold locks on
            # the same tables; PostgreSQL resolves a deadlock by failing one side, so try again.
            for attempt in range(5):
                try:
                    await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
                    break
                except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError):
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))
    finally:
        await conn.close()
    if "app" in request.fixturenames:
        application = request.getfixturevalue("app")
        application.state.client_directory._cache.clear()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def session(db: Database) -> AsyncIterator[AsyncSession]:
    async with db.sessionmaker() as s:
        yield s
        await s.commit()


async def make_agency(
    db: Database, *, code: str, kind: AgencyKind | None = None, name: str | None = None
) -> Agency:
    async with db.sessionmaker() as s:
        agency = await s.get(Agency, code)
        if agency is None:
            agency = Agency(code=code, name=name or f"Agency {code}", kind=kind or AgencyKind(code))
            s.add(agency)
            await s.commit()
        return agency


async def make_client(
    db: Database,
    *,
    agency: str = "police",
    scopes: list[str] | None = None,
    region: str = "",
    kind: AgencyKind | None = None,
) -> tuple[str, str]:
    """Create an agency (if needed) and a client; returns (client_id, client_secret)."""
    await make_agency(db, code=agency, kind=kind)
    async with db.sessionmaker() as s:
        created = await client_service.create(
            s,
            data=ClientCreate(
                agency=agency, name=f"test {agency}", scopes=scopes or ["children:read"], region=region
            ),
        )
        await s.commit()
    return created.client_id, created.client_secret


TokenFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def token(db: Database, client: httpx.AsyncClient) -> TokenFactory:
    """``await token(agency="police", scopes=[...], region="5101")``: a real token, minted by
    ``POST /oauth/token`` for a freshly created client."""

    async def mint(
        *,
        agency: str = "police",
        scopes: list[str] | None = None,
        region: str = "",
        kind: AgencyKind | None = None,
    ) -> str:
        client_id, secret = await make_client(db, agency=agency, scopes=scopes, region=region, kind=kind)
        response = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    return mint


@pytest.fixture
async def admin_token(token: TokenFactory) -> str:
    return await token(agency="platform", scopes=["admin", "audit:read"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def random_code(prefix: str = "agency") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def production_settings(settings: Settings) -> Settings:
    """The test settings as production runs them (https issuer, a metrics token)."""
    return settings.model_copy(
        update={
            "env": Environment.production,
            "issuer": "https://childlink.example",
            "metrics_token": SecretStr("metrics-" + "m" * 40),
            "db_pool_size": 5,  # a second app on the test database: few connections
        }
    )


@pytest.fixture(scope="session")
async def production_app(app: Any, production_settings: Settings) -> AsyncIterator[Any]:
    # After the development app, which creates the signing key production only loads.
    application = create_app(production_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def production_client(production_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=production_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


@pytest.fixture
def production_token(db: Database, production_client: httpx.AsyncClient) -> TokenFactory:
    """Like ``token``, minted by the production app (its issuer differs)."""

    async def mint(*, agency: str = "police", scopes: list[str] | None = None, region: str = "") -> str:
        client_id, secret = await make_client(db, agency=agency, scopes=scopes, region=region)
        response = await production_client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    return mint


class ServedBy:
    """The application, noting which handler answered each request: the router leaves its
    ``APIRoute`` in the scope, the direct paths (``app.direct``: the custody check,
    publishing) do not."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.handlers: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.handlers.append("route" if isinstance(scope.get("route"), APIRoute) else "direct")


@pytest.fixture
async def served(app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, ServedBy]]:
    recorder = ServedBy(app)
    transport = httpx.ASGITransport(app=recorder)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http, recorder
