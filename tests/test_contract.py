"""Schemathesis over the whole published spec, against a real uvicorn server on loopback, once
with each agency's token (civil affairs, education, health, police, the women's federation and
the platform operator), every phase: the spec's examples, coverage, fuzzing and stateful
sequences. No operation may answer 5xx or anything its spec does not describe.

Every check schemathesis has runs except ``positive_data_acceptance`` and
``use_after_free``/``ensure_resource_availability``: a schema cannot express business rules
such as "the agency must exist", "only the platform's clients may hold `admin`" or "another
agency's record is 404", so schema-valid requests the service rightly refuses are not failures.

The explicit reproducers below are inputs the service once answered with 500.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema

from app.config import Settings
from app.db import create_database
from app.events import vault
from app.main import create_app
from app.services import demo
from tests.live import live_server as serve

MAX_EXAMPLES = int(os.environ.get("CHILDLINK_CONTRACT_MAX_EXAMPLES", "5"))
"""Examples per operation and phase, for each of the six tokens. Small by default so the whole
contract test stays within about two minutes on a 2-core machine; raise it for a deeper run.
``CHILDLINK_CONTRACT_AGENCIES`` (comma-separated) narrows the run to some agencies."""

AGENCIES = tuple(
    os.environ.get(
        "CONTRACT_AGENCIES", "civil-affairs,education,health,police,womens-federation,platform"
    ).split(",")
)


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[str]:
    # A second app on the test database: a small pool, so the suite's connections stay few.
    with serve(create_app(settings.model_copy(update={"db_pool_size": 5}))) as url:
        yield url


def _load_demo_data(database_url: str, settings: Settings) -> dict[str, tuple[str, str]]:
    """The demo agencies and their clients (one per agency, with that agency's scopes), so
    generated requests naming `police` (the spec's own example) get past "no such agency" into
    the code behind it. Returns each agency's credentials."""

    async def load() -> dict[str, tuple[str, str]]:
        db = create_database(database_url, pool_size=1)
        try:
            async with db.sessionmaker() as session:
                credentials = await demo.load(session)
                # Sealed with the live server's key, so it can open the demo webhook's secret.
                box = vault.load(settings.resolved_key_dir, create_if_missing=True)
                children = await demo.load_children(session, box)
                assert children
                await session.commit()
        finally:
            await db.dispose()
        return {c.agency: (c.client_id, c.client_secret) for c in credentials}

    # A fresh loop in a worker thread: this fixture is synchronous, like the schemathesis run.
    result: list[dict[str, tuple[str, str]]] = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(load())))
    worker.start()
    worker.join()
    return result[0]


@pytest.fixture
def agency_headers(live_server: str, database_url: str, settings: Settings) -> dict[str, dict[str, str]]:
    credentials = _load_demo_data(database_url, settings)
    assert set(AGENCIES) <= set(credentials)
    headers = {}
    for agency, (client_id, secret) in credentials.items():
        response = httpx.post(
            f"{live_server}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert response.status_code == 200, response.text
        headers[agency] = {
            "Authorization": f"Bearer {response.json()['access_token']}",
            "X-Purpose-Of-Use": "child_protection",
        }
    return headers


def _config(base_url: str, headers: dict[str, str]) -> Any:
    return schemathesis.Config.from_dict(
        {
            "base-url": base_url,
            "headers": headers,
            "seed": 20261201,
            "generation": {"max-examples": MAX_EXAMPLES},
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                "use_after_free": {"enabled": False},
                "ensure_resource_availability": {"enabled": False},
                # A missing `If-Match` is 428 Precondition Required (RFC 6585), as the spec says.
                "missing_required_header": {"expected-statuses": [400, 401, 403, 406, 415, 422, 428]},
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": 20},
            },
        }
    )


def _run(base_url: str, headers: dict[str, str]) -> tuple[set[str], list[str]]:
    """One full schemathesis run; (phases that tested something, failures as text)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=_config(base_url, headers))
    phases: set[str] = set()
    failures: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.status is not Status.SKIP:
            phases.add(str(event.phase).lower())
        if isinstance(event, events.ScenarioFinished) and event.status in (Status.FAILURE, Status.ERROR):
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status is Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        sample = check.failure_info.code_sample.replace(headers["Authorization"], "$TOKEN")
                        failures.append(
                            f"[{event.phase}] {event.label}: {check.name}: {failure.title} "
                            f"{failure.message}\n    {sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            failures.append(f"[{event.phase}] {event.label}: {type(event.value).__name__}: {event.value}")
        elif isinstance(event, events.FatalError):
            failures.append(f"fatal: {event.exception!r}")
    return phases, sorted(set(failures))


def test_every_operation_keeps_its_contract_for_every_agency(
    live_server: str, agency_headers: dict[str, dict[str, str]]
) -> None:
    report = []
    for agency in AGENCIES:
        phases, failures = _run(live_server, agency_headers[agency])
        assert {"examples", "coverage", "fuzzing", "stateful"} <= phases, (agency, phases)
        report += [f"{agency}: {failure}" for failure in failures]
    assert not report, "\n".join(report)


class TestReproducers:
    """Inputs that once answered 500, sent as an attacker sends them: raw bytes to the real server."""

    def test_an_integer_of_2_to_the_64_in_event_data_is_a_4xx(
        self, live_server: str, agency_headers: dict[str, dict[str, str]]
    ) -> None:
        body = (
            b'{"specversion":"1.0","id":"x-1","source":"/s","type":"cn.gov.childlink.education.'
            b'dropout-risk.flagged.v1","subject":"00000000-0000-4000-8000-000000000000",'
            b'"data":{"risk_level":18446744073709551616}}'
        )
        response = self._post_event(live_server, agency_headers["education"], body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_failed"

    def test_a_lone_surrogate_key_in_event_data_is_a_4xx(
        self, live_server: str, agency_headers: dict[str, dict[str, str]]
    ) -> None:
        body = (
            b'{"specversion":"1.0","id":"x-2","source":"/s","type":"cn.gov.childlink.education.'
            b'dropout-risk.flagged.v1","subject":"00000000-0000-4000-8000-000000000000",'
            b'"data":{"\\ud800":1}}'
        )
        response = self._post_event(live_server, agency_headers["education"], body)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_failed"

    def test_a_deliveries_cursor_of_2_to_the_63_is_a_4xx(
        self, live_server: str, agency_headers: dict[str, dict[str, str]]
    ) -> None:
        headers = agency_headers["civil-affairs"]
        created = httpx.post(
            f"{live_server}/v1/subscriptions",
            json={"mode": "pull", "types": ["*"], "purpose_of_use": "child_protection"},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        response = httpx.get(
            f"{live_server}/v1/subscriptions/{created.json()['id']}/deliveries",
            params={"before": str(2**63)},
            headers=headers,
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_failed"

    @staticmethod
    def _post_event(base_url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return httpx.post(
            f"{base_url}/v1/events",
            content=body,
            headers={**headers, "Content-Type": "application/json", "Idempotency-Key": os.urandom(8).hex()},
        )
