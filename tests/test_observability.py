"""Response headers every deployment sends, and those production adds."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, make_child

HSTS = "max-age=31536000; includeSubDomains"


class TestProductionHeaders:
    async def test_child_data_in_production_is_no_store_nosniff_and_hsts(
        self, production_client: httpx.AsyncClient, production_token: TokenFactory
    ) -> None:
        civil = await production_token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="51")
        child = await make_child(production_client, civil)
        for response in (
            await production_client.get(f"/v1/children/{child['id']}", headers=bearer(civil)),
            await production_client.get("/v1/children", headers=bearer(civil)),
            await production_client.get(f"/v1/children/{child['id']}/custody", headers=bearer(civil)),
        ):
            assert response.status_code == 200, response.text
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["strict-transport-security"] == HSTS

    async def test_refusals_in_production_carry_the_same_headers(
        self, production_client: httpx.AsyncClient
    ) -> None:
        for response in (
            await production_client.get("/v1/children"),  # 401 from the app
            await production_client.post(
                "/v1/children", content=b"x", headers={"content-type": "text/plain"}
            ),
        ):
            assert response.status_code in (401, 415)
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["strict-transport-security"] == HSTS

    async def test_the_token_endpoint_keeps_its_own_no_store_once(
        self, production_client: httpx.AsyncClient
    ) -> None:
        response = await production_client.post("/oauth/token", data={"grant_type": "client_credentials"})
        assert response.headers.get_list("cache-control") == ["no-store"]


class TestDevelopmentHeaders:
    async def test_nosniff_and_no_store_are_sent_always_hsts_only_in_production(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        civil = await token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="51")
        child: dict[str, Any] = await make_child(client, civil)
        response = await client.get(f"/v1/children/{child['id']}", headers=bearer(civil))
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in response.headers
        health = await client.get("/healthz")
        assert health.headers["x-content-type-options"] == "nosniff"
        assert "cache-control" not in health.headers
