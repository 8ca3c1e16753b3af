"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

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


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"example": "childlink_http_requests_total{...} 1"}}}},
)
async def metrics(request: Request) -> PlainTextResponse:
    """Request counts and latencies per route and status, in Prometheus text format (this worker)."""
    return PlainTextResponse(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")
