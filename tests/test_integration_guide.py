"""docs/integration-guide.zh-CN.md can be followed literally: its shell commands run in order
against a live `serve --demo`, its Python snippet verifies a delivery the platform signed (with
the `standardwebhooks` library), and its Java snippet compiles with javac and does the same."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from app.events import signing
from tests.conftest import ROOT
from tests.doc_commands import answers, blocks, run_blocks, runnable, sh_blocks
from tests.live_demo import serve_demo

GUIDE = ROOT / "docs" / "integration-guide.zh-CN.md"


def _guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def test_the_readme_and_the_docs_page_link_the_guide() -> None:
    assert "docs/integration-guide.zh-CN.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    spec = json.loads((ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8"))
    assert "integration-guide.zh-CN.md" in spec["info"]["description"]


async def test_every_guide_command_runs_against_a_live_server(database_url: str, tmp_path: Path) -> None:
    commands = runnable(sh_blocks(_guide()))
    assert len(commands) >= 5
    async with serve_demo(database_url, tmp_path / "data") as server:
        outputs = await asyncio.to_thread(run_blocks, commands, server)
    flat = [body for output in outputs for body in answers(output)]
    assert any(body.get("agency") == "police" and "scopes" in body for body in flat), flat  # /v1/me
    assert any("withheld" in body.get("access", {}) for body in flat), flat  # the child, as police
    assert any("custody_status" in body for body in flat), flat
    published = next(body for body in flat if "sequence" in body and "subject" in body)
    feed = next(body for body in flat if "next_after" in body)
    assert published["id"] in [event["id"] for event in feed["events"]], feed  # subscribe, then pull


def _signed_delivery() -> tuple[str, dict[str, str], bytes]:
    secret = signing.new_secret()
    body = json.dumps({"specversion": "1.0", "type": "cn.gov.childlink.platform.ping.v1"}).encode()
    return secret, signing.headers([secret], "msg_guide_test", int(time.time()), body), body


def test_the_python_snippet_verifies_a_signed_delivery_and_refuses_a_forged_one() -> None:
    (snippet,) = blocks(_guide(), "python")
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(GUIDE), "exec"), namespace)  # noqa: S102 - the guide's own code
    secret, headers, body = _signed_delivery()
    assert namespace["verify"](secret, headers, body)["type"] == "cn.gov.childlink.platform.ping.v1"
    with pytest.raises(Exception, match=r"(?i)signature"):
        namespace["verify"](secret, headers, body.replace(b"ping", b"pong"))


@pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK (javac) on this machine")
def test_the_java_snippet_compiles_and_verifies_a_signed_delivery(tmp_path: Path) -> None:
    (snippet,) = blocks(_guide(), "java")
    (tmp_path / "WebhookVerifier.java").write_text(snippet, encoding="utf-8")
    compiled = subprocess.run(
        ["javac", "WebhookVerifier.java"],  # noqa: S607
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stderr
    secret, headers, body = _signed_delivery()

    def run(payload: bytes) -> subprocess.CompletedProcess[bytes]:
        args = [secret, headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]]
        return subprocess.run(  # noqa: S603
            ["java", "-cp", str(tmp_path), "WebhookVerifier", *args],  # noqa: S607
            input=payload,
            capture_output=True,
            timeout=60,
            check=False,
        )

    assert run(body).stdout.strip() == b"valid"
    forged = run(body.replace(b"ping", b"pong"))
    assert (forged.returncode, forged.stdout.strip()) == (1, b"invalid")
