"""GET /v1/audit/access-log: oversight reads the log with filters and cursor pagination."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.audit import AccessRecord, AuditWriter
from tests.audit.conftest import make_record
from tests.conftest import TokenFactory, bearer
from tests.factories import make_child, purpose
from tests.routers.test_consents import CONSENT_SCOPES, GLASS, read_child

PATH = "/v1/audit/access-log"


async def auditor(token: TokenFactory) -> dict[str, str]:
    return bearer(await token(agency="platform", scopes=["audit:read"]))


async def write(app: Any, *records: AccessRecord) -> list[int]:
    writer: AuditWriter = app.state.audit
    return await writer.record_many(records)


class TestAccess:
    async def test_needs_a_token(self, client: httpx.AsyncClient) -> None:
        response = await client.get(PATH)
        assert response.status_code == 401

    async def test_needs_audit_read(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        police = await token(agency="police", scopes=["children:read", "custody:read"])
        response = await client.get(PATH, headers=bearer(police))
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"


class TestFilters:
    async def test_each_filter_narrows_the_log(
        self, app: Any, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        child, listed = uuid.uuid4(), uuid.uuid4()
        ids = await write(
            app,
            make_record(agency="police", client_id="cl_police", child_id=child, action="custody.read"),
            make_record(
                agency="womens-federation",
                client_id="cl_wf",
                child_id=child,
                action="child.read",
                decision="allow_redacted",
            ),
            make_record(
                agency="education",
                client_id="cl_edu",
                child_id=None,
                child_ids=[listed, child],
                action="child.list",
                query={"region": "510107", "limit": 50},
            ),
            make_record(agency="police", client_id="cl_police", child_id=listed, decision="deny", reason="x"),
        )
        headers = await auditor(token)

        async def found(**params: Any) -> list[int]:
            response = await client.get(PATH, params=params, headers=headers)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert await found() == ids[::-1]  # newest first
        assert await found(child_id=str(child)) == [ids[2], ids[1], ids[0]]  # lists that returned it too
        assert await found(agency="police") == [ids[3], ids[0]]
        assert await found(client_id="cl_wf") == [ids[1]]
        assert await found(decision="deny") == [ids[3]]
        assert await found(action="child.list") == [ids[2]]
        assert await found(agency="police", decision="allow") == [ids[0]]
        now = datetime.now(UTC)
        assert await found(since=(now - timedelta(minutes=5)).isoformat()) == ids[::-1]
        assert await found(since=(now + timedelta(minutes=5)).isoformat()) == []
        assert await found(until=(now - timedelta(minutes=5)).isoformat()) == []

    async def test_an_entry_carries_everything_but_the_row_hash(
        self, app: Any, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        listed = uuid.uuid4()
        record = make_record(
            action="child.list", child_id=None, child_ids=[listed], query={"category": "left_behind"}
        )
        (row_id,) = await write(app, record)
        response = await client.get(PATH, headers=await auditor(token))
        (entry,) = response.json()["items"]
        assert "row_hash" not in entry
        assert entry["id"] == row_id
        assert entry["client_id"] == record.client_id
        assert entry["child_id"] is None
        assert entry["child_ids"] == [str(listed)]
        assert entry["query"] == {"category": "left_behind"}
        assert entry["basis"]["custody"]["citation"] == "未成年人保护法 第十一条"
        assert entry["categories_withheld"] == ["health"]
        assert entry["decision"] == "allow"
        assert entry["break_glass"] is False
        assert entry["logged_at"].endswith(("Z", "+00:00"))


class TestPagination:
    async def test_pages_follow_the_cursor_to_the_end(
        self, app: Any, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        ids = await write(app, *(make_record() for _ in range(7)))
        headers = await auditor(token)
        seen: list[int] = []
        sizes = []
        params: dict[str, Any] = {"limit": 3}
        while True:
            body = (await client.get(PATH, params=params, headers=headers)).json()
            sizes.append(len(body["items"]))
            seen += [item["id"] for item in body["items"]]
            if body["next_cursor"] is None:
                break
            params["after"] = body["next_cursor"]
        assert sizes == [3, 3, 1]
        assert seen == sorted(ids, reverse=True)

    async def test_a_bad_cursor_is_a_400(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        response = await client.get(PATH, params={"after": "not-a-cursor"}, headers=await auditor(token))
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_cursor"

    async def test_limit_is_bounded(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        headers = await auditor(token)
        for limit in (0, 201, 100000):
            response = await client.get(PATH, params={"limit": limit}, headers=headers)
            assert response.status_code == 422, limit
            assert response.headers["content-type"].startswith("application/problem+json")


class TestOversightIsScoped:
    """`audit:read` covers the reader's region, and only its own agency's records unless it is
    the platform or an oversight kind of the policy."""

    @pytest.fixture
    async def uses(self, client: httpx.AsyncClient, token: TokenFactory) -> dict[str, Any]:
        """A 510107 and a 510108 child, each read under break-glass by provincial police."""
        civil = await token(agency="civil-affairs", scopes=CONSENT_SCOPES, region="51")
        west = await make_child(client, civil, region="510107005003", categories=["serious_illness"])
        east = await make_child(client, civil, region="510108001001", categories=["serious_illness"])
        police = await token(agency="police", scopes=["children:read", "break-glass"], region="51")
        for child in (west, east):
            response = await read_child(client, police, child["id"], "emergency", **GLASS)
            assert response.status_code == 200, response.text
        platform = bearer(await token(agency="platform", scopes=["audit:read"]))
        queue = (await client.get("/v1/audit/break-glass", headers=platform)).json()["items"]
        by_child = {item["child_id"]: item["id"] for item in queue}
        return {"west": west["id"], "east": east["id"], "uses": by_child}

    async def test_police_of_another_district_reads_no_break_glass_justification_of_510107(
        self, client: httpx.AsyncClient, token: TokenFactory, uses: dict[str, Any]
    ) -> None:
        east_police = bearer(await token(agency="police", scopes=["audit:read"], region="510108"))
        response = await client.get("/v1/audit/break-glass", headers=east_police)
        assert response.status_code == 200
        assert [item["child_id"] for item in response.json()["items"]] == [uses["east"]]
        assert uses["west"] not in response.text

    async def test_police_of_another_district_reads_no_log_of_a_510107_child(
        self, client: httpx.AsyncClient, token: TokenFactory, uses: dict[str, Any]
    ) -> None:
        east_police = bearer(await token(agency="police", scopes=["audit:read"], region="510108"))
        west = await client.get(PATH, params={"child_id": uses["west"]}, headers=east_police)
        assert west.status_code == 200
        assert west.json()["items"] == []
        everything = (await client.get(PATH, headers=east_police)).json()["items"]
        assert {item["child_id"] for item in everything} == {uses["east"]}

    async def test_an_agency_that_neither_read_nor_keeps_the_record_sees_none_of_it(
        self, client: httpx.AsyncClient, token: TokenFactory, uses: dict[str, Any]
    ) -> None:
        school = bearer(await token(agency="education", scopes=["audit:read"], region="51"))
        assert (await client.get("/v1/audit/break-glass", headers=school)).json()["items"] == []
        assert (await client.get(PATH, headers=school)).json()["items"] == []
        review = await client.post(
            f"/v1/audit/break-glass/{uses['uses'][uses['west']]}/review",
            json={"outcome": "justified", "note": "looks fine"},
            headers=school,
        )
        assert review.status_code == 404
        assert review.json()["code"] == "break_glass_not_found"

    async def test_record_keeper_sees_every_agencys_reads_of_its_children_in_its_region(
        self, client: httpx.AsyncClient, token: TokenFactory, uses: dict[str, Any]
    ) -> None:
        east_civil = bearer(await token(agency="civil-affairs", scopes=["audit:read"], region="510108"))
        glass = (await client.get("/v1/audit/break-glass", headers=east_civil)).json()["items"]
        assert [(item["child_id"], item["agency"]) for item in glass] == [(uses["east"], "police")]
        log = (await client.get(PATH, params={"agency": "police"}, headers=east_civil)).json()["items"]
        assert {item["child_id"] for item in log} == {uses["east"]}

    async def test_civil_affairs_of_510108_cannot_review_a_510107_use(
        self, client: httpx.AsyncClient, token: TokenFactory, uses: dict[str, Any]
    ) -> None:
        east_civil = bearer(await token(agency="civil-affairs", scopes=["audit:read"], region="510108"))
        west_use = uses["uses"][uses["west"]]
        response = await client.post(
            f"/v1/audit/break-glass/{west_use}/review",
            json={"outcome": "justified", "note": "Child was missing; proportionate."},
            headers=east_civil,
        )
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "break_glass_not_found"
        east_use = uses["uses"][uses["east"]]
        reviewed = await client.post(
            f"/v1/audit/break-glass/{east_use}/review",
            json={"outcome": "justified", "note": "Child was missing; proportionate."},
            headers=east_civil,
        )
        assert reviewed.status_code == 200, reviewed.text
        assert reviewed.json()["reviewer_agency"] == "civil-affairs"

    async def test_the_agency_that_used_break_glass_cannot_review_it_in_its_region(
        self, client: httpx.AsyncClient, token: TokenFactory, uses: dict[str, Any]
    ) -> None:
        west_police = bearer(await token(agency="police", scopes=["audit:read"], region="510107"))
        response = await client.post(
            f"/v1/audit/break-glass/{uses['uses'][uses['west']]}/review",
            json={"outcome": "justified", "note": "We were right."},
            headers=west_police,
        )
        assert response.status_code == 403
        assert response.json()["code"] == "own_agency_review"

    async def test_a_list_read_names_only_the_children_inside_the_readers_region(
        self, client: httpx.AsyncClient, token: TokenFactory, uses: dict[str, Any]
    ) -> None:
        school = await token(agency="education", scopes=["children:read", "audit:read"], region="51")
        page = await client.get("/v1/children", headers={**bearer(school), **purpose("education_support")})
        assert page.status_code == 200, page.text
        east_school = bearer(await token(agency="education", scopes=["audit:read"], region="510108"))
        found = await client.get(PATH, params={"action": "child.list"}, headers=east_school)
        (entry,) = found.json()["items"]
        assert entry["child_ids"] == [uses["east"]]

    async def test_an_oversight_kind_of_the_policy_sees_every_agency_in_its_region(
        self, app: Any, client: httpx.AsyncClient, token: TokenFactory, uses: dict[str, Any]
    ) -> None:
        policy = app.state.door.policy
        app.state.door.policy = dataclasses.replace(policy, oversight_agency_kinds=frozenset({"health"}))
        try:
            inspector = bearer(await token(agency="health", scopes=["audit:read"], region="510107"))
            glass = (await client.get("/v1/audit/break-glass", headers=inspector)).json()["items"]
        finally:
            app.state.door.policy = policy
        assert [item["child_id"] for item in glass] == [uses["west"]]

    async def test_access_report_of_a_child_outside_the_region_is_404(
        self, client: httpx.AsyncClient, token: TokenFactory, uses: dict[str, Any]
    ) -> None:
        east_civil = bearer(await token(agency="civil-affairs", scopes=["children:read"], region="510108"))
        response = await client.get(f"/v1/children/{uses['west']}/access-report", headers=east_civil)
        assert response.status_code == 404
        assert response.json()["code"] == "child_not_found"
        mine = await client.get(f"/v1/children/{uses['east']}/access-report", headers=east_civil)
        assert mine.status_code == 200
