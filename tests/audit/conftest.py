"""Fixtures for the access-log tests: raw asyncpg connections to the test database (as the
service's restricted role, and as the owner for attacks the service's role cannot make), a fresh
writer per test, and a record factory."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from app.audit import AccessRecord, AuditWriter
from app.audit.sealer import seal_committed
from app.db import asyncpg_dsn


@pytest.fixture
def dsn(database_url: str) -> str:
    return asyncpg_dsn(database_url)


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def owner_conn(owner_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The schema owner (a superuser here), who can switch the triggers off."""
    connection = await asyncpg.connect(asyncpg_dsn(owner_database_url))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def writer(dsn: str) -> AsyncIterator[AuditWriter]:
    w = AuditWriter(dsn)
    try:
        yield w
    finally:
        await w.aclose()


def make_record(**overrides: Any) -> AccessRecord:
    fields: dict[str, Any] = {
        "request_id": secrets.token_hex(8),
        "client_id": "cl_police_duty",
        "agency": "police",
        "action": "custody.read",
        "child_id": uuid.uuid4(),
        "purpose": "child_protection",
        "decision": "allow",
        "categories_returned": ("custody", "contact"),
        "categories_withheld": ("health",),
        "basis": {
            "custody": {"ground": "statute", "ref": "police-custody", "citation": "未成年人保护法 第十一条"},
            "contact": {"ground": "statute", "ref": "police-contact", "citation": "PIPL art. 13(4)"},
        },
    }
    fields.update(overrides)
    return AccessRecord(**fields)


async def write_sealed(writer: AuditWriter, conn: asyncpg.Connection, count: int) -> list[int]:
    """``count`` records written and sealed; returns their ids."""
    ids = [await writer.record(make_record()) for _ in range(count)]
    await seal_committed(conn)
    return ids


@asynccontextmanager
async def horizon_held(dsn: str) -> AsyncIterator[None]:
    """A transaction with an id, open for the block: rows committed meanwhile lie above the
    sealing horizon, so no sealer (the test app runs one in the background) chains them before
    the block ends."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute("SELECT pg_current_xact_id()")
            yield
    finally:
        await connection.close()
