"""The worker loop misses no wake-up: what happens while it is busy with a round (a commit
notified, a delivery finished) is acted on when the round ends, not a poll interval later.

The poll interval is set to 30 s, and each test holds one round open until the thing it is
about has happened; the receiver then has to see its event within a few seconds."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from app.config import Settings
from app.events.sender import WebhookSender
from app.events.worker import DeliveryWorker
from tests.events.conftest import WorkerFactory
from tests.events.helpers import DROPOUT, INCIDENT, SAMPLES, publish, subscribe
from tests.events.receiver import Received, Receiver

POLL = 30.0
SOON = 5.0  # well inside the poll interval


async def until(condition: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def slow_poll(settings: Settings) -> Settings:
    return settings.model_copy(update={"worker_poll_seconds": POLL})


class TestDuringARound:
    async def test_a_commit_notified_during_a_round_is_fanned_out_at_once(
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
        await subscribe(client, subscriber, receiver.url, [DROPOUT])
        worker = await start_worker(slow_poll(loopback_settings))
        assert worker.notifier is not None
        notifier = worker.notifier
        original = worker._round
        published: list[str] = []

        async def round_with_a_publish(**options: Any) -> Any:
            jobs = await original(**options)
            if options["fan_out"] and not published:
                seen = notifier.generation
                published.append((await publish(client, education, DROPOUT, child["id"])).json()["id"])
                await until(lambda: notifier.generation != seen)  # heard while the round is open
            return jobs

        worker._round = round_with_a_publish  # type: ignore[method-assign]
        await receiver.wait_for(lambda r: len(r.delivered()) == 1, within=SOON)
        assert [r.json["id"] for r in receiver.delivered()] == published

    async def test_a_delivery_finished_during_a_round_releases_its_childs_next_event_at_once(
        self,
        loopback_settings: Settings,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        police: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        # The child's second event waits for its first (per-child order). The first finishes
        # while a round is open, a round that a commit the subscription does not match began.
        await subscribe(client, subscriber, receiver.url, [DROPOUT])
        first = (await publish(client, education, DROPOUT, child["id"])).json()["id"]
        second = (await publish(client, education, DROPOUT, child["id"])).json()["id"]
        worker: DeliveryWorker | None = None
        held: list[bool] = []

        async def answer(request: Received) -> tuple[int, dict[str, str]]:
            if request.json["id"] == first:
                await publish(client, police, INCIDENT, child["id"], dict(SAMPLES[INCIDENT]))
                await until(lambda: bool(held))  # the round that commit began is open
            return 200, {}

        receiver.responder = answer
        # Room for the held round on a slow machine: a timeout would send the first event twice.
        settings = slow_poll(loopback_settings).model_copy(
            update={"webhook_timeout_seconds": 10.0, "webhook_lease_seconds": 30.0}
        )
        worker = await start_worker(settings)
        assert worker.notifier is not None
        notifier = worker.notifier
        original = worker._round
        quiet: list[bool] = []

        async def round_held_until_the_delivery_finished(**options: Any) -> Any:
            assert worker is not None
            busy = bool(worker._in_flight) and not held
            seen = notifier.generation
            jobs = await original(**options)
            if busy:
                held.append(True)
                await until(lambda: not worker._in_flight)
                # No commit was notified during the round: the finish alone must wake the loop.
                quiet.append(notifier.generation == seen)
            return jobs

        worker._round = round_held_until_the_delivery_finished  # type: ignore[method-assign]
        await receiver.wait_for(lambda r: len(r.delivered()) == 2, within=SOON)
        assert held == quiet == [True]
        assert [r.json["id"] for r in receiver.delivered()] == [first, second]
