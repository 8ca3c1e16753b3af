"""The token endpoint speaks RFC 6749 (client credentials) and the keys endpoint serves JWKS."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from jose import jwt

from app.db import Database
from tests.conftest import bearer, make_client

GRANT = {"grant_type": "client_credentials"}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert response.headers["cache-control"] == "no-store"
    assert "access_token" not in body
    return dict(body)


@pytest.fixture
async def police(db: Database) -> tuple[str, str]:
    return await make_client(db, agency="police", scopes=["children:read", "custody:read"], region="5101")


class TestClientCredentials:
    async def test_http_basic_credentials_get_a_short_lived_es256_token(
        self, client: httpx.AsyncClient, police: tuple[str, str], app: Any
    ) -> None:
        client_id, secret = police
        response = await client.post("/oauth/token", data=GRANT, headers=_basic(client_id, secret))
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert 0 < body["expires_in"] <= 900
        assert body["scope"] == "children:read custody:read"

        header = jwt.get_unverified_header(body["access_token"])
        claims = jwt.get_unverified_claims(body["access_token"])
        assert header["alg"] == "ES256"
        assert header["typ"] == "at+jwt"
        assert header["kid"] in [k["kid"] for k in app.state.keys.jwks()["keys"]]
        assert claims["sub"] == client_id
        assert claims["agency"] == "police"
        assert claims["region"] == "5101"
        assert claims["exp"] - claims["iat"] == body["expires_in"]
        assert abs(claims["iat"] - time.time()) < 5

        me = await client.get("/v1/me", headers=bearer(body["access_token"]))
        assert me.json()["client_id"] == client_id

    async def test_form_field_credentials_work_too(
        self, client: httpx.AsyncClient, police: tuple[str, str]
    ) -> None:
        client_id, secret = police
        response = await client.post(
            "/oauth/token", data={**GRANT, "client_id": client_id, "client_secret": secret}
        )
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]

    async def test_credentials_in_both_places_are_invalid_request(
        self, client: httpx.AsyncClient, police: tuple[str, str]
    ) -> None:
        client_id, secret = police
        response = await client.post(
            "/oauth/token",
            data={**GRANT, "client_id": client_id, "client_secret": secret},
            headers=_basic(client_id, secret),
        )
        assert_oauth_error(response, 400, "invalid_request")


class TestInvalidClient:
    @pytest.mark.parametrize("who", ["wrong_secret", "unknown_client", "no_credentials", "bad_basic"])
    async def test_failed_client_authentication_is_rfc6749_invalid_client(
        self, client: httpx.AsyncClient, police: tuple[str, str], who: str
    ) -> None:
        client_id, secret = police
        request: dict[str, Any] = {
            "wrong_secret": {"headers": _basic(client_id, secret + "x")},
            "unknown_client": {"headers": _basic("cl_0000000000000000", secret)},
            "no_credentials": {},
            "bad_basic": {"headers": {"Authorization": "Basic !!!not-base64!!!"}},
        }[who]
        response = await client.post("/oauth/token", data=GRANT, **request)
        assert_oauth_error(response, 401, "invalid_client")
        assert response.headers["www-authenticate"].startswith("Basic")

    async def test_wrong_secret_and_unknown_client_are_indistinguishable(
        self, client: httpx.AsyncClient, police: tuple[str, str]
    ) -> None:
        client_id, _ = police
        wrong = await client.post("/oauth/token", data=GRANT, headers=_basic(client_id, "cs_wrong"))
        unknown = await client.post("/oauth/token", data=GRANT, headers=_basic("cl_nobody", "cs_wrong"))
        assert wrong.json()["error_description"] == unknown.json()["error_description"]

    async def test_revoked_client_is_invalid_client(
        self, client: httpx.AsyncClient, police: tuple[str, str], admin_token: str
    ) -> None:
        client_id, secret = police
        await client.post(f"/v1/clients/{client_id}/revoke", headers=bearer(admin_token))
        response = await client.post("/oauth/token", data=GRANT, headers=_basic(client_id, secret))
        assert_oauth_error(response, 401, "invalid_client")


class TestGrantAndRequest:
    @pytest.mark.parametrize("grant", ["password", "authorization_code", "CLIENT_CREDENTIALS"])
    async def test_other_grant_types_are_unsupported(
        self, client: httpx.AsyncClient, police: tuple[str, str], grant: str
    ) -> None:
        response = await client.post("/oauth/token", data={"grant_type": grant}, headers=_basic(*police))
        assert_oauth_error(response, 400, "unsupported_grant_type")

    @pytest.mark.parametrize(
        "form",
        [
            {},
            {"grant_type": ["client_credentials", "client_credentials"]},
            {"grant_type": "client_credentials", "scope": "x" * 1001},
        ],
        ids=["missing_grant_type", "repeated_parameter", "oversize_scope"],
    )
    async def test_malformed_request_is_invalid_request_not_a_422(
        self, client: httpx.AsyncClient, police: tuple[str, str], form: dict[str, Any]
    ) -> None:
        response = await client.post("/oauth/token", data=form, headers=_basic(*police))
        assert_oauth_error(response, 400, "invalid_request")

    async def test_json_body_is_415(self, client: httpx.AsyncClient, police: tuple[str, str]) -> None:
        response = await client.post("/oauth/token", json=GRANT, headers=_basic(*police))
        assert response.status_code == 415
        assert response.headers["content-type"] == "application/problem+json"


class TestScopeNarrowing:
    async def test_token_carries_only_the_requested_subset(
        self, client: httpx.AsyncClient, police: tuple[str, str]
    ) -> None:
        response = await client.post(
            "/oauth/token",
            data={**GRANT, "scope": "custody:read custody:read"},
            headers=_basic(*police),
        )
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "custody:read"
        me = await client.get("/v1/me", headers=bearer(response.json()["access_token"]))
        assert me.json()["scopes"] == ["custody:read"]

    @pytest.mark.parametrize("scope", ["admin", "children:read children:write", "no:such-scope"])
    async def test_scope_beyond_the_client_is_invalid_scope(
        self, client: httpx.AsyncClient, police: tuple[str, str], scope: str
    ) -> None:
        response = await client.post("/oauth/token", data={**GRANT, "scope": scope}, headers=_basic(*police))
        assert_oauth_error(response, 400, "invalid_scope")

    async def test_invalid_scope_names_the_scope_the_client_lacks(
        self, client: httpx.AsyncClient, police: tuple[str, str]
    ) -> None:
        """What Swagger UI sends when every scope is ticked: the answer says which to untick."""
        response = await client.post(
            "/oauth/token", data={**GRANT, "scope": "custody:read admin audit:read"}, headers=_basic(*police)
        )
        assert_oauth_error(response, 400, "invalid_scope")
        description = response.json()["error_description"]
        assert "admin audit:read" in description and "custody:read" not in description


@asynccontextmanager
async def from_address(app: Any, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connections come from ``host`` (the ASGI peer address)."""
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def assert_throttled(response: httpx.Response) -> None:
    assert_oauth_error(response, 429, "too_many_requests")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "too_many_requests"
    assert 0 < int(response.headers["retry-after"]) <= 900


class TestFailureLimit:
    async def test_sixty_concurrent_wrong_guesses_get_at_most_the_budget_past_to_a_secret_check(
        self, app: Any, db: Database, settings: Any
    ) -> None:
        client_id, _ = await make_client(db, agency="health")
        async with from_address(app, "203.0.113.7") as attacker:
            answers = await asyncio.gather(
                *(
                    attacker.post("/oauth/token", data=GRANT, headers=_basic(client_id, f"cs_guess{n}"))
                    for n in range(60)
                )
            )
        statuses = [a.status_code for a in answers]
        assert set(statuses) == {401, 429}
        assert statuses.count(401) <= settings.token_failures_per_source
        for answer in answers:
            if answer.status_code == 429:
                assert_throttled(answer)

    async def test_an_attackers_address_is_throttled_while_the_real_secret_from_another_still_works(
        self, app: Any, db: Database, settings: Any
    ) -> None:
        client_id, secret = await make_client(db, agency="health")
        async with from_address(app, "203.0.113.7") as attacker:
            for _ in range(settings.token_failures_per_source):
                failed = await attacker.post(
                    "/oauth/token", data=GRANT, headers=_basic(client_id, "cs_guess")
                )
                assert failed.status_code == 401
            assert_throttled(
                await attacker.post("/oauth/token", data=GRANT, headers=_basic(client_id, "cs_guess"))
            )
            # Even a right secret is not checked from the address that was guessing.
            assert_throttled(
                await attacker.post("/oauth/token", data=GRANT, headers=_basic(client_id, secret))
            )
        async with from_address(app, "198.51.100.20") as legitimate:
            response = await legitimate.post("/oauth/token", data=GRANT, headers=_basic(client_id, secret))
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]

    async def test_a_forged_forwarded_for_buys_no_more_guesses(
        self, app: Any, db: Database, settings: Any
    ) -> None:
        client_id, _ = await make_client(db, agency="health")
        async with from_address(app, "203.0.113.8") as attacker:
            statuses = [
                (
                    await attacker.post(
                        "/oauth/token",
                        data=GRANT,
                        headers={**_basic(client_id, "cs_guess"), "X-Forwarded-For": f"192.0.2.{n}"},
                    )
                ).status_code
                for n in range(settings.token_failures_per_source + 3)
            ]
        assert statuses.count(401) == settings.token_failures_per_source
        assert statuses[-3:] == [429, 429, 429]

    async def test_failures_for_one_client_do_not_block_another(
        self, client: httpx.AsyncClient, db: Database, settings: Any
    ) -> None:
        attacked, _ = await make_client(db, agency="health")
        bystander, secret = await make_client(db, agency="health")
        for _ in range(settings.token_failures_per_source + 1):
            await client.post("/oauth/token", data=GRANT, headers=_basic(attacked, "cs_guess"))
        response = await client.post("/oauth/token", data=GRANT, headers=_basic(bystander, secret))
        assert response.status_code == 200


class TestJwks:
    async def test_publishes_public_keys_only_with_their_kid(
        self, client: httpx.AsyncClient, app: Any
    ) -> None:
        response = await client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        keys = response.json()["keys"]
        assert app.state.keys.current.kid in [k["kid"] for k in keys]
        for key in keys:
            assert key["kty"] == "EC" and key["alg"] == "ES256" and key["use"] == "sig"
            assert "d" not in key
