"""The process-local caches on the hot path (agency kinds, client status): when an entry goes
stale under load, the callers in flight share one query instead of each sending its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from app.access.deps import AgencyKinds
from app.auth.clients import ClientDirectory
from app.db import Database
from app.singleflight import SingleFlight
from tests.conftest import make_agency, make_client


class Statements:
    """Counts the statements the engine sends that begin with ``prefix``."""

    def __init__(self, db: Database, prefix: str) -> None:
        self.db, self.prefix, self.count = db, prefix, 0

    def _seen(self, *args: Any) -> None:
        if args[2].startswith(self.prefix):
            self.count += 1

    def __enter__(self) -> Statements:
        event.listen(self.db.engine.sync_engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.db.engine.sync_engine, "before_cursor_execute", self._seen)


@pytest.fixture
def agency_statements(db: Database) -> Iterator[Statements]:
    with Statements(db, "SELECT code, kind FROM agency") as counted:
        yield counted


class TestSingleFlight:
    async def test_concurrent_callers_share_one_load(self) -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        loads = 0
        release = asyncio.Event()

        async def load() -> int:
            nonlocal loads
            loads += 1
            await release.wait()
            return 42

        waiters = [asyncio.create_task(flights.run("k", load)) for _ in range(50)]
        await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*waiters) == [42] * 50
        assert loads == 1

    async def test_a_failed_load_raises_in_every_caller_and_the_next_call_loads_again(self) -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        release = asyncio.Event()
        attempts = 0

        async def load() -> int:
            nonlocal attempts
            attempts += 1
            await release.wait()
            if attempts == 1:
                raise OSError("the database went away")
            return 7

        waiters = [asyncio.create_task(flights.run("k", load)) for _ in range(3)]
        await asyncio.sleep(0)
        release.set()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(o, OSError) for o in outcomes)
        assert await flights.run("k", load) == 7
        assert attempts == 2

    async def test_a_cancelled_caller_does_not_cancel_the_load_for_the_others(self) -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        release = asyncio.Event()

        async def load() -> int:
            await release.wait()
            return 1

        impatient = asyncio.create_task(flights.run("k", load))
        patient = asyncio.create_task(flights.run("k", load))
        await asyncio.sleep(0)
        impatient.cancel()
        await asyncio.sleep(0)
        release.set()
        assert await patient == 1
        assert impatient.cancelled()

    async def test_keys_load_independently_and_drop_starts_afresh(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight()
        release = asyncio.Event()
        calls: list[str] = []

        def loader(value: str) -> Any:
            async def load() -> str:
                calls.append(value)
                await release.wait()
                return value

            return load

        first = asyncio.create_task(flights.run("a", loader("a-old")))
        other = asyncio.create_task(flights.run("b", loader("b")))
        await asyncio.sleep(0)
        flights.drop("a")
        fresh = asyncio.create_task(flights.run("a", loader("a-new")))
        await asyncio.sleep(0)
        release.set()
        assert (await first, await other, await fresh) == ("a-old", "b", "a-new")
        assert calls == ["a-old", "b", "a-new"]


class TestAgencyKinds:
    async def test_a_stale_cache_is_reloaded_once_for_all_callers_in_flight(
        self, db: Database, agency_statements: Statements
    ) -> None:
        await make_agency(db, code="police")
        kinds = AgencyKinds(db.engine, ttl_seconds=0.0)  # stale at every call
        answers = await asyncio.gather(*(kinds.kind("police") for _ in range(100)))
        assert answers == ["police"] * 100
        assert agency_statements.count == 1

    async def test_an_agency_registered_after_the_load_is_found(
        self, db: Database, agency_statements: Statements
    ) -> None:
        await make_agency(db, code="police")
        kinds = AgencyKinds(db.engine)
        assert await kinds.kind("police") == "police"
        assert await kinds.kind("health") is None
        await make_agency(db, code="health")
        assert await kinds.kind("health") == "health"
        assert await kinds.kind("police") == "police"  # from the same reload
        assert agency_statements.count == 3


class TestClientDirectory:
    async def test_concurrent_requests_of_one_client_share_one_status_query(self, db: Database) -> None:
        client_id, _ = await make_client(db, agency="police")
        other_id, _ = await make_client(db, agency="health")
        directory = ClientDirectory(db.engine, ttl_seconds=2.0)
        with Statements(db, "SELECT status, agency_code, allowed_scopes, region FROM api_client") as counted:
            states = await asyncio.gather(
                *(directory.get(client_id) for _ in range(64)), *(directory.get(other_id) for _ in range(8))
            )
        assert [s.agency for s in states if s is not None] == ["police"] * 64 + ["health"] * 8
        assert counted.count == 2

    async def test_a_revocation_is_seen_at_once_even_with_a_read_in_flight(self, db: Database) -> None:
        client_id, _ = await make_client(db, agency="police")
        directory = ClientDirectory(db.engine, ttl_seconds=60.0)
        in_flight = asyncio.create_task(directory.get(client_id))
        await asyncio.sleep(0)  # its query is on its way: it read the client before the revocation
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE api_client SET status = 'revoked' WHERE id = :id"), {"id": client_id}
            )
        directory.forget(client_id)
        after = await directory.get(client_id)
        assert after is not None and not after.active
        await in_flight
        cached = await directory.get(client_id)  # the earlier read did not overwrite the fresh one
        assert cached is not None and not cached.active
