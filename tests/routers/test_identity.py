from __future__ import annotations

import httpx

from tests.conftest import TokenFactory, bearer


class TestMe:
    async def test_token_from_client_credentials_calls_me(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        tok = await token(agency="police", scopes=["children:read", "custody:read"], region="5101")
        response = await client.get("/v1/me", headers=bearer(tok))
        assert response.status_code == 200
        body = response.json()
        assert body["agency"] == "police"
        assert body["scopes"] == ["children:read", "custody:read"]
        assert body["region"] == "5101"
        assert response.headers["x-request-id"]

    async def test_missing_token_is_401_with_challenge(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/me")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")


class TestAgencies:
    async def test_admin_registers_and_lists_agency(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(
            "/v1/agencies",
            json={"code": "police-510107", "name": "武侯区公安分局", "kind": "police"},
            headers=bearer(admin_token),
        )
        assert response.status_code == 201, response.text
        listed = await client.get("/v1/agencies", headers=bearer(admin_token))
        assert "police-510107" in [a["code"] for a in listed.json()]

    async def test_non_admin_gets_403(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        tok = await token(agency="police", scopes=["children:read"])
        response = await client.post(
            "/v1/agencies", json={"code": "x-agency", "name": "X", "kind": "police"}, headers=bearer(tok)
        )
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"
