from __future__ import annotations

import asyncpg
import httpx
import pytest

from app.db import asyncpg_dsn
from tests.conftest import TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, guardianship_body, make_child, purpose


@pytest.fixture
async def civil(token: TokenFactory) -> str:
    return await token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="51")


async def access_log(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetch("SELECT * FROM access_log ORDER BY id")
    finally:
        await conn.close()


class TestCustodyCheck:
    async def test_police_gets_status_and_whom_to_call_and_the_read_is_logged(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil)
        recorded = await client.post(
            f"/v1/children/{child['id']}/guardianship", json=guardianship_body(), headers=bearer(civil)
        )
        assert recorded.status_code == 201, recorded.text
        police = await token(agency="police", scopes=["custody:read"], region="5101")

        response = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()}
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["custody_status"] == "kinship_care"
        assert body["guardian"] == {"name": "卓玛", "relationship": "grandmother", "phone": "13800138000"}
        assert body["responsible_organisation"]["duty_phone"] == "028-85000000"
        assert body["risk_flags"] == ["guardian_unreachable"]
        assert body["access"]["basis"]["custody"]["ground"] == "statute"
        log = await access_log(database_url)
        reads = [r for r in log if r["action"] == "custody.read"]
        assert len(reads) == 1
        assert str(reads[0]["child_id"]) == child["id"]
        assert reads[0]["agency"] == "police"
        assert reads[0]["purpose"] == "child_protection"
        assert reads[0]["decision"] == "allow"

    async def test_police_without_purpose_is_refused_and_audited(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        response = await client.get(f"/v1/children/{child['id']}/custody", headers=bearer(police))
        assert response.status_code == 400
        assert response.json()["code"] == "purpose_required"
        log = await access_log(database_url)
        assert [(r["decision"], r["reason"]) for r in log] == [("deny", "purpose_required")]

    async def test_unknown_purpose_is_refused_and_audited(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        response = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose("curiosity")}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "unknown_purpose"
        log = await access_log(database_url)
        assert [r["reason"] for r in log] == ["unknown_purpose"]
        assert log[0]["purpose"] is None  # free text from a header is never written to the log

    async def test_child_outside_region_is_404_like_absent_and_audited(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil, region="510107005003")
        police = await token(agency="police", scopes=["custody:read"], region="510104")
        outside = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()}
        )
        absent = await client.get(
            "/v1/children/00000000-0000-4000-8000-000000000000/custody",
            headers={**bearer(police), **purpose()},
        )
        assert outside.status_code == absent.status_code == 404
        strip = ("instance", "request_id")
        assert {k: v for k, v in outside.json().items() if k not in strip} == {
            k: v for k, v in absent.json().items() if k not in strip
        }
        log = await access_log(database_url)
        assert [r["decision"] for r in log] == ["deny", "deny"]

    async def test_education_sees_status_but_not_whom_to_call(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        await client.post(
            f"/v1/children/{child['id']}/guardianship", json=guardianship_body(), headers=bearer(civil)
        )
        school = await token(agency="education", scopes=["custody:read"], region="51")
        response = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(school), **purpose("education_support")}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["custody_status"] == "kinship_care"
        assert body["guardian"] is None
        assert body["responsible_organisation"]["duty_phone"] is None
        assert {w["category"] for w in body["access"]["withheld"]} == {"contact"}


class TestGuardianshipHistory:
    async def test_new_record_supersedes_and_history_is_kept(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        child = await make_child(client, civil)
        url = f"/v1/children/{child['id']}/guardianship"
        first = await client.post(url, json=guardianship_body(), headers=bearer(civil))
        second = await client.post(
            url,
            json=guardianship_body(
                custody_status="entrusted",
                entrustment_confirmation_ref="WT-2026-0012",
                entrustment_confirmed_on="2026-11-01",
                effective_from="2026-11-01",
            ),
            headers=bearer(civil),
        )
        assert first.status_code == second.status_code == 201
        history = (await client.get(url, headers=bearer(civil))).json()
        assert [(h["custody_status"], h["current"]) for h in history["items"]] == [
            ("entrusted", True),
            ("kinship_care", False),
        ]
        custody = (await client.get(f"/v1/children/{child['id']}/custody", headers=bearer(civil))).json()
        assert custody["custody_status"] == "entrusted"

    async def test_entrusted_without_confirmation_is_422_and_nothing_changes(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        child = await make_child(client, civil)
        url = f"/v1/children/{child['id']}/guardianship"
        response = await client.post(
            url, json=guardianship_body(custody_status="entrusted"), headers=bearer(civil)
        )
        assert response.status_code == 422
        assert (await client.get(url, headers=bearer(civil))).json()["items"] == []

    async def test_police_may_record_only_emergency_interventions(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["custody:write", "custody:read"], region="51")
        url = f"/v1/children/{child['id']}/guardianship"
        plain = await client.post(url, json=guardianship_body(), headers={**bearer(police), **purpose()})
        assert plain.status_code == 403
        intervention = await client.post(
            url,
            json=guardianship_body(
                custody_status="temporary_state",
                emergency_intervention=True,
                responsible_org="成都市未成年人救助保护中心",
            ),
            headers={**bearer(police), **purpose()},
        )
        assert intervention.status_code == 201, intervention.text
        assert intervention.json()["emergency_intervention"] is True


class TestAuditIsAPrecondition:
    async def test_read_whose_record_cannot_be_written_is_not_served(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, app: object
    ) -> None:
        from app.audit.writer import AuditWriter

        child = await make_child(client, civil)
        await client.post(
            f"/v1/children/{child['id']}/guardianship", json=guardianship_body(), headers=bearer(civil)
        )
        police = await token(agency="police", scopes=["custody:read"], region="51")
        door = app.state.door  # type: ignore[attr-defined]
        working = door.audit
        # A real writer whose database cannot be reached: the record cannot be made durable.
        door.audit = AuditWriter("postgresql://postgres@127.0.0.1:1/none", timeout=1.0)
        try:
            response = await client.get(
                f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()}
            )
        finally:
            await door.audit.aclose()
            door.audit = working
        assert response.status_code == 503
        assert response.json()["code"] == "audit_unavailable"
        assert "卓玛" not in response.text and "13800138000" not in response.text
