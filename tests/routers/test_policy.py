from __future__ import annotations

import hashlib

import httpx

from app.access.policy import DEFAULT_POLICY_PATH
from app.models.agency import AgencyKind
from app.models.report import ReportConcern, ReportUrgency
from tests.conftest import TokenFactory, bearer


class TestGetPolicy:
    async def test_serves_version_hash_rules_purposes_and_categories(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        tok = await token(agency="education", scopes=["children:read"])
        response = await client.get("/v1/policy", headers=bearer(tok))
        assert response.status_code == 200
        body = response.json()
        assert body["sha256"] == hashlib.sha256(DEFAULT_POLICY_PATH.read_bytes()).hexdigest()
        assert "police-protection" in {r["id"] for r in body["rules"]}
        assert "child_protection" in body["purposes"]
        assert "law_enforcement" in body["categories"]
        assert body["grounds"] == ["owner", "statute", "consent", "referral", "break_glass"]
        assert body["oversight"]["agency_kinds"] == []
        assert "own agency" in body["oversight"]["note"]
        assert body["cases"]["respond_within_max_hours"] == 168
        assert body["cases"]["referral_purposes"] == ["child_protection"]

    async def test_needs_a_token(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/v1/policy")).status_code == 401


class TestReportRouting:
    async def test_every_concern_reaches_police_and_civil_affairs_and_every_urgency_has_a_clock(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        tok = await token(agency="education", scopes=["reports:file"])
        routing = (await client.get("/v1/policy", headers=bearer(tok))).json()["report_routing"]

        assert set(routing["by_concern"]) == {c.value for c in ReportConcern}
        for concern, route in routing["by_concern"].items():
            assert {"police", "civil-affairs"} <= set(route["agency_kinds"]), concern
            assert set(route["agency_kinds"]) <= {k.value for k in AgencyKind} - {"platform"}
            assert "第十一条" in route["citation"]
        assert set(routing["by_urgency"]) == {u.value for u in ReportUrgency}
        danger = routing["by_urgency"]["immediate_danger"]
        assert danger["acknowledge_within_minutes"] <= 60 and danger["justification"]
        assert routing["reporter_readers"] == ["police", "civil-affairs"]
