"""The demo's reports are what real requests make: the acknowledged one was acknowledged through
the acknowledge service, so its referral.accepted event is in the outbox like any other."""

from __future__ import annotations

from typing import Any

import httpx

from app.services import demo as demo_service
from app.services.demo_reports import DEMO_REPORT_ACKNOWLEDGED_ID, DEMO_REPORT_TO_ACKNOWLEDGE_ID
from tests.case_factories import as_
from tests.conftest import TokenFactory
from tests.events.helpers import fetch

ACCEPTED = "cn.gov.childlink.platform.referral.accepted.v1"


async def test_the_demos_acknowledged_report_has_its_accepted_event_and_its_status(
    app: Any, client: httpx.AsyncClient, token: TokenFactory, database_url: str
) -> None:
    async with app.state.db.sessionmaker() as session:
        await demo_service.load(session)
        await demo_service.load_children(session, app.state.webhook_secret_box)
        await session.commit()
    police = await token(agency="police", scopes=["children:read", "cases:write"], region="51")

    events = await fetch(
        database_url,
        "SELECT e.type, e.data->>'to_agency' AS to_agency, r.id AS report_id FROM outbox_event e "
        "JOIN report r ON r.case_id = e.case_id WHERE e.type = $1",
        ACCEPTED,
    )
    read = await client.get(f"/v1/reports/{DEMO_REPORT_ACKNOWLEDGED_ID}", headers=as_(police))
    waiting = await client.get(f"/v1/reports/{DEMO_REPORT_TO_ACKNOWLEDGE_ID}", headers=as_(police))

    assert [(e["to_agency"], e["report_id"]) for e in events] == [("police", DEMO_REPORT_ACKNOWLEDGED_ID)]
    receivers = {r["agency"]: r for r in read.json()["receivers"]}
    assert receivers["police"]["status"] == "acknowledged"
    assert receivers["police"]["acknowledged_at"] is not None
    assert {r["agency"]: r["status"] for r in waiting.json()["receivers"]}["police"] == "received"
