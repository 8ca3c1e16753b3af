"""The ``childlink`` command, run as an operator runs it: a subprocess on the service's database
and key folder, while the service itself is serving."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.auth.keys import KID_PATTERN
from app.cli import OPENAPI_PATH, render_openapi
from app.db import Database
from tests.conftest import bearer, make_agency

CHILDLINK = str(Path(sys.executable).parent / "childlink")

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def childlink(database_url: str, tmp_path: Path) -> Run:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CHILDLINK_KEY_DIR": str(tmp_path / "keys"),
        "CHILDLINK_LOG_LEVEL": "WARNING",
    }

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(  # noqa: S603  (our own console script, fixed arguments)
            [CHILDLINK, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if ok:
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode != 0, done.stdout
            assert "Traceback" not in done.stderr, done.stderr
        return done

    return run


async def run_async(childlink: Run, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the command without blocking the event loop the app under test shares."""
    return await asyncio.to_thread(childlink, *args, ok=ok)


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


class TestAgencyAdd:
    async def test_registers_an_agency_of_a_named_kind(self, childlink: Run, db: Database) -> None:
        done = await run_async(
            childlink, "agency", "add", "police-510107", "--name", "武侯区公安分局", "--kind", "police"
        )
        printed = json.loads(done.stdout)
        assert (printed["code"], printed["kind"], printed["name"]) == (
            "police-510107",
            "police",
            "武侯区公安分局",
        )
        assert await scalar(db, "SELECT name FROM agency WHERE code = 'police-510107'") == "武侯区公安分局"
        assert "Warning" not in done.stderr, done.stderr
        assert datetime.fromisoformat(printed["created_at"]).utcoffset() is not None

    async def test_a_code_that_is_a_kind_needs_no_kind(self, childlink: Run, db: Database) -> None:
        await run_async(childlink, "agency", "add", "health", "--name", "卫健委")
        assert await scalar(db, "SELECT kind FROM agency WHERE code = 'health'") == "health"

    async def test_a_duplicate_code_fails_cleanly_and_keeps_the_original(
        self, childlink: Run, db: Database
    ) -> None:
        await make_agency(db, code="education", name="教育局")
        done = await run_async(childlink, "agency", "add", "education", "--name", "Other", ok=False)
        assert "exists" in done.stderr
        assert await scalar(db, "SELECT name FROM agency WHERE code = 'education'") == "教育局"

    async def test_an_invalid_code_is_refused_before_anything_is_written(
        self, childlink: Run, db: Database
    ) -> None:
        done = await run_async(
            childlink, "agency", "add", "Bad Code!", "--name", "X", "--kind", "police", ok=False
        )
        assert "invalid agency" in done.stderr
        assert await scalar(db, "SELECT count(*) FROM agency") == 0


class TestClientAdd:
    async def test_prints_id_and_secret_once_and_the_secret_gets_a_token(
        self, childlink: Run, db: Database, client: httpx.AsyncClient
    ) -> None:
        await make_agency(db, code="police")
        done = await run_async(
            childlink,
            "client",
            "add",
            "--agency",
            "police",
            "--scopes",
            "children:read custody:read",
            "--region",
            "5101",
            "--name",
            "Wuhou duty desk",
        )
        created = json.loads(done.stdout)
        assert created["client_id"] and created["client_secret"].startswith("cs_")
        assert (created["scopes"], created["region"], created["status"]) == (
            ["children:read", "custody:read"],
            "5101",
            "active",
        )
        stored = await scalar(
            db, "SELECT secret_hash FROM api_client WHERE id = :id", id=created["client_id"]
        )
        assert created["client_secret"] not in stored

        issued = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(created["client_id"], created["client_secret"]),
        )
        assert issued.status_code == 200, issued.text
        me = await client.get("/v1/me", headers=bearer(issued.json()["access_token"]))
        assert (me.json()["agency"], me.json()["region"]) == ("police", "5101")

    async def test_unknown_agency_or_scope_fails_cleanly(self, childlink: Run, db: Database) -> None:
        done = await run_async(
            childlink, "client", "add", "--agency", "nobody", "--scopes", "children:read", ok=False
        )
        assert "agency" in done.stderr
        await make_agency(db, code="police")
        done = await run_async(childlink, "client", "add", "--agency", "police", "--scopes", "root", ok=False)
        assert "invalid client" in done.stderr
        assert await scalar(db, "SELECT count(*) FROM api_client") == 0


class TestClientRevoke:
    async def test_revoked_from_the_cli_the_running_service_refuses_the_client_within_seconds(
        self, childlink: Run, db: Database, client: httpx.AsyncClient, settings: Any
    ) -> None:
        await make_agency(db, code="police")
        created = json.loads(
            (
                await run_async(childlink, "client", "add", "--agency", "police", "--scopes", "children:read")
            ).stdout
        )
        credentials = (created["client_id"], created["client_secret"])
        issued = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=credentials
        )
        token = issued.json()["access_token"]
        assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200

        done = await run_async(childlink, "client", "revoke", created["client_id"])
        assert json.loads(done.stdout)["status"] == "revoked"

        refused = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=credentials
        )
        assert refused.status_code == 401
        # The service cached the client as active; it rechecks within its status TTL.
        await asyncio.sleep(settings.client_status_ttl_seconds + 0.1)
        assert (await client.get("/v1/me", headers=bearer(token))).status_code == 401

    async def test_revoking_twice_or_an_unknown_id_fails_cleanly(self, childlink: Run, db: Database) -> None:
        await make_agency(db, code="police")
        created = json.loads(
            (
                await run_async(childlink, "client", "add", "--agency", "police", "--scopes", "children:read")
            ).stdout
        )
        await run_async(childlink, "client", "revoke", created["client_id"])
        assert (
            "already revoked"
            in (await run_async(childlink, "client", "revoke", created["client_id"], ok=False)).stderr
        )
        assert "No client" in (await run_async(childlink, "client", "revoke", "cl_nobody", ok=False)).stderr


class TestKeysRotate:
    async def test_each_rotation_adds_a_private_key_file_that_sorts_after_the_last(
        self, childlink: Run, tmp_path: Path
    ) -> None:
        first = json.loads((await run_async(childlink, "keys", "rotate")).stdout)
        second = json.loads((await run_async(childlink, "keys", "rotate")).stdout)
        assert KID_PATTERN.match(first["kid"]) and KID_PATTERN.match(second["kid"])
        assert second["kid"] > first["kid"], "the newer key must be the one that signs"
        assert second["removed"] == []
        for kid in (first["kid"], second["kid"]):
            path = tmp_path / "keys" / f"{kid}.pem"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, "a signing key readable by others"


class TestOpenapi:
    async def test_check_passes_on_the_committed_spec(self, childlink: Run) -> None:
        done = await run_async(childlink, "openapi", "--check")
        assert "matches" in done.stdout

    async def test_check_fails_on_a_stale_spec_and_writing_fixes_it(
        self, childlink: Run, tmp_path: Path
    ) -> None:
        stale = tmp_path / "openapi.json"
        stale.write_text(OPENAPI_PATH.read_text(encoding="utf-8").replace("ChildLink API", "Old API"))
        done = await run_async(childlink, "openapi", "--check", "--output", str(stale), ok=False)
        assert "out of date" in done.stderr

        await run_async(childlink, "openapi", "--output", str(stale))
        assert stale.read_text(encoding="utf-8") == render_openapi()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestServe:
    async def test_demo_on_embedded_postgres_serves_a_token_for_me_and_stops_its_database_on_sigterm(
        self, tmp_path: Path
    ) -> None:
        """README command 1, minus the install: a fresh data folder, `serve --demo`, the printed
        credentials get a token over HTTP, and a SIGTERM (what `docker stop` and systemd send)
        leaves no PostgreSQL running."""
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CHILDLINK_KEY_DIR")}
        env.update({"CHILDLINK_DATA_DIR": str(tmp_path / "data"), "CHILDLINK_LOG_LEVEL": "WARNING"})
        banner = tmp_path / "stdout.txt"
        with banner.open("w") as out:
            serve = await asyncio.create_subprocess_exec(
                CHILDLINK,
                "serve",
                "--demo",
                "--port",
                str(port),
                env=env,
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                deadline = time.monotonic() + 60
                while True:
                    assert serve.returncode is None, "serve exited"
                    assert time.monotonic() < deadline, "not serving within a minute"
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)

                found = re.search(r"client_id=(demo-police)\s+client_secret=(\S+)", banner.read_text())
                assert found, banner.read_text()
                issued = await http.post(
                    "/oauth/token", data={"grant_type": "client_credentials"}, auth=found.groups()
                )
                assert issued.status_code == 200, issued.text
                me = await http.get("/v1/me", headers=bearer(issued.json()["access_token"]))
                assert me.json()["agency"] == "police"
        finally:
            serve.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(serve.wait(), 30)
        postmaster = tmp_path / "data" / "pgdata" / "postmaster.pid"
        left_running = postmaster.exists()
        if left_running:  # do not leak the server into the rest of the run
            os.kill(int(postmaster.read_text().split()[0]), signal.SIGTERM)
        assert returncode == 0
        # PostgreSQL removes postmaster.pid when it has shut down.
        assert not left_running, "the embedded PostgreSQL outlived `childlink serve`"
