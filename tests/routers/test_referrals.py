"""Referrals: the lifecycle, its refusals, the inbox, and the dropout story end to end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.models.referral import TRANSITIONS, ReferralStatus, mermaid
from tests.case_factories import (
    ROOT_README,
    as_,
    deadlines,
    open_case,
    refer,
    referral_body,
    story_child,
    tokens,
)
from tests.conftest import TokenFactory, bearer
from tests.routers.test_custody import access_log, fetch


@pytest.fixture
async def parties(token: TokenFactory) -> dict[str, str]:
    return await tokens(token)


@pytest.fixture
async def case(client: httpx.AsyncClient, parties: dict[str, str]) -> dict[str, Any]:
    child = await story_child(client, parties["registrar"])
    return await open_case(client, parties["education"], child["id"])


async def step(
    client: httpx.AsyncClient, who: str, referral_id: str, action: str, **body: Any
) -> httpx.Response:
    return await client.post(f"/v1/referrals/{referral_id}/{action}", json=body, headers=as_(who))


class TestLifecycle:
    async def test_accept_then_complete(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any]
    ) -> None:
        referral = await refer(client, parties["education"], case["id"])
        assert referral["status"] == "requested"
        assert referral["categories"] == ["contact", "education", "identity"]  # the case's own added

        accepted = await step(client, parties["supervisor"], referral["id"], "accept")
        done = await step(
            client, parties["supervisor"], referral["id"], "complete", outcome="Visited on 2 Dec."
        )

        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "accepted"
        assert done.json()["status"] == "completed"
        assert done.json()["outcome"] == "Visited on 2 Dec."

    async def test_an_invalid_transition_is_409_naming_the_state_and_changes_nothing(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any]
    ) -> None:
        referral = await refer(client, parties["education"], case["id"])

        response = await step(
            client, parties["supervisor"], referral["id"], "complete", outcome="Done already."
        )

        assert response.status_code == 409
        assert response.json()["code"] == "invalid_transition"
        assert response.json()["current_status"] == "requested"
        inbox = await client.get("/v1/referrals?direction=incoming", headers=as_(parties["supervisor"]))
        assert [r["status"] for r in inbox.json()["items"]] == ["requested"]

    async def test_a_repeated_step_answers_the_same_and_emits_once(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any], database_url: str
    ) -> None:
        referral = await refer(client, parties["education"], case["id"])

        first = await step(client, parties["womens"], referral["id"], "decline", reason="Not ours.")
        assert first.status_code == 404  # not addressed to the women's federation
        declined = await step(
            client, parties["supervisor"], referral["id"], "decline", reason="No staff now."
        )
        again = await step(client, parties["supervisor"], referral["id"], "decline", reason="No staff now.")
        other = await step(client, parties["supervisor"], referral["id"], "decline", reason="Another reason.")

        assert declined.status_code == again.status_code == 200
        assert again.json() == declined.json()
        assert other.status_code == 409
        events = await fetch(
            database_url, "SELECT type FROM outbox_event WHERE type LIKE '%referral.declined%'"
        )
        assert len(events) == 1

    async def test_decline_needs_a_reason(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any]
    ) -> None:
        referral = await refer(client, parties["education"], case["id"])

        response = await step(client, parties["supervisor"], referral["id"], "decline")

        assert response.status_code == 422

    async def test_only_the_receiver_accepts_and_only_the_referrer_withdraws(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any]
    ) -> None:
        referral = await refer(client, parties["education"], case["id"])

        by_referrer = await step(client, parties["education"], referral["id"], "accept")
        by_receiver = await step(client, parties["supervisor"], referral["id"], "withdraw")

        assert by_referrer.status_code == by_receiver.status_code == 403
        assert by_referrer.json()["code"] == "not_referral_party"

    async def test_the_readme_diagram_is_the_lifecycle_table(self) -> None:
        assert mermaid() in ROOT_README.read_text()
        assert {s for s, _ in TRANSITIONS} == {ReferralStatus.requested, ReferralStatus.accepted}


class TestDefaultDeadlines:
    async def test_a_referral_without_deadlines_gets_the_policys_defaults(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any]
    ) -> None:
        body = {k: v for k, v in referral_body().items() if k not in ("respond_by", "complete_by")}
        before = datetime.now(UTC)
        response = await client.post(
            f"/v1/cases/{case['id']}/referrals", json=body, headers=as_(parties["education"])
        )
        assert response.status_code == 201, response.text
        policy = (await client.get("/v1/policy", headers=as_(parties["education"]))).json()["cases"]
        referral = response.json()
        respond_by = datetime.fromisoformat(referral["respond_by"])
        complete_by = datetime.fromisoformat(referral["complete_by"])
        respond_in = timedelta(hours=policy["default_respond_within_hours"])
        complete_in = timedelta(days=policy["default_complete_within_days"])
        assert before + respond_in <= respond_by <= datetime.now(UTC) + respond_in
        assert before + complete_in <= complete_by <= datetime.now(UTC) + complete_in


class TestRefusedReferrals:
    @pytest.mark.parametrize(
        ("overrides", "code"),
        [
            ({"respond_by": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}, "invalid_deadline"),
            (deadlines(respond_days=30, complete_days=40), "invalid_deadline"),
            (deadlines(respond_days=2, complete_days=200), "invalid_deadline"),
            (deadlines(respond_days=5, complete_days=3), "invalid_deadline"),
            ({"to_region": "510107004"}, "to_region_outside_child"),
            ({"to_agency": "no-such-agency"}, "unknown_agency"),
            ({"to_agency": "education"}, "invalid_receiver"),
        ],
    )
    async def test_is_400_and_nothing_is_written(
        self,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        case: dict[str, Any],
        database_url: str,
        overrides: dict[str, Any],
        code: str,
    ) -> None:
        from tests.case_factories import referral_body

        response = await client.post(
            f"/v1/cases/{case['id']}/referrals",
            json=referral_body(**overrides),
            headers=as_(parties["education"]),
        )

        assert response.status_code == 400, response.text
        assert response.json()["code"] == code
        assert response.headers["content-type"] == "application/problem+json"
        assert await fetch(database_url, "SELECT id FROM referral") == []

    async def test_an_unknown_case_is_404(self, client: httpx.AsyncClient, parties: dict[str, str]) -> None:
        from tests.case_factories import referral_body

        response = await client.post(
            "/v1/cases/00000000-0000-0000-0000-000000000000/referrals",
            json=referral_body(),
            headers=as_(parties["education"]),
        )

        assert response.status_code == 404
        assert response.json()["code"] == "case_not_found"


class TestInbox:
    async def test_a_township_referral_reaches_that_township_and_the_county_not_another_township(
        self, client: httpx.AsyncClient, parties: dict[str, str], case: dict[str, Any], token: TokenFactory
    ) -> None:
        referral = await refer(client, parties["education"], case["id"])
        county = await token(agency="civil-affairs", scopes=["children:read", "cases:write"], region="510107")

        mine = await client.get("/v1/referrals?direction=incoming", headers=as_(parties["supervisor"]))
        above = await client.get("/v1/referrals?direction=incoming", headers=as_(county))
        neighbour = await client.get(
            "/v1/referrals?direction=incoming", headers=as_(parties["other_township"])
        )
        outgoing = await client.get("/v1/referrals?direction=outgoing", headers=as_(parties["education"]))

        assert [r["id"] for r in mine.json()["items"]] == [referral["id"]]
        assert mine.json()["items"][0]["request"] is not None
        assert [r["id"] for r in above.json()["items"]] == [referral["id"]]
        assert neighbour.json()["items"] == []
        assert [r["id"] for r in outgoing.json()["items"]] == [referral["id"]]
        stranger = await step(client, parties["other_township"], referral["id"], "accept")
        assert stranger.status_code == 404


class TestInboxAccessLog:
    async def test_a_page_is_one_record_naming_every_child_read_on_the_same_grounds(
        self, client: httpx.AsyncClient, parties: dict[str, str], database_url: str
    ) -> None:
        children = [await story_child(client, parties["registrar"]) for _ in range(3)]
        for child in children:
            case = await open_case(client, parties["education"], child["id"])
            await refer(client, parties["education"], case["id"])

        page = await client.get("/v1/referrals?direction=incoming", headers=as_(parties["supervisor"]))

        assert len(page.json()["items"]) == 3
        (record,) = [r for r in await access_log(database_url) if r["action"] == "referral.list"]
        assert sorted(str(c) for c in record["child_ids"]) == sorted(c["id"] for c in children)
        assert json.loads(record["basis"])["education"]["ground"] == "statute"


class TestDropoutStory:
    async def test_flag_refer_decline_refer_again_visit_and_close(
        self, client: httpx.AsyncClient, parties: dict[str, str], database_url: str
    ) -> None:
        education, supervisor, womens, police = (
            parties["education"],
            parties["supervisor"],
            parties["womens"],
            parties["police"],
        )
        child = await story_child(client, parties["registrar"])
        flagged = await client.post(
            "/v1/events",
            json=_event(
                "education.dropout-risk.flagged",
                child["id"],
                {
                    "school": "簇桥小学",
                    "risk_level": "high",
                    "indicators": ["chronic_absence", "guardian_absent"],
                    "flagged_on": "2026-11-27",
                    "home_visit_requested": True,
                },
            ),
            headers={**bearer(education), "Idempotency-Key": "flag-1"},
        )
        assert flagged.status_code in (200, 201, 202), flagged.text
        case = await open_case(client, education, child["id"])
        visit = await refer(client, education, case["id"])
        guidance = await refer(
            client,
            education,
            case["id"],
            to_agency="womens-federation",
            to_region=None,
            request="Family-education guidance (家庭教育指导) for the grandmother.",
        )

        declined = await step(client, womens, guidance["id"], "decline", reason="No volunteer until January.")
        assert declined.json()["status"] == "declined"
        again = await refer(
            client, education, case["id"], to_agency="womens-federation", to_region=None, **deadlines(3, 20)
        )
        assert (await step(client, supervisor, visit["id"], "accept")).status_code == 200
        recorded = await client.post(
            "/v1/events",
            json={
                **_event(
                    "civil-affairs.home-visit.recorded",
                    child["id"],
                    {"visited_on": "2026-12-02", "visitor_role": "child_director", "child_seen": True},
                ),
                "childlinkcase": case["id"],
            },
            headers={**bearer(supervisor), "Idempotency-Key": "visit-1"},
        )
        assert recorded.status_code in (200, 201, 202), recorded.text
        await step(
            client, supervisor, visit["id"], "complete", outcome="Visited; grandmother agrees to help."
        )
        await step(client, womens, again["id"], "accept")
        await step(client, womens, again["id"], "complete", outcome="Guidance given at home.")
        closed = await client.post(
            f"/v1/cases/{case['id']}/close",
            json={"outcome": "returned-to-school", "note": "Back at school on 8 Dec."},
            headers=as_(education),
        )

        assert closed.status_code == 200, closed.text
        body = closed.json()
        assert body["outcome"] == "returned-to-school"
        assert [(r["to_agency"], r["status"]) for r in body["referrals"]] == [
            ("civil-affairs", "completed"),
            ("womens-federation", "declined"),
            ("womens-federation", "completed"),
        ]
        assert [e["type"] for e in body["linked_events"] if "home-visit" in e["type"]] == [
            "cn.gov.childlink.civil-affairs.home-visit.recorded.v1"
        ]
        assert (await client.get(f"/v1/cases/{case['id']}", headers=as_(police))).status_code == 404
        reads = [r for r in await access_log(database_url) if r["action"] in ("referral.read", "case.read")]
        grounds = {(r["agency"], json.loads(r["basis"]).get("education", {}).get("ground")) for r in reads}
        assert ("womens-federation", "referral") in grounds
        # Civil affairs reads education data by statute (Minors Protection Law), not by referral.
        assert ("civil-affairs", "statute") in grounds


def _event(kind: str, child_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{kind}-{child_id}",
        "source": "/test",
        "type": f"cn.gov.childlink.{kind}.v1",
        "subject": child_id,
        "data": data,
    }
