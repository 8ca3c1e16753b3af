"""Edge cases where the access layer must not leak: redaction of history, per-child list records,
investigations, existence probes, self-granted consents and odd input."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from app.services import cursor as cursor_codec
from tests.conftest import TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, guardianship_body, make_child, purpose
from tests.routers.test_consents import CONSENT_SCOPES, GLASS, consent_body, read_child


@pytest.fixture
async def civil(token: TokenFactory) -> str:
    return await token(agency="civil-affairs", scopes=CONSENT_SCOPES, region="51")


class TestGuardianshipHistoryRedaction:
    async def test_reader_without_custody_basis_gets_no_custody_facts(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        await client.post(
            f"/v1/children/{child['id']}/guardianship", json=guardianship_body(), headers=bearer(civil)
        )
        wf = await token(agency="womens-federation", scopes=["custody:read"], region="51")
        body = (
            await client.get(f"/v1/children/{child['id']}/guardianship", headers={**bearer(wf), **purpose()})
        ).json()
        assert {w["category"] for w in body["access"]["withheld"]} == {"custody"}
        item = body["items"][0]
        assert item["custody_status"] is None and item["risk_flags"] == []
        assert item["last_assessment"] is None and item["effective_from"] is None
        assert item["guardian"]["phone"] == "13800138000"  # contact is granted to the federation


class TestListRecordsPerChild:
    async def test_each_childs_report_names_only_what_was_read_of_it(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        wf = await token(agency="womens-federation", scopes=["children:read"], region="51")
        consented = await make_child(client, civil, categories=["serious_illness"])
        other = await make_child(client, civil, categories=["serious_illness"])
        consent = (
            await client.post(
                f"/v1/children/{consented['id']}/consents", json=consent_body(), headers=bearer(civil)
            )
        ).json()
        page = await client.get("/v1/children", headers={**bearer(wf), **purpose()})
        assert page.status_code == 200
        by_id = {c["id"]: c for c in page.json()["items"]}
        assert by_id[consented["id"]]["categories"] == ["serious_illness"]
        assert by_id[other["id"]]["categories"] is None

        other_report = (
            await client.get(f"/v1/children/{other['id']}/access-report", headers=bearer(civil))
        ).json()
        [entry] = other_report["entries"]
        assert "health" not in entry["categories"]
        assert consent["id"] not in str(other_report)
        mine = (
            await client.get(f"/v1/children/{consented['id']}/access-report", headers=bearer(civil))
        ).json()
        assert {"category": "health", "ground": "consent", "ref": consent["id"], "citation": None} in mine[
            "entries"
        ][0]["grounds"]


class TestInvestigations:
    async def test_only_investigating_agencies_may_read_for_an_investigation(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        rescue = await token(
            agency="civil-affairs-rescue",
            kind="civil-affairs",
            scopes=["children:read", "break-glass"],
            region="51",
        )
        response = await read_child(
            client, rescue, child["id"], "investigation", **GLASS, **{"X-Investigation-Ref": "X1"}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "investigation_not_allowed"

    async def test_another_agency_using_the_same_reference_opens_its_own_case(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["children:read"], region="51")
        other_police = await token(
            agency="police-510104", kind="police", scopes=["children:read"], region="51"
        )
        case = {"X-Investigation-Ref": "WH-2026-0117"}
        assert (await read_child(client, police, child["id"], "investigation", **case)).status_code == 200
        same_string = await read_child(client, other_police, child["id"], "investigation", **case)
        assert same_string.status_code == 200, same_string.text
        closed = await client.post("/v1/investigations/WH-2026-0117/close", headers=bearer(other_police))
        assert closed.status_code == 200
        assert closed.json()["agency"] == "police-510104"
        report = (await client.get(f"/v1/children/{child['id']}/access-report", headers=bearer(civil))).json()
        assert report["some_entries_withheld"] is True  # the first agency's case is still open
        assert [e["agency"] for e in report["entries"]] == ["police-510104"]

    async def test_police_of_510108_cannot_close_a_510107_case(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil, region="510107005003")
        west = await token(agency="police", scopes=["children:read"], region="510107")
        east = await token(agency="police", scopes=["children:read"], region="510108")
        case = {"X-Investigation-Ref": "WH-2026-0117"}
        assert (await read_child(client, west, child["id"], "investigation", **case)).status_code == 200
        hijack = await client.post("/v1/investigations/WH-2026-0117/close", headers=bearer(east))
        assert hijack.status_code == 404
        assert hijack.headers["content-type"].startswith("application/problem+json")
        assert hijack.json()["code"] == "investigation_not_found"
        absent = await client.post("/v1/investigations/WH-2026-9999/close", headers=bearer(east))
        same = {"instance": None, "request_id": None}
        assert absent.json() | same == hijack.json() | same
        url = f"/v1/children/{child['id']}/access-report"
        report = (await client.get(url, headers=bearer(civil))).json()
        assert report["some_entries_withheld"] is True and report["entries"] == []

        closed = await client.post("/v1/investigations/WH-2026-0117/close", headers=bearer(west))
        assert closed.status_code == 200
        assert closed.json()["opened_region"] == "510107"
        assert [e["purpose"] for e in (await client.get(url, headers=bearer(civil))).json()["entries"]] == [
            "investigation"
        ]

    async def test_a_sibling_region_cannot_read_under_anothers_case(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        west_child = await make_child(client, civil, region="510107005003")
        east_child = await make_child(client, civil, region="510108001001")
        west = await token(agency="police", scopes=["children:read"], region="510107")
        east = await token(agency="police", scopes=["children:read"], region="510108")
        case = {"X-Investigation-Ref": "WH-2026-0117"}
        assert (await read_child(client, west, west_child["id"], "investigation", **case)).status_code == 200
        joined = await read_child(client, east, east_child["id"], "investigation", **case)
        assert joined.status_code == 403
        assert joined.json()["code"] == "investigation_not_allowed"

    async def test_the_province_closes_a_county_case(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil, region="510107005003")
        county = await token(agency="police", scopes=["children:read"], region="510107")
        province = await token(agency="police", scopes=["children:read"], region="51")
        case = {"X-Investigation-Ref": "SC-2026-0001"}
        assert (await read_child(client, county, child["id"], "investigation", **case)).status_code == 200
        assert (await read_child(client, province, child["id"], "investigation", **case)).status_code == 200
        closed = await client.post("/v1/investigations/SC-2026-0001/close", headers=bearer(province))
        assert closed.status_code == 200

    async def test_case_reference_with_a_slash_is_refused_up_front(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["children:read"], region="51")
        response = await read_child(
            client, police, child["id"], "investigation", **{"X-Investigation-Ref": "WH/26/1"}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "investigation_ref_required"

    async def test_break_glass_reads_are_never_withheld_from_the_report(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil, categories=["serious_illness"])
        police = await token(agency="police", scopes=["children:read", "break-glass"], region="51")
        case = {"X-Investigation-Ref": "WH-2026-0999"}
        response = await read_child(client, police, child["id"], "investigation", **GLASS, **case)
        assert response.status_code == 200
        assert response.json()["access"]["basis"]["health"]["ground"] == "break_glass"
        report = (await client.get(f"/v1/children/{child['id']}/access-report", headers=bearer(civil))).json()
        assert [e["break_glass"] for e in report["entries"]] == [True]


class TestNoExistenceProbes:
    @pytest.mark.parametrize("populated", [False, True])
    async def test_filter_answer_does_not_depend_on_what_exists(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, populated: bool
    ) -> None:
        if populated:
            await make_child(client, civil, categories=["guardian_harm"])
        school = await token(agency="education", scopes=["children:read"], region="51")
        params = {"category": "guardian_harm"}
        refused = await client.get(
            "/v1/children", params=params, headers={**bearer(school), **purpose("education_support")}
        )
        no_purpose = await client.get("/v1/children", params=params, headers=bearer(school))
        assert refused.status_code == 403 and refused.json()["code"] == "filter_not_allowed"
        assert no_purpose.status_code == 400 and no_purpose.json()["code"] == "purpose_required"


class TestConsentsBelongToTheRecordKeeper:
    async def test_another_agency_cannot_grant_itself_access_or_revoke(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil, categories=["serious_illness"])
        school = await token(agency="education", scopes=["children:read", "consents:write"], region="51")
        granted = await client.post(
            f"/v1/children/{child['id']}/consents",
            json=consent_body(receiving_agency="education", purposes=["education_support"]),
            headers={**bearer(school), **purpose("education_support")},
        )
        assert granted.status_code == 403
        url = f"/v1/children/{child['id']}/consents"
        consent = (
            await client.post(url, json=consent_body(receiving_agency=None), headers=bearer(civil))
        ).json()
        revoke = await client.post(
            f"/v1/consents/{consent['id']}/revoke",
            json={"reason": "x"},
            headers={**bearer(school), **purpose()},
        )
        assert revoke.status_code == 403


YEAR_ONE_CURSOR = cursor_codec.encode(
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), uuid.UUID(int=0)
)


class TestOddInputIsNeverA500:
    @pytest.mark.parametrize(
        ("path", "params"),
        [
            ("/v1/children", {"updated_since": "0001-01-01T00:00:00+14:00"}),
            ("/v1/children", {"updated_since": "9999-12-31T23:59:59-14:00"}),
            ("/v1/children", {"cursor": YEAR_ONE_CURSOR}),
            ("/v1/audit/break-glass", {"cursor": YEAR_ONE_CURSOR}),
        ],
    )  # fmt: skip
    async def test_out_of_range_times_and_cursors_are_400(
        self, client: httpx.AsyncClient, token: TokenFactory, path: str, params: dict[str, str]
    ) -> None:
        tok = await token(agency="civil-affairs", scopes=[*CIVIL_SCOPES, "audit:read"], region="51")
        response = await client.get(path, params=params, headers=bearer(tok))
        assert response.status_code == 400, response.text

    async def test_huge_report_cursor_is_400(self, client: httpx.AsyncClient, civil: str) -> None:
        child = await make_child(client, civil)
        response = await client.get(
            f"/v1/children/{child['id']}/access-report", params={"cursor": "9" * 25}, headers=bearer(civil)
        )
        assert response.status_code == 400

    async def test_consent_from_year_one_is_422(self, client: httpx.AsyncClient, civil: str) -> None:
        child = await make_child(client, civil)
        response = await client.post(
            f"/v1/children/{child['id']}/consents",
            json=consent_body(valid_from="0001-01-01T00:00:00+14:00"),
            headers=bearer(civil),
        )
        assert response.status_code == 422


class TestMoreProbesAndLimits:
    async def test_duplicate_number_outside_region_is_put_on_record(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        from tests.factories import child_body
        from tests.routers.test_consents import fetch

        body = child_body(region="510107005003")
        await client.post("/v1/children", json=body, headers=bearer(civil))
        county = await token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="510104")
        again = await client.post(
            "/v1/children", json={**body, "region_code": "510104001001"}, headers=bearer(county)
        )
        assert again.status_code == 409
        log = await fetch(database_url, "SELECT action, reason FROM access_log")
        assert [(r["action"], r["reason"]) for r in log] == [("child.register", "duplicate_outside_region")]
        assert body["resident_id"] not in str([dict(r) for r in log])

    async def test_if_match_star_matches_the_current_record(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        child = await make_child(client, civil)
        response = await client.patch(
            f"/v1/children/{child['id']}", json={"school": "A"}, headers={**bearer(civil), "If-Match": "*"}
        )
        assert response.status_code == 200

    async def test_break_glass_on_a_list_is_refused_on_record(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        from tests.routers.test_consents import fetch

        await make_child(client, civil)
        police = await token(agency="police", scopes=["children:read", "break-glass"], region="51")
        response = await client.get(
            "/v1/children", headers={**bearer(police), **purpose("emergency"), **GLASS}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_break_glass"
        assert [r["reason"] for r in await fetch(database_url, "SELECT reason FROM access_log")] == [
            "invalid_break_glass"
        ]

    async def test_concurrent_break_glass_cannot_exceed_the_daily_limit(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, app: object
    ) -> None:
        import asyncio

        child = await make_child(client, civil, categories=["serious_illness"])
        police = await token(agency="police", scopes=["children:read", "break-glass"], region="51")
        limit = app.state.door.break_glass_daily_limit  # type: ignore[attr-defined]
        responses = await asyncio.gather(
            *(read_child(client, police, child["id"], "emergency", **GLASS) for _ in range(limit + 3))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) == limit
        assert codes.count(429) == 3


class TestEmergencyIsNotABulkKey:
    @pytest.mark.parametrize("agency", ["education", "health", "womens-federation"])
    async def test_an_emergency_list_releases_no_address(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, agency: str
    ) -> None:
        for _ in range(10):
            await make_child(client, civil)
        reader = await token(agency=agency, scopes=["children:read"], region="51")
        page = await client.get("/v1/children", headers={**bearer(reader), **purpose("emergency")})
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        assert len(items) == 10
        assert [c["address"] for c in items] == [None] * 10
        assert "簇桥街道" not in page.text
        assert {"category": "contact", "reason": "no_legal_basis"} in items[0]["access"]["withheld"]

    async def test_an_emergency_read_of_one_child_withholds_contact_too(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        school = await token(agency="education", scopes=["children:read"], region="51")
        response = await read_child(client, school, child["id"], "emergency")
        assert response.status_code == 200
        assert response.json()["address"] is None
