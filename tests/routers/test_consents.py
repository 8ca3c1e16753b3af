"""Consent, break-glass and the guardian's access report (issue: the three grounds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from app.db import asyncpg_dsn
from tests.conftest import TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, guardianship_body, make_child, purpose

CONSENT_SCOPES = [*CIVIL_SCOPES, "consents:read", "consents:write"]
GLASS = {"X-Break-Glass": "missing_child; Reported missing at 02:10, guardian unreachable, search under way"}


@pytest.fixture
async def civil(token: TokenFactory) -> str:
    return await token(agency="civil-affairs", scopes=CONSENT_SCOPES, region="51")


def consent_body(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "given_by_role": "guardian",
        "given_by_name": "卓玛",
        "given_by_relationship": "grandmother",
        "receiving_agency": "womens-federation",
        "categories": ["health"],
        "purposes": ["child_protection"],
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": (now + timedelta(days=365)).isoformat(),
        "evidence_ref": "TY-2026-0042",
    }
    body.update(overrides)
    return body


async def fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def read_child(
    client: httpx.AsyncClient, tok: str, child_id: str, why: str = "child_protection", **headers: str
) -> httpx.Response:
    return await client.get(f"/v1/children/{child_id}", headers={**bearer(tok), **purpose(why), **headers})


class TestFiveReaders:
    async def test_each_agency_gets_what_policy_and_consents_allow_and_the_log_says_why(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(
            client, civil, categories=["left_behind", "serious_illness", "guardian_harm"]
        )
        await token(agency="womens-federation", scopes=["children:read"], region="51")  # registers the agency
        consent = await client.post(
            f"/v1/children/{child['id']}/consents", json=consent_body(), headers=bearer(civil)
        )
        assert consent.status_code == 201, consent.text
        readers = {
            "civil-affairs": (civil, None),
            "education": (
                await token(agency="education", scopes=["children:read"], region="51"),
                "education_support",
            ),
            "health": (await token(agency="health", scopes=["children:read"], region="51"), "health_care"),
            "police": (
                await token(agency="police", scopes=["children:read"], region="51"),
                "child_protection",
            ),
            "womens-federation": (
                await token(agency="womens-federation", scopes=["children:read"], region="51"),
                "child_protection",
            ),
        }
        seen: dict[str, dict[str, Any]] = {}
        for agency, (tok, why) in readers.items():
            headers = bearer(tok) | (purpose(why) if why else {})
            response = await client.get(f"/v1/children/{child['id']}", headers=headers)
            assert response.status_code == 200, (agency, response.text)
            seen[agency] = response.json()

        assert seen["civil-affairs"]["access"]["withheld"] == []
        assert seen["education"]["school"] == "簇桥小学" and seen["education"]["address"] is None
        assert seen["health"]["categories"] == ["left_behind", "serious_illness"]
        assert seen["police"]["categories"] == ["guardian_harm"] and seen["police"]["school"] is None
        wf = seen["womens-federation"]
        # Welfare by statute (caring-mother pairing), health released by the consent only.
        assert wf["categories"] == ["left_behind", "serious_illness"]
        assert wf["access"]["basis"]["health"] == {
            "ground": "consent",
            "ref": consent.json()["id"],
            "citation": None,
        }
        assert wf["access"]["basis"]["identity"]["ground"] == "statute"
        assert "law_enforcement" in {w["category"] for w in wf["access"]["withheld"]}

        log = await fetch(
            database_url, "SELECT agency, basis, categories_withheld FROM access_log ORDER BY id"
        )
        assert [r["agency"] for r in log] == ["education", "health", "police", "womens-federation"]
        import json

        wf_basis = json.loads(log[-1]["basis"]) if isinstance(log[-1]["basis"], str) else log[-1]["basis"]
        assert wf_basis["health"]["ground"] == "consent"
        assert wf_basis["health"]["ref"] == consent.json()["id"]


class TestConsentLifecycle:
    async def test_granted_used_revoked_then_withheld_again(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil, categories=["serious_illness"])
        wf = await token(agency="womens-federation", scopes=["children:read"], region="51")
        before = await read_child(client, wf, child["id"])
        assert before.json()["categories"] is None
        consent = (
            await client.post(
                f"/v1/children/{child['id']}/consents", json=consent_body(), headers=bearer(civil)
            )
        ).json()
        used = await read_child(client, wf, child["id"])
        assert used.json()["categories"] == ["serious_illness"]
        revoked = await client.post(
            f"/v1/consents/{consent['id']}/revoke",
            json={"reason": "Guardian withdrew consent"},
            headers=bearer(civil),
        )
        assert revoked.status_code == 200
        assert revoked.json()["active"] is False
        after = await read_child(client, wf, child["id"])
        assert after.json()["categories"] is None
        assert {"category": "health", "reason": "no_legal_basis"} in after.json()["access"]["withheld"]
        twice = await client.post(
            f"/v1/consents/{consent['id']}/revoke", json={"reason": "again"}, headers=bearer(civil)
        )
        assert twice.status_code == 409

    @pytest.mark.parametrize(
        ("label", "overrides"),
        [
            (
                "expired",
                {"valid_from": "2024-01-01T00:00:00+08:00", "valid_until": "2025-01-01T00:00:00+08:00"},
            ),
            (
                "not yet valid",
                {"valid_from": "2099-01-01T00:00:00+08:00", "valid_until": "2100-01-01T00:00:00+08:00"},
            ),
            ("another purpose", {"purposes": ["welfare_assistance"]}),
            ("another agency", {"receiving_agency": "education"}),
        ],
    )
    async def test_consent_that_does_not_cover_the_read_grants_nothing(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        label: str,
        overrides: dict[str, Any],
    ) -> None:
        child = await make_child(client, civil, categories=["serious_illness"])
        wf = await token(agency="womens-federation", scopes=["children:read"], region="51")
        await token(agency="education", scopes=["children:read"], region="51")
        created = await client.post(
            f"/v1/children/{child['id']}/consents", json=consent_body(**overrides), headers=bearer(civil)
        )
        assert created.status_code == 201, (label, created.text)
        assert created.json()["active"] is (label in ("another purpose", "another agency"))
        body = (await read_child(client, wf, child["id"])).json()
        assert body["categories"] is None, label
        assert "health" in {w["category"] for w in body["access"]["withheld"]}

    async def test_any_agency_consent_covers_a_named_reader(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil, categories=["serious_illness"])
        await client.post(
            f"/v1/children/{child['id']}/consents",
            json=consent_body(receiving_agency=None),
            headers=bearer(civil),
        )
        wf = await token(agency="womens-federation", scopes=["children:read"], region="51")
        assert (await read_child(client, wf, child["id"])).json()["categories"] == ["serious_illness"]


class TestConsentBadInput:
    @pytest.mark.parametrize(
        ("overrides", "status"),
        [
            ({"valid_from": "2026-12-01T00:00:00+08:00", "valid_until": "2026-11-01T00:00:00+08:00"}, 422),
            ({"categories": ["dna"]}, 422),
            ({"purposes": ["curiosity"]}, 422),
            ({"categories": []}, 422),
            ({"valid_from": "2026-12-01T00:00:00"}, 422),
            ({"receiving_agency": "no-such-agency"}, 400),
            ({"given_by_role": "child", "receiving_agency": None}, 400),
        ],
    )
    async def test_bad_consent_is_refused_and_nothing_is_stored(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        database_url: str,
        overrides: dict[str, Any],
        status: int,
    ) -> None:
        await token(agency="womens-federation", scopes=["children:read"], region="51")
        child = await make_child(client, civil)  # born 2016: under 14, cannot consent for herself
        response = await client.post(
            f"/v1/children/{child['id']}/consents", json=consent_body(**overrides), headers=bearer(civil)
        )
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        if overrides.get("given_by_role") == "child":
            assert response.json()["code"] == "child_too_young_to_consent"
        assert await fetch(database_url, "SELECT id FROM consent") == []

    async def test_consent_for_child_outside_region_is_404(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil, region="510107005003")
        county = await token(agency="civil-affairs", scopes=CONSENT_SCOPES, region="510104")
        response = await client.post(
            f"/v1/children/{child['id']}/consents", json=consent_body(), headers=bearer(county)
        )
        assert response.status_code == 404
        assert await fetch(database_url, "SELECT id FROM consent") == []

    async def test_child_of_fourteen_may_consent(self, client: httpx.AsyncClient, civil: str) -> None:
        child = await make_child(client, civil, birth=datetime(2010, 1, 1).date())
        response = await client.post(
            f"/v1/children/{child['id']}/consents",
            json=consent_body(
                given_by_role="child",
                given_by_name="扎西·多吉",
                given_by_relationship=None,
                receiving_agency=None,
            ),
            headers=bearer(civil),
        )
        assert response.status_code == 201, response.text


class TestBreakGlass:
    async def test_allowed_client_reads_is_flagged_and_queued_for_review(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil, categories=["serious_illness"])
        police = await token(agency="police", scopes=["children:read", "break-glass"], region="51")
        response = await read_child(client, police, child["id"], "emergency", **GLASS)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["categories"] == ["serious_illness"]
        assert body["access"]["basis"]["health"]["ground"] == "break_glass"
        log = await fetch(database_url, "SELECT id, break_glass FROM access_log")
        assert [r["break_glass"] for r in log] == [True]

        auditor = await token(agency="platform", scopes=["audit:read"], kind=None)
        queue = (
            await client.get("/v1/audit/break-glass", params={"status": "pending"}, headers=bearer(auditor))
        ).json()
        assert len(queue["items"]) == 1
        item = queue["items"][0]
        assert item["access_log_id"] == log[0]["id"]
        assert item["reason_code"] == "missing_child"
        assert "health" in item["categories"]

        own = await token(agency="police", scopes=["audit:read"], region="51")
        refused = await client.post(
            f"/v1/audit/break-glass/{item['id']}/review",
            json={"outcome": "justified", "note": "ok"},
            headers=bearer(own),
        )
        assert refused.status_code == 403
        reviewed = await client.post(
            f"/v1/audit/break-glass/{item['id']}/review",
            json={"outcome": "justified", "note": "Child was missing; proportionate."},
            headers=bearer(auditor),
        )
        assert reviewed.status_code == 200
        assert reviewed.json()["status"] == "justified"
        again = await client.post(
            f"/v1/audit/break-glass/{item['id']}/review",
            json={"outcome": "not_justified", "note": "x"},
            headers=bearer(auditor),
        )
        assert again.status_code == 409

    async def test_client_without_the_right_gets_403_and_the_attempt_is_logged(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil, categories=["serious_illness"])
        school = await token(agency="education", scopes=["children:read"], region="51")
        response = await read_child(client, school, child["id"], "emergency", **GLASS)
        assert response.status_code == 403
        assert response.json()["code"] == "break_glass_not_allowed"
        log = await fetch(database_url, "SELECT decision, reason FROM access_log")
        assert [(r["decision"], r["reason"]) for r in log] == [("deny", "break_glass_not_allowed")]
        assert await fetch(database_url, "SELECT id FROM break_glass_review") == []

    @pytest.mark.parametrize(
        "header",
        [
            "missing_child; too short",
            "Reported missing at 02:10, guardian unreachable",
            "curious; " + "x" * 40,
        ],
    )
    async def test_short_or_uncoded_justification_is_400(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str, header: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["children:read", "break-glass"], region="51")
        response = await read_child(client, police, child["id"], "emergency", **{"X-Break-Glass": header})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_break_glass"
        assert await fetch(database_url, "SELECT id FROM break_glass_review") == []

    async def test_percent_encoded_chinese_justification_is_accepted(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        from urllib.parse import quote

        child = await make_child(client, civil, categories=["serious_illness"])
        police = await token(agency="police", scopes=["children:read", "break-glass"], region="51")
        text = "儿童凌晨走失，监护人无法联系，需立即了解其疾病情况以便搜救"
        response = await read_child(
            client, police, child["id"], "emergency", **{"X-Break-Glass": "missing_child; " + quote(text)}
        )
        assert response.status_code == 200, response.text
        rows = await fetch(database_url, "SELECT justification FROM break_glass_review")
        assert [r["justification"] for r in rows] == [text]

    async def test_uses_beyond_the_daily_limit_are_refused(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, app: Any
    ) -> None:
        child = await make_child(client, civil, categories=["serious_illness"])
        police = await token(agency="police", scopes=["children:read", "break-glass"], region="51")
        limit = app.state.door.break_glass_daily_limit
        for _ in range(limit):
            assert (await read_child(client, police, child["id"], "emergency", **GLASS)).status_code == 200
        refused = await read_child(client, police, child["id"], "emergency", **GLASS)
        assert refused.status_code == 429
        assert refused.json()["code"] == "break_glass_limit"


class TestAccessReport:
    async def test_lists_exactly_the_cross_agency_reads_and_hides_open_investigations(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil, categories=["left_behind", "guardian_harm"])
        other = await make_child(client, civil)
        await client.post(
            f"/v1/children/{child['id']}/guardianship", json=guardianship_body(), headers=bearer(civil)
        )
        police = await token(agency="police", scopes=["children:read", "custody:read"], region="51")
        school = await token(agency="education", scopes=["children:read"], region="51")
        wf = await token(agency="womens-federation", scopes=["children:read"], region="51")

        assert (
            await client.get(f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()})
        ).status_code == 200
        assert (await read_child(client, school, child["id"], "education_support")).status_code == 200
        assert (await read_child(client, school, other["id"], "education_support")).status_code == 200
        assert (
            await read_child(client, wf, child["id"], "statistics")
        ).status_code == 403  # denied: not a read
        assert (
            await client.get(f"/v1/children/{child['id']}", headers=bearer(civil))
        ).status_code == 200  # owner
        case = {"X-Investigation-Ref": "WH-2026-0117"}
        assert (await read_child(client, police, child["id"], "investigation", **case)).status_code == 200

        url = f"/v1/children/{child['id']}/access-report"
        report = (await client.get(url, headers=bearer(civil))).json()
        assert [(e["agency"], e["action"], e["purpose"]) for e in report["entries"]] == [
            ("education", "child.read", "education_support"),
            ("police", "custody.read", "child_protection"),
        ]
        assert report["some_entries_withheld"] is True
        assert report["entries"][1]["grounds"][0]["ground"] == "statute"

        closed = await client.post("/v1/investigations/WH-2026-0117/close", headers=bearer(police))
        assert closed.status_code == 200
        after = (await client.get(url, headers=bearer(civil))).json()
        assert after["some_entries_withheld"] is False
        assert [e["purpose"] for e in after["entries"]] == [
            "investigation",
            "education_support",
            "child_protection",
        ]

        page = await client.get(url, params={"format": "html"}, headers=bearer(civil))
        assert page.headers["content-type"].startswith("text/html")
        assert "儿童个人信息查阅记录" in page.text
        assert "案件调查" in page.text and "扎西" not in page.text

    async def test_only_the_record_keeper_produces_the_report(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["children:read"], region="51")
        response = await client.get(
            f"/v1/children/{child['id']}/access-report", headers={**bearer(police), **purpose()}
        )
        assert response.status_code == 403

    async def test_paginates_newest_first(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        school = await token(agency="education", scopes=["children:read"], region="51")
        for _ in range(3):
            await read_child(client, school, child["id"], "education_support")
        url = f"/v1/children/{child['id']}/access-report"
        first = (await client.get(url, params={"limit": 2}, headers=bearer(civil))).json()
        second = (
            await client.get(url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=bearer(civil))
        ).json()
        assert len(first["entries"]) == 2 and len(second["entries"]) == 1
        assert second["next_cursor"] is None
        assert (
            first["entries"][0]["read_at"]
            >= first["entries"][1]["read_at"]
            >= second["entries"][0]["read_at"]
        )


class TestListConsents:
    async def test_consents_come_as_a_page_like_every_list(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        await token(agency="womens-federation", scopes=["children:read"], region="51")  # registers the agency
        refs = [f"TY-2026-00{n}" for n in (41, 42, 43)]
        for ref in refs:
            recorded = await client.post(
                f"/v1/children/{child['id']}/consents",
                json=consent_body(evidence_ref=ref),
                headers=bearer(civil),
            )
            assert recorded.status_code == 201, recorded.text
        url = f"/v1/children/{child['id']}/consents"
        first = await client.get(url, params={"limit": 2}, headers=bearer(civil))
        assert first.status_code == 200, first.text
        assert [c["evidence_ref"] for c in first.json()["items"]] == refs[:0:-1]
        assert first.json()["next_cursor"]
        rest = await client.get(
            url, params={"limit": 2, "cursor": first.json()["next_cursor"]}, headers=bearer(civil)
        )
        assert [c["evidence_ref"] for c in rest.json()["items"]] == refs[:1]
        assert rest.json()["next_cursor"] is None


class TestAccessReportTimes:
    async def test_the_printable_report_shows_china_standard_time_and_says_so(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["children:read"], region="51")
        read = await read_child(client, police, child["id"])
        assert read.status_code == 200, read.text
        url = f"/v1/children/{child['id']}/access-report"
        (entry,) = (await client.get(url, headers=bearer(civil))).json()["entries"]
        read_at = datetime.fromisoformat(entry["read_at"])
        beijing = read_at.astimezone(UTC) + timedelta(hours=8)
        page = await client.get(url, params={"format": "html"}, headers=bearer(civil))
        assert beijing.strftime("%Y-%m-%d %H:%M") in page.text
        assert "北京时间" in page.text
