"""Operational events addressed to the subscribing agency: a dead-lettered delivery and a
disabled subscription are reported on the agency's feed and its other subscriptions, never to
the failed one, never to another agency, and a dead-lettered notice produces no further one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.events import catalog
from app.events.scheduler import Scheduler, registered_jobs
from app.models.common import utcnow
from tests.conftest import TokenFactory, bearer
from tests.events.conftest import REGION, WorkerFactory
from tests.events.helpers import (
    DROPOUT,
    PREFIX,
    SUBSCRIBER_SCOPES,
    deliveries,
    eventually,
    fetch,
    publish,
    subscribe,
)
from tests.events.receiver import Receiver
from tests.factories import make_child

DEAD = PREFIX + "platform.delivery.dead-lettered.v1"
DISABLED = PREFIX + "platform.subscription.disabled.v1"
OPS = [PREFIX + "platform.delivery.*", PREFIX + "platform.subscription.*"]
ABORT = (400, {"webhook-delivery": "abort-message"})


@pytest.fixture
async def other_receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def police_subscriber(token: TokenFactory) -> str:
    return await token(agency="police", scopes=SUBSCRIBER_SCOPES, region=REGION)


async def pull(client: httpx.AsyncClient, token: str, types: list[str]) -> str:
    body = {"mode": "pull", "types": types, "purpose_of_use": "child_protection"}
    response = await client.post("/v1/subscriptions", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def feed_types(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/events/feed", params={"after": 0}, headers=bearer(token))
    assert response.status_code == 200, response.text
    return [e for e in response.json()["events"] if e["type"] in (DEAD, DISABLED)]


def valid(event: dict[str, Any]) -> bool:
    event_type = catalog.get(event["type"])
    return event_type is not None and event_type.validate(event["data"]) == []


async def delivery_rows(database_url: str, subscription_id: str) -> list[Any]:
    return await fetch(
        database_url,
        "SELECT d.status, e.type FROM event_delivery d JOIN outbox_event e ON e.id = d.event_id "
        "WHERE d.subscription_id = $1::uuid ORDER BY d.id",
        subscription_id,
    )


class TestDeadLettered:
    async def test_the_agency_hears_on_its_other_subscription_and_feed_and_nobody_else_does(
        self,
        client: httpx.AsyncClient,
        database_url: str,
        subscriber: str,
        police_subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: Any,
        receiver: Receiver,
        other_receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: ABORT
        failing = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*", *OPS])
        ops = await subscribe(client, subscriber, other_receiver.url, OPS)
        await pull(client, subscriber, OPS)
        police_ops = await subscribe(client, police_subscriber, other_receiver.url, [PREFIX + "platform.*"])
        await start_worker()
        published = (await publish(client, education, DROPOUT, child["id"])).json()

        await other_receiver.wait_for(lambda r: len(r.delivered()) == 1)
        notice = other_receiver.delivered()[0].json
        assert notice["type"] == DEAD and valid(notice)
        assert notice["subject"] is None and notice["childlinkaudience"] == "civil-affairs"
        data = notice["data"]
        assert (data["subscription_id"], data["event_id"], data["event_type"], data["reason"]) == (
            failing["id"],
            published["id"],
            DROPOUT,
            "aborted",
        )
        assert set(data) <= {
            "subscription_id",
            "delivery_id",
            "event_id",
            "event_type",
            "reason",
            "attempts",
            "dead_lettered_at",
        }  # ids and codes, no child data
        assert len(receiver.requests) == 1  # the failed subscription is not told of its own failure
        assert [e["id"] for e in await feed_types(client, subscriber)] == [notice["id"]]

        # Another agency: not fanned out to its subscription (dispatched past it), not on its
        # feed, and 404 by id, exactly like an event that does not exist.
        seq = notice["childlinkseq"]

        async def police_dispatched() -> bool:
            rows = await fetch(
                database_url, "SELECT dispatched_seq FROM subscription WHERE id = $1::uuid", police_ops["id"]
            )
            return bool(rows[0][0] >= seq)

        await eventually(police_dispatched)
        assert await delivery_rows(database_url, police_ops["id"]) == []
        assert len(other_receiver.requests) == 1
        await pull(client, police_subscriber, OPS)
        assert await feed_types(client, police_subscriber) == []
        seen_by_police = await client.get(f"/v1/events/{notice['id']}", headers=bearer(police_subscriber))
        assert seen_by_police.status_code == 404
        seen_by_owner = await client.get(f"/v1/events/{notice['id']}", headers=bearer(subscriber))
        assert seen_by_owner.status_code == 200 and seen_by_owner.json()["data"] == data
        assert ops["id"] != failing["id"]

    async def test_a_dead_lettered_notice_produces_no_further_notice(
        self,
        client: httpx.AsyncClient,
        database_url: str,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: Any,
        receiver: Receiver,
        other_receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        # Both endpoints abort everything, and each subscribes to the other's notices.
        receiver.responder = other_receiver.responder = lambda request: ABORT
        first = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*", *OPS])
        second = await subscribe(client, subscriber, other_receiver.url, [PREFIX + "education.*", *OPS])
        await start_worker()
        await publish(client, education, DROPOUT, child["id"])

        async def settled() -> bool:
            rows = [
                *await delivery_rows(database_url, first["id"]),
                *await delivery_rows(database_url, second["id"]),
            ]
            return len(rows) == 4 and all(r["status"] == "dead" for r in rows)

        # Each dead-lettered event is reported to the other subscription; those two notices are
        # dead-lettered in turn (in the same transactions that would have reported them) and
        # reported to nobody.
        await eventually(settled)
        notices = await fetch(
            database_url, "SELECT data->>'event_type' AS t FROM outbox_event WHERE type = $1", DEAD
        )
        assert sorted(n["t"] for n in notices) == [DROPOUT, DROPOUT]

    async def test_skipping_a_pending_delivery_is_reported_as_skipped(
        self,
        loopback_settings: Any,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: Any,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: (503, {})
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await pull(client, subscriber, OPS)
        await start_worker(loopback_settings.model_copy(update={"webhook_retry_schedule": [3600.0]}))
        published = (await publish(client, education, DROPOUT, child["id"])).json()
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        (stuck,) = await deliveries(client, subscriber, sub["id"])
        skipped = await client.post(
            f"/v1/subscriptions/{sub['id']}/deliveries/{stuck['id']}/skip", headers=bearer(subscriber)
        )
        assert skipped.status_code == 200, skipped.text
        [notice] = await feed_types(client, subscriber)
        assert valid(notice)
        assert (notice["data"]["reason"], notice["data"]["delivery_id"], notice["data"]["event_id"]) == (
            "skipped",
            stuck["id"],
            published["id"],
        )


class TestAfterAnOutage:
    @pytest.mark.parametrize("by", ["retry", "redrive"])
    async def test_a_delivery_that_ran_out_of_tries_is_reported_and_sending_it_again_ends_the_back_off(
        self,
        by: str,
        loopback_settings: Any,
        client: httpx.AsyncClient,
        database_url: str,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: Any,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: (503, {})
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await pull(client, subscriber, OPS)
        await start_worker(loopback_settings.model_copy(update={"webhook_retry_schedule": [0.1]}))
        published = (await publish(client, education, DROPOUT, child["id"])).json()

        async def reported() -> list[dict[str, Any]]:
            return await feed_types(client, subscriber)

        [notice] = await eventually(reported)
        assert valid(notice)
        assert (notice["data"]["event_id"], notice["data"]["reason"]) == (published["id"], "exhausted")
        # An outage of days leaves the subscription backing off for hours (the schedule's 10 h).
        await fetch(
            database_url,
            "UPDATE subscription SET backoff_until = now() + interval '10 hours' WHERE id = $1::uuid",
            sub["id"],
        )
        receiver.responder = None  # the endpoint is repaired, and the operator sends the letter again
        path = f"/v1/subscriptions/{sub['id']}"
        [letter] = await deliveries(client, subscriber, sub["id"])
        if by == "retry":
            sent = await client.post(f"{path}/deliveries/{letter['id']}/retry", headers=bearer(subscriber))
            assert sent.status_code == 200, sent.text
        else:
            sent = await client.post(f"{path}/dead-letters/redrive", headers=bearer(subscriber))
            assert sent.status_code == 202 and sent.json() == {"queued": 1}
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert receiver.delivered()[0].headers["webhook-id"] == receiver.requests[0].headers["webhook-id"]

        async def healthy() -> bool:
            shown = (await client.get(path, headers=bearer(subscriber))).json()
            return shown["failing_since"] is None

        await eventually(healthy)


class TestDisabled:
    async def test_a_410_disables_the_subscription_and_the_agency_hears_elsewhere(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: Any,
        receiver: Receiver,
        other_receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: (410, {})
        gone = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*", *OPS])
        await subscribe(client, subscriber, other_receiver.url, OPS)
        await pull(client, subscriber, OPS)
        await start_worker()
        await publish(client, education, DROPOUT, child["id"])

        await other_receiver.wait_for(lambda r: len(r.delivered()) == 1)
        notice = other_receiver.delivered()[0].json
        assert notice["type"] == DISABLED and valid(notice)
        assert (notice["data"]["subscription_id"], notice["data"]["reason"]) == (gone["id"], "gone")
        assert notice["data"]["pending_deliveries"] == 1  # the event answered 410 waits to be resent
        assert [e["id"] for e in await feed_types(client, subscriber)] == [notice["id"]]
        shown = (await client.get(f"/v1/subscriptions/{gone['id']}", headers=bearer(subscriber))).json()
        assert (shown["status"], shown["disabled_reason"]) == ("disabled", "gone")

    async def test_a_ping_answered_410_is_reported_on_the_feed(
        self, client: httpx.AsyncClient, subscriber: str, loopback_sender: Any, receiver: Receiver
    ) -> None:
        receiver.responder = lambda request: (410, {})
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await pull(client, subscriber, OPS)
        pinged = await client.post(f"/v1/subscriptions/{sub['id']}/test", headers=bearer(subscriber))
        assert pinged.status_code == 200, pinged.text
        [notice] = await feed_types(client, subscriber)
        assert notice["type"] == DISABLED and notice["data"]["reason"] == "gone"
        assert notice["data"]["pending_deliveries"] == 0

    async def test_a_subscription_failing_for_the_whole_period_is_reported_with_its_backlog(
        self,
        loopback_settings: Any,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: Any,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: (503, {})
        failing = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await pull(client, subscriber, OPS)
        settings = loopback_settings.model_copy(
            update={"webhook_disable_after_failing_seconds": 0.5, "webhook_retry_schedule": [0.1] * 50}
        )
        await start_worker(settings)
        await publish(client, education, DROPOUT, child["id"])

        async def reported() -> list[dict[str, Any]]:
            return await feed_types(client, subscriber)

        [notice] = await eventually(reported, within=15)
        assert valid(notice)
        data = notice["data"]
        assert (data["subscription_id"], data["reason"], data["pending_deliveries"]) == (
            failing["id"],
            "failing",
            1,
        )
        assert data["failing_since"] <= data["disabled_at"]


class TestAccessNoticeDelivery:
    async def test_an_access_notice_reaches_the_owners_webhook_and_no_one_elses(
        self,
        app: Any,
        db: Any,
        client: httpx.AsyncClient,
        database_url: str,
        token: TokenFactory,
        civil: str,
        subscriber: str,
        police_subscriber: str,
        loopback_sender: Any,
        receiver: Receiver,
        other_receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        child = await make_child(client, civil, region=REGION + "005003", categories=["guardian_harm"])
        owners = await subscribe(client, subscriber, receiver.url, [PREFIX + "platform.access.*"])
        polices = await subscribe(client, police_subscriber, other_receiver.url, [PREFIX + "platform.*"])
        reader = await token(agency="police", scopes=["children:read"], region=REGION)
        read = await client.get(
            f"/v1/children/{child['id']}", headers={**bearer(reader), "X-Purpose-Of-Use": "child_protection"}
        )
        assert read.status_code == 200, read.text
        (job,) = [j for j in registered_jobs(app.state.door.policy) if j.name == "access.recorded"]
        assert await Scheduler(db, [job]).run_job(job, utcnow() + timedelta(hours=2)) == 1
        await start_worker()

        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        notice = receiver.delivered()[0].json
        assert notice["type"] == PREFIX + "platform.access.recorded.v1" and valid(notice)
        assert notice["subject"] == child["id"] and notice["data"]["reads"][0]["agency"] == "police"
        assert owners["id"] != polices["id"]

        async def police_dispatched() -> bool:
            rows = await fetch(
                database_url, "SELECT dispatched_seq FROM subscription WHERE id = $1::uuid", polices["id"]
            )
            return bool(rows[0][0] >= notice["childlinkseq"])

        await eventually(police_dispatched)
        assert await delivery_rows(database_url, polices["id"]) == []
        assert other_receiver.requests == []
