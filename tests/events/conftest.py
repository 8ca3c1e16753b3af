"""Fixtures for the event-exchange tests: tokens for each agency and a registered child."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from app.config import Settings
from app.events.sender import WebhookSender
from app.events.worker import DeliveryWorker
from tests.conftest import TokenFactory
from tests.events.helpers import CIVIL_SCOPES, PUBLISH_SCOPES, SUBSCRIBER_SCOPES, worker_for
from tests.events.receiver import Receiver
from tests.factories import make_child

REGION = "510107"


@pytest.fixture
async def civil(token: TokenFactory) -> str:
    return await token(agency="civil-affairs", scopes=[*CIVIL_SCOPES, "events:publish"], region=REGION)


@pytest.fixture
async def education(token: TokenFactory) -> str:
    return await token(agency="education", scopes=PUBLISH_SCOPES, region=REGION)


@pytest.fixture
async def police(token: TokenFactory) -> str:
    return await token(agency="police", scopes=PUBLISH_SCOPES, region=REGION)


@pytest.fixture
async def child(client: Any, civil: str) -> dict[str, Any]:
    return await make_child(client, civil, region=REGION + "005003")


@pytest.fixture
def loopback_settings(settings: Settings) -> Settings:
    """The test settings with loopback receivers explicitly allowed and a compressed retry schedule."""
    return settings.model_copy(
        update={
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_retry_schedule": [0.05, 0.1, 0.2, 0.3],
            "webhook_retry_jitter": 0.1,
            "webhook_timeout_seconds": 2.0,
            "webhook_lease_seconds": 3.0,
            "worker_poll_seconds": 0.05,
        }
    )


@pytest.fixture
async def loopback_sender(app: Any, loopback_settings: Settings) -> AsyncIterator[WebhookSender]:
    """Swap the app's sender for one that lets loopback through (the default refuses it)."""
    original = app.state.webhook_sender
    sender = WebhookSender(loopback_settings)
    app.state.webhook_sender = sender
    try:
        yield sender
    finally:
        app.state.webhook_sender = original
        await sender.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def subscriber(token: TokenFactory) -> str:
    """Civil affairs' case system, managing subscriptions."""
    return await token(agency="civil-affairs", scopes=SUBSCRIBER_SCOPES, region=REGION)


WorkerFactory = Callable[..., Awaitable[DeliveryWorker]]


@pytest.fixture
async def start_worker(app: Any, loopback_settings: Settings) -> AsyncIterator[WorkerFactory]:
    """``await start_worker()``: a delivery worker running in the background on the test app's
    database and door, with loopback allowed and the compressed retry schedule."""
    running: list[tuple[DeliveryWorker, asyncio.Task[None]]] = []

    async def start(settings: Settings | None = None, *, name: str | None = None) -> DeliveryWorker:
        worker = worker_for(
            app, settings or loopback_settings, name=name or f"test-worker-{len(running)}", notifier=True
        )
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, _task in running:
        worker.stop()
    for worker, task in running:
        await asyncio.wait_for(task, 15)
        await worker.aclose()
