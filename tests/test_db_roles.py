"""Least privilege in the database: the service's role cannot get round the access log's
append-only rule, the service refuses to run in production as one that could, and
``childlink db roles`` + ``childlink migrate`` set the two roles up as an operator would."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.audit import AuditWriter
from app.config import Environment, Settings
from app.db import asyncpg_dsn
from app.db_roles import enforce_least_privilege, runtime_role_problems
from app.main import create_app
from tests.audit.conftest import write_sealed
from tests.conftest import TEST_APP_ROLE, TEST_DB_NAME, TokenFactory, _with_database, _with_login, bearer
from tests.factories import CIVIL_SCOPES, guardianship_body, make_child, purpose

CHILDLINK = str(Path(sys.executable).parent / "childlink")

TAMPERING = [
    "ALTER TABLE access_log DISABLE TRIGGER ALL",
    "ALTER TABLE access_log_chain DISABLE TRIGGER ALL",
    "TRUNCATE access_log CASCADE",
    "TRUNCATE access_log_chain",
    "UPDATE access_log SET agency = 'education'",
    "UPDATE access_log_chain SET chain_hash = 'x'",
    "DELETE FROM access_log",
    "DELETE FROM access_log_chain",
    "DROP TABLE access_log CASCADE",
    "DROP TABLE access_log_chain",
    "ALTER TABLE access_log DROP COLUMN row_hash",
    "DROP TRIGGER access_log_append_only ON access_log",
    "SET session_replication_role = replica",
    "LOCK TABLE access_log IN ACCESS EXCLUSIVE MODE",
    "CREATE TABLE shadow_log (id bigint)",
]


@pytest.fixture
async def service_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the service's role, the one the app runs as."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def owner_conn(owner_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(owner_database_url))
    try:
        yield connection
    finally:
        await connection.close()


def restricted(database_url: str, owner_database_url: str) -> None:
    if database_url == owner_database_url:
        pytest.skip("the test server gives no CREATEROLE: the suite runs as its one role")


class TestTheServiceRoleCannotTamperWithTheLog:
    @pytest.mark.parametrize("statement", TAMPERING)
    async def test_tampering_as_the_service_is_a_permission_error_and_changes_nothing(
        self,
        database_url: str,
        owner_database_url: str,
        service_conn: asyncpg.Connection,
        owner_conn: asyncpg.Connection,
        statement: str,
    ) -> None:
        restricted(database_url, owner_database_url)
        writer = AuditWriter(asyncpg_dsn(database_url))
        try:
            await write_sealed(writer, service_conn, 3)
        finally:
            await writer.aclose()
        async with service_conn.transaction():  # LOCK needs one; the others do not mind
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"permission denied|must be owner"):
                await service_conn.execute(statement)
        assert await owner_conn.fetchval("SELECT count(*) FROM access_log WHERE agency = 'police'") == 3
        assert await owner_conn.fetchval("SELECT count(*) FROM access_log_chain") == 3
        triggers = await owner_conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'access_log'::regclass AND tgenabled = 'O'"
        )
        assert triggers == 2

    async def test_the_service_role_is_not_a_superuser_nor_the_logs_owner(
        self, database_url: str, owner_database_url: str, service_conn: asyncpg.Connection
    ) -> None:
        restricted(database_url, owner_database_url)
        assert await runtime_role_problems(service_conn) == []
        assert await service_conn.fetchval("SELECT current_user") == TEST_APP_ROLE


class TestTheServiceRunsAsTheRestrictedRole:
    async def test_a_custody_check_works_end_to_end_and_is_logged(
        self,
        app: Any,
        client: httpx.AsyncClient,
        token: TokenFactory,
        database_url: str,
        owner_database_url: str,
        owner_conn: asyncpg.Connection,
    ) -> None:
        restricted(database_url, owner_database_url)
        async with app.state.db.engine.connect() as connection:
            role = (await connection.exec_driver_sql("SELECT current_user")).scalar_one()
        assert role == TEST_APP_ROLE
        civil = await token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="510107")
        child = await make_child(client, civil)
        recorded = await client.post(
            f"/v1/children/{child['id']}/guardianship", json=guardianship_body(), headers=bearer(civil)
        )
        assert recorded.status_code == 201, recorded.text
        police = await token(agency="police", scopes=["custody:read"], region="5101")
        response = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()}
        )
        assert response.status_code == 200, response.text
        assert response.json()["custody_status"] == "kinship_care"
        logged = await owner_conn.fetch(
            "SELECT agency, decision FROM access_log WHERE action = 'custody.read'"
        )
        assert [(r["agency"], r["decision"]) for r in logged] == [("police", "allow")]


class TestStartupRefusesAPowerfulRole:
    async def test_production_refuses_to_start_as_a_superuser(
        self, owner_database_url: str, tmp_path: Path
    ) -> None:
        settings = Settings(
            env=Environment.production,
            DATABASE_URL=owner_database_url,
            key_dir=tmp_path,
            issuer="https://childlink.example.gov.cn",
        )
        application = create_app(settings)
        with pytest.raises(RuntimeError, match=r"refusing to start: the service connects as .*, a superuser"):
            async with application.router.lifespan_context(application):
                pass

    async def test_development_warns_and_carries_on(
        self, owner_database_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="app.db_roles"):
            await enforce_least_privilege(asyncpg_dsn(owner_database_url), production=False)
        assert any("not least-privilege" in r.getMessage() for r in caplog.records)

    async def test_the_restricted_role_starts_in_production(
        self, database_url: str, owner_database_url: str
    ) -> None:
        restricted(database_url, owner_database_url)
        await enforce_least_privilege(asyncpg_dsn(database_url), production=True)


class TestRolesCommand:
    """``childlink db roles`` then ``childlink migrate`` on a fresh database, as in deploy/."""

    @pytest.fixture
    async def fresh(self, owner_database_url: str) -> AsyncIterator[dict[str, str]]:
        name = f"{TEST_DB_NAME}_roles"
        owner_role, app_role = f"{TEST_DB_NAME}_owner", f"{TEST_DB_NAME}_svc"
        admin = await asyncpg.connect(asyncpg_dsn(owner_database_url))
        try:
            if not await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
                pytest.skip("needs a superuser on the test server")
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            admin_url = _with_database(owner_database_url, name)
            yield {
                "CHILDLINK_DB_ADMIN_URL": admin_url,
                "CHILDLINK_MIGRATION_DATABASE_URL": _with_login(
                    admin_url, owner_role, secrets.token_urlsafe(12)
                ),
                "DATABASE_URL": _with_login(admin_url, app_role, secrets.token_urlsafe(12)),
            }
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (app_role, owner_role):
                await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
            await admin.close()

    async def test_roles_then_migrate_leave_the_service_unable_to_change_the_log(
        self, fresh: dict[str, str]
    ) -> None:
        env = {**os.environ, **fresh, "CHILDLINK_LOG_LEVEL": "WARNING"}

        def run(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(  # noqa: S603  (our own console script, fixed arguments)
                [CHILDLINK, *args],
                env={**env, **overrides},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        for args in (("db", "roles"), ("migrate",), ("db", "roles")):  # roles again: idempotent
            done = await asyncio.to_thread(run, *args)
            assert done.returncode == 0, done.stderr
        # As serve's own migrate step runs it, with the service's URL only: nothing to do, no error.
        as_service = await asyncio.to_thread(run, "migrate", CHILDLINK_MIGRATION_DATABASE_URL="")
        assert as_service.returncode == 0, as_service.stderr
        owner = await asyncpg.connect(asyncpg_dsn(fresh["CHILDLINK_MIGRATION_DATABASE_URL"]))
        service = await asyncpg.connect(asyncpg_dsn(fresh["DATABASE_URL"]))
        try:
            assert await owner.fetchval(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'access_log'"
            ) == (await owner.fetchval("SELECT current_user"))
            assert await runtime_role_problems(service) == []
            await service.execute(
                "INSERT INTO agency (code, name, kind) VALUES ('police', 'Police', 'police')"
            )
            assert await service.fetchval("SELECT count(*) FROM agency") == 1
            for statement in ("TRUNCATE access_log", "ALTER TABLE access_log DISABLE TRIGGER ALL"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await service.execute(statement)
        finally:
            await owner.close()
            await service.close()
