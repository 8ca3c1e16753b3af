"""Webhook delivery end to end: a real receiver on loopback, real workers, the real door."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
import httpx
from standardwebhooks import Webhook

from app.config import Settings
from app.db import asyncpg_dsn
from app.events.sender import WebhookSender
from tests.conftest import TokenFactory, bearer
from tests.events.conftest import REGION, WorkerFactory
from tests.events.helpers import (
    DROPOUT,
    HOME_VISIT,
    INCIDENT,
    PREFIX,
    SAMPLES,
    SUBSCRIBER_SCOPES,
    deliveries,
    eventually,
    fetch,
    publish,
    scalar,
    subscribe,
    worker_for,
)
from tests.events.receiver import Receiver
from tests.factories import make_child


class TestPublishToWebhook:
    async def test_a_dropout_risk_reaches_civil_affairs_signed_and_on_record(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        database_url: str,
    ) -> None:
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await start_worker()
        accepted = (await publish(client, education, DROPOUT, child["id"])).json()
        # How soon is the business of bench/bench_events.py; here, that it arrives at all.
        await receiver.wait_for(lambda r: len(r.delivered()) == 1, within=10)

        request = receiver.requests[0]
        payload = Webhook(sub["secret"]).verify(request.body, request.headers)
        assert payload["specversion"] == "1.0"
        assert payload["id"] == accepted["id"]
        assert payload["type"] == DROPOUT
        assert payload["subject"] == child["id"]
        assert payload["data"] == SAMPLES[DROPOUT]
        assert payload["childlinkseq"] == accepted["sequence"]
        assert payload["childlinkagency"] == "education"
        assert "childlinkwithheld" not in payload
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-id"].startswith("msg_")

        logged = await fetch(
            database_url,
            "SELECT agency, decision, child_id, request_id, purpose FROM access_log "
            "WHERE action = 'event.deliver'",
        )
        assert [(r["agency"], r["decision"], str(r["child_id"])) for r in logged] == [
            ("civil-affairs", "allow", child["id"])
        ]
        assert logged[0]["request_id"] == request.headers["webhook-id"]
        assert logged[0]["purpose"] == "child_protection"

        async def recorded() -> list[dict[str, Any]]:
            return [d for d in await deliveries(client, subscriber, sub["id"]) if d["status"] == "delivered"]

        (delivery,) = await eventually(recorded)
        assert delivery["webhook_id"] == request.headers["webhook-id"]
        assert delivery["sequence"] == accepted["sequence"]
        assert [(a["attempt"], a["outcome"], a["status_code"]) for a in delivery["attempt_log"]] == [
            (1, "delivered", 200)
        ]

    async def test_registry_changes_flow_through_the_same_outbox(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        education = await token(agency="education", scopes=SUBSCRIBER_SCOPES, region=REGION)
        sub = await subscribe(
            client, education, receiver.url, [PREFIX + "civil-affairs.child.*"], purpose="education_support"
        )
        await start_worker()
        child = await make_child(
            client, civil, region=REGION + "005003", categories=["left_behind", "serious_illness"]
        )
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        payload = Webhook(sub["secret"]).verify(receiver.requests[0].body, receiver.requests[0].headers)
        assert payload["type"] == PREFIX + "civil-affairs.child.registered.v1"
        # Education may see welfare for its purpose, not health: the serious illness is withheld.
        assert payload["data"] == {
            "child_id": child["id"],
            "region_code": child["region_code"],
            "categories": ["left_behind"],
            "name": child["name"],
            "sex": child["sex"],
            "birth_date": child["birth_date"],
        }
        assert payload["childlinkwithheld"] == "health"

    async def test_police_and_the_womens_federation_learn_who_entered_and_left_the_registry(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        subs = {}
        for agency in ("police", "womens-federation"):
            reader = await token(agency=agency, scopes=SUBSCRIBER_SCOPES, region=REGION)
            subs[agency] = await subscribe(
                client,
                reader,
                receiver.url + f"?{agency}",
                [PREFIX + "civil-affairs.child.registered.v1", PREFIX + "civil-affairs.child.exited.v1"],
            )
        await start_worker()
        child = await make_child(client, civil, region=REGION + "005003", categories=["left_behind"])
        exited = await client.post(
            f"/v1/children/{child['id']}/exit",
            json={"reason": "moved", "exit_date": child["created_at"][:10]},
            headers=bearer(civil),
        )
        assert exited.status_code == 200, exited.text
        await receiver.wait_for(lambda r: len(r.delivered()) == 4)
        for request in receiver.requests:
            agency = "police" if request.path.endswith("?police") else "womens-federation"
            payload = Webhook(subs[agency]["secret"]).verify(request.body, request.headers)
            data = payload["data"]
            assert data["name"] == child["name"] and data["region_code"] == child["region_code"]
            assert data["sex"] == child["sex"] and data["birth_date"] == child["birth_date"]


class TestAccessLayer:
    async def test_a_womens_federation_subscriber_gets_no_law_enforcement_data(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        police: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        database_url: str,
    ) -> None:
        federation = await token(agency="womens-federation", scopes=SUBSCRIBER_SCOPES, region=REGION)
        sub = await subscribe(client, federation, receiver.url, [PREFIX + "police.*"])
        await start_worker()
        await publish(client, police, INCIDENT, child["id"])
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        payload = Webhook(sub["secret"]).verify(receiver.requests[0].body, receiver.requests[0].headers)
        assert payload["data"] == {"handling_unit": SAMPLES[INCIDENT]["handling_unit"]}
        assert payload["childlinkwithheld"] == "custody,law_enforcement"
        for secret_value in ("WH-2026-0042", "neglect", "victim"):
            assert secret_value not in receiver.requests[0].body.decode()
        (record,) = await fetch(
            database_url,
            "SELECT decision, categories_returned, categories_withheld FROM access_log "
            "WHERE action = 'event.deliver'",
        )
        assert record["decision"] == "allow_redacted"
        assert record["categories_returned"] == ["contact"]
        assert sorted(record["categories_withheld"]) == ["custody", "law_enforcement"]

        async def attempt() -> Any:
            items = await deliveries(client, federation, sub["id"])
            done = [a for a in (items[0]["attempt_log"] if items else []) if a["outcome"] != "sending"]
            return done and done[0]

        assert sorted((await eventually(attempt))["categories_withheld"]) == ["custody", "law_enforcement"]

    async def test_a_subscriber_with_no_legal_basis_gets_nothing_and_the_denial_is_recorded(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        police: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        database_url: str,
    ) -> None:
        health = await token(agency="health", scopes=SUBSCRIBER_SCOPES, region=REGION)
        sub = await subscribe(client, health, receiver.url, [PREFIX + "police.*"], purpose="health_care")
        await start_worker()
        await publish(client, police, INCIDENT, child["id"])

        async def denied() -> list[dict[str, Any]]:
            return await deliveries(client, health, sub["id"], status="denied")

        (delivery,) = await eventually(denied)
        assert delivery["attempts"] == 1
        assert delivery["attempt_log"][0]["outcome"] == "denied"
        await asyncio.sleep(0.3)  # would a retry come? none may
        assert receiver.requests == []
        decisions = await fetch(
            database_url, "SELECT decision FROM access_log WHERE action = 'event.deliver'"
        )
        assert [r["decision"] for r in decisions] == ["deny"]


class TestNothingLost:
    async def test_a_receiver_failing_for_a_while_gets_everything_in_order_per_child(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        civil: str,
        education: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        children = [await make_child(client, civil, region=REGION + "005003") for _ in range(3)]
        # The first few requests fail (counted, not timed: a slow machine must not skip them).
        receiver.responder = lambda request: (500 if len(receiver.requests) < 4 else 200, {})
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await start_worker()
        published: dict[str, list[int]] = defaultdict(list)
        for round_ in range(4):
            for child in children:
                data = {**SAMPLES[DROPOUT], "flagged_on": f"2026-11-{10 + round_}"}
                published[child["id"]].append(
                    (await publish(client, education, DROPOUT, child["id"], data)).json()["sequence"]
                )
        await receiver.wait_for(lambda r: len(r.delivered()) == 12, within=15)

        received: dict[str, list[int]] = defaultdict(list)
        for request in receiver.delivered():
            payload = Webhook(sub["secret"]).verify(request.body, request.headers)
            received[payload["subject"]].append(payload["childlinkseq"])
        assert received == published  # everything, each child's events in sequence order
        assert any(r.status == 500 for r in receiver.requests)
        ids_by_seq: dict[int, set[str]] = defaultdict(set)
        for request in receiver.requests:
            ids_by_seq[Webhook(sub["secret"]).verify(request.body, request.headers)["childlinkseq"]].add(
                request.headers["webhook-id"]
            )
        assert all(len(ids) == 1 for ids in ids_by_seq.values())  # the same webhook-id on every retry

    async def test_retry_after_is_honoured(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: (
            (503, {"retry-after": "1"}) if not receiver.requests else (200, {})
        )
        await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await start_worker()
        await publish(client, education, DROPOUT, child["id"])
        await receiver.wait_for(lambda r: len(r.delivered()) == 1, within=5)
        first, second = receiver.requests
        assert second.at - first.at >= 0.95  # the schedule alone would have retried after 0.05 s

    async def test_after_the_last_attempt_it_is_dead_lettered_and_replay_sends_it_again(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: (500, {})
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await start_worker()
        accepted = (await publish(client, education, DROPOUT, child["id"])).json()

        async def dead() -> list[dict[str, Any]]:
            return await deliveries(client, subscriber, sub["id"], status="dead")

        (letter,) = await eventually(dead)
        assert letter["attempts"] == 5  # the first try and four retries of the test schedule
        assert [a["outcome"] for a in letter["attempt_log"]] == ["failed"] * 5
        assert len(receiver.requests) == 5

        receiver.responder = None
        replay = await client.post(
            f"/v1/subscriptions/{sub['id']}/replay",
            json={"from_sequence": accepted["sequence"]},
            headers=bearer(subscriber),
        )
        assert replay.status_code == 202, replay.text
        assert replay.json()["queued"] == 1
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        again = receiver.delivered()[0]
        assert again.json["id"] == accepted["id"]
        assert again.headers["webhook-id"] != receiver.requests[0].headers["webhook-id"]

    async def test_410_disables_the_subscription_and_resuming_delivers_it_and_what_was_missed(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: (410, {})
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await start_worker()
        first = (await publish(client, education, DROPOUT, child["id"])).json()
        path = f"/v1/subscriptions/{sub['id']}"

        async def disabled() -> bool:
            shown = (await client.get(path, headers=bearer(subscriber))).json()
            return shown["status"] == "disabled" and shown["disabled_reason"] == "gone"

        await eventually(disabled)
        receiver.responder = None
        missed = (await publish(client, education, DROPOUT, child["id"])).json()
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == 1  # nothing sent while disabled
        unasked = await client.patch(path, json={"status": "active"}, headers=bearer(subscriber))
        assert unasked.status_code == 422
        assert unasked.json()["code"] == "resume_choice_required"
        resumed = await client.patch(
            path, json={"status": "active", "resume": "where_stopped"}, headers=bearer(subscriber)
        )
        assert resumed.json()["status"] == "active"
        # the event answered 410 first (never received: the same message again), then the missed one
        await receiver.wait_for(lambda r: len(r.delivered()) == 2)
        answered_410, *_ = receiver.requests
        assert [r.json["id"] for r in receiver.delivered()] == [first["id"], missed["id"]]
        assert receiver.delivered()[0].headers["webhook-id"] == answered_410.headers["webhook-id"]

    async def test_a_410_to_a_delivery_in_flight_when_paused_disables_and_re_enabling_needs_a_choice(
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
        path = f"/v1/subscriptions/{sub['id']}"
        paused_meanwhile: list[int] = []

        async def pause_then_gone(request: Any) -> tuple[int, dict[str, str]]:
            # the subscription is paused while its delivery waits for this answer
            paused = await client.patch(path, json={"status": "paused"}, headers=bearer(subscriber))
            paused_meanwhile.append(paused.status_code)
            return 410, {}

        receiver.responder = pause_then_gone
        await start_worker()
        first = (await publish(client, education, DROPOUT, child["id"])).json()

        async def disabled() -> Any:
            shown = (await client.get(path, headers=bearer(subscriber))).json()
            return shown if shown["status"] == "disabled" else None

        shown = await eventually(disabled)
        assert paused_meanwhile == [200] and shown["disabled_reason"] == "gone"
        receiver.responder = None
        for status in ("paused", "active"):  # neither skips the choice of what to do with the 410'd one
            refused = await client.patch(path, json={"status": status}, headers=bearer(subscriber))
            assert refused.status_code == 422, refused.text
        resumed = await client.patch(
            path, json={"status": "active", "resume": "where_stopped"}, headers=bearer(subscriber)
        )
        assert resumed.status_code == 200, resumed.text
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert receiver.delivered()[0].json["id"] == first["id"]

    async def test_re_enabling_from_now_skips_what_was_answered_410(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        receiver.responder = lambda request: (410, {})
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await start_worker()
        first = (await publish(client, education, DROPOUT, child["id"])).json()
        path = f"/v1/subscriptions/{sub['id']}"

        async def gone() -> Any:
            listed = await client.get(
                path + "/deliveries", params={"status": "gone"}, headers=bearer(subscriber)
            )
            return listed.json()["items"]

        [answered] = await eventually(gone)
        assert answered["event_id"] == first["id"]
        receiver.responder = None
        resumed = await client.patch(
            path, json={"status": "active", "resume": "now"}, headers=bearer(subscriber)
        )
        assert resumed.status_code == 200, resumed.text
        letters = (await client.get(path + "/dead-letters", headers=bearer(subscriber))).json()
        assert [(d["event_id"], d["status"]) for d in letters["items"]] == [(first["id"], "skipped")]
        later = (await publish(client, education, DROPOUT, child["id"])).json()
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert [r.json["id"] for r in receiver.delivered()] == [later["id"]]

    async def test_two_workers_never_deliver_the_same_attempt_at_once(
        self,
        loopback_settings: Settings,
        client: httpx.AsyncClient,
        subscriber: str,
        civil: str,
        education: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        database_url: str,
    ) -> None:
        children = [await make_child(client, civil, region=REGION + "005003") for _ in range(6)]
        in_flight: dict[str, int] = defaultdict(int)
        overlaps: list[str] = []

        async def slow(request: Any) -> tuple[int, dict[str, str]]:
            webhook_id = request.headers["webhook-id"]
            in_flight[webhook_id] += 1
            if in_flight[webhook_id] > 1:
                overlaps.append(webhook_id)
            await asyncio.sleep(0.01)
            in_flight[webhook_id] -= 1
            return 200, {}

        receiver.responder = slow
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await asyncio.gather(*(publish(client, education, DROPOUT, c["id"]) for c in children * 5))
        # Two slots each, six children claimable at a time: neither worker can take it all alone.
        narrow = loopback_settings.model_copy(update={"worker_concurrency": 2})
        await start_worker(narrow, name="worker-a")
        await start_worker(narrow, name="worker-b")
        await receiver.wait_for(lambda r: len(r.delivered()) == 30, within=15)
        await asyncio.sleep(0.2)
        assert overlaps == []
        webhook_ids = [r.headers["webhook-id"] for r in receiver.requests]
        assert len(webhook_ids) == len(set(webhook_ids)) == 30  # each sent exactly once
        workers = await fetch(database_url, "SELECT DISTINCT worker FROM delivery_attempt")
        assert {r["worker"] for r in workers} == {"worker-a", "worker-b"}  # both took part
        by_child: dict[str, list[int]] = defaultdict(list)
        for request in receiver.requests:
            payload = Webhook(sub["secret"]).verify(request.body, request.headers)
            by_child[payload["subject"]].append(payload["childlinkseq"])
        assert all(seqs == sorted(seqs) for seqs in by_child.values())
        attempts = await scalar(database_url, "SELECT count(*) FROM delivery_attempt")
        assert attempts == 30


class TestFilters:
    async def test_types_regions_and_categories_filter_what_is_delivered(
        self,
        client: httpx.AsyncClient,
        civil: str,
        token: TokenFactory,
        education: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        here = await make_child(client, civil, region=REGION + "005003")
        there = await make_child(client, civil, region=REGION + "006001")
        school_system = await token(agency="education", scopes=SUBSCRIBER_SCOPES, region=REGION)
        await subscribe(
            client,
            school_system,
            receiver.url,
            [PREFIX + "civil-affairs.home-visit.*"],
            region_prefix=REGION + "005",
        )
        await start_worker()
        await publish(client, civil, HOME_VISIT, there["id"])  # another township
        await publish(client, education, DROPOUT, here["id"])  # another type
        wanted = (await publish(client, civil, HOME_VISIT, here["id"])).json()
        await receiver.wait_for(lambda r: len(r.delivered()) >= 1)
        await asyncio.sleep(0.3)
        assert [r.json["id"] for r in receiver.requests] == [wanted["id"]]
        assert uuid.UUID(receiver.requests[0].json["subject"]) == uuid.UUID(here["id"])


class TestHousekeeping:
    async def test_idempotency_keys_are_forgotten_after_a_week(
        self,
        client: httpx.AsyncClient,
        education: str,
        child: dict[str, Any],
        database_url: str,
        app: Any,
        loopback_settings: Settings,
    ) -> None:
        await publish(client, education, DROPOUT, child["id"], key="old-key")
        await publish(client, education, DROPOUT, child["id"], key="new-key")
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await conn.execute(
                "UPDATE event_idempotency SET created_at = now() - interval '8 days' WHERE key = 'old-key'"
            )
        finally:
            await conn.close()
        worker = worker_for(app, loopback_settings)
        try:
            assert await worker.prune() == 1
        finally:
            await worker.aclose()
        keys = [r["key"] for r in await fetch(database_url, "SELECT key FROM event_idempotency")]
        assert keys == ["new-key"]


class TestReplayByTime:
    async def test_replay_from_a_time_resends_what_was_published_since(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        database_url: str,
    ) -> None:
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await start_worker()
        old = (await publish(client, education, DROPOUT, child["id"])).json()
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        (cut,) = await fetch(database_url, "SELECT now() AS t")
        new = (await publish(client, education, DROPOUT, child["id"])).json()
        await receiver.wait_for(lambda r: len(r.delivered()) == 2)
        replay = await client.post(
            f"/v1/subscriptions/{sub['id']}/replay",
            json={"from_time": cut["t"].isoformat()},
            headers=bearer(subscriber),
        )
        assert replay.json()["queued"] == 1
        await receiver.wait_for(lambda r: len(r.delivered()) == 3)
        assert [r.json["id"] for r in receiver.delivered()] == [old["id"], new["id"], new["id"]]
        kinds = [d["kind"] for d in await deliveries(client, subscriber, sub["id"])]
        assert kinds == ["replay", "event", "event"]


class TestDeletedMidDelivery:
    async def test_a_subscription_deleted_while_its_delivery_is_in_flight_breaks_nothing(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        database_url: str,
    ) -> None:
        doomed = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        other = await Receiver().start()
        try:
            kept = await subscribe(client, subscriber, other.url, [PREFIX + "education.*"])

            async def delete_then_answer(request: Any) -> tuple[int, dict[str, str]]:
                deleted = await client.delete(f"/v1/subscriptions/{doomed['id']}", headers=bearer(subscriber))
                assert deleted.status_code == 204
                return 200, {}

            receiver.responder = delete_then_answer
            await start_worker()
            await publish(client, education, DROPOUT, child["id"])
            await receiver.wait_for(lambda r: len(r.requests) == 1)
            await other.wait_for(lambda r: len(r.delivered()) == 1)
            await publish(client, education, DROPOUT, child["id"])
            await other.wait_for(lambda r: len(r.delivered()) == 2)  # the worker carries on

            async def recorded() -> list[dict[str, Any]]:
                return await deliveries(client, subscriber, kept["id"], status="delivered")

            assert len(await eventually(lambda: _two(recorded))) == 2
            assert await scalar(database_url, "SELECT count(*) FROM event_delivery") == 2
            await asyncio.sleep(3.5)  # past the lease: nothing unrecorded comes back
            webhook_ids = [r.headers["webhook-id"] for r in other.requests]
            assert len(webhook_ids) == len(set(webhook_ids)) == 2
        finally:
            await other.stop()


async def _two(check: Any) -> Any:
    items = await check()
    return items if len(items) == 2 else None


class TestDeliveryLogs:
    async def test_a_webhook_delivery_logs_no_url_query_string(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        caplog: Any,
    ) -> None:
        # Receivers often authenticate the platform by a secret in their URL's query string.
        url = receiver.url + "?access_key=receiver-secret-4711"
        sub = await subscribe(client, subscriber, url, [PREFIX + "education.*"])
        caplog.set_level(logging.DEBUG)  # everything any logger lets through, httpx's INFO included
        await start_worker()
        await publish(client, education, DROPOUT, child["id"])

        async def recorded() -> bool:
            # The worker records the outcome after httpx has read the answer (and logged it).
            found = await deliveries(client, subscriber, sub["id"])
            return bool(found) and found[0]["status"] == "delivered"

        await eventually(recorded, within=5)
        assert receiver.requests[0].path.endswith("?access_key=receiver-secret-4711")
        logged = [record.getMessage() for record in caplog.records]
        assert not [line for line in logged if "receiver-secret-4711" in line or "/hooks/childlink" in line]
        assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
