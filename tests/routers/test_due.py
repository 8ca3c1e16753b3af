"""What falls due: the list agrees with the records, and the scheduler tells the township once."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.access.policy import load_policy
from app.db import Database
from app.events.scheduler import Scheduler, registered_jobs
from tests.conftest import TokenFactory, bearer
from tests.events.helpers import CIVIL_SCOPES, HOME_VISIT, PREFIX, fetch, publish
from tests.factories import guardianship_body, make_child

ASSESSED = PREFIX + "civil-affairs.guardianship.assessed.v1"
TOWNSHIP = "510107005"


@pytest.fixture
async def civil(token: TokenFactory) -> str:
    return await token(agency="civil-affairs", scopes=[*CIVIL_SCOPES, "events:publish"], region="510107")


async def seed(client: httpx.AsyncClient, civil: str) -> list[dict[str, Any]]:
    """Children of the township and one beyond it: never assessed, assessed long ago, assessed
    recently, entrusted care (due sooner), visited recently and long ago."""
    today = date.today()
    children = []
    for i, (assessed_days_ago, visited_days_ago, status) in enumerate(
        [
            (None, None, "kinship_care"),
            (400, 200, "kinship_care"),
            (10, 5, "kinship_care"),
            (120, 40, "entrusted"),
        ]
    ):
        child = await make_child(client, civil, region=f"{TOWNSHIP}00{i + 1}")
        body = guardianship_body(
            custody_status=status, last_assessment_date=None, last_assessment_result=None
        )
        if status == "entrusted":
            body.update(entrustment_confirmation_ref="WT-1", entrustment_confirmed_on="2026-01-01")
        assert (
            await client.post(f"/v1/children/{child['id']}/guardianship", json=body, headers=bearer(civil))
        ).status_code == 201
        if assessed_days_ago is not None:
            on = (today - timedelta(days=assessed_days_ago)).isoformat()
            await publish(client, civil, ASSESSED, child["id"], {"assessed_on": on, "result": "adequate"})
        if visited_days_ago is not None:
            on = (today - timedelta(days=visited_days_ago)).isoformat()
            await publish(
                client,
                civil,
                HOME_VISIT,
                child["id"],
                {"visited_on": on, "visitor_role": "child_director", "child_seen": True},
            )
        children.append(child)
    children.append(await make_child(client, civil, region="510107006001"))  # another township
    return children


# The care schedule's rule restated over the records (policy intervals, China date).
DIRECT_ASSESSMENT = """
SELECT count(*) AS n FROM child AS c
JOIN guardianship AS g ON g.child_id = c.id AND g.superseded_at IS NULL
WHERE c.region_code LIKE '510107005%' AND c.status = 'active' AND
  CASE WHEN g.last_assessment_date IS NULL THEN (c.created_at AT TIME ZONE 'Asia/Shanghai')::date + 30
       WHEN g.custody_status = 'entrusted' THEN g.last_assessment_date + 90
       ELSE g.last_assessment_date + 180 END <= (now() AT TIME ZONE 'Asia/Shanghai')::date + $1::int
"""
DIRECT_VISIT = """
SELECT count(*) AS n FROM child AS c
JOIN guardianship AS g ON g.child_id = c.id AND g.superseded_at IS NULL
LEFT JOIN (SELECT child_id, max(visited_on) AS last FROM home_visit GROUP BY child_id) AS v
  ON v.child_id = c.id
WHERE c.region_code LIKE '510107005%' AND c.status = 'active' AND
  CASE WHEN v.last IS NULL THEN (c.created_at AT TIME ZONE 'Asia/Shanghai')::date + 30
       WHEN g.custody_status = 'entrusted' THEN v.last + 30
       ELSE v.last + 90 END <= (now() AT TIME ZONE 'Asia/Shanghai')::date + $1::int
"""


class TestDueList:
    async def test_township_list_agrees_with_a_direct_count_from_the_records(
        self, client: httpx.AsyncClient, civil: str, database_url: str
    ) -> None:
        children = await seed(client, civil)
        for what, direct in (("assessment", DIRECT_ASSESSMENT), ("home_visit", DIRECT_VISIT)):
            for within in (0, 40):
                response = await client.get(
                    "/v1/children/due",
                    params={"what": what, "region": TOWNSHIP, "within_days": within, "limit": 2},
                    headers=bearer(civil),
                )
                assert response.status_code == 200, response.text
                items = response.json()["items"]
                cursor = response.json()["next_cursor"]
                while cursor:
                    more = await client.get(
                        "/v1/children/due",
                        params={
                            "what": what,
                            "region": TOWNSHIP,
                            "within_days": within,
                            "cursor": cursor,
                            "limit": 2,
                        },
                        headers=bearer(civil),
                    )
                    items += more.json()["items"]
                    cursor = more.json()["next_cursor"]
                expected = (await fetch(database_url, direct, within))[0]["n"]
                assert len(items) == expected, (what, within, items)
                assert children[-1]["id"] not in {i["child_id"] for i in items}
                assert [i["due_on"] for i in items] == sorted(i["due_on"] for i in items)
        overdue = (
            await client.get(
                "/v1/children/due", params={"what": "assessment", "region": TOWNSHIP}, headers=bearer(civil)
            )
        ).json()["items"]
        assert children[1]["id"] in {i["child_id"] for i in overdue if i["overdue"]}

    async def test_other_agencies_and_regions_outside_are_refused(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        police = await token(agency="police", scopes=["children:read"], region="510107")
        refused = await client.get(
            "/v1/children/due", params={"what": "assessment", "region": TOWNSHIP}, headers=bearer(police)
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "due_list_not_allowed"
        outside = await client.get(
            "/v1/children/due", params={"what": "assessment", "region": "510108001"}, headers=bearer(civil)
        )
        assert outside.status_code == 403

    async def test_patch_on_the_due_list_is_405_not_a_child_id(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        response = await client.patch(
            "/v1/children/due",
            params={"what": "assessment", "region": TOWNSHIP},
            json={},
            headers=bearer(civil),
        )
        assert response.status_code == 405, response.text
        with_query = await client.patch(
            "/v1/children/due",
            params={"what": "assessment", "region": TOWNSHIP},
            json={},
            headers=bearer(civil),
        )
        assert with_query.status_code == 405, with_query.text
        assert with_query.headers["allow"] == "GET"
        assert response.headers["allow"] == "GET"
        assert response.json()["code"] == "method_not_allowed"
        # The list's own query does not turn it into a 400 unknown_parameter either.

    async def test_patch_with_the_lists_query_is_still_405(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        response = await client.patch(
            "/v1/children/due", params={"what": "assessment", "limit": 50}, json={}, headers=bearer(civil)
        )
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == "GET"

    async def test_an_unknown_parameter_is_refused_not_ignored(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        response = await client.get(
            "/v1/children/due",
            params={"what": "assessment", "region": TOWNSHIP, "category": "left_behind"},
            headers=bearer(civil),
        )
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "unknown_parameter"


class TestOverdueScheduler:
    async def test_each_overdue_notice_fires_once_across_concurrent_workers(
        self, client: httpx.AsyncClient, civil: str, db: Database, database_url: str
    ) -> None:
        await seed(client, civil)
        schedulers = [Scheduler(db, registered_jobs(load_policy())) for _ in range(3)]
        later = datetime.now(UTC) + timedelta(days=60)
        job = schedulers[0].jobs[0]
        fired = await asyncio.gather(*(s.run_job(job, later) for s in schedulers))
        again = await schedulers[0].run_job(job, later)
        events = await fetch(
            database_url,
            "SELECT type, subject, data FROM outbox_event "
            "WHERE type LIKE 'cn.gov.childlink.platform.%' ORDER BY seq",
        )
        assert sum(fired) == len(events) > 0
        assert again == 0
        keys = [(e["type"], e["subject"], e["data"]) for e in events]
        assert len(set((t, s) for t, s, _ in keys)) == len(keys)
        notices = await fetch(
            database_url, "SELECT count(*) AS n FROM overdue_notice WHERE event_id IS NOT NULL"
        )
        assert notices[0]["n"] == len(events)

    async def test_nothing_fires_before_it_is_overdue(
        self, client: httpx.AsyncClient, civil: str, db: Database, database_url: str
    ) -> None:
        await seed(client, civil)
        scheduler = Scheduler(db, registered_jobs(load_policy()))
        # Overdue today: the child assessed 400 days ago and visited 200 days ago, and the
        # entrusted child assessed 120 days ago (every 90) and visited 40 days ago (every 30).
        fired = await scheduler.run_job(scheduler.jobs[0], datetime.now(UTC))
        assert fired == 4


class TestOtherMethods:
    async def test_patch_on_the_due_list_is_405_not_a_bad_child_id(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        civil = await token(agency="civil-affairs", scopes=["children:read", "children:write"])
        response = await client.patch(
            "/v1/children/due?what=assessment&limit=50", headers=bearer(civil), json={}
        )
        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"
        assert response.headers["allow"] == "GET"
