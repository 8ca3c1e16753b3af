"""A live ``childlink serve --demo`` on a loopback port, as a newcomer starts it: for the tests that
follow the README and the integration guide literally, and the browser test of ``/docs``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

CHILDLINK = str(Path(sys.executable).parent / "childlink")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    base: str
    port: int
    banner: str

    def secret(self, agency: str) -> str:
        found = re.search(rf"client_id=demo-{re.escape(agency)}\s+client_secret=(\S+)", self.banner)
        assert found, self.banner
        return found.group(1)


@asynccontextmanager
async def serve_demo(
    database_url: str, data_dir: Path, *, port: int | None = None
) -> AsyncIterator[LiveServer]:
    """``childlink serve --demo`` on the test database with its own data and key folder; yields
    once it answers ``/healthz``, and stops it with SIGTERM."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHILDLINK_")}
    env.update(
        {
            "DATABASE_URL": database_url,
            "CHILDLINK_DATA_DIR": str(data_dir),
            "CHILDLINK_LOG_LEVEL": "WARNING",
            # The database server is shared with the suite's own app: a small pool is plenty
            # for one browser or one shell.
            "CHILDLINK_DB_POOL_SIZE": "3",
        }
    )
    os.makedirs(data_dir, exist_ok=True)
    banner_path = data_dir / f"banner-{port}.txt"
    with banner_path.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            CHILDLINK,
            "serve",
            "--demo",
            "--host",
            "127.0.0.1",
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
                assert process.returncode is None, "serve exited: " + banner_path.read_text()
                assert time.monotonic() < deadline, "not serving within a minute"
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
        yield LiveServer(base=base, port=port, banner=banner_path.read_text())
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
