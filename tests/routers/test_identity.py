from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.db import Database
from tests.conftest import TokenFactory, bearer, make_agency, make_client


async def count(db: Database, table: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608


async def token_for(client: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )


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
        assert response.json()["name"] == "武侯区公安分局"
        listed = await client.get("/v1/agencies", headers=bearer(admin_token))
        assert "police-510107" in [a["code"] for a in listed.json()]

    async def test_registering_an_existing_code_is_409_and_keeps_the_original(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        body = {"code": "health-5101", "name": "成都市卫健委", "kind": "health"}
        assert (await client.post("/v1/agencies", json=body, headers=bearer(admin_token))).status_code == 201
        again = await client.post(
            "/v1/agencies", json={**body, "name": "Impostor"}, headers=bearer(admin_token)
        )
        assert again.status_code == 409
        assert again.json()["code"] == "agency_exists"
        listed = (await client.get("/v1/agencies", headers=bearer(admin_token))).json()
        assert [a["name"] for a in listed if a["code"] == "health-5101"] == ["成都市卫健委"]

    async def test_non_admin_gets_403(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        tok = await token(agency="police", scopes=["children:read"])
        response = await client.post(
            "/v1/agencies", json={"code": "x-agency", "name": "X", "kind": "police"}, headers=bearer(tok)
        )
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"


def _client_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agency": "police",
        "name": "Wuhou duty desk",
        "scopes": ["children:read", "custody:read"],
        "region": "510107",
    }
    body.update(changes)
    return body


class TestCreateClient:
    async def test_secret_is_returned_once_works_and_is_stored_only_as_a_hash(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        await make_agency(db, code="police")
        response = await client.post("/v1/clients", json=_client_body(), headers=bearer(admin_token))
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["status"] == "active"
        assert created["scopes"] == ["children:read", "custody:read"]
        secret = created["client_secret"]

        issued = await token_for(client, created["client_id"], secret)
        assert issued.status_code == 200
        assert issued.json()["scope"] == "children:read custody:read"

        async with db.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        text("SELECT * FROM api_client WHERE id = :id"), {"id": created["client_id"]}
                    )
                )
                .mappings()
                .one()
            )
        assert secret not in json.dumps({k: str(v) for k, v in row.items()})

        shown = await client.get(f"/v1/clients/{created['client_id']}", headers=bearer(admin_token))
        assert "client_secret" not in shown.json()
        assert secret not in shown.text

    async def test_unknown_agency_is_refused_and_nothing_is_written(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        before = await count(db, "api_client")
        response = await client.post(
            "/v1/clients", json=_client_body(agency="no-such-agency"), headers=bearer(admin_token)
        )
        assert response.status_code == 400
        assert response.json()["code"] == "unknown_agency"
        assert await count(db, "api_client") == before

    async def test_admin_scope_only_for_the_platform_agency(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        await make_agency(db, code="police")
        before = await count(db, "api_client")
        response = await client.post(
            "/v1/clients", json=_client_body(scopes=["admin"]), headers=bearer(admin_token)
        )
        assert response.status_code == 400
        assert response.json()["code"] == "scope_not_allowed"
        assert await count(db, "api_client") == before

    @pytest.mark.parametrize(
        ("field", "value"),
        [("scopes", ["children:read", "no:such-scope"]), ("scopes", []), ("region", "51010")],
    )
    async def test_invalid_scopes_or_region_are_422_naming_the_field(
        self, client: httpx.AsyncClient, admin_token: str, db: Database, field: str, value: Any
    ) -> None:
        await make_agency(db, code="police")
        before = await count(db, "api_client")
        response = await client.post(
            "/v1/clients", json=_client_body(**{field: value}), headers=bearer(admin_token)
        )
        assert response.status_code == 422
        assert field in [e["loc"][1] for e in response.json()["errors"]]
        assert await count(db, "api_client") == before


class TestListClients:
    async def test_cursor_pagination_walks_every_client_once_without_secrets(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        made = {(await make_client(db, agency="education"))[0] for _ in range(5)}
        seen: list[str] = []
        after: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2, "agency": "education"}
            if after:
                params["after"] = after
            response = await client.get("/v1/clients", params=params, headers=bearer(admin_token))
            assert response.status_code == 200
            page = response.json()
            pages += 1
            assert len(page["items"]) <= 2
            for item in page["items"]:
                assert "client_secret" not in item and "secret_hash" not in item
            seen += [item["client_id"] for item in page["items"]]
            after = page["next_cursor"]
            if after is None:
                break
        assert pages == 3
        assert seen == sorted(made)

    async def test_agency_filter_lists_only_that_agency(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        health_id, _ = await make_client(db, agency="health")
        await make_client(db, agency="education")
        response = await client.get("/v1/clients", params={"agency": "health"}, headers=bearer(admin_token))
        assert [c["client_id"] for c in response.json()["items"]] == [health_id]

    async def test_limit_out_of_range_is_422(self, client: httpx.AsyncClient, admin_token: str) -> None:
        response = await client.get("/v1/clients", params={"limit": 0}, headers=bearer(admin_token))
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"


class TestGetClient:
    async def test_shows_agency_scopes_region_and_status(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        client_id, _ = await make_client(db, agency="health", scopes=["children:read"], region="5101")
        response = await client.get(f"/v1/clients/{client_id}", headers=bearer(admin_token))
        assert response.status_code == 200
        body = response.json()
        assert (body["agency"], body["scopes"], body["region"], body["status"]) == (
            "health",
            ["children:read"],
            "5101",
            "active",
        )

    async def test_unknown_client_is_404_problem(self, client: httpx.AsyncClient, admin_token: str) -> None:
        response = await client.get("/v1/clients/cl_doesnotexist", headers=bearer(admin_token))
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "client_not_found"


class TestRevokeClient:
    async def test_revoked_client_gets_no_token_and_a_second_revoke_is_409(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        client_id, secret = await make_client(db, agency="police")
        response = await client.post(f"/v1/clients/{client_id}/revoke", headers=bearer(admin_token))
        assert response.status_code == 200
        assert response.json()["status"] == "revoked"
        assert response.json()["revoked_at"]

        refused = await token_for(client, client_id, secret)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"

        again = await client.post(f"/v1/clients/{client_id}/revoke", headers=bearer(admin_token))
        assert again.status_code == 409
        assert again.json()["code"] == "client_already_revoked"

    async def test_revoking_an_unknown_client_is_404(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post("/v1/clients/cl_doesnotexist/revoke", headers=bearer(admin_token))
        assert response.status_code == 404


class TestRotateSecret:
    async def test_new_secret_works_and_the_old_one_stops_at_once(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        client_id, old_secret = await make_client(db, agency="police")
        response = await client.post(f"/v1/clients/{client_id}/rotate-secret", headers=bearer(admin_token))
        assert response.status_code == 200
        new_secret = response.json()["client_secret"]
        assert new_secret != old_secret

        assert (await token_for(client, client_id, old_secret)).status_code == 401
        assert (await token_for(client, client_id, new_secret)).status_code == 200

    async def test_revoked_client_cannot_get_a_new_secret(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        client_id, secret = await make_client(db, agency="police")
        await client.post(f"/v1/clients/{client_id}/revoke", headers=bearer(admin_token))
        response = await client.post(f"/v1/clients/{client_id}/rotate-secret", headers=bearer(admin_token))
        assert response.status_code == 409
        assert (await token_for(client, client_id, secret)).status_code == 401


ADMIN_CALLS = [
    ("POST", "/v1/agencies", {"code": "x-agency", "name": "X", "kind": "police"}),
    ("GET", "/v1/agencies", None),
    ("POST", "/v1/clients", _client_body()),
    ("GET", "/v1/clients", None),
    ("GET", "/v1/clients/{id}", None),
    ("POST", "/v1/clients/{id}/revoke", None),
    ("POST", "/v1/clients/{id}/rotate-secret", None),
]


class TestMissingScope:
    @pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
    async def test_agency_client_without_admin_gets_403_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        db: Database,
        method: str,
        path: str,
        body: dict[str, Any] | None,
    ) -> None:
        victim_id, victim_secret = await make_client(db, agency="police")
        # Every scope except admin: holding many scopes does not add up to admin.
        tok = await token(
            agency="civil-affairs", scopes=["children:read", "children:write", "audit:read", "break-glass"]
        )
        before = (await count(db, "agency"), await count(db, "api_client"))
        response = await client.request(
            method, path.replace("{id}", victim_id), json=body, headers=bearer(tok)
        )
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
        assert (await count(db, "agency"), await count(db, "api_client")) == before
        assert (await token_for(client, victim_id, victim_secret)).status_code == 200


async def _chunks(size: int) -> AsyncIterator[bytes]:
    chunk = b" " * 65536
    sent = 0
    yield b'{"code": "big-agency", "kind": "police", "name": "'
    while sent < size:
        yield chunk
        sent += len(chunk)
    yield b'"}'


BAD_BODIES: dict[str, tuple[int, str, dict[str, Any]]] = {
    "malformed_json": (
        400,
        "malformed_json",
        {"content": b'{"code": "x-agency", "name": ', "headers": {"Content-Type": "application/json"}},
    ),
    "json_that_is_not_an_object": (422, "validation_failed", {"json": ["x-agency"]}),
    "unknown_field": (
        422,
        "validation_failed",
        {"json": {"code": "x-agency", "name": "X", "kind": "police", "is_admin": True}},
    ),
    "over_one_mebibyte": (
        413,
        "payload_too_large",
        {"json": {"code": "x-agency", "name": "X" * (1024 * 1024), "kind": "police"}},
    ),
    "over_one_mebibyte_chunked": (
        413,
        "payload_too_large",
        {"content": _chunks, "headers": {"Content-Type": "application/json"}},
    ),
    "form_instead_of_json": (415, "unsupported_media_type", {"data": {"code": "x-agency", "name": "X"}}),
    "text_plain": (
        415,
        "unsupported_media_type",
        {"content": b'{"code": "x-agency"}', "headers": {"Content-Type": "text/plain"}},
    ),
}


class TestBadBodies:
    @pytest.mark.parametrize("case", sorted(BAD_BODIES))
    @pytest.mark.parametrize("path", ["/v1/agencies", "/v1/clients"])
    async def test_bad_body_is_a_problem_and_writes_nothing(
        self, client: httpx.AsyncClient, admin_token: str, db: Database, case: str, path: str
    ) -> None:
        await make_agency(db, code="police")
        status, code, request = BAD_BODIES[case]
        request = dict(request)
        if callable(request.get("content")):
            request["content"] = request["content"](1024 * 1024 + 1)
        headers = {**bearer(admin_token), **request.pop("headers", {})}
        before = (await count(db, "agency"), await count(db, "api_client"))

        response = await client.post(path, headers=headers, **request)

        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == code
        assert problem["status"] == status
        assert problem["request_id"] == response.headers["x-request-id"]
        assert (await count(db, "agency"), await count(db, "api_client")) == before

    async def test_validation_error_names_the_field_without_echoing_the_input(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(
            "/v1/agencies",
            json={"code": "NOT VALID 110101201001011234", "name": "X", "kind": "police"},
            headers=bearer(admin_token),
        )
        assert response.status_code == 422
        assert ["body", "code"] in [e["loc"] for e in response.json()["errors"]]
        assert "110101201001011234" not in response.text
