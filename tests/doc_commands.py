"""Running the shell commands a Markdown document shows, literally, against a live server: the
README and docs/integration-guide.zh-CN.md are tested this way, so they cannot drift."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from tests.live_demo import LiveServer

SECRET_PLACEHOLDER = re.compile(
    r"<(?:the ([a-z-]+) client_secret serve printed|serve 打印的 ([a-z-]+) 密钥)>"
)
"""How the README (and the Chinese guide) ask for a secret from the banner `serve` printed."""


def blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, flags=re.S | re.M)


def sh_blocks(markdown: str) -> list[str]:
    return blocks(markdown, "sh")


DEPLOYMENT_MARK = "# On the deployment's host"
"""How a block that sets up a real installation (its database roles, with its own passwords)
begins: it cannot run against the demo, so it is not run."""


def runnable(blocks: list[str]) -> list[str]:
    """All but the blocks that install and start the server or run the tests (the test does the
    first itself: ``childlink serve --demo``, what ``./scripts/serve`` runs after installing) and
    those marked as run on a deployment's host."""
    return [b for b in blocks if not b.lstrip().startswith(("./scripts/", DEPLOYMENT_MARK))]


def fill_in(block: str, server: LiveServer) -> str:
    block = SECRET_PLACEHOLDER.sub(lambda m: server.secret(m.group(1) or m.group(2)), block)
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
    """Every JSON document a block printed (curl prints no newline after a body, so documents
    may share a line); none may be an error."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(output) and output[position].isspace():
            position += 1
        if position >= len(output):
            break
        body, position = decoder.raw_decode(output, position)
        found.append(body)
    for body in found:
        assert "error" not in body and not str(body.get("status", "")).startswith(("4", "5")), body
    return found
