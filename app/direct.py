"""Direct routes: the custody check answered without FastAPI's routing and dependency machinery.

The custody check is the service's hot path (police ask it at any hour, at volume). Its route in
:mod:`app.routers.guardianship` documents it and serves it; under load, though, most of a check's
CPU went to the framework around it (dependency solving, route matching, per-request wrappers)
rather than to the check. :class:`DirectRoutes` sits just inside
:class:`app.observability.RequestContextMiddleware` (so request ids, size gates, logs and metrics
are unchanged) and answers a well-formed ``GET /v1/children/{uuid}/custody`` itself, with the
same functions the route's dependencies call: :func:`app.auth.deps.authenticate`,
:func:`app.auth.deps.check_scopes`, :func:`app.access.deps.make_reader` and
:func:`app.services.guardianship.custody_body`. Errors are rendered by the application's own
exception handlers, so a problem document is the same whichever way the request went.

Anything this path does not fully handle passes on to the documented route untouched: another
method or path, an id not spelled as a hyphenated UUID, a header over its documented length or
repeated, any query string. Those requests get FastAPI's canonical answers (405, 422, 400), and
nothing has been read or written for them before they pass on.
"""

from __future__ import annotations

import inspect
import re
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.access.deps import (
    BREAK_GLASS_MAX_LENGTH,
    INVESTIGATION_MAX_LENGTH,
    PURPOSE_MAX_LENGTH,
    make_reader,
)
from app.auth.deps import authenticate, check_scopes
from app.auth.scopes import Scope as AuthScope
from app.services import guardianship as guardianship_service

CUSTODY_PATH = "/v1/children/{child_id}/custody"
# The canonical (hyphenated) spelling only; any other spelling of a UUID is the route's to parse.
_HEX = "[0-9a-fA-F]"
_CUSTODY = re.compile(rf"/v1/children/({_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})/custody")

# The headers the custody check reads, each with its documented maximum length (the route's
# Header(max_length=...) declarations).
_HEADERS: dict[bytes, int] = {
    b"authorization": 1 << 16,  # the token verifier applies the real size cap
    b"x-purpose-of-use": PURPOSE_MAX_LENGTH,
    b"x-break-glass": BREAK_GLASS_MAX_LENGTH,
    b"x-investigation-ref": INVESTIGATION_MAX_LENGTH,
}


class _RouteLabel:
    """What :class:`RequestContextMiddleware` reads from ``scope["route"]`` for logs and metrics."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_CUSTODY_LABEL = _RouteLabel(CUSTODY_PATH)


class DirectRoutes:
    """ASGI middleware: answers the custody check directly, passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _CUSTODY.fullmatch(scope["path"])
            if match is not None and await _custody(scope, receive, send, match.group(1)):
                return
        await self.app(scope, receive, send)


def _read_headers(scope: Scope) -> dict[bytes, str] | None:
    """The custody check's headers, decoded; None when one is repeated or over its length."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        limit = _HEADERS.get(name)
        if limit is None:
            continue
        if name in found or len(value) > limit:
            return None
        found[name] = value.decode("latin-1")
    return found


async def _custody(scope: Scope, receive: Receive, send: Send, raw_id: str) -> bool:
    """Answer one custody check; False (having done nothing) when the route should answer it."""
    if scope.get("query_string"):
        # The custody check takes no query parameters: the route refuses any (400
        # unknown_parameter), as every child route does.
        return False
    child_id = uuid.UUID(raw_id)
    headers = _read_headers(scope)
    if headers is None:
        return False
    app: Any = scope["app"]
    state: State = app.state
    request_state: dict[str, Any] = scope.setdefault("state", {})
    scope["route"] = _CUSTODY_LABEL
    scope["path_params"] = {"child_id": raw_id}
    try:
        principal = await authenticate(state, headers.get(b"authorization"))
        request_state["principal"] = principal
        check_scopes(principal, [AuthScope.custody_read])
        reader = await make_reader(
            state,
            principal,
            purpose=headers.get(b"x-purpose-of-use"),
            break_glass=headers.get(b"x-break-glass"),
            investigation=headers.get(b"x-investigation-ref"),
            request_id=request_state.get("request_id"),
        )
        body = await guardianship_service.custody_body(
            state.db, state.door, reader, child_id, lookup=state.custody_lookup
        )
    except Exception as exc:
        handler = _exception_handler(app, exc)
        if handler is None:
            raise  # RequestContextMiddleware's last-resort 500
        request = Request(scope, receive)
        if inspect.iscoroutinefunction(handler):
            response = await handler(request, exc)
        else:  # a plain function, in the thread pool as Starlette runs it (or an async callable)
            response = await run_in_threadpool(handler, request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)
        return True
    # The two messages a Response(body, media_type="application/json") sends, without building one.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
    return True


def _exception_handler(app: Any, exc: Exception) -> Any:
    """The application's handler for ``exc``, found as Starlette's ExceptionMiddleware finds it:
    an ``HTTPException`` by its status code first, then any exception by its class and its bases
    in order, short of ``Exception`` itself (whose handler belongs to the outermost error
    middleware, as on every route)."""
    handlers: dict[Any, Any] = app.exception_handlers
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        if cls in handlers:
            return handlers[cls]
    return None
