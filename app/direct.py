"""Direct routes: the custody check and publishing answered without FastAPI's routing and
dependency machinery.

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

Publishing (``POST /v1/events``) is the exchange's hot path the same way: at 200 events/s the
framework around :func:`app.services.event.publish` was about 40% of the API's CPU. It is
answered here with the route's own functions when the request is what the route expects: an
``Idempotency-Key`` of the documented form and a body that parses and validates as
:class:`app.models.event.CloudEventIn` exactly as FastAPI would (``json.loads``, then the model
in Python mode).

Anything this path does not fully handle passes on to the documented route untouched: another
method or path, an id not spelled as a hyphenated UUID, a header over its documented length or
repeated, any query string, a publish whose key or body the route would refuse (its body is
handed on as it was received). Those requests get FastAPI's canonical answers (405, 422, 400),
and nothing has been written for them before they pass on.
"""

from __future__ import annotations

import inspect
import json
import re
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access.deps import (
    BREAK_GLASS_MAX_LENGTH,
    INVESTIGATION_MAX_LENGTH,
    PURPOSE_MAX_LENGTH,
    make_reader,
)
from app.access.reading import Reader
from app.auth.deps import authenticate, check_scopes
from app.auth.scopes import Scope as AuthScope
from app.models.event import IDEMPOTENCY_KEY_PATTERN, CloudEventIn
from app.services import event as event_service
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
PUBLISH_PATH = "/v1/events"
_PUBLISH_LABEL = _RouteLabel(PUBLISH_PATH)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_PUBLISH_HEADERS: dict[bytes, int] = {**_HEADERS, b"idempotency-key": 1 << 10}


class DirectRoutes:
    """ASGI middleware: answers the custody check and publishing directly, passes everything
    else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _CUSTODY.fullmatch(scope["path"])
            if match is not None and await _custody(scope, receive, send, match.group(1)):
                return
        elif scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PUBLISH_PATH:
            pass_on = await _publish(scope, receive, send)
            if pass_on is None:
                return
            receive = pass_on
        await self.app(scope, receive, send)


def _read_headers(scope: Scope, wanted: dict[bytes, int] = _HEADERS) -> dict[bytes, str] | None:
    """The wanted headers, decoded; None when one is repeated or over its length."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        limit = wanted.get(name)
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
        reader = await _reader(state, request_state, headers, AuthScope.custody_read)
        body = await guardianship_service.custody_body(
            state.db, state.door, reader, child_id, lookup=state.custody_lookup
        )
    except Exception as exc:
        await _render_error(app, scope, receive, send, exc)
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


async def _reader(
    state: State, request_state: dict[str, Any], headers: dict[bytes, str], scope: AuthScope
) -> Reader:
    """What the route's ``Security(get_reader, scopes=[scope])`` gives it: the authenticated
    principal (noted for the request's log line), its scope checked, and the reader."""
    principal = await authenticate(state, headers.get(b"authorization"))
    request_state["principal"] = principal
    check_scopes(principal, [scope])
    return await make_reader(
        state,
        principal,
        purpose=headers.get(b"x-purpose-of-use"),
        break_glass=headers.get(b"x-break-glass"),
        investigation=headers.get(b"x-investigation-ref"),
        request_id=request_state.get("request_id"),
    )


async def _render_error(app: Any, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """Answer ``exc`` with the application's own handler, as the route would have."""
    handler = _exception_handler(app, exc)
    if handler is None:
        raise exc  # RequestContextMiddleware's last-resort 500
    request = Request(scope, receive)
    if inspect.iscoroutinefunction(handler):
        response = await handler(request, exc)
    else:  # a plain function, in the thread pool as Starlette runs it (or an async callable)
        response = await run_in_threadpool(handler, request, exc)
        if inspect.isawaitable(response):
            response = await response
    await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Disconnected(Exception):
    """The client went away before its body was read: there is nobody to answer."""


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the route the body this path already read, then the rest."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _publish(scope: Scope, receive: Receive, send: Send) -> Receive | None:
    """Answer one publish; or return the ``receive`` to pass it on with (having written nothing)
    when the route should answer it: its key or body is one the route refuses."""
    if scope.get("query_string"):
        return receive
    headers = _read_headers(scope, _PUBLISH_HEADERS)
    if headers is None:
        return receive
    key = headers.get(b"idempotency-key")
    if key is None or _IDEMPOTENCY_KEY.fullmatch(key) is None:
        return receive
    try:
        body = await _read_body(receive)
    except _Disconnected:
        return None
    try:
        event = CloudEventIn.model_validate(json.loads(body))
    except (ValueError, ValidationError, RecursionError):  # JSON, encoding, nesting or the model
        return _replaying(body, receive)
    app: Any = scope["app"]
    state: State = app.state
    request_state: dict[str, Any] = scope.setdefault("state", {})
    scope["route"] = _PUBLISH_LABEL
    scope["path_params"] = {}
    try:
        reader = await _reader(state, request_state, headers, AuthScope.events_publish)
        accepted, replayed = await event_service.publish(
            state.db, reader, event=event, idempotency_key=key, policy=state.door.policy
        )
    except Exception as exc:
        await _render_error(app, scope, _replaying(body, receive), send, exc)
        return None
    answer = accepted.model_dump_json().encode()
    response_headers = [
        (b"content-length", str(len(answer)).encode()),
        (b"content-type", b"application/json"),
        (b"location", f"/v1/events/{accepted.id}".encode()),
    ]
    if replayed:
        response_headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": 202, "headers": response_headers})
    await send({"type": "http.response.body", "body": answer})
    return None


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
