"""Leases under crashes: a dead worker's deliveries come back first, and every attempt is history,
including those whose worker died before it knew the answer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.events.sender import WebhookSender
from app.events.worker import DeliveryWorker
from tests.conftest import bearer
from tests.events.conftest import REGION, WorkerFactory
from tests.events.helpers import DROPOUT, PREFIX, publish, subscribe, worker_for
from tests.events.receiver import Receiver
from tests.factories import make_child


def short_lease(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_timeout_seconds": 0.5, "webhook_lease_seconds": 1.5})


def crashing_worker(app: Any, settings: Settings, name: str) -> DeliveryWorker:
    """A worker used only to claim: it dies (is dropped) before sending anything."""
    return worker_for(app, settings, name=name)


class TestExpiredLeases:
    async def test_a_crashed_workers_delivery_is_reclaimed_before_newer_work(
        self,
        app: Any,
        loopback_settings: Settings,
        client: httpx.AsyncClient,
        subscriber: str,
        civil: str,
        education: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
    ) -> None:
        settings = short_lease(loopback_settings)
        await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        first_child, second_child = [
            await make_child(client, civil, region=REGION + "005003") for _ in range(2)
        ]
        crashed = crashing_worker(app, settings, "crashed")
        old = (await publish(client, education, DROPOUT, first_child["id"])).json()
        await crashed.dispatch()
        (job,) = await crashed.claim(10)
        assert str(job.event.id) == old["id"]
        await asyncio.sleep(0.3)
        await publish(client, education, DROPOUT, second_child["id"])  # newer work, due at once
        await crashed.dispatch()
        await asyncio.sleep(settings.webhook_lease_seconds)

        (reclaimed,) = await crashing_worker(app, settings, "next").claim(1)
        assert str(reclaimed.event.id) == old["id"]  # the expired lease first, not the newer event
        assert reclaimed.webhook_id == job.webhook_id
        await crashed.aclose()

    async def test_two_crashes_in_a_row_leave_both_attempts_in_the_history(
        self,
        app: Any,
        loopback_settings: Settings,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        settings = short_lease(loopback_settings)
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await publish(client, education, DROPOUT, child["id"])
        for name in ("first", "second"):
            crashed = crashing_worker(app, settings, name)
            await crashed.dispatch()
            assert len(await crashed.claim(10)) == 1
            await crashed.aclose()
            await asyncio.sleep(settings.webhook_lease_seconds + 0.1)

        path = f"/v1/subscriptions/{sub['id']}/deliveries"
        in_flight = (await client.get(path, headers=bearer(subscriber))).json()["items"][0]
        assert [(a["attempt"], a["outcome"]) for a in in_flight["attempt_log"]] == [
            (1, "abandoned"),
            (2, "sending"),
        ]

        await start_worker(settings)
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)

        async def recorded() -> list[tuple[int, str]]:
            item = (await client.get(path, headers=bearer(subscriber))).json()["items"][0]
            return [(a["attempt"], a["outcome"]) for a in item["attempt_log"]]

        for _ in range(100):
            if (await recorded())[-1][1] == "delivered":
                break
            await asyncio.sleep(0.05)
        assert await recorded() == [(1, "abandoned"), (2, "abandoned"), (3, "delivered")]

    @pytest.mark.parametrize(("action", "status"), [("skip", "skipped"), ("retry", "pending")])
    async def test_a_skip_or_retry_of_a_crashed_workers_delivery_records_its_attempt_abandoned(
        self,
        action: str,
        status: str,
        app: Any,
        loopback_settings: Settings,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
    ) -> None:
        # A skipped delivery is never claimed again, and a retry clears the lease: no later claim
        # could tell the dead worker's attempt was abandoned, so the operator's action must.
        settings = short_lease(loopback_settings)
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await publish(client, education, DROPOUT, child["id"])
        crashed = crashing_worker(app, settings, "crashed")
        await crashed.dispatch()
        (job,) = await crashed.claim(10)
        await crashed.aclose()
        path = f"/v1/subscriptions/{sub['id']}/deliveries/{job.delivery_id}"
        live = await client.post(path + "/retry", headers=bearer(subscriber))
        assert live.status_code == 409 and live.json()["code"] == "delivery_in_flight"
        await asyncio.sleep(settings.webhook_lease_seconds + 0.1)

        acted = await client.post(f"{path}/{action}", headers=bearer(subscriber))
        assert acted.status_code == 200, acted.text
        assert acted.json()["status"] == status
        assert [(a["attempt"], a["outcome"]) for a in acted.json()["attempt_log"]] == [(1, "abandoned")]
        assert receiver.requests == []
