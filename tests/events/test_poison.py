"""Poison events: an event the receiver always rejects, and what operators can do about it
(retry, skip, the dead-letter list, redrive), for blocking and non-blocking subscriptions."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from app.config import Settings
from app.events.sender import WebhookSender
from tests.conftest import bearer
from tests.events.conftest import WorkerFactory
from tests.events.helpers import DROPOUT, PREFIX, SAMPLES, delivery_of, eventually, publish, subscribe
from tests.events.receiver import Received, Receiver

POISON_SCHOOL = "毒丸小学"


def poison(request: Received) -> tuple[int, dict[str, str]]:
    """Rejects every event about one school, accepts the rest."""
    return (422, {}) if POISON_SCHOOL in request.body.decode() else (200, {})


def subjects_and_schools(receiver: Receiver) -> list[str]:
    return [r.json["data"]["school"] for r in receiver.delivered()]


async def publish_pair(client: httpx.AsyncClient, education: str, child: dict[str, Any]) -> tuple[str, str]:
    bad = await publish(
        client, education, DROPOUT, child["id"], {**SAMPLES[DROPOUT], "school": POISON_SCHOOL}
    )
    good = await publish(client, education, DROPOUT, child["id"])
    return bad.json()["id"], good.json()["id"]


class TestSkip:
    async def test_skipping_a_poison_event_releases_the_childs_next_event(
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
        receiver.responder = poison
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        # A long schedule: without an operator the poison event would hold the child for hours.
        await start_worker(loopback_settings.model_copy(update={"webhook_retry_schedule": [3600.0]}))
        bad, good = await publish_pair(client, education, child)
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        await asyncio.sleep(0.3)
        assert receiver.delivered() == []  # the next event waits behind the poison one

        stuck = await delivery_of(client, subscriber, sub, bad)
        skipped = await client.post(
            f"/v1/subscriptions/{sub['id']}/deliveries/{stuck['id']}/skip", headers=bearer(subscriber)
        )
        assert skipped.status_code == 200, skipped.text
        assert skipped.json()["status"] == "skipped"
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert receiver.delivered()[0].json["id"] == good

        letters = (
            await client.get(f"/v1/subscriptions/{sub['id']}/dead-letters", headers=bearer(subscriber))
        ).json()
        assert [item["event_id"] for item in letters["items"]] == [bad]
        again = await client.post(
            f"/v1/subscriptions/{sub['id']}/deliveries/{stuck['id']}/skip", headers=bearer(subscriber)
        )
        assert again.status_code == 409 and again.json()["code"] == "delivery_not_skippable"


class TestBlocking:
    async def test_by_default_a_dead_letter_lets_the_childs_later_events_go(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = poison
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        assert sub["blocking"] is False
        await start_worker()
        bad, good = await publish_pair(client, education, child)
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert receiver.delivered()[0].json["id"] == good
        assert (await delivery_of(client, subscriber, sub, bad))["status"] == "dead"

    async def test_a_blocking_subscription_holds_the_child_until_the_dead_letter_is_retried(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = poison
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"], blocking=True)
        assert sub["blocking"] is True
        await start_worker()
        bad, good = await publish_pair(client, education, child)

        async def dead() -> bool:
            return (await delivery_of(client, subscriber, sub, bad)).get("status") == "dead"

        await eventually(dead)
        await asyncio.sleep(0.3)
        assert receiver.delivered() == []  # strict order: nothing passes the dead letter

        receiver.responder = None  # the receiver was fixed
        letter = await delivery_of(client, subscriber, sub, bad)
        retried = await client.post(
            f"/v1/subscriptions/{sub['id']}/deliveries/{letter['id']}/retry", headers=bearer(subscriber)
        )
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "pending"
        await receiver.wait_for(lambda r: len(r.delivered()) == 2)
        assert [r.json["id"] for r in receiver.delivered()] == [bad, good]  # in order
        first_try = receiver.requests[0]
        assert receiver.delivered()[0].headers["webhook-id"] == first_try.headers["webhook-id"]


class TestRedriveAndAbort:
    async def test_redrive_sends_every_dead_letter_again_with_its_webhook_id(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        # The receiver aborts the message: dead at once, no retries (Svix's convention).
        receiver.responder = lambda request: (400, {"webhook-delivery": "abort-message"})
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await start_worker()
        accepted = (await publish(client, education, DROPOUT, child["id"])).json()

        async def aborted() -> Any:
            item = await delivery_of(client, subscriber, sub, accepted["id"])
            done = item.get("status") == "dead" and item["attempt_log"][-1]["outcome"] == "aborted"
            return item if done else None

        item = await eventually(aborted)
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == 1 and item["attempts"] == 1

        receiver.responder = None
        path = f"/v1/subscriptions/{sub['id']}/dead-letters/redrive"
        redriven = await client.post(path, headers=bearer(subscriber))
        assert redriven.status_code == 202 and redriven.json() == {"queued": 1}
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert receiver.delivered()[0].headers["webhook-id"] == receiver.requests[0].headers["webhook-id"]
        letters = (
            await client.get(f"/v1/subscriptions/{sub['id']}/dead-letters", headers=bearer(subscriber))
        ).json()
        assert letters["items"] == []

    async def test_a_delivered_delivery_is_not_retried_and_an_unknown_one_is_404(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await start_worker()
        accepted = (await publish(client, education, DROPOUT, child["id"])).json()
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)

        async def delivered() -> Any:
            item = await delivery_of(client, subscriber, sub, accepted["id"])
            return item if item.get("status") == "delivered" else None

        item = await eventually(delivered)
        base = f"/v1/subscriptions/{sub['id']}/deliveries"
        refused = await client.post(f"{base}/{item['id']}/retry", headers=bearer(subscriber))
        assert refused.status_code == 409 and refused.json()["code"] == "delivery_not_retryable"
        missing = await client.post(f"{base}/{2**62}/retry", headers=bearer(subscriber))
        assert missing.status_code == 404 and missing.json()["code"] == "delivery_not_found"


class TestUnexpectedErrors:
    async def test_an_error_in_the_worker_is_a_recorded_failed_attempt_and_the_retry_delivers(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        worker = await start_worker()
        decide = worker._decide
        failures: list[int] = []

        async def broken_once(job: Any, kind: str) -> Any:
            if not failures:  # a fault injected into the worker itself, once
                failures.append(job.delivery_id)
                raise RuntimeError("a bug")
            return await decide(job, kind)

        worker._decide = broken_once  # type: ignore[method-assign]
        published = (await publish(client, education, DROPOUT, child["id"])).json()["id"]
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)

        async def settled() -> Any:
            found = await delivery_of(client, subscriber, sub, published)
            return found if found.get("status") == "delivered" else None

        delivery = await eventually(settled)
        assert [(a["attempt"], a["outcome"], a["error"]) for a in delivery["attempt_log"]] == [
            (1, "failed", "internal error: RuntimeError"),
            (2, "delivered", None),
        ]
