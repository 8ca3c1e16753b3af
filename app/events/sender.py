"""Sending one signed webhook request, safely: the URL re-checked after DNS resolution, the
connection pinned to the checked address, no redirects, a hard deadline, the body never read."""

from __future__ import annotations

import asyncio
import ipaddress
import time
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


class Outcome(StrEnum):
    delivered = "delivered"
    failed = "failed"
    gone = "gone"
    """410: the receiver wants no more; the subscription is disabled."""
    refused = "refused"
    """The URL failed the SSRF check at delivery time; nothing was sent."""


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    retry_after: float | None = None


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


class WebhookSender:
    """One HTTP client per worker; :meth:`send` never raises for anything the receiver does."""

    def __init__(self, settings: Settings, *, max_connections: int = 100) -> None:
        self.settings = settings
        self.allow = ssrf.AllowList.parse(settings.webhook_allowed_hosts)
        self.allow_http = settings.is_development
        self.timeout = settings.webhook_timeout_seconds
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            # No proxy from the environment: it would connect somewhere other than the address
            # that passed the check.
            trust_env=False,
            headers={"user-agent": USER_AGENT, "content-type": "application/json"},
        )

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
        try:
            # The whole exchange has one deadline: httpx's timeouts are per read, so a receiver
            # dripping one byte a second would otherwise hold a worker slot indefinitely.
            async with asyncio.timeout(self.timeout):
                async with self.client.stream(
                    "POST",
                    _pinned_url(destination, destination.addresses[0]),
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": destination.host},
                ) as response:
                    status = response.status_code
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
        except TimeoutError:
            return SendResult(Outcome.failed, error="timeout", duration_ms=elapsed())
        except httpx.HTTPError as exc:
            # The class name only: an exception message may quote the URL.
            return SendResult(Outcome.failed, error=type(exc).__name__, duration_ms=elapsed())
        if 200 <= status < 300:
            return SendResult(Outcome.delivered, status, duration_ms=elapsed())
        if status == 410:
            return SendResult(Outcome.gone, status, error="receiver answered 410 Gone", duration_ms=elapsed())
        error = "redirect not followed" if 300 <= status < 400 else f"receiver answered {status}"
        return SendResult(Outcome.failed, status, error=error, duration_ms=elapsed(), retry_after=retry_after)

    async def aclose(self) -> None:
        await self.client.aclose()
