"""The README can be followed literally: every ``sh`` block it shows (but the two that start the
server and run this suite) runs with bash, in order, against a live ``serve --demo``, with only
the secrets the banner printed filled in. And ``serve`` keeps its promises about the banner."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT
from tests.live import LiveServer, serve_demo

SECRET_PLACEHOLDER = re.compile(r"<the ([a-z-]+) client_secret serve printed>")


def sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", markdown, flags=re.S | re.M)


def runnable(blocks: list[str]) -> list[str]:
    """All but the blocks that install and start the server or run the tests: the test does the
    first itself (``childlink serve --demo``, what ``./scripts/serve`` runs after installing)."""
    return [b for b in blocks if not b.lstrip().startswith("./scripts/")]


def fill_in(block: str, server: LiveServer) -> str:
    block = SECRET_PLACEHOLDER.sub(lambda m: server.secret(m.group(1)), block)
    return block.replace("http://localhost:8000", server.base)


def run_blocks(blocks: list[str], server: LiveServer) -> list[str]:
    """Run the blocks in one bash, as one terminal session; returns each block's output."""
    script = ["set -euo pipefail"]
    for i, block in enumerate(blocks):
        script += [f"echo '@@block {i}'", fill_in(block, server), "echo"]
    done = subprocess.run(  # noqa: S603 - the README's own commands
        ["bash", "-c", "\n".join(script)],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "", done.stderr
    return re.split(r"^@@block \d+\n", done.stdout, flags=re.M)[1:]


def answers(output: str) -> list[dict[str, Any]]:
    """Every JSON document a block printed; none may be an error."""
    found = [json.loads(line) for line in output.splitlines() if line.strip()]
    for body in found:
        assert "error" not in body and not str(body.get("status", "")).startswith(("4", "5")), body
    return found


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
