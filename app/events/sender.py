"""Sending one signed webhook request, safely: the URL re-checked after DNS resolution, the
connection pinned to the checked address, no redirects, a hard deadline, at most a small answer
body read (and discarded).

Connections are kept alive per receiver (:mod:`app.events.http1`): an answer whose body is read
to its end leaves the connection ready for the next delivery, where opening and closing a TCP (and
TLS) connection per delivery cost more than the delivery itself. A body larger than
:data:`app.events.http1.MAX_BODY` is not read further; that connection is closed instead."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from app import __version__
from app.config import Settings
from app.events import http1, signing, ssrf

MAX_RETRY_AFTER_SECONDS = 86400.0
USER_AGENT = f"ChildLink-Webhooks/{__version__}"
ANSWER_GRACE_SECONDS = 0.25
"""After the deadline, how long to let an answer already on the socket be read before calling the
attempt a timeout: a worker paused past its deadline (SIGSTOP, a VM frozen) finds the receiver's
answer waiting when it resumes, and records that answer instead of a timeout it did not suffer."""
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


def _target(destination: ssrf.Destination) -> str:
    """The request target: the checked URL's path and query (the host travels in ``host``)."""
    parts = destination.url
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


_EXCHANGE_ERRORS = (http1.ConnectError, http1.ProtocolError, OSError, ssl.SSLError, ValueError)


def _host_header(destination: ssrf.Destination) -> str:
    default = 443 if destination.url.scheme == "https" else 80
    host = destination.url.hostname or destination.host
    if ":" in host:
        host = f"[{host}]"
    return host if destination.port == default else f"{host}:{destination.port}"


MAX_RECEIVERS = 1024
"""Receivers (address, port, TLS name) whose connections one sender keeps; beyond it the least
recently used one is forgotten (its idle connections closed)."""

ReceiverKey = tuple[str, str, int, str]

CHECKED_SECONDS = 5.0
"""How long a URL's passed SSRF check (its addresses, resolved and permitted) serves the sends that
follow, in this sender (the worker's; the API's, for test pings), as a resolver's cache would: a
busy subscription is sent many webhooks a second, and
parsing, resolving (a thread for each ``getaddrinfo``) and checking its URL each time cost the
worker more than signing the webhook. Each connection still goes to an address that passed;
a DNS change is seen within this time. A refusal is never remembered."""


class WebhookSender:
    """Kept-alive connections per receiver (:mod:`app.events.http1`); :meth:`send` never
    raises for anything the receiver does. ``max_connections`` bounds the idle connections kept
    per receiver."""

    def __init__(self, settings: Settings, *, max_connections: int = 100) -> None:
        self.settings = settings
        self.allow = ssrf.AllowList.parse(settings.webhook_allowed_hosts)
        self.allow_http = settings.is_development
        self.timeout = settings.webhook_timeout_seconds
        self.max_connections = max_connections
        self._tls = ssl.create_default_context()
        self._tls.set_alpn_protocols(["http/1.1"])
        self._pools: OrderedDict[ReceiverKey, http1.ReceiverPool] = OrderedDict()
        self._checked: OrderedDict[str, tuple[float, ssrf.Destination]] = OrderedDict()
        self.checked_seconds = CHECKED_SECONDS

    def _pool(self, destination: ssrf.Destination, address: ssrf.IPAddress) -> http1.ReceiverPool:
        tls = destination.url.scheme == "https"
        key = (destination.url.scheme, str(address), destination.port, destination.host)
        pool = self._pools.get(key)
        if pool is not None:
            self._pools.move_to_end(key)
            return pool
        if len(self._pools) >= MAX_RECEIVERS:
            _, forgotten = self._pools.popitem(last=False)
            forgotten.close_idle()
        pool = self._pools[key] = http1.ReceiverPool(
            address=str(address),
            port=destination.port,
            tls_name=destination.host if tls else None,
            tls=self._tls if tls else None,
            max_idle=self.max_connections,
        )
        return pool

    async def check(self, url: str) -> ssrf.Destination:
        return await ssrf.check(url, self.allow, allow_http=self.allow_http)

    async def _destination(self, url: str) -> ssrf.Destination:
        """:meth:`check`, its pass remembered for :data:`CHECKED_SECONDS`."""
        now = time.monotonic()
        remembered = self._checked.get(url)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        destination = await self.check(url)
        self._checked[url] = (now + self.checked_seconds, destination)
        self._checked.move_to_end(url)
        if len(self._checked) > MAX_RECEIVERS:
            self._checked.popitem(last=False)
        return destination

    async def send(self, url: str, *, webhook_id: str, body: bytes, secrets: list[str]) -> SendResult:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            destination = await self._destination(url)
        except ssrf.WebhookUrlRefused as exc:
            return SendResult(Outcome.refused, error=(exc.detail or exc.title)[:200], duration_ms=elapsed())
        headers = {
            "host": _host_header(destination),
            "user-agent": USER_AGENT,
            "content-type": "application/json",
            **signing.headers(secrets, webhook_id, int(time.time()), body),
        }
        address = destination.addresses[0]
        head = http1.request_head(_target(destination), headers, len(body))
        exchange = asyncio.ensure_future(self._pool(destination, address).post(head, body))
        # The whole exchange has one deadline: a receiver dripping one byte a second would
        # otherwise hold a worker slot indefinitely.
        try:
            done, _ = await asyncio.wait({exchange}, timeout=self.timeout)
            if not done:
                done, _ = await asyncio.wait({exchange}, timeout=ANSWER_GRACE_SECONDS)
        except asyncio.CancelledError:
            exchange.cancel()
            raise
        if not done:
            exchange.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_EXCHANGE_ERRORS):
                late = await exchange
                await late.release(grace=0)  # answered just as it was cancelled
            return SendResult(Outcome.failed, error="timeout", duration_ms=elapsed())
        try:
            answered = exchange.result()
        except _EXCHANGE_ERRORS as exc:
            # The class name only: an exception message may quote the address.
            return SendResult(Outcome.failed, error=type(exc).__name__, duration_ms=elapsed())
        status, answer = answered.status, answered.headers
        took = elapsed()
        # The answer is its status line: a body that is large, slow or broken off costs only
        # the connection (closed, not reused), never the outcome.
        await answered.release(grace=ANSWER_GRACE_SECONDS)
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

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            pool.close_idle()
