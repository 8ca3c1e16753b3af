"""Shared helpers for the event-exchange tests: sample payloads per type, publishing, raw SQL."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import asyncpg
import httpx

from app.config import Settings
from app.db import asyncpg_dsn
from app.events.worker import DeliveryWorker
from tests.conftest import bearer

PREFIX = "cn.gov.childlink."
DROPOUT = PREFIX + "education.dropout-risk.flagged.v1"
INCIDENT = PREFIX + "police.incident.reported.v1"
HOME_VISIT = PREFIX + "civil-affairs.home-visit.recorded.v1"

CIVIL_SCOPES = ["children:read", "children:write", "custody:read", "custody:write", "events:read"]
PUBLISH_SCOPES = ["events:publish", "events:read"]
SUBSCRIBER_SCOPES = ["subscriptions:manage", "events:read"]

SAMPLES: dict[str, dict[str, Any]] = {
    DROPOUT: {
        "school": "簇桥小学",
        "risk_level": "high",
        "indicators": ["chronic_absence", "guardian_absent"],
        "flagged_on": "2026-11-27",
        "home_visit_requested": True,
    },
    INCIDENT: {
        "occurred_on": "2026-11-20",
        "incident_type": "neglect",
        "child_role": "victim",
        "case_ref": "WH-2026-0042",
        "child_safe_now": True,
        "handling_unit": {"name": "簇桥派出所", "duty_phone": "028-85001110"},
    },
    HOME_VISIT: {"visited_on": "2026-11-25", "visitor_role": "child_director", "child_seen": True},
}


def cloud_event(
    type_name: str, subject: str, data: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": extra.pop("id", f"test-{secrets.token_hex(6)}"),
        "source": extra.pop("source", "/tests/sis"),
        "type": type_name,
        "subject": subject,
        "data": data if data is not None else dict(SAMPLES[type_name]),
    }
    body.update(extra)
    return body


async def publish(
    client: httpx.AsyncClient,
    token: str,
    type_name: str,
    subject: str,
    data: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    expect: int | None = 202,
    **extra: Any,
) -> httpx.Response:
    response = await client.post(
        "/v1/events",
        json=cloud_event(type_name, subject, data, **extra),
        headers={**bearer(token), "Idempotency-Key": key or str(uuid.uuid4())},
    )
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


async def fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def scalar(database_url: str, query: str, *args: Any) -> Any:
    rows = await fetch(database_url, query, *args)
    return rows[0][0] if rows else None


async def eventually(check: Any, within: float = 10.0, every: float = 0.05) -> Any:
    """Poll an async ``check`` until it returns something truthy; fail after ``within`` seconds."""
    import asyncio
    import time

    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: last result {result!r}")
        await asyncio.sleep(every)


async def subscribe(
    client: httpx.AsyncClient,
    token: str,
    url: str,
    types: list[str],
    purpose: str = "child_protection",
    **extra: Any,
) -> dict[str, Any]:
    body = {"mode": "webhook", "url": url, "types": types, "purpose_of_use": purpose, **extra}
    response = await client.post("/v1/subscriptions", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def worker_for(
    app: Any, settings: Settings, *, name: str | None = None, notifier: bool = False
) -> DeliveryWorker:
    """A delivery worker on the test app's database, door and agency kinds (not running: the
    caller drives it, or runs it); with ``notifier`` it wakes on the app's event notices."""
    return DeliveryWorker(
        db=app.state.db,
        door=app.state.door,
        kinds=app.state.agency_kinds,
        settings=settings,
        notifier=app.state.event_notifier if notifier else None,
        **({"name": name} if name else {}),
    )


async def deliveries(
    client: httpx.AsyncClient, token: str, sub_id: str, **params: Any
) -> list[dict[str, Any]]:
    """The subscription's deliveries as its owner lists them (``GET .../deliveries``)."""
    response = await client.get(
        f"/v1/subscriptions/{sub_id}/deliveries", params=params, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def delivery_of(
    client: httpx.AsyncClient, token: str, sub: dict[str, Any], event_id: str
) -> dict[str, Any]:
    """The subscription's delivery of one event; empty while it is not fanned out yet."""
    found = [d for d in await deliveries(client, token, sub["id"]) if d["event_id"] == event_id]
    return found[0] if found else {}
