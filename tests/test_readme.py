"""The README can be followed literally: every ``sh`` block it shows (but the two that start the
server and run this suite) runs with bash, in order, against a live ``serve --demo``, with only
the secrets the banner printed filled in. And ``serve`` keeps its promises about the banner."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT
from tests.doc_commands import answers, run_blocks, runnable, sh_blocks
from tests.live_demo import serve_demo


async def test_every_readme_command_runs_against_a_live_server(database_url: str, tmp_path: Path) -> None:
    blocks = runnable(sh_blocks((ROOT / "README.md").read_text(encoding="utf-8")))
    assert len(blocks) >= 3
    async with serve_demo(database_url, tmp_path / "data") as server:
        outputs = await asyncio.to_thread(run_blocks, blocks, server)
    replies = [answers(output) for output in outputs]
    flat = [body for block in replies for body in block]
    assert any(body.get("agency") == "police" and "scopes" in body for body in flat), flat  # /v1/me
    assert any("custody_status" in body for body in flat), flat  # the custody check
    assert any("sequence" in body and body.get("type", "").endswith("flagged.v1") for body in flat), flat


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_serve_keeps_the_demo_secrets_across_restarts_and_issues_for_its_own_port(
    database_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with serve_demo(database_url, data) as first:
        yesterday = first.secret("police")
        assert "export CHILD_ID=" in first.banner and "demo-education" in first.banner
    async with serve_demo(database_url, data) as second:
        assert second.secret("police") == yesterday
        async with httpx.AsyncClient(base_url=second.base) as http:
            issued = await http.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=("demo-police", yesterday)
            )
        assert issued.status_code == 200, issued.text
        assert _claims(issued.json()["access_token"])["iss"] == f"http://localhost:{second.port}"
    assert (data / "demo-secrets.json").stat().st_mode & 0o077 == 0
