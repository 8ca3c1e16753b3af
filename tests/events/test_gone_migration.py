"""Migration 0023: deliveries answered 410 before this version, on subscriptions re-enabled
since, are settled as skipped; those of a subscription still disabled wait for its re-enabling."""

from __future__ import annotations

import asyncio

import asyncpg

from app.db import asyncpg_dsn
from tests.conftest import TEST_DB_NAME, _with_database
from tests.events.test_attempt_partitions import _upgrade

RUNNING, DISABLED = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"


async def test_gone_deliveries_of_running_subscriptions_become_skipped_dead_letters(
    owner_database_url: str,
) -> None:
    name = f"{TEST_DB_NAME}_gone"
    url = _with_database(owner_database_url, name)
    owner_conn = await asyncpg.connect(asyncpg_dsn(owner_database_url))
    await owner_conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await owner_conn.execute(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(_upgrade, url, "0022")
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute(
                "INSERT INTO agency (code, name, kind) VALUES ('education', 'Education', 'education')"
            )
            await conn.executemany(
                "INSERT INTO subscription "
                "(id, agency, created_by_client, mode, type_patterns, purpose_of_use, status) "
                "VALUES ($1::uuid, 'education', 'cl_x', 'pull', '{x}', 'child_protection', $2)",
                [(RUNNING, "active"), (DISABLED, "disabled")],
            )
            await conn.executemany(
                "INSERT INTO event_delivery (subscription_id, webhook_id, kind, status) "
                "VALUES ($1::uuid, $2, 'ping', $3)",
                [(RUNNING, "msg_1", "gone"), (RUNNING, "msg_2", "dead"), (DISABLED, "msg_3", "gone")],
            )
            await asyncio.to_thread(_upgrade, url, "0023")
            rows = await conn.fetch("SELECT webhook_id, status FROM event_delivery ORDER BY webhook_id")
            assert [tuple(r) for r in rows] == [("msg_1", "skipped"), ("msg_2", "dead"), ("msg_3", "gone")]
        finally:
            await conn.close()
    finally:
        await owner_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await owner_conn.close()
