"""A mandatory report reaches its receivers' webhooks at once, signed, and never the reporter."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from standardwebhooks import Webhook

from app.config import Settings
from app.events.sender import WebhookSender
from tests.case_factories import CASE_SCOPES, as_
from tests.conftest import TokenFactory
from tests.events.conftest import WorkerFactory
from tests.events.helpers import HOME_VISIT, SUBSCRIBER_SCOPES, publish, subscribe
from tests.events.receiver import Receiver
from tests.factories import CIVIL_SCOPES, make_child
from tests.routers.test_reports import SECRETS, report_body

RECEIVED = "cn.gov.childlink.platform.report.received.v1"
PLATFORM = ["cn.gov.childlink.platform.*"]


class TestReportDelivery:
    async def test_police_and_civil_affairs_have_it_signed_and_no_one_the_reporter(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        loopback_sender: WebhookSender,
        start_worker: WorkerFactory,
    ) -> None:
        registrar = await token(agency="civil-affairs", scopes=[*CIVIL_SCOPES, "cases:write"], region="51")
        school = await token(agency="education", scopes=["reports:file", "children:read"], region="510107")
        police = await token(agency="police", scopes=CASE_SCOPES, region="510107")
        child = await make_child(client, registrar, region="510107005003")
        servers = {name: await Receiver().start() for name in ("police", "civil", "womens", "education")}
        try:
            secrets: dict[str, str] = {}
            for name, agency in (
                ("police", "police"),
                ("civil", "civil-affairs"),
                ("womens", "womens-federation"),
                ("education", "education"),
            ):
                manager = await token(agency=agency, scopes=SUBSCRIBER_SCOPES, region="510107")
                secrets[name] = (await subscribe(client, manager, servers[name].url, PLATFORM))["secret"]
            await start_worker()
            filed = await client.post(
                "/v1/reports",
                json=report_body(child["id"]),
                headers={**as_(school), "Idempotency-Key": str(uuid.uuid4())},
            )
            assert filed.status_code == 201, filed.text
            for name in ("police", "civil"):
                # How soon is measured in bench/bench_report_priority.py; here only that it comes.
                await servers[name].wait_for(lambda r: len(r.delivered()) >= 1, within=10)

            for name in ("police", "civil"):
                request = servers[name].requests[0]
                payload: dict[str, Any] = Webhook(secrets[name]).verify(request.body, request.headers)
                assert payload["type"] == RECEIVED
                assert payload["data"]["report_id"] == filed.json()["id"]
                assert payload["data"]["concern"] == "physical_abuse"

            ack = await client.post(f"/v1/reports/{filed.json()['id']}/acknowledge", headers=as_(police))
            assert ack.status_code == 200
            await servers["civil"].wait_for(lambda r: len(r.delivered()) >= 2, within=5)
            await asyncio.sleep(0.5)  # time for anything wrongly addressed to arrive too
            assert servers["womens"].delivered() == []
            for server in servers.values():
                for request in server.requests:
                    assert all(s.encode() not in request.body for s in SECRETS)
        finally:
            for server in servers.values():
                await server.stop()


BACKLOG = 30


async def _queue_home_visits(client: httpx.AsyncClient, registrar: str, children: list[str]) -> None:
    for child_id in children:
        await publish(client, registrar, HOME_VISIT, child_id)


def _types_in_order(server: Receiver) -> list[tuple[str, str]]:
    """(type, urgency or subject) of each delivered request, in arrival order."""
    return [(r.json["type"], r.json["data"].get("urgency") or r.json["subject"]) for r in server.delivered()]


class TestImmediateDangerGoesFirst:
    """A report of a child in immediate danger is not queued behind the receiver's backlog."""

    async def test_an_immediate_danger_report_is_received_before_the_backlog_drains(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        loopback_sender: WebhookSender,
        loopback_settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        registrar = await token(
            agency="civil-affairs", scopes=[*CIVIL_SCOPES, "cases:write", "events:publish"], region="51"
        )
        school = await token(agency="education", scopes=["reports:file", "children:read"], region="510107")
        manager = await token(agency="civil-affairs", scopes=SUBSCRIBER_SCOPES, region="510107")
        others = [(await make_child(client, registrar, region="510107005003"))["id"] for _ in range(BACKLOG)]
        in_danger = await make_child(client, registrar, region="510107005003")
        hurt = await make_child(client, registrar, region="510107005003")
        server = await Receiver().start()
        try:
            await subscribe(client, manager, server.url, [HOME_VISIT, *PLATFORM])
            await _queue_home_visits(client, registrar, others)
            for child, urgency in ((hurt, "urgent"), (in_danger, "immediate_danger")):
                filed = await client.post(
                    "/v1/reports",
                    json=report_body(child["id"], urgency=urgency),
                    headers={**as_(school), "Idempotency-Key": str(uuid.uuid4())},
                )
                assert filed.status_code == 201, filed.text
            # Two slots, and so one live lease for the subscription: one delivery at a time.
            await start_worker(loopback_settings.model_copy(update={"worker_concurrency": 2}))
            await server.wait_for(lambda r: len(r.delivered()) >= BACKLOG + 2, within=30)

            arrived = _types_in_order(server)
            danger = arrived.index((RECEIVED, "immediate_danger"))
            urgent = arrived.index((RECEIVED, "urgent"))
            # Queued last, received among the first: at most the one delivery already in flight
            # when it became claimable went before it.
            assert danger <= 1, arrived
            # An urgent report has no priority: filed before the immediate one, it waits its turn
            # behind the backlog.
            assert urgent == BACKLOG + 1, arrived
            assert len({subject for kind, subject in arrived if kind == HOME_VISIT}) == BACKLOG
        finally:
            await server.stop()

    async def test_it_still_waits_for_an_earlier_event_about_the_same_child(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        loopback_sender: WebhookSender,
        loopback_settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        registrar = await token(
            agency="civil-affairs", scopes=[*CIVIL_SCOPES, "cases:write", "events:publish"], region="51"
        )
        school = await token(agency="education", scopes=["reports:file", "children:read"], region="510107")
        manager = await token(agency="civil-affairs", scopes=SUBSCRIBER_SCOPES, region="510107")
        others = [(await make_child(client, registrar, region="510107005003"))["id"] for _ in range(5)]
        child = (await make_child(client, registrar, region="510107005003"))["id"]
        server = await Receiver().start()
        try:
            await subscribe(client, manager, server.url, [HOME_VISIT, *PLATFORM])
            await _queue_home_visits(client, registrar, [*others, child])
            filed = await client.post(
                "/v1/reports",
                json=report_body(child, urgency="immediate_danger"),
                headers={**as_(school), "Idempotency-Key": str(uuid.uuid4())},
            )
            assert filed.status_code == 201, filed.text
            await start_worker(loopback_settings.model_copy(update={"worker_concurrency": 2}))
            await server.wait_for(lambda r: len(r.delivered()) >= len(others) + 2, within=30)

            arrived = _types_in_order(server)
            # Per subscription and child, events arrive in sequence order: the child's home
            # visit, published first, is received before the report about the same child.
            assert arrived.index((HOME_VISIT, child)) < arrived.index((RECEIVED, "immediate_danger"))
        finally:
            await server.stop()
