"""Starting and stopping the audit machinery with the app (called from the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from fastapi import FastAPI, Request

from app.audit.checkpoints import take_checkpoint
from app.audit.sealer import AfterRound, seal_forever
from app.audit.writer import AuditWriter
from app.auth.keys import KeyRing
from app.db import asyncpg_dsn, driver_options


async def start_audit(
    app: FastAPI,
    database_url: str,
    *,
    seal_interval: float = 1.0,
    keys: KeyRing | None = None,
    issuer: str = "",
    checkpoint_seconds: float = 300.0,
    pooled: bool = False,
) -> AuditWriter:
    """Create the writer (``app.state.audit``; it connects on first use) and start the
    background sealer (``app.state.audit_sealer``), which also signs a checkpoint every
    ``checkpoint_seconds`` when given the platform's ``keys``. Connects to nothing yet, so a
    database that is still starting does not stop the app from starting. ``pooled``:
    ``database_url`` is a transaction-mode pooler; the sealer needs no session of its own (its
    advisory lock is transaction-scoped), so both go through it."""
    dsn = asyncpg_dsn(database_url)
    writer = AuditWriter(dsn, pooled=pooled)
    after_round: AfterRound | None = None
    if keys is not None:
        signing_keys = keys

        async def after_round(conn: asyncpg.Connection) -> object:
            return await take_checkpoint(conn, signing_keys, issuer=issuer, every_seconds=checkpoint_seconds)

    async def connect_sealer() -> asyncpg.Connection:
        return await asyncpg.connect(
            dsn,
            timeout=5.0,
            **driver_options(pooled=pooled, server_settings={"application_name": "childlink-sealer"}),
        )

    app.state.audit = writer
    app.state.audit_sealer = asyncio.create_task(
        seal_forever(connect_sealer, interval=seal_interval, after_round=after_round), name="audit-sealer"
    )
    return writer


async def stop_audit(app: FastAPI) -> None:
    """Stop sealing, let pending records commit, close the connections. Idempotent."""
    sealer: asyncio.Task[None] | None = getattr(app.state, "audit_sealer", None)
    if sealer is not None:
        sealer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sealer
        app.state.audit_sealer = None
    writer: AuditWriter | None = getattr(app.state, "audit", None)
    if writer is not None:
        await writer.aclose()


def get_audit_writer(request: Request) -> AuditWriter:
    """FastAPI dependency (or plain helper) for the running app's writer."""
    writer: AuditWriter = request.app.state.audit
    return writer
