"""Token-endpoint and ``/v1/me`` throughput (issue 2): loopback, wrk at concurrency 32.

Creates and migrates ``childlink_bench`` if needed (no children are seeded: neither endpoint reads
the registry), adds a police client, starts ``childlink serve --workers 2`` and measures:

- ``POST /oauth/token`` with HTTP Basic client credentials (secret hash check, client lookup,
  ES256 signature per token);
- ``GET /v1/me`` with one bearer token (signature verified once, then the per-worker cache; the
  client's live status is re-read every ``CHILDLINK_CLIENT_STATUS_TTL_SECONDS``).

    .venv/bin/python bench/run_tokens.py             # about 40 seconds
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    CpuMeter,
    add_client,
    bench_database_url,
    childlink,
    cpu_line,
    ensure_agencies,
    ensure_database,
    env_for,
    fetch_token,
    machine_conditions,
    run_wrk,
    server_version,
    start_childlink,
    write_result,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    url = bench_database_url()
    workdir = Path(tempfile.mkdtemp(prefix="childlink-bench-"))
    env = env_for(url, workdir / "keys")
    report: dict[str, Any] = {"database_url": url, "machine": machine_conditions(), "params": vars(args)}

    async def prepare() -> str:
        await ensure_database(url)
        return await server_version(url)

    report["machine"]["postgresql"] = asyncio.run(prepare())
    childlink(env, "migrate")
    asyncio.run(ensure_agencies(url, env, {"police": "公安 Police (bench)"}))
    client_id, secret = add_client(env, agency="police", scopes="custody:read children:read", region="51")
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()

    server = start_childlink(env, args.workers)
    try:
        token_url = server.base + "/oauth/token"
        run_wrk("warmup", token_url, "token.lua", [basic], connections=args.connections, seconds=args.warmup)
        with CpuMeter(server, url) as cpu:
            tokens = run_wrk(
                f"POST /oauth/token ({args.workers} workers)",
                token_url,
                "token.lua",
                [basic],
                connections=args.connections,
                seconds=args.seconds,
            )
        report["token"] = vars(tokens) | {"rps": tokens.rps} | cpu.summary(tokens.requests)

        bearer = fetch_token(server.base, client_id, secret)
        me_url = server.base + "/v1/me"
        run_wrk("warmup", me_url, "get.lua", [bearer], connections=args.connections, seconds=args.warmup)
        with CpuMeter(server, url) as cpu:
            me = run_wrk(
                f"GET /v1/me ({args.workers} workers)",
                me_url,
                "get.lua",
                [bearer],
                connections=args.connections,
                seconds=args.seconds,
            )
        report["me"] = vars(me) | {"rps": me.rps} | cpu.summary(me.requests)
    finally:
        server.stop()

    for result, key in ((tokens, "token"), (me, "me")):
        print(result.line())
        print(cpu_line(report[key]))
    print(f"results: {write_result('tokens', report)}")
    return 0 if tokens.non_2xx == 0 and me.non_2xx == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
