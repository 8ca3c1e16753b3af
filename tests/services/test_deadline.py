"""Deadlines enforce themselves: the scheduler's referral job, driven by a controlled clock."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from app.access.case_policy import case_policy, parent_region
from app.db import Database
from app.events.scheduler import Scheduler, TimedJob, registered_jobs
from app.services import deadline as deadline_service
from tests.case_factories import as_, open_case, refer, story_child, tokens
from tests.conftest import TokenFactory
from tests.routers.test_custody import fetch

OVERDUE_SQL = (
    "SELECT {columns} FROM outbox_event "
    "WHERE type = 'cn.gov.childlink.platform.referral.overdue.v1' ORDER BY seq"
)


@pytest.fixture
async def parties(token: TokenFactory) -> dict[str, str]:
    return await tokens(token)


@pytest.fixture
async def referral(client: httpx.AsyncClient, parties: dict[str, str]) -> dict[str, Any]:
    child = await story_child(client, parties["registrar"])
    case = await open_case(client, parties["education"], child["id"])
    return await refer(client, parties["education"], case["id"])


def job(app: Any) -> TimedJob:
    (found,) = [j for j in registered_jobs(app.state.door.policy) if j.name == "referral.overdue"]
    return found


def worker(app: Any, db: Database) -> Scheduler:
    """A fresh scheduler, as a newly started worker process has."""
    return Scheduler(db, registered_jobs(app.state.door.policy))


async def overdue_events(database_url: str) -> list[dict[str, Any]]:
    rows = await fetch(database_url, OVERDUE_SQL.format(columns="data"))
    return [json.loads(r["data"]) for r in rows]


class TestParentRegion:
    def test_each_level_escalates_to_the_one_above(self) -> None:
        assert parent_region("510107005003") == "510107005"
        assert parent_region("510107005") == "510107"
        assert parent_region("510107") == "5101"
        assert parent_region("5101") == "51"
        assert parent_region("51") == ""


class TestReferralOverdue:
    async def test_fires_once_per_interval_across_a_restart_and_stops_when_answered(
        self,
        app: Any,
        db: Database,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        referral: dict[str, Any],
        database_url: str,
    ) -> None:
        due = datetime.fromisoformat(referral["respond_by"])
        interval = case_policy(app.state.door.policy).escalation_interval
        first = worker(app, db)

        assert await first.run_job(job(app), due - timedelta(minutes=1)) == 0
        assert await first.run_job(job(app), due + timedelta(minutes=1)) == 1
        assert await first.run_job(job(app), due + timedelta(minutes=2)) == 0
        restarted = worker(app, db)
        assert await restarted.run_job(job(app), due + timedelta(minutes=3)) == 0
        assert await restarted.run_job(job(app), due + interval + timedelta(minutes=1)) == 1
        assert await restarted.run_job(job(app), due + interval + timedelta(minutes=5)) == 0

        inbox = await client.get(
            "/v1/referrals?direction=incoming&overdue=true", headers=as_(parties["supervisor"])
        )
        assert [r["id"] for r in inbox.json()["items"]] == [referral["id"]]
        events = await overdue_events(database_url)
        assert [(e["step"], e["deadline"], e["escalated_to_region"]) for e in events] == [
            (0, "respond_by", "510107"),
            (1, "respond_by", "510107"),
        ]

        accepted = await client.post(
            f"/v1/referrals/{referral['id']}/accept", json={}, headers=as_(parties["supervisor"])
        )
        assert accepted.json()["overdue"] is False
        assert await restarted.run_job(job(app), due + 2 * interval + timedelta(minutes=1)) == 0
        assert len(await overdue_events(database_url)) == 2

    async def test_a_run_killed_before_commit_loses_nothing_and_the_next_sends_it_once(
        self, app: Any, db: Database, referral: dict[str, Any], database_url: str
    ) -> None:
        late = datetime.fromisoformat(referral["respond_by"]) + timedelta(minutes=1)
        async with db.sessionmaker() as session:
            assert await deadline_service.fire_overdue(session, late, policy=app.state.door.policy) == 1
            await session.rollback()  # the worker died here: nothing of the step committed
        assert await overdue_events(database_url) == []

        assert await worker(app, db).run_job(job(app), late) == 1
        assert len(await overdue_events(database_url)) == 1

    async def test_several_workers_at_once_fire_each_step_once(
        self, app: Any, db: Database, referral: dict[str, Any], database_url: str
    ) -> None:
        late = datetime.fromisoformat(referral["respond_by"]) + timedelta(minutes=1)
        workers = [worker(app, db) for _ in range(4)]

        fired = await asyncio.gather(*(w.run_job(job(app), late) for w in workers))

        assert sum(fired) == 1
        assert len(await overdue_events(database_url)) == 1
        steps = await fetch(database_url, "SELECT step FROM deadline_step")
        assert [r["step"] for r in steps] == [0]

    async def test_the_referrer_and_the_level_above_receive_the_overdue_event(
        self,
        app: Any,
        db: Database,
        client: httpx.AsyncClient,
        token: TokenFactory,
        referral: dict[str, Any],
        database_url: str,
    ) -> None:
        late = datetime.fromisoformat(referral["respond_by"]) + timedelta(minutes=1)
        await worker(app, db).run_job(job(app), late)
        (event_id,) = [r["id"] for r in await fetch(database_url, OVERDUE_SQL.format(columns="id"))]
        county = await token(agency="civil-affairs", scopes=["events:read"], region="510107")
        lead = await token(agency="education", scopes=["events:read"], region="510107")
        police = await token(agency="police", scopes=["events:read"], region="51")

        above = await client.get(f"/v1/events/{event_id}", headers=as_(county))
        referrer = await client.get(f"/v1/events/{event_id}", headers=as_(lead))
        stranger = await client.get(f"/v1/events/{event_id}", headers=as_(police))

        assert above.status_code == referrer.status_code == 200
        assert above.json()["data"]["kind"] == referrer.json()["data"]["kind"] == "dropout"
        assert above.json()["childlinkcase"] == referral["case_id"]
        assert stranger.status_code == 403
