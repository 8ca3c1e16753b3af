"""Schemathesis over the whole published spec, against a real uvicorn server on loopback, with an
admin token: no operation may answer 5xx or anything its spec does not describe.

Every check schemathesis has runs except ``positive_data_acceptance``: a schema cannot express
business rules such as "the agency must exist" or "only the platform's clients may hold
`admin`", so schema-valid bodies the service rightly refuses are not failures.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from app.config import Settings
from app.db import create_database
from app.main import create_app
from app.services import demo

MAX_EXAMPLES = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[str]:
    """The app under uvicorn in a background thread: real sockets, real HTTP parsing."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="contract-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


def _load_demo_data(database_url: str) -> tuple[str, str]:
    """The demo agencies and clients, so generated requests naming `police` (the spec's own
    example) get past "no such agency" into the code behind it. Returns the platform
    operator's credentials."""

    async def load() -> tuple[str, str]:
        db = create_database(database_url, pool_size=1)
        try:
            async with db.sessionmaker() as session:
                credentials = await demo.load(session)
                await session.commit()
        finally:
            await db.dispose()
        platform = next(c for c in credentials if c.agency == "platform")
        return platform.client_id, platform.client_secret

    # A fresh loop in a worker thread: this fixture is synchronous, like the schemathesis test.
    result: list[tuple[str, str]] = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(load())))
    worker.start()
    worker.join()
    return result[0]


@pytest.fixture
def admin_headers(live_server: str, database_url: str) -> dict[str, str]:
    client_id, secret = _load_demo_data(database_url)
    response = httpx.post(
        f"{live_server}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def api_schema(live_server: str) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "base-url": live_server,
            "checks": {"positive_data_acceptance": {"enabled": False}},
            # Stateful runs chain operations for minutes; the per-operation phases cover the
            # contract in seconds.
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_url(f"{live_server}/openapi.json", config=config)


def _run_operation(operation: Any, strategy: Any, headers: dict[str, str]) -> str | None:
    """Drive one operation with Hypothesis; the first failure (shrunk) as text, or None."""

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, timeout=10)

    try:
        run()
    except Unsatisfiable:
        return None  # nothing in this operation can be made schema-violating (no params, plain strings)
    except Exception as exc:  # a FailureGroup, or a transport error
        return f"{operation.label}: {exc}"
    return None


def test_every_operation_keeps_its_contract(api_schema: Any, admin_headers: dict[str, str]) -> None:
    # schemathesis' own pytest integration (`schema.parametrize()`) does not run under pytest 9
    # (it reads `request.node._nodeid`), so its public Hypothesis strategies are driven here:
    # the spec's examples, then schema-valid and schema-violating data for every operation.
    failures = []
    tested = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        tested += 1
        strategies = [
            *api_schema.get_strategies_from_examples(operation),
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        ]
        for strategy in strategies:
            failure = _run_operation(operation, strategy, admin_headers)
            if failure:
                failures.append(failure)
                break
    assert tested >= 10, "the spec lost its operations"
    assert not failures, "\n\n".join(failures)
