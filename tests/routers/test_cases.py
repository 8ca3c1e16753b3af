"""Cases: open, read through the door, list, close."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.db import asyncpg_dsn
from tests.case_factories import as_, open_case, refer, story_child, tokens
from tests.conftest import TokenFactory
from tests.routers.test_custody import access_log


@pytest.fixture
async def parties(token: TokenFactory) -> dict[str, str]:
    return await tokens(token)


@pytest.fixture
async def child(client: httpx.AsyncClient, parties: dict[str, str]) -> dict[str, Any]:
    return await story_child(client, parties["registrar"])


class TestOpenCase:
    async def test_lead_opens_and_reads_its_case_in_full(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        case = await open_case(client, parties["education"], child["id"])

        assert case["status"] == "open"
        assert case["lead_agency"] == "education"
        assert case["kind"] == "dropout" and case["summary"] == "Absent 12 school days."
        assert case["access"]["basis"]["education"]["ground"] == "owner"

    async def test_child_outside_the_region_is_404_and_nothing_is_written(
        self, client: httpx.AsyncClient, token: TokenFactory, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        elsewhere = await token(agency="education", scopes=["children:read", "cases:write"], region="510108")

        response = await client.post(
            "/v1/cases",
            json={"child_id": child["id"], "kind": "dropout", "summary": "x"},
            headers=as_(elsewhere),
        )

        assert response.status_code == 404
        assert response.json()["code"] == "child_not_found"
        listed = await client.get("/v1/cases", headers=as_(parties["education"]))
        assert listed.json()["items"] == []

    async def test_without_cases_write_it_is_403(
        self, client: httpx.AsyncClient, token: TokenFactory, child: dict[str, Any]
    ) -> None:
        reader = await token(agency="education", scopes=["children:read"], region="51")

        response = await client.post(
            "/v1/cases",
            json={"child_id": child["id"], "kind": "dropout", "summary": "x"},
            headers=as_(reader),
        )

        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"


class TestWhoSeesACase:
    async def test_an_agency_without_a_referral_gets_404_like_an_unknown_case(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any], database_url: str
    ) -> None:
        case = await open_case(client, parties["education"], child["id"])

        seen = await client.get(f"/v1/cases/{case['id']}", headers=as_(parties["police"]))
        unknown = await client.get(
            "/v1/cases/00000000-0000-0000-0000-000000000000", headers=as_(parties["police"])
        )
        listed = await client.get("/v1/cases", headers=as_(parties["police"]))

        assert seen.status_code == unknown.status_code == 404
        assert seen.json()["code"] == unknown.json()["code"] == "case_not_found"
        assert listed.json()["items"] == []
        refusals = [r for r in await access_log(database_url) if r["action"] == "case.read"]
        assert [r["reason"] for r in refusals] == ["not_found", "not_found"]

    async def test_receiver_reads_the_case_on_the_referral_ground_and_it_is_logged(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any], database_url: str
    ) -> None:
        case = await open_case(client, parties["education"], child["id"])
        referral = await refer(
            client, parties["education"], case["id"], to_agency="womens-federation", to_region=None
        )

        response = await client.get(f"/v1/cases/{case['id']}", headers=as_(parties["womens"]))

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["summary"] == "Absent 12 school days."
        assert body["access"]["basis"]["education"] == {
            "ground": "referral",
            "ref": referral["id"],
            "citation": None,
        }
        logged = [r for r in await access_log(database_url) if r["action"] == "case.read"]
        assert len(logged) == 1
        assert logged[0]["agency"] == "womens-federation"
        assert json.loads(logged[0]["basis"])["education"]["ground"] == "referral"

    async def test_once_the_referral_is_withdrawn_the_receiver_reads_nothing_of_it(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any], database_url: str
    ) -> None:
        case = await open_case(client, parties["education"], child["id"])
        referral = await refer(
            client, parties["education"], case["id"], to_agency="womens-federation", to_region=None
        )
        withdrawn = await client.post(
            f"/v1/referrals/{referral['id']}/withdraw", json={}, headers=as_(parties["education"])
        )
        assert withdrawn.status_code == 200, withdrawn.text

        response = await client.get(f"/v1/cases/{case['id']}", headers=as_(parties["womens"]))

        assert response.status_code == 403
        assert response.json()["code"] == "access_denied"
        denied = [r for r in await access_log(database_url) if r["action"] == "case.read"]
        assert denied[-1]["decision"] == "deny"

    async def test_a_case_read_needs_a_purpose(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        case = await open_case(client, parties["education"], child["id"])
        await refer(client, parties["education"], case["id"], to_agency="womens-federation", to_region=None)

        response = await client.get(
            f"/v1/cases/{case['id']}", headers={"Authorization": f"Bearer {parties['womens']}"}
        )

        assert response.status_code == 400
        assert response.json()["code"] == "purpose_required"


class TestListCases:
    async def test_pages_with_a_cursor_newest_first_and_filters(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        made = [await open_case(client, parties["education"], child["id"]) for _ in range(3)]
        await open_case(client, parties["education"], child["id"], kind="other")

        first = await client.get("/v1/cases?kind=dropout&limit=2", headers=as_(parties["education"]))
        second = await client.get(
            f"/v1/cases?kind=dropout&limit=2&cursor={first.json()['next_cursor']}",
            headers=as_(parties["education"]),
        )

        ids = [c["id"] for c in first.json()["items"] + second.json()["items"]]
        assert ids == [c["id"] for c in reversed(made)]
        assert second.json()["next_cursor"] is None

    async def test_a_bad_cursor_is_400(self, client: httpx.AsyncClient, parties: dict[str, str]) -> None:
        response = await client.get("/v1/cases?cursor=nonsense", headers=as_(parties["education"]))
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_cursor"


class TestCloseCase:
    async def test_open_referrals_block_closing_unless_a_reason_is_given(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        case = await open_case(client, parties["education"], child["id"])
        referral = await refer(client, parties["education"], case["id"])

        refused = await client.post(
            f"/v1/cases/{case['id']}/close",
            json={"outcome": "returned-to-school"},
            headers=as_(parties["education"]),
        )
        closed = await client.post(
            f"/v1/cases/{case['id']}/close",
            json={"outcome": "returned-to-school", "reason": "The child is back; visit not needed."},
            headers=as_(parties["education"]),
        )

        assert refused.status_code == 409
        assert refused.json()["code"] == "open_referrals"
        assert refused.json()["open_referrals"] == [referral["id"]]
        assert closed.status_code == 200, closed.text
        assert closed.json()["status"] == "closed"
        assert [r["status"] for r in closed.json()["referrals"]] == ["withdrawn"]

    async def test_only_the_lead_closes(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        case = await open_case(client, parties["education"], child["id"])
        await refer(client, parties["education"], case["id"])

        response = await client.post(
            f"/v1/cases/{case['id']}/close", json={"outcome": "needs-met"}, headers=as_(parties["supervisor"])
        )

        assert response.status_code == 403
        assert response.json()["code"] == "not_case_lead"

    async def test_closing_twice_is_409(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        case = await open_case(client, parties["education"], child["id"])
        url = f"/v1/cases/{case['id']}/close"
        await client.post(url, json={"outcome": "no-concern"}, headers=as_(parties["education"]))

        again = await client.post(url, json={"outcome": "no-concern"}, headers=as_(parties["education"]))

        assert again.status_code == 409
        assert again.json()["code"] == "case_closed"


class TestTheChildStaysNamed:
    """A case or referral names a child or a report subject by a trigger (migration 0012), not a
    foreign key; deleting what it names is refused as the foreign key would refuse it."""

    async def test_a_child_named_by_a_case_and_referral_cannot_be_deleted_even_by_the_owner(
        self,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        child: dict[str, Any],
        owner_database_url: str,
    ) -> None:
        case = await open_case(client, parties["education"], child["id"])
        await refer(client, parties["education"], case["id"])
        conn = await asyncpg.connect(asyncpg_dsn(owner_database_url))
        try:
            with pytest.raises(asyncpg.ForeignKeyViolationError, match="still named by a case or referral"):
                await conn.execute("DELETE FROM child WHERE id = $1", uuid.UUID(child["id"]))
            with pytest.raises(
                asyncpg.ForeignKeyViolationError, match="neither a child nor a report subject"
            ):
                await conn.execute(
                    'UPDATE "case" SET child_id = $1 WHERE id = $2', uuid.uuid4(), uuid.UUID(case["id"])
                )
            assert (
                await conn.fetchval("SELECT count(*) FROM child WHERE id = $1", uuid.UUID(child["id"])) == 1
            )
        finally:
            await conn.close()
