"""Swagger UI and ReDoc served from the installed package: no CDN, so the docs work on
government networks that reach none. "Authorize" runs the client-credentials flow.

Each page carries a Content-Security-Policy that allows exactly what it loads: its scripts and
styles from this service, its own inline script by hash (computed from the page as rendered, so
it follows the installed FastAPI version), data: images (Swagger UI's icons), ReDoc's search
worker (started from a blob), and requests to this origin only (the spec, "Try it out", the
token endpoint). Inline styles are allowed: both UIs set them at run time, and a style cannot run
code. Nothing may frame the pages.

ReDoc's bundle loads its own logo from ``cdn.redoc.ly``; it is served here with that one URL
pointed at a local copy of the mark, so nothing on the page leaves the host.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from app.errors import NotFound

STATIC_URL = "/static/docs"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"
GUIDE_URL = "/docs/integration-guide.zh-CN.md"
_GUIDE = Path(__file__).resolve().parent.parent / "docs" / "integration-guide.zh-CN.md"
REDOC_JS_URL = "/docs/assets/redoc.standalone.js"
REDOC_LOGO_URL = "/docs/assets/redoc-logo-mini.svg"
_REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
_REDOC_LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#32329f"/>'
    '<path d="M4 12V4h4.2a2.3 2.3 0 0 1 .6 4.5L11 12H9.2L7.3 8.8H5.6V12z" fill="#fff"/></svg>'
)


def _redoc_bundle() -> bytes:
    bundle = (_ASSETS / "redoc.standalone.js").read_text(encoding="utf-8")
    return bundle.replace(_REDOC_CDN_LOGO, REDOC_LOGO_URL).encode("utf-8")


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(html: str) -> str:
    """The policy for one docs page: its inline scripts by SHA-256, everything else as above."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {hashes}".rstrip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class _Page:
    """A static page, rendered once, served with its policy. Each request gets a response of its
    own: middleware may add headers to the one it sends."""

    def __init__(self, response: HTMLResponse) -> None:
        self.html = bytes(response.body).decode()
        self.policy = content_security_policy(self.html)

    def response(self) -> HTMLResponse:
        return HTMLResponse(self.html, headers={"Content-Security-Policy": self.policy})


def install_docs(app: FastAPI) -> None:
    app.mount(STATIC_URL, StaticFiles(directory=_ASSETS), name="docs-assets")
    redoc_bundle = _redoc_bundle()

    @app.get(REDOC_JS_URL, include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(
            redoc_bundle, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"}
        )

    @app.get(GUIDE_URL, include_in_schema=False)
    async def integration_guide() -> Response:
        """The Chinese integration guide, linked from the top of /docs (from the source tree)."""
        if not _GUIDE.is_file():
            raise NotFound("The integration guide is not installed with this copy of ChildLink.")
        return Response(_GUIDE.read_bytes(), media_type="text/markdown; charset=utf-8")

    @app.get(REDOC_LOGO_URL, include_in_schema=False)
    async def redoc_logo() -> Response:
        return Response(
            _REDOC_LOGO, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=3600"}
        )

    swagger = _Page(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="ChildLink API",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            init_oauth={"clientId": "", "scopes": [], "usePkceWithAuthorizationCodeGrant": False},
            # validatorUrl: Swagger UI would otherwise send the spec's URL to validator.swagger.io.
            # persistAuthorization stays off: Swagger UI would keep the client secret, not only
            # the token, in the browser's localStorage.
            swagger_ui_parameters={
                "persistAuthorization": False,
                "displayRequestDuration": True,
                "validatorUrl": None,
            },
        )
    )
    redirect = _Page(get_swagger_ui_oauth2_redirect_html())
    redoc = _Page(
        get_redoc_html(
            openapi_url="/openapi.json",
            title="ChildLink API",
            redoc_js_url=REDOC_JS_URL,
            redoc_favicon_url=f"{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return swagger.response()

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return redirect.response()

    @app.get("/redoc", include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return redoc.response()
