"""Joint consultations (会商): decisions become actions with owners and due dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.db import Database
from app.events.scheduler import Scheduler, registered_jobs
from tests.case_factories import as_, open_case, refer, story_child, tokens
from tests.conftest import TokenFactory
from tests.routers.test_custody import fetch


@pytest.fixture
async def parties(token: TokenFactory) -> dict[str, str]:
    return await tokens(token)


@pytest.fixture
async def case(client: httpx.AsyncClient, parties: dict[str, str]) -> dict[str, Any]:
    child = await story_child(client, parties["registrar"])
    return await open_case(client, parties["education"], child["id"])


def consultation_body(due: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "held_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "agencies": ["education", "civil-affairs", "womens-federation"],
        "summary": "Joint meeting: the grandmother cannot take the child to school.",
        "decisions": [
            {
                "assigned_agency": "civil-affairs",
                "description": "Apply for temporary assistance for school costs.",
                "due_at": (due or datetime.now(UTC) + timedelta(days=7)).isoformat(),
            }
        ],
    }
    body.update(overrides)
    return body


async def consult(client: httpx.AsyncClient, lead: str, case_id: str, **overrides: Any) -> httpx.Response:
    return await client.post(
        f"/v1/cases/{case_id}/consultations", json=consultation_body(**overrides), headers=as_(lead)
    )


class TestConsultations:
    async def test_decisions_become_actions_on_the_case_and_the_assignee_completes_one(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any]
    ) -> None:
        await refer(client, parties["education"], case["id"])
        recorded = await consult(client, parties["education"], case["id"])
        assert recorded.status_code == 201, recorded.text
        (action,) = recorded.json()["actions"]

        done = await client.post(
            f"/v1/actions/{action['id']}/complete",
            json={"outcome": "Assistance granted on 9 Dec."},
            headers=as_(parties["supervisor"]),
        )
        again = await client.post(
            f"/v1/actions/{action['id']}/complete",
            json={"outcome": "Assistance granted on 9 Dec."},
            headers=as_(parties["supervisor"]),
        )
        other = await client.post(
            f"/v1/actions/{action['id']}/complete",
            json={"outcome": "Something else."},
            headers=as_(parties["supervisor"]),
        )
        seen = await client.get(f"/v1/cases/{case['id']}", headers=as_(parties["education"]))

        assert done.status_code == again.status_code == 200
        assert done.json()["status"] == "completed"
        assert other.status_code == 409
        assert seen.json()["consultations"][0]["summary"].startswith("Joint meeting")
        assert [a["status"] for a in seen.json()["actions"]] == ["completed"]

    async def test_a_decision_without_a_due_date_is_due_the_policy_default_from_now(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any]
    ) -> None:
        body = consultation_body()
        del body["decisions"][0]["due_at"]
        before = datetime.now(UTC)

        recorded = await client.post(
            f"/v1/cases/{case['id']}/consultations", json=body, headers=as_(parties["education"])
        )

        assert recorded.status_code == 201, recorded.text
        due = datetime.fromisoformat(recorded.json()["actions"][0]["due_at"])
        policy = (await client.get("/v1/policy", headers=as_(parties["education"]))).json()
        days = policy["cases"]["default_action_due_within_days"]
        assert before + timedelta(days=days) <= due <= datetime.now(UTC) + timedelta(days=days)

    async def test_only_the_assignee_completes_and_a_stranger_gets_404(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any]
    ) -> None:
        (action,) = (await consult(client, parties["education"], case["id"])).json()["actions"]
        url = f"/v1/actions/{action['id']}/complete"

        by_lead = await client.post(url, json={"outcome": "Done by us."}, headers=as_(parties["education"]))
        by_stranger = await client.post(url, json={"outcome": "Done by us."}, headers=as_(parties["police"]))

        assert by_lead.status_code == 403
        assert by_lead.json()["code"] == "not_assigned"
        assert by_stranger.status_code == 404
        assert by_stranger.json()["code"] == "action_not_found"

    @pytest.mark.parametrize(
        ("overrides", "code"),
        [
            ({"due": datetime.now(UTC) - timedelta(days=1)}, "invalid_deadline"),
            ({"due": datetime.now(UTC) + timedelta(days=400)}, "invalid_deadline"),
            ({"agencies": ["no-such-agency"]}, "unknown_agency"),
            ({"held_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "invalid_held_at"),
        ],
    )
    async def test_refusals_write_nothing(
        self,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        case: dict[str, Any],
        database_url: str,
        overrides: dict[str, Any],
        code: str,
    ) -> None:
        response = await consult(client, parties["education"], case["id"], **overrides)

        assert response.status_code == 400, response.text
        assert response.json()["code"] == code
        assert await fetch(database_url, "SELECT id FROM consultation") == []


class TestActionOverdue:
    async def test_an_overdue_action_is_marked_once_per_interval_until_completed(
        self,
        app: Any,
        db: Database,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        case: dict[str, Any],
        database_url: str,
    ) -> None:
        (action,) = (await consult(client, parties["education"], case["id"])).json()["actions"]
        due = datetime.fromisoformat(action["due_at"])
        (job,) = [j for j in registered_jobs(app.state.door.policy) if j.name == "action.overdue"]
        scheduler = Scheduler(db, [job])

        assert await scheduler.run_job(job, due + timedelta(minutes=1)) == 1
        assert await scheduler.run_job(job, due + timedelta(minutes=2)) == 0
        listed = await client.get("/v1/cases?overdue=true", headers=as_(parties["education"]))
        assert [c["id"] for c in listed.json()["items"]] == [case["id"]]
        assert listed.json()["items"][0]["overdue"] is True
        await client.post(
            f"/v1/actions/{action['id']}/complete",
            json={"outcome": "Done late."},
            headers=as_(parties["supervisor"]),
        )
        assert await scheduler.run_job(job, due + timedelta(days=3)) == 0
        events = await fetch(
            database_url,
            "SELECT id FROM outbox_event WHERE type = 'cn.gov.childlink.platform.action.overdue.v1'",
        )
        assert len(events) == 1
