"""Owners told of reads (``platform.access.recorded``): the scheduler's job, driven by a
controlled clock, against the real access log."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.db import Database
from app.events import catalog
from app.events.scheduler import Scheduler, TimedJob, registered_jobs
from app.models.common import utcnow
from tests.conftest import TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, make_child, purpose
from tests.routers.test_reports import file, report_body

NOTICE = "cn.gov.childlink.platform.access.recorded.v1"
REF = "WH-2026-0301"


@pytest.fixture
async def parties(token: TokenFactory) -> dict[str, str]:
    return {
        "civil": await token(
            agency="civil-affairs", scopes=[*CIVIL_SCOPES, "events:read", "subscriptions:manage"], region="51"
        ),
        "police": await token(agency="police", scopes=["children:read", "events:read"], region="510107"),
        "school": await token(agency="education", scopes=["reports:file", "children:read"], region="510107"),
    }


@pytest.fixture
async def marked(client: httpx.AsyncClient, parties: dict[str, str]) -> dict[str, Any]:
    return await make_child(client, parties["civil"], categories=["left_behind", "guardian_harm"])


def job(app: Any) -> TimedJob:
    (found,) = [j for j in registered_jobs(app.state.door.policy) if j.name == "access.recorded"]
    return found


async def run(app: Any, db: Database, *, hours_later: float = 2) -> int:
    """One run of the job as of ``hours_later`` from now (the read's hour has ended by then)."""
    return await Scheduler(db, [job(app)]).run_job(job(app), utcnow() + timedelta(hours=hours_later))


async def police_reads(client: httpx.AsyncClient, police: str, child: dict[str, Any], **headers: str) -> None:
    response = await client.get(
        f"/v1/children/{child['id']}", headers={**bearer(police), **purpose(), **headers}
    )
    assert response.status_code == 200, response.text


async def notices(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    """The access notices on the reader's pull feed."""
    subs = await client.get("/v1/subscriptions", headers=bearer(token))
    if not any(s["mode"] == "pull" for s in subs.json()["items"]):
        body = {
            "mode": "pull",
            "types": ["cn.gov.childlink.platform.access.*"],
            "purpose_of_use": "child_protection",
        }
        created = await client.post("/v1/subscriptions", json=body, headers=bearer(token))
        assert created.status_code == 201, created.text
    page = await client.get("/v1/events/feed", params={"after": 0}, headers=bearer(token))
    assert page.status_code == 200, page.text
    return [e for e in page.json()["events"] if e["type"] == NOTICE]


class TestNotice:
    async def test_a_police_read_of_a_guardian_harm_child_is_one_notice_to_civil_affairs_for_the_hour(
        self,
        app: Any,
        db: Database,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        marked: dict[str, Any],
    ) -> None:
        await police_reads(client, parties["police"], marked)
        await police_reads(client, parties["police"], marked)
        assert await run(app, db, hours_later=0) == 0  # the hour has not ended yet
        assert await run(app, db) == 1
        assert await run(app, db) == 0  # exactly once, also for a second worker
        assert await Scheduler(db, [job(app)]).run_job(job(app), utcnow() + timedelta(hours=3)) == 0

        [notice] = await notices(client, parties["civil"])
        assert catalog.get(NOTICE) is not None and catalog.get(NOTICE).validate(notice["data"]) == []  # type: ignore[union-attr]
        assert notice["subject"] == marked["id"] and notice["childlinkaudience"] == "civil-affairs"
        data = notice["data"]
        assert data["read_count"] == 2 and data["held_until_closed"] is False
        assert {(r["agency"], r["purpose"], r["action"]) for r in data["reads"]} == {
            ("police", "child_protection", "child.read")
        }
        assert all(r["grounds"] and r["grounds"][0]["ground"] == "statute" for r in data["reads"])
        # Who, when, why and on what ground; none of the child's data.
        assert marked["name"] not in str(notice) and marked["resident_id"] not in str(notice)

        # Nobody but the owner sees it: not by id, not on its feed, not on the child's timeline.
        by_police = await client.get(f"/v1/events/{notice['id']}", headers=bearer(parties["police"]))
        assert by_police.status_code == 404
        timeline = await client.get(
            f"/v1/children/{marked['id']}/timeline", headers={**bearer(parties["police"]), **purpose()}
        )
        assert notice["id"] not in timeline.text

    async def test_one_run_sends_each_child_its_own_notice_with_its_own_reads(
        self,
        app: Any,
        db: Database,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        marked: dict[str, Any],
    ) -> None:
        other = await make_child(client, parties["civil"], categories=["guardian_harm"])
        await police_reads(client, parties["police"], marked)
        await police_reads(client, parties["police"], other)
        await police_reads(client, parties["police"], other)
        listed = await client.get(
            "/v1/children",
            params={"category": "guardian_harm"},
            headers={**bearer(parties["police"]), **purpose()},
        )
        assert listed.status_code == 200 and len(listed.json()["items"]) == 2  # one read of both

        assert await run(app, db) == 2
        assert await run(app, db) == 0  # every (read, child) marked sent, the list read for both
        sent = await notices(client, parties["civil"])
        assert len(sent) == 2
        by_child = {n["subject"]: n["data"] for n in sent}
        assert {child: data["read_count"] for child, data in by_child.items()} == {
            marked["id"]: 2,
            other["id"]: 3,
        }
        assert sorted(r["action"] for r in by_child[other["id"]]["reads"]) == [
            "child.list",
            "child.read",
            "child.read",
        ]

    async def test_workers_running_the_job_at_once_send_it_once(
        self,
        app: Any,
        db: Database,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        marked: dict[str, Any],
    ) -> None:
        await police_reads(client, parties["police"], marked)
        fired = await asyncio.gather(*(run(app, db) for _ in range(4)))
        assert sum(fired) == 1
        assert len(await notices(client, parties["civil"])) == 1

    async def test_a_child_the_policy_does_not_mark_produces_none(
        self, app: Any, db: Database, client: httpx.AsyncClient, parties: dict[str, str]
    ) -> None:
        plain = await make_child(client, parties["civil"], categories=["left_behind"])
        await police_reads(client, parties["police"], plain)
        assert await run(app, db) == 0

    async def test_an_open_protection_case_marks_the_child(
        self, app: Any, db: Database, client: httpx.AsyncClient, parties: dict[str, str], token: TokenFactory
    ) -> None:
        plain = await make_child(client, parties["civil"], categories=["left_behind"])
        lead = await token(agency="civil-affairs", scopes=["children:read", "cases:write"], region="51")
        opened = await client.post(
            "/v1/cases",
            json={"child_id": plain["id"], "kind": "protection", "summary": "演示：监护缺失"},
            headers={**bearer(lead), **purpose()},
        )
        assert opened.status_code == 201, opened.text
        await police_reads(client, parties["police"], plain)
        assert await run(app, db) == 1


class TestHeldBack:
    async def test_a_read_under_an_open_investigation_produces_none_until_it_closes(
        self,
        app: Any,
        db: Database,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        marked: dict[str, Any],
    ) -> None:
        police = parties["police"]
        response = await client.get(
            f"/v1/children/{marked['id']}",
            headers={**bearer(police), **purpose("investigation"), "X-Investigation-Ref": REF},
        )
        assert response.status_code == 200, response.text
        assert await run(app, db) == 0
        assert await notices(client, parties["civil"]) == []

        closed = await client.post(f"/v1/investigations/{REF}/close", headers=bearer(police))
        assert closed.status_code == 200, closed.text
        assert await run(app, db) == 1
        assert await run(app, db) == 0
        [notice] = await notices(client, parties["civil"])
        assert notice["data"]["held_until_closed"] is True
        assert [r["purpose"] for r in notice["data"]["reads"]] == ["investigation"]


class TestReporterProtected:
    async def test_a_report_receivers_reads_while_the_report_is_open_never_produce_one(
        self,
        app: Any,
        db: Database,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        marked: dict[str, Any],
    ) -> None:
        filed = await file(client, parties["school"], report_body(marked["id"]), key=str(uuid.uuid4()))
        assert filed.status_code == 201, filed.text
        await police_reads(client, parties["police"], marked)  # police receives the report
        assert await run(app, db) == 0
        assert await run(app, db, hours_later=50) == 0
        assert await notices(client, parties["civil"]) == []
