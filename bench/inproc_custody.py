"""The custody check's Python cost alone: checks driven through the whole app in-process.

No HTTP server, no wrk: the app (its lifespan, middleware, direct path, batched lookup, audit
writer and sealer, on the real bench database) is called as an ASGI application by 32
concurrent callers in this process, and the process's own CPU time per check is printed. With
nothing else competing for this process's CPU, the figure moves by a few microseconds between
runs where ``run_custody.py``'s move by several percent, so it is the quick way to compare two
versions of the code (run each a few times, alternating):

    .venv/bin/python bench/inproc_custody.py                          # this checkout
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/inproc_custody.py

Needs the seeded bench database (run ``run_custody.py`` once). It adds a police client per run,
like ``run_custody.py``; every check writes its access-log record, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from _common import add_client, bench_database_url, env_for, plain_dsn

Message = dict[str, Any]


Headers = list[tuple[bytes, bytes]]


async def call(app: Any, method: str, path: str, headers: Headers, body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI app; returns (status, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    received = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect: the request ends when the app answers
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def measure(args: argparse.Namespace, url: str, client_id: str, secret: str) -> None:
    from app.main import create_app  # after the environment names the bench database

    conn = await asyncpg.connect(plain_dsn(url))
    try:
        ids = [str(r[0]) for r in await conn.fetch("SELECT id FROM child ORDER BY random() LIMIT 20000")]
    finally:
        await conn.close()
    if not ids:
        raise SystemExit("the bench database has no children: run run_custody.py once first")
    app = create_app()
    async with app.router.lifespan_context(app):
        basic = base64.b64encode(f"{client_id}:{secret}".encode())
        status, body = await call(
            app,
            "POST",
            "/oauth/token",
            [(b"authorization", b"Basic " + basic), (b"content-type", b"application/x-www-form-urlencoded")],
            b"grant_type=client_credentials",
        )
        if status != 200:
            raise SystemExit(f"token request failed: {status} {body[:200]!r}")
        token = json.loads(body)["access_token"].encode()
        headers = [(b"authorization", b"Bearer " + token), (b"x-purpose-of-use", b"child_protection")]

        async def caller(k: int, n: int) -> int:
            ok = 0
            for i in range(n):
                child = ids[(k * 7919 + i) % len(ids)]
                status, _ = await call(app, "GET", f"/v1/children/{child}/custody", headers)
                ok += status == 200
            return ok

        per_caller = args.checks // args.concurrency
        await asyncio.gather(*(caller(k, 200) for k in range(args.concurrency)))  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        ok = sum(await asyncio.gather(*(caller(k, per_caller) for k in range(args.concurrency))))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    total = per_caller * args.concurrency
    print(
        f"{ok:,} of {total:,} checks answered 200; {cpu / max(ok, 1) * 1e6:.1f} µs of this process's CPU per "
        f"check ({ok / wall:,.0f} checks/s with PostgreSQL on the other core)"
    )
    if ok != total:
        raise SystemExit(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    url = bench_database_url()
    env = env_for(url, Path(tempfile.mkdtemp(prefix="childlink-inproc-")) / "keys")
    os.environ.update(env)
    client_id, secret = add_client(env, agency="police", scopes="custody:read", region="51")
    import uvloop

    uvloop.run(measure(args, url, client_id, secret))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
