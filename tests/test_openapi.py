"""The published contract: the committed spec is the app's, every operation is documented for
integrators, and the docs pages work with no network beyond this service."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from app.cli import OPENAPI_PATH, render_openapi
from app.db import Database
from tests.conftest import make_client

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(render_openapi())
    return document


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


def has_example(node: Any, schemas: dict[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """Whether an example appears anywhere in the node, following ``$ref``s."""
    if isinstance(node, dict):
        if "example" in node or "examples" in node:
            return True
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            return name not in seen and has_example(schemas[name], schemas, seen | {name})
        return any(has_example(value, schemas, seen) for value in node.values())
    if isinstance(node, list):
        return any(has_example(value, schemas, seen) for value in node)
    return False


class TestCommittedSpec:
    def test_committed_openapi_json_is_the_apps_spec(self) -> None:
        committed = OPENAPI_PATH.read_text(encoding="utf-8")
        assert committed == render_openapi(), "openapi/openapi.json is stale: run `childlink openapi`"

    async def test_served_spec_is_the_same_document(
        self, client: httpx.AsyncClient, spec: dict[str, Any]
    ) -> None:
        served = await client.get("/openapi.json")
        assert served.status_code == 200
        assert served.json() == spec


class TestOperationsAreDocumented:
    def test_every_operation_has_summary_description_and_examples(self, spec: dict[str, Any]) -> None:
        schemas = spec["components"]["schemas"]
        missing = []
        for method, path, op in operations(spec):
            if not op.get("summary"):
                missing.append(f"{method} {path}: summary")
            if len(op.get("description", "")) < 20:
                missing.append(f"{method} {path}: description")
            if "requestBody" in op and not has_example(op["requestBody"], schemas):
                missing.append(f"{method} {path}: request example")
            for status, response in op["responses"].items():
                if not response.get("description"):
                    missing.append(f"{method} {path}: {status} description")
                if status.startswith("2") and response.get("content") and not has_example(response, schemas):
                    missing.append(f"{method} {path}: {status} example")
        assert missing == []

    def test_every_operation_documents_a_success_response(self, spec: dict[str, Any]) -> None:
        for method, path, op in operations(spec):
            assert any(status.startswith("2") for status in op["responses"]), f"{method} {path}"

    def test_error_responses_are_documented_as_problems_or_oauth_errors(self, spec: dict[str, Any]) -> None:
        wrong = []
        for method, path, op in operations(spec):
            for status, response in op["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                text = json.dumps(response)
                if path == "/readyz" and status == "503":
                    continue  # the probe answers {"status": "unavailable"}
                if "ProblemDetail" not in text and "OAuthError" not in text:
                    wrong.append(f"{method} {path} {status}")
        assert wrong == []
        assert "HTTPValidationError" not in json.dumps(spec), "a 422 documented in FastAPI's shape"

    def test_protected_operations_document_401_and_admin_ones_need_admin(self, spec: dict[str, Any]) -> None:
        for method, path, op in operations(spec):
            if op.get("security"):
                assert "401" in op["responses"], f"{method} {path} documents no 401"
        scopes = {
            f"{method} {path}": op["security"][0]["OAuth2ClientCredentials"]
            for method, path, op in operations(spec)
            if path.startswith(("/v1/agencies", "/v1/clients"))
        }
        assert scopes and all(s == ["admin"] for s in scopes.values()), scopes


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


class TestOfflineDocs:
    @pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
    async def test_page_loads_every_asset_from_this_service(
        self, client: httpx.AsyncClient, page: str
    ) -> None:
        response = await client.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        assert re.findall(r"https?://", html) == [], "the page reaches out to another host"

        parser = _Assets()
        parser.feed(html)
        if page != "/docs/oauth2-redirect":
            assert any(url.endswith(".js") for url in parser.urls), "no script found"
        for url in parser.urls:
            assert url.startswith("/") and not url.startswith("//"), url
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
            suffix = url[url.rfind(".") :]
            assert EXPECTED_TYPES[suffix] in asset.headers["content-type"], url

    async def test_stylesheet_pulls_in_nothing_remote(self, client: httpx.AsyncClient) -> None:
        parser = _Assets()
        parser.feed((await client.get("/docs")).text)
        for url in (u for u in parser.urls if u.endswith(".css")):
            css = (await client.get(url)).text
            assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", css), url

    async def test_swagger_does_not_send_the_spec_to_the_online_validator(
        self, client: httpx.AsyncClient
    ) -> None:
        html = (await client.get("/docs")).text
        assert '"validatorUrl": null' in html

    async def test_swagger_authorize_runs_the_client_credentials_flow(
        self, client: httpx.AsyncClient, spec: dict[str, Any]
    ) -> None:
        html = (await client.get("/docs")).text
        assert "url: '/openapi.json'" in html
        assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in html
        assert "ui.initOAuth(" in html

        scheme = spec["components"]["securitySchemes"]["OAuth2ClientCredentials"]
        assert scheme["type"] == "oauth2"
        flow = scheme["flows"]["clientCredentials"]
        assert flow["tokenUrl"] == "/oauth/token"
        assert set(flow["scopes"]) >= {"admin", "children:read", "custody:read", "break-glass"}
        assert all(flow["scopes"].values()), "every scope is described in the Authorize dialog"

    async def test_what_swagger_authorize_sends_gets_a_token_that_try_it_out_can_use(
        self, client: httpx.AsyncClient, db: Database
    ) -> None:
        client_id, secret = await make_client(db, agency="police", scopes=["children:read", "custody:read"])
        # Swagger UI's request for the client-credentials flow: credentials in the form body,
        # the ticked scopes space-separated, sent from the browser as XHR.
        authorize = await client.post(
            "/oauth/token",
            content=urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                    "scope": "custody:read",
                },
                quote_via=quote,
            ),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json, text/plain, */*",
                "X-Requested-With": "XMLHttpRequest",
            },
        )
        assert authorize.status_code == 200, authorize.text
        token = authorize.json()["access_token"]
        me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.json()["scopes"] == ["custody:read"]


class TestDocsDetails:
    async def test_redoc_loads_its_logo_from_this_service(self, client: httpx.AsyncClient) -> None:
        parser = _Assets()
        parser.feed((await client.get("/redoc")).text)
        (bundle_url,) = [u for u in parser.urls if u.endswith(".js")]
        bundle = (await client.get(bundle_url)).text
        assert "cdn.redoc.ly" not in bundle
        logo = await client.get("/docs/assets/redoc-logo-mini.svg")
        assert logo.status_code == 200 and logo.headers["content-type"].startswith("image/svg+xml")
        assert "/docs/assets/redoc-logo-mini.svg" in bundle

    async def test_swagger_keeps_no_client_secret_in_local_storage(self, client: httpx.AsyncClient) -> None:
        html = (await client.get("/docs")).text
        assert '"persistAuthorization": false' in html

    def test_the_docs_do_not_tell_people_to_tick_scopes(self, spec: dict[str, Any]) -> None:
        description = spec["info"]["description"]
        assert "tick the scopes" not in description
        assert "leave the scopes unticked" in description

    async def test_the_chinese_integration_guide_is_linked_and_served(
        self, client: httpx.AsyncClient, spec: dict[str, Any]
    ) -> None:
        assert "(/docs/integration-guide.zh-CN.md)" in spec["info"]["description"]
        guide = await client.get("/docs/integration-guide.zh-CN.md")
        assert guide.status_code == 200
        assert guide.headers["content-type"].startswith("text/markdown")
        assert "对接指南" in guide.text
