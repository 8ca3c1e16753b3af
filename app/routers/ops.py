"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from app.auth.deps import authenticate, check_scopes
from app.auth.scopes import Scope
from app.config import Settings
from app.errors import InsufficientScope, Unauthorized, responses

router = APIRouter(tags=["operations"])

READY_DEADLINE_SECONDS = 2.0


class Health(BaseModel):
    status: str = Field(examples=["ok"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Any:
    """The process is up. Does not touch the database."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness",
    responses={503: {"model": Health, "description": "The database is not reachable."}},
)
async def readyz(request: Request) -> Any:
    """Ready to serve: the database answers within two seconds. 503 otherwise."""
    try:
        # The deadline covers connecting too: a database host that accepts the TCP connection
        # and never answers must not hang the probe (statement_timeout alone starts too late).
        async with asyncio.timeout(READY_DEADLINE_SECONDS):
            async with request.app.state.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception:
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return {"status": "ok"}


async def metrics_access(request: Request) -> None:
    """Open in development unless ``CHILDLINK_METRICS_TOKEN`` is set; otherwise the bearer is
    that token or an ``admin`` token. Route names, statuses and volumes tell an outsider which
    agencies ask what, and how often."""
    settings: Settings = request.app.state.settings
    expected = settings.metrics_token
    if expected is None and settings.is_development:
        return
    authorization = request.headers.get("authorization")
    if expected is not None and authorization:
        scheme, _, value = authorization.partition(" ")
        # Timing-safe: the comparison must not reveal how much of a guess was right.
        if scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), expected.get_secret_value().encode()
        ):
            return
    principal = await authenticate(request.app.state, authorization)
    check_scopes(principal, [Scope.admin])


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics",
    dependencies=[Depends(metrics_access)],
    responses={
        200: {"content": {"text/plain": {"example": "childlink_http_requests_total{...} 1"}}},
        **responses(Unauthorized, InsufficientScope),
    },
)
async def metrics(request: Request) -> PlainTextResponse:
    """Request counts and latencies per route and status, and how the access log and the batched
    lookups group their work, in Prometheus text format (this worker). In production it wants
    `Authorization: Bearer` with `CHILDLINK_METRICS_TOKEN` or an `admin` token."""
    state = request.app.state
    text = state.metrics.render() + _batching(state)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def _batching(state: Any) -> str:
    """Counters of the group-committing access-log writer and the batched lookups: records per
    flush and keys per query are how far concurrent requests share their database round trips."""
    audit = state.audit
    lines = [
        "# HELP childlink_access_log_records_total Access-log records committed.",
        "# TYPE childlink_access_log_records_total counter",
        f"childlink_access_log_records_total {audit.records_written}",
        "# HELP childlink_access_log_flushes_total Access-log INSERTs committed (one or more records each).",
        "# TYPE childlink_access_log_flushes_total counter",
        f"childlink_access_log_flushes_total {audit.flushes}",
        "# HELP childlink_access_log_failed_flushes_total Failed access-log INSERTs (their reads got 503).",
        "# TYPE childlink_access_log_failed_flushes_total counter",
        f"childlink_access_log_failed_flushes_total {audit.failed_flushes}",
    ]
    lookups = {"custody": state.custody_lookup, "consent": state.consent_lookup}
    for metric, attribute, help_text in (
        ("childlink_lookup_queries_total", "queries", "Batched lookup queries run."),
        ("childlink_lookup_keys_total", "keys_read", "Keys looked up by batched queries."),
        ("childlink_lookup_failed_queries_total", "failed_queries", "Batched lookup queries that failed."),
    ):
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines += [
            f'{metric}{{lookup="{name}"}} {getattr(lookup, attribute)}' for name, lookup in lookups.items()
        ]
    return "\n".join(lines) + "\n"
