"""The agency-kind cache: when it goes stale under load, the callers in flight share one query
instead of each sending its own (a busy worker's deliveries all ask at once)."""

from __future__ import annotations

import asyncio

from app.access.deps import AgencyKinds
from app.db import Database
from tests.conftest import make_agency
from tests.statements import Statements

RELOAD = "SELECT code, kind FROM agency"


async def test_a_stale_cache_is_reloaded_once_for_all_callers_in_flight(db: Database) -> None:
    await make_agency(db, code="police")
    kinds = AgencyKinds(db.engine, ttl_seconds=0.0)  # stale at every call
    with Statements(db, RELOAD) as reloads:
        answers = await asyncio.gather(*(kinds.kind("police") for _ in range(100)))
    assert answers == ["police"] * 100
    assert reloads.count == 1


async def test_an_agency_registered_after_the_load_is_found(db: Database) -> None:
    await make_agency(db, code="police")
    kinds = AgencyKinds(db.engine)
    with Statements(db, RELOAD) as reloads:
        assert await kinds.kind("police") == "police"
        assert await kinds.kind("health") is None
        await make_agency(db, code="health")
        assert await kinds.kind("health") == "health"
        assert await kinds.kind("police") == "police"  # from the same reload
    assert reloads.count == 3
