"""Isolation between subscribers: a receiver that accepts connections and never answers ties up
its own share of the worker's slots, never the others' deliveries."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from app.config import Settings
from app.events.sender import WebhookSender
from tests.conftest import bearer
from tests.events.conftest import REGION, WorkerFactory
from tests.events.helpers import DROPOUT, PREFIX, eventually, publish, subscribe, worker_for
from tests.events.receiver import Received, Receiver
from tests.factories import make_child

CHILDREN = 12


async def hang(request: Received) -> tuple[int, dict[str, str]]:
    await asyncio.sleep(60)  # never answers in time
    return 200, {}


class TestHangingReceiver:
    async def test_a_hanging_receiver_takes_only_its_share_and_the_others_keep_pace(
        self,
        app: Any,
        loopback_settings: Settings,
        client: httpx.AsyncClient,
        subscriber: str,
        civil: str,
        education: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        hanging = await Receiver(responder=hang).start()
        try:
            timeout = 3.0
            settings = loopback_settings.model_copy(
                update={
                    "worker_concurrency": 8,
                    "webhook_timeout_seconds": timeout,
                    "webhook_lease_seconds": timeout + 2,
                }
            )
            children = [await make_child(client, civil, region=REGION + "005003") for _ in range(CHILDREN)]
            stuck = await subscribe(client, subscriber, hanging.url, [PREFIX + "education.*"])
            sequences = [  # more children with pending events than the worker has slots
                (await publish(client, education, DROPOUT, child["id"])).json()["sequence"]
                for child in children
            ]
            # The hanging subscriber's deliveries are queued first, so they are the oldest work.
            await worker_for(app, settings).dispatch()
            await asyncio.sleep(0.05)
            await subscribe(
                client, subscriber, receiver.url, [PREFIX + "education.*"], from_sequence=sequences[0] - 1
            )
            started = time.monotonic()
            await start_worker(settings)
            # Every healthy delivery arrives before the first hanging one has even timed out.
            await receiver.wait_for(lambda r: len(r.delivered()) == CHILDREN, within=timeout - 0.5)
            assert time.monotonic() - started < timeout
            assert hanging.max_in_flight <= 2  # a quarter of eight slots

            async def failing() -> Any:
                shown = await client.get(f"/v1/subscriptions/{stuck['id']}", headers=bearer(subscriber))
                return shown.json()["failing_since"]

            await eventually(failing, within=timeout + 3)  # then it backs off as a whole
        finally:
            await hanging.stop()


class TestFailingEndpoint:
    async def test_an_endpoint_failing_for_the_whole_period_is_disabled_and_can_restart_from_now(
        self,
        loopback_settings: Settings,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: (503, {})
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        path = f"/v1/subscriptions/{sub['id']}"
        settings = loopback_settings.model_copy(
            update={"webhook_disable_after_failing_seconds": 0.5, "webhook_retry_schedule": [0.1] * 50}
        )
        await start_worker(settings)
        await publish(client, education, DROPOUT, child["id"])

        async def disabled() -> Any:
            shown = (await client.get(path, headers=bearer(subscriber))).json()
            return shown if shown["status"] == "disabled" else None

        shown = await eventually(disabled, within=15)
        assert shown["disabled_reason"] == "failing" and shown["failing_since"] is not None
        pending = await client.get(
            path + "/deliveries", params={"status": "pending"}, headers=bearer(subscriber)
        )
        assert len(pending.json()["items"]) == 1  # what waits while it is disabled is listed

        receiver.responder = None
        resumed = await client.patch(
            path, json={"status": "active", "resume": "now"}, headers=bearer(subscriber)
        )
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"] == "active" and resumed.json()["failing_since"] is None
        skipped = await client.get(
            path + "/deliveries", params={"status": "skipped"}, headers=bearer(subscriber)
        )
        assert len(skipped.json()["items"]) == 1
        accepted = (await publish(client, education, DROPOUT, child["id"])).json()
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert receiver.delivered()[0].json["id"] == accepted["id"]  # from now on only
