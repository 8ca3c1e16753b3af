"""Sending one signed webhook request, safely: the URL re-checked after DNS resolution, the
connection pinned to the checked address, no redirects, a hard deadline, at most a small answer
body read (and discarded).

Connections are kept alive per receiver (one client per worker): an answer whose body is read to
its end leaves the connection ready for the next delivery, where opening and closing a TCP (and
TLS) connection per delivery cost more than the delivery itself. A body larger than
:data:`MAX_ANSWER_BODY` is not read further; that connection is closed instead of reused."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx

from app import __version__
from app.config import Settings
from app.events import signing, ssrf

MAX_RETRY_AFTER_SECONDS = 86400.0
USER_AGENT = f"ChildLink-Webhooks/{__version__}"
ANSWER_GRACE_SECONDS = 0.25
"""After the deadline, how long to let an answer already on the socket be read before calling the
attempt a timeout: a worker paused past its deadline (SIGSTOP, a VM frozen) finds the receiver's
answer waiting when it resumes, and records that answer instead of a timeout it did not suffer."""
MAX_ANSWER_BODY = 64 * 1024
"""Bytes of an answer's body read (and thrown away) so its connection can be reused."""
RETRY_AFTER = "retry-after"
ABORT_HEADER = "webhook-delivery"
ABORT_VALUE = "abort-message"


class Outcome(StrEnum):
    delivered = "delivered"
    failed = "failed"
    gone = "gone"
    """410: the receiver wants no more; the subscription is disabled."""
    refused = "refused"
    """The URL failed the SSRF check at delivery time; nothing was sent."""
    aborted = "aborted"
    """The receiver answered ``webhook-delivery: abort-message``: no more retries of this message."""


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    retry_after: float | None = None
    not_sent: bool = False
    """Failed before anything reached the receiver (the door, the lease, a secret): says nothing
    about the endpoint's health."""

    @property
    def endpoint_failed(self) -> bool:
        """The endpoint itself is unwell (no answer, 5xx, 429, refused): its whole subscription
        backs off. Another 4xx is this message's problem, not the endpoint's."""
        if self.outcome is Outcome.refused:
            return True
        if self.outcome is not Outcome.failed:
            return False
        return self.status_code is None or self.status_code >= 500 or self.status_code == 429


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


def _pinned_url(destination: ssrf.Destination, address: ssrf.IPAddress) -> str:
    host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    parts = destination.url
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{host}:{destination.port}{path}{query}"


def _host_header(destination: ssrf.Destination) -> str:
    default = 443 if destination.url.scheme == "https" else 80
    host = destination.url.hostname or destination.host
    if ":" in host:
        host = f"[{host}]"
    return host if destination.port == default else f"{host}:{destination.port}"


MAX_RECEIVERS = 1024
"""Receivers (address, port, TLS name) whose connections one sender keeps at most; beyond it the
least recently used idle one is closed."""


class WebhookSender:
    """One HTTP client per receiver, kept alive; :meth:`send` never raises for anything the
    receiver does.

    Per receiver, not one for all: httpx's pool looks at each of its connections for every
    request, so one shared pool of a few hundred connections spent more time choosing a
    connection than sending on it. ``max_connections`` bounds each receiver's."""

    def __init__(self, settings: Settings, *, max_connections: int = 100) -> None:
        self.settings = settings
        self.allow = ssrf.AllowList.parse(settings.webhook_allowed_hosts)
        self.allow_http = settings.is_development
        self.timeout = settings.webhook_timeout_seconds
        self.max_connections = max_connections
        self._clients: OrderedDict[tuple[str, str, int, str], httpx.AsyncClient] = OrderedDict()
        self._busy: Counter[tuple[str, str, int, str]] = Counter()
        self._closing: set[asyncio.Future[None]] = set()

    def _client(self, key: tuple[str, str, int, str]) -> httpx.AsyncClient:
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        if len(self._clients) >= MAX_RECEIVERS:
            idle = next((k for k in self._clients if not self._busy[k]), None)
            if idle is not None:
                # Idle: no request of ours is on its connections, so closing cuts nothing short.
                closing = asyncio.ensure_future(self._clients.pop(idle).aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        client = self._clients[key] = httpx.AsyncClient(
            follow_redirects=False,
            # No timeouts of httpx's own: they cancel a read whose answer is already on the socket
            # when a paused worker resumes. The one deadline is send()'s, with its grace.
            timeout=httpx.Timeout(None),
            limits=httpx.Limits(
                max_connections=self.max_connections, max_keepalive_connections=self.max_connections
            ),
            # No proxy from the environment: it would connect somewhere other than the address
            # that passed the check.
            trust_env=False,
            headers={"user-agent": USER_AGENT, "content-type": "application/json"},
        )
        return client

    async def check(self, url: str) -> ssrf.Destination:
        return await ssrf.check(url, self.allow, allow_http=self.allow_http)

    async def send(self, url: str, *, webhook_id: str, body: bytes, secrets: list[str]) -> SendResult:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            destination = await self.check(url)
        except ssrf.WebhookUrlRefused as exc:
            return SendResult(Outcome.refused, error=(exc.detail or exc.title)[:200], duration_ms=elapsed())
        headers = signing.headers(secrets, webhook_id, int(time.time()), body)
        headers["host"] = _host_header(destination)
        exchange = asyncio.ensure_future(self._exchange(destination, body, headers))
        # The whole exchange has one deadline: httpx's timeouts are per read, so a receiver
        # dripping one byte a second would otherwise hold a worker slot indefinitely.
        try:
            done, _ = await asyncio.wait({exchange}, timeout=self.timeout)
            if not done:
                done, _ = await asyncio.wait({exchange}, timeout=ANSWER_GRACE_SECONDS)
        except asyncio.CancelledError:
            exchange.cancel()
            raise
        if not done:
            exchange.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                late = await exchange
                await self._release(late)  # answered just as it was cancelled
            return SendResult(Outcome.failed, error="timeout", duration_ms=elapsed())
        try:
            response = exchange.result()
        except httpx.HTTPError as exc:
            # The class name only: an exception message may quote the URL.
            return SendResult(Outcome.failed, error=type(exc).__name__, duration_ms=elapsed())
        status = response.status_code
        answer = {k: response.headers[k] for k in (RETRY_AFTER, ABORT_HEADER) if k in response.headers}
        took = elapsed()
        await self._release(response)
        retry_after = parse_retry_after(answer.get(RETRY_AFTER))
        if 200 <= status < 300:
            return SendResult(Outcome.delivered, status, duration_ms=took)
        if status == 410:
            return SendResult(Outcome.gone, status, error="receiver answered 410 Gone", duration_ms=took)
        if answer.get(ABORT_HEADER, "").strip().lower() == ABORT_VALUE:
            return SendResult(
                Outcome.aborted,
                status,
                error=f"receiver answered {status}, abort-message",
                duration_ms=took,
            )
        error = "redirect not followed" if 300 <= status < 400 else f"receiver answered {status}"
        return SendResult(Outcome.failed, status, error=error, duration_ms=took, retry_after=retry_after)

    async def _exchange(
        self, destination: ssrf.Destination, body: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        """POST and return once the status line and headers are in (the body still unread)."""
        address = destination.addresses[0]
        key = (destination.url.scheme, str(address), destination.port, destination.host)
        client = self._client(key)
        request = client.build_request(
            "POST",
            _pinned_url(destination, address),
            content=body,
            headers=headers,
            extensions={"sni_hostname": destination.host},
        )
        self._busy[key] += 1
        try:
            response = await client.send(request, stream=True)
        except BaseException:
            self._release_key(key)
            raise
        response.extensions["childlink_receiver"] = key
        return response

    def _release_key(self, key: tuple[str, str, int, str]) -> None:
        self._busy[key] -= 1
        if self._busy[key] <= 0:
            del self._busy[key]

    async def _release(self, response: httpx.Response) -> None:
        """Drain up to :data:`MAX_ANSWER_BODY` of the body (never kept), briefly, so the
        connection goes back to the pool for the next delivery. The answer is its status line:
        a body that is large, slow or broken off costs only the connection (closed, not
        reused), never the outcome."""
        drained = 0
        try:
            async with asyncio.timeout(ANSWER_GRACE_SECONDS):
                async for chunk in response.aiter_raw():
                    drained += len(chunk)
                    if drained > MAX_ANSWER_BODY:
                        break
        except (TimeoutError, httpx.HTTPError):
            pass
        finally:
            # After a whole body this hands the connection back; otherwise it closes it.
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
            self._release_key(response.extensions["childlink_receiver"])

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.aclose()
