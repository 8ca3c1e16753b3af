"""The offline docs: their Content-Security-Policy, and turning them off."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import httpx

from app.config import Settings
from app.main import create_app

_SRC = re.compile(r'(?:src|href)="([^"]+)"')
# The packaged static assets, and ReDoc's bundle and logo patched and served by the docs routes.
_OWN_ASSETS = ("/static/docs/", "/docs/assets/")
_INLINE = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _policy(header: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in header.split(";")) if d}


class TestDocsPolicy:
    async def test_each_docs_page_allows_only_its_own_assets_and_inline_script(
        self, production_client: httpx.AsyncClient
    ) -> None:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            response = await production_client.get(path)
            assert response.status_code == 200, path
            policy = _policy(response.headers["content-security-policy"])
            assert policy["default-src"] == ["'none'"]
            assert policy["frame-ancestors"] == ["'none'"]
            assert policy["connect-src"] == ["'self'"]
            # Every asset the page references is this service's own...
            for url in _SRC.findall(response.text):
                assert url.startswith(_OWN_ASSETS), (path, url)
                assert (await production_client.get(url)).status_code == 200, (path, url)
            # ...and every inline script is allowed by its hash, nothing else inline.
            expected = {
                "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
                for body in _INLINE.findall(response.text)
            }
            assert set(policy["script-src"]) == {"'self'", *expected}, path
            assert "'unsafe-inline'" not in policy["script-src"]
            assert "'unsafe-eval'" not in policy["script-src"]
            assert response.headers["x-content-type-options"] == "nosniff"

    async def test_the_docs_assets_are_served_from_the_package(
        self, production_client: httpx.AsyncClient
    ) -> None:
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
            response = await production_client.get(f"/static/docs/{asset}")
            assert response.status_code == 200, asset


class TestDocsOff:
    async def test_with_docs_off_the_pages_and_assets_are_gone_but_the_spec_stays(
        self, settings: Settings
    ) -> None:
        app: Any = create_app(settings.model_copy(update={"docs": False}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            for path in ("/docs", "/redoc", "/docs/oauth2-redirect", "/static/docs/swagger-ui-bundle.js"):
                response = await http.get(path)
                assert response.status_code == 404, path
                assert response.json()["code"] == "not_found"
            assert (await http.get("/openapi.json")).status_code == 200
