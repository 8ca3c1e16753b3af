"""Every error is an RFC 9457 problem with a request id; nothing internal leaks."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from tests.conftest import bearer


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith("/" + code)
    assert body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


class TestUnknownRoutesAndMethods:
    async def test_unknown_route_is_a_404_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/no-such-thing")
        body = assert_problem(response, 404, "not_found")
        assert body["instance"] == "/v1/no-such-thing"

    async def test_wrong_method_is_a_405_problem_naming_the_allowed_one(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/oauth/token")
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"

    async def test_405_on_a_path_served_by_two_routes_names_all_its_methods(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.delete("/v1/agencies")
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET, POST"


class TestUnstorableText:
    """PostgreSQL text cannot hold U+0000; a request carrying it is refused, not a 500."""

    @pytest.mark.parametrize(
        ("method", "path", "request_kwargs"),
        [
            ("POST", "/v1/agencies", {"json": {"code": "nul-agency", "name": "a\u0000b", "kind": "police"}}),
            ("GET", "/v1/clients", {"params": {"agency": "police\u0000"}}),
            ("GET", "/v1/clients/cl_%00", {}),
        ],
        ids=["json_body", "query", "path"],
    )
    async def test_nul_character_is_a_422_and_writes_nothing(
        self,
        client: httpx.AsyncClient,
        admin_token: str,
        db: Any,
        method: str,
        path: str,
        request_kwargs: dict[str, Any],
    ) -> None:
        response = await client.request(method, path, headers=bearer(admin_token), **request_kwargs)
        assert_problem(response, 422, "unstorable_text")
        async with db.engine.connect() as conn:
            found = await conn.execute(text("SELECT count(*) FROM agency WHERE code = 'nul-agency'"))
            assert found.scalar_one() == 0


class TestRequestId:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/healthz"),
            ("GET", "/v1/me"),
            ("GET", "/nowhere"),
            ("DELETE", "/healthz"),
            ("POST", "/oauth/token"),
            ("GET", "/.well-known/jwks.json"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
        ],
    )
    async def test_every_response_carries_a_request_id(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await client.request(method, path)
        assert len(response.headers["x-request-id"]) >= 16

    async def test_each_request_gets_its_own_id(self, client: httpx.AsyncClient) -> None:
        ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(3)}
        assert len(ids) == 3

    async def test_a_safe_incoming_request_id_is_echoed_in_header_and_problem(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/me", headers={"X-Request-ID": "gateway-7f3a.42_b"})
        assert response.headers["x-request-id"] == "gateway-7f3a.42_b"
        assert response.json()["request_id"] == "gateway-7f3a.42_b"

    @pytest.mark.parametrize(
        "unsafe", ["has space", "x" * 65, "semi;colon", "<script>", "身份证", "id\r\nSet-Cookie: a=b"]
    )
    async def test_an_unsafe_incoming_request_id_is_replaced(
        self, client: httpx.AsyncClient, unsafe: str
    ) -> None:
        sent = unsafe.encode()
        response = await client.get("/healthz", headers=[(b"X-Request-ID", sent)])
        echoed = dict(response.headers.raw)[b"x-request-id"]
        assert echoed != sent
        assert len(echoed) == 16 and echoed.isalnum()


@pytest.fixture
async def faulty_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A separate app instance with routes that fail the way bugs do."""
    faulty = create_app(settings)

    @faulty.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret-internal-detail at /srv/childlink/app.py line 42")

    @faulty.get("/boom-in-dependency")
    async def boom_key() -> dict[str, Any]:
        return {}["missing-key-110101201001011234"]  # type: ignore[no-any-return]

    async with faulty.router.lifespan_context(faulty):
        transport = httpx.ASGITransport(app=faulty, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://faulty") as http:
            yield http


class TestServerErrors:
    @pytest.mark.parametrize("path", ["/boom", "/boom-in-dependency"])
    async def test_500_is_a_problem_without_stack_trace_or_internals(
        self, faulty_client: httpx.AsyncClient, path: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.ERROR):
            response = await faulty_client.get(path)
        body = assert_problem(response, 500, "internal_error")
        text = response.text
        for leak in ("Traceback", "RuntimeError", "KeyError", "secret-internal-detail", "app.py", "110101"):
            assert leak not in text
        assert "request id" in body["detail"]
        # The operator can find it: the log has the request id (and no personal data).
        logged = [r for r in caplog.records if getattr(r, "request_id", None) == body["request_id"]]
        assert logged
        assert all("110101201001011234" not in r.getMessage() for r in logged)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word: a hung database."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield int(server.getsockname()[1])
    server.close()


async def _app_on(settings: Settings, port: int) -> tuple[Any, Any]:
    broken = create_app(
        settings.model_copy(update={"database_url": f"postgresql://childlink@127.0.0.1:{port}/childlink"})
    )
    lifespan = broken.router.lifespan_context(broken)
    await lifespan.__aenter__()
    return broken, lifespan


class TestDatabaseUnavailable:
    async def test_readyz_is_503_while_healthz_stays_200(self, settings: Settings) -> None:
        broken, lifespan = await _app_on(settings, _closed_port())
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=broken), base_url="http://b"
            ) as http:
                ready = await http.get("/readyz")
                assert ready.status_code == 503
                assert ready.json() == {"status": "unavailable"}
                assert ready.headers["x-request-id"]
                assert (await http.get("/healthz")).status_code == 200
        finally:
            await lifespan.__aexit__(None, None, None)

    async def test_a_request_needing_the_database_is_503_retry_later(self, settings: Settings) -> None:
        broken, lifespan = await _app_on(settings, _closed_port())
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=broken), base_url="http://b"
            ) as http:
                response = await http.post(
                    "/oauth/token", data={"grant_type": "client_credentials"}, auth=("cl_x", "cs_y")
                )
                assert_problem(response, 503, "database_unavailable")
                assert response.headers["retry-after"]
        finally:
            await lifespan.__aexit__(None, None, None)

    async def test_readyz_answers_503_within_its_deadline_when_the_database_hangs(
        self, settings: Settings, silent_server: int
    ) -> None:
        broken, lifespan = await _app_on(settings, silent_server)
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=broken), base_url="http://b"
            ) as http:
                started = asyncio.get_running_loop().time()
                ready = await asyncio.wait_for(http.get("/readyz"), timeout=10)
                assert ready.status_code == 503
                assert asyncio.get_running_loop().time() - started < 3.5
        finally:
            await lifespan.__aexit__(None, None, None)


class TestProblemShape:
    async def test_401_403_and_422_share_the_problem_shape(
        self, client: httpx.AsyncClient, token: Any, admin_token: str
    ) -> None:
        assert_problem(await client.get("/v1/me"), 401, "unauthorized")
        reader = await token(agency="police", scopes=["children:read"])
        assert_problem(await client.get("/v1/agencies", headers=bearer(reader)), 403, "insufficient_scope")
        invalid = await client.get("/v1/clients", params={"limit": "many"}, headers=bearer(admin_token))
        body = assert_problem(invalid, 422, "validation_failed")
        assert body["errors"][0]["loc"] == ["query", "limit"]
