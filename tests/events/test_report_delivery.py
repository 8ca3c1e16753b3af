"""A mandatory report reaches its receivers' webhooks at once, signed, and never the reporter."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from standardwebhooks import Webhook

from app.events.sender import WebhookSender
from tests.case_factories import CASE_SCOPES, as_
from tests.conftest import TokenFactory
from tests.events.conftest import WorkerFactory
from tests.events.helpers import SUBSCRIBER_SCOPES, subscribe
from tests.events.receiver import Receiver
from tests.factories import CIVIL_SCOPES, make_child
from tests.routers.test_reports import SECRETS, report_body

RECEIVED = "cn.gov.childlink.platform.report.received.v1"
PLATFORM = ["cn.gov.childlink.platform.*"]


class TestReportDelivery:
    async def test_police_and_civil_affairs_have_it_signed_within_two_seconds_and_no_one_the_reporter(
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
            started = time.monotonic()
            filed = await client.post(
                "/v1/reports",
                json=report_body(child["id"]),
                headers={**as_(school), "Idempotency-Key": str(uuid.uuid4())},
            )
            assert filed.status_code == 201, filed.text
            for name in ("police", "civil"):
                await servers[name].wait_for(lambda r: len(r.delivered()) >= 1, within=5)
            assert time.monotonic() - started < 2.0

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
