"""Swagger UI and ReDoc served from the installed package: no CDN, so the docs work on
government networks that reach none. "Authorize" runs the client-credentials flow.

Each page carries a Content-Security-Policy that allows exactly what it loads: its scripts and
styles from this service, its own inline script by hash (computed from the page as rendered, so
it follows the installed FastAPI version), data: images (Swagger UI's icons), ReDoc's search
worker (started from a blob), and requests to this origin only (the spec, "Try it out", the
token endpoint). Inline styles are allowed: both UIs set them at run time, and a style cannot run
code. Nothing may frame the pages.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/static/docs"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"

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
            swagger_ui_parameters={
                "persistAuthorization": True,
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
            redoc_js_url=f"{STATIC_URL}/redoc.standalone.js",
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
