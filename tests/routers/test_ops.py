"""Operations endpoints: who may read /metrics."""

from __future__ import annotations

import httpx

from tests.conftest import TokenFactory, bearer

METRICS_TOKEN = "metrics-" + "m" * 40


class TestMetricsInProduction:
    async def test_metrics_without_a_token_is_refused_in_production(
        self, production_client: httpx.AsyncClient
    ) -> None:
        response = await production_client.get("/metrics")
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
        assert "childlink_http_requests_total" not in response.text

    async def test_a_wrong_metrics_token_or_an_agency_token_is_refused(
        self, production_client: httpx.AsyncClient, production_token: TokenFactory
    ) -> None:
        wrong = await production_client.get("/metrics", headers=bearer(METRICS_TOKEN[:-1] + "x"))
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid_token"
        police = await production_token(agency="police", scopes=["custody:read"])
        agency = await production_client.get("/metrics", headers=bearer(police))
        assert agency.status_code == 403
        assert agency.json()["code"] == "insufficient_scope"

    async def test_the_metrics_token_or_an_admin_token_reads_metrics(
        self, production_client: httpx.AsyncClient, production_token: TokenFactory
    ) -> None:
        scraper = await production_client.get("/metrics", headers=bearer(METRICS_TOKEN))
        assert scraper.status_code == 200
        assert "childlink_http_requests_total" in scraper.text
        admin = await production_token(agency="platform", scopes=["admin"])
        assert (await production_client.get("/metrics", headers=bearer(admin))).status_code == 200


class TestMetricsInDevelopment:
    async def test_metrics_are_open_in_development_without_a_metrics_token(
        self, client: httpx.AsyncClient
    ) -> None:
        assert (await client.get("/metrics")).status_code == 200
