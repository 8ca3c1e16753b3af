"""Request ids, structured JSON logs, request-size limits and metrics.

Logs carry the request id, the route template, the client and agency: never a query string, a
body, a name or an ID number.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
import time
from bisect import bisect_left
from collections import defaultdict
from itertools import accumulate
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("childlink.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}
_JSON_TYPES = ("application/json", "application/merge-patch+json", "application/cloudevents+json")
_FORM_PATHS = ("/oauth/token",)
_NO_STORE_PATHS = ("/v1/", "/oauth/")


class JsonFormatter(logging.Formatter):
    _fields = (
        "request_id",
        "method",
        "route",
        "status",
        "duration_ms",
        "client_id",
        "agency",
        "error_type",
        "worker",
        "delivery_id",
        "subscription_id",
    )

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in self._fields:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log prints raw URLs; ours prints route templates instead.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request it sends at INFO with its full URL: for a webhook delivery that is
    # the subscriber's URL, whose query string can carry the receiver's own secret. The delivery
    # worker records outcomes itself, by subscription id.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Metrics:
    """Per-worker counters and latency histograms in Prometheus text format."""

    _buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], list[int]] = {}
        self.latency_sum: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        key = (method, route)
        # One count per request, in the first bucket whose bound it is within (the last is +Inf);
        # render() adds them up into Prometheus's cumulative buckets.
        counts = self.latency.setdefault(key, [0] * (len(self._buckets) + 1))
        counts[bisect_left(self._buckets, seconds)] += 1
        self.latency_sum[key] += seconds

    def render(self) -> str:
        lines = [
            "# HELP childlink_http_requests_total Requests by method, route and status.",
            "# TYPE childlink_http_requests_total counter",
        ]
        for (method, route, status), count in sorted(self.requests.items()):
            lines.append(
                f"childlink_http_requests_total"
                f'{{method="{method}",route="{route}",status="{status}"}} {count}'
            )
        lines += [
            "# HELP childlink_http_request_duration_seconds Request latency.",
            "# TYPE childlink_http_request_duration_seconds histogram",
        ]
        for (method, route), counts in sorted(self.latency.items()):
            labels = f'method="{method}",route="{route}"'
            buckets = list(accumulate(counts))
            bounds = [*map(str, self._buckets), "+Inf"]
            lines += [
                f'childlink_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {count}'
                for bound, count in zip(bounds, buckets, strict=True)
            ]
            lines.append(
                f"childlink_http_request_duration_seconds_sum{{{labels}}} "
                f"{self.latency_sum[(method, route)]:.6f}"
            )
            lines.append(f"childlink_http_request_duration_seconds_count{{{labels}}} {buckets[-1]}")
        return "\n".join(lines) + "\n"


def _problem(status: int, code: str, title: str, detail: str, request_id: str, path: str) -> bytes:
    return json.dumps(
        {
            "type": "https://childlink.example/problems/" + code,
            "title": title,
            "status": status,
            "code": code,
            "detail": detail,
            "instance": path,
            "request_id": request_id,
        }
    ).encode()


_ids = random.Random()  # noqa: S311 (request ids are not secrets; see new_request_id)


def _reseed_ids() -> None:
    _ids.seed(os.urandom(16))


_reseed_ids()
os.register_at_fork(after_in_child=_reseed_ids)  # workers forked from one parent never share ids


def new_request_id() -> str:
    """16 random hex digits. A request id correlates logs; it is no secret and no credential, so
    it need not cost a system call for fresh entropy on every request."""
    return f"{_ids.getrandbits(64):016x}"


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Outermost middleware: request id, size and media-type gates, access log, metrics, and a
    last-resort 500 that still carries the request id."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: Metrics,
        production: bool = False,
        max_header_bytes: int = 32 * 1024,
        max_header_line_bytes: int = 16 * 1024,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.max_header_line_bytes = max_header_line_bytes
        self.metrics = metrics
        # Sent on every response: browsers must not guess a JSON error or a CSV export into HTML.
        self.always: list[tuple[bytes, bytes]] = [(b"x-content-type-options", b"nosniff")]
        if production:
            # Production is served over https only (CHILDLINK_ISSUER must be https): tell browsers
            # never to try plain http, on this host or its subdomains.
            self.always.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        status_holder: dict[str, Any] = {"status": 500, "started": False, "replied": False}

        async def send_wrapper(message: Message) -> None:
            if status_holder["replied"]:
                # This middleware has already answered (a 413 mid-body); whatever the app makes
                # of the aborted read is not sent.
                return
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode()), *self.always]
                if path.startswith(_NO_STORE_PATHS) and not any(
                    k.lower() == b"cache-control" for k, _ in headers
                ):
                    # Child data, tokens and audit records: no browser, proxy or gateway keeps a copy.
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        async def reply(status: int, code: str, title: str, detail: str) -> None:
            body = _problem(status, code, title, detail, request_id, path)
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": body})
            status_holder["replied"] = True

        try:
            # The server bounds a request's head as it reads it (app.server); this holds the
            # same line under any server, per header line and in total, before anything reads them.
            total = longest = 0
            for name, value in scope.get("headers") or ():
                size = len(name) + len(value) + 4  # "name: value\r\n"
                total += size
                longest = max(longest, size)
            if total > self.max_header_bytes or longest > self.max_header_line_bytes:
                await reply(
                    431,
                    "headers_too_large",
                    "Request header fields too large",
                    f"Request headers are limited to {self.max_header_line_bytes} bytes a line and "
                    f"{self.max_header_bytes} bytes in all.",
                )
                return
            length = headers.get(b"content-length")
            if length is not None:
                # Digits only: int() would also take "+5", " 5" and "1_0".
                declared = int(length) if length.isdigit() else -1
                if declared < 0:
                    await reply(400, "bad_request", "Bad request", "Invalid Content-Length.")
                    return
                if declared > self.max_body_bytes:
                    await reply(
                        413,
                        "payload_too_large",
                        "Request body too large",
                        f"Request bodies are limited to {self.max_body_bytes} bytes.",
                    )
                    return
            if (
                method.encode() in _BODY_METHODS
                and path.startswith("/v1/")
                and (length or b"transfer-encoding" in headers)
            ):
                content_type = (
                    headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
                )
                if length != b"0" and content_type not in _JSON_TYPES:
                    await reply(
                        415,
                        "unsupported_media_type",
                        "Unsupported media type",
                        "Send the request body as application/json.",
                    )
                    return
            elif method.encode() in _BODY_METHODS and path in _FORM_PATHS:
                content_type = (
                    headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
                )
                if content_type not in ("application/x-www-form-urlencoded", ""):
                    await reply(
                        415,
                        "unsupported_media_type",
                        "Unsupported media type",
                        "Send the token request as application/x-www-form-urlencoded.",
                    )
                    return

            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        # Answer now: FastAPI turns any exception raised while it reads a body
                        # into "400 error parsing the body", so raising alone is not enough.
                        if not status_holder["started"]:
                            await reply(
                                413,
                                "payload_too_large",
                                "Request body too large",
                                f"Request bodies are limited to {self.max_body_bytes} bytes.",
                            )
                        raise _BodyTooLarge
                return message

            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLarge:
            if not status_holder["started"]:
                await reply(
                    413,
                    "payload_too_large",
                    "Request body too large",
                    f"Request bodies are limited to {self.max_body_bytes} bytes.",
                )
        except Exception as exc:
            logger.error(
                "unhandled error",
                exc_info=True,
                extra={"request_id": request_id, "error_type": type(exc).__name__},
            )
            if not status_holder["started"]:
                await reply(
                    500,
                    "internal_error",
                    "Internal server error",
                    "The error has been logged; quote the request id when reporting it.",
                )
        finally:
            duration = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            state = scope.get("state", {})
            principal = state.get("principal")
            status = int(status_holder["status"])
            self.metrics.observe(method, route_path, status, duration)
            if logger.isEnabledFor(logging.INFO):  # not even the record's fields when it is off
                logger.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "route": route_path,
                        "status": status,
                        "duration_ms": round(duration * 1000, 2),
                        "client_id": getattr(principal, "client_id", None) or state.get("client_id"),
                        "agency": getattr(principal, "agency", None) or state.get("agency"),
                    },
                )
