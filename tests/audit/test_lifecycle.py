"""The app runs the writer and the background sealer from its lifespan."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from app.audit import AuditWriter
from app.audit.verify import verify
from tests.audit.conftest import make_record


class TestLifespan:
    async def test_the_background_sealer_chains_what_the_app_writes(
        self, app: Any, conn: asyncpg.Connection
    ) -> None:
        writer: AuditWriter = app.state.audit
        ids = await writer.record_many([make_record() for _ in range(5)])
        for _ in range(50):  # sealed within a few rounds of ~1 s
            sealed = await conn.fetchval("SELECT count(*) FROM access_log_chain WHERE row_id = ANY($1)", ids)
            if sealed == 5:
                break
            await asyncio.sleep(0.1)
        assert sealed == 5
        report = await verify(conn, seal_first=False)
        assert report.ok
        assert report.verified >= 5
