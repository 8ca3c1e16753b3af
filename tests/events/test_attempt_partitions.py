"""The delivery attempts' monthly partitions: kept ahead by the service's own role, filled by the
worker, and past retention dropped by the scheduler, with the delivery log showing what is kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import asyncpg_dsn
from app.events import attempt_partitions as attempt_partition_service
from app.events.scheduler import Scheduler, registered_jobs
from app.events.sender import WebhookSender
from tests.conftest import ROOT, TEST_DB_NAME, _with_database, bearer
from tests.events.conftest import WorkerFactory
from tests.events.helpers import DROPOUT, PREFIX, eventually, publish, subscribe, worker_for
from tests.events.receiver import Receiver

OLD_MONTH = "delivery_attempt_y2022m03"


def month_name(at: datetime) -> str:
    return f"delivery_attempt_y{at.year}m{at.month:02d}"


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The service's restricted role."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def owner_conn(owner_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(owner_database_url))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def old_month(owner_conn: asyncpg.Connection) -> AsyncIterator[str]:
    """March 2022's partition, as a deployment four years old would hold it."""
    await owner_conn.execute("SELECT delivery_attempt_create_partitions(0, '2022-03-10T00:00:00Z')")
    yield OLD_MONTH
    await owner_conn.execute(f"DROP TABLE IF EXISTS {OLD_MONTH}")


async def attached(conn: asyncpg.Connection) -> list[str]:
    return [p.name for p in await attempt_partition_service.partitions(conn)]


async def delivered(
    client: httpx.AsyncClient,
    subscriber: str,
    education: str,
    child: dict[str, Any],
    receiver: Receiver,
    start_worker: WorkerFactory,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One dropout-risk event delivered to civil affairs' webhook by a real worker; returns the
    subscription and the delivery as the API lists it, once its attempt is recorded."""
    sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
    await start_worker()
    await publish(client, education, DROPOUT, child["id"])
    await receiver.wait_for(lambda r: len(r.delivered()) == 1)

    async def recorded() -> list[dict[str, Any]]:
        response = await client.get(f"/v1/subscriptions/{sub['id']}/deliveries", headers=bearer(subscriber))
        assert response.status_code == 200, response.text
        return [d for d in response.json()["items"] if d["status"] == "delivered"]

    (delivery,) = await eventually(recorded)
    return sub, delivery


class TestPartitionsAhead:
    async def test_this_month_and_three_more_exist_after_migrate(self, conn: asyncpg.Connection) -> None:
        now = datetime.now(UTC)
        names = await attached(conn)
        for ahead in range(4):
            month = (now.month - 1 + ahead) % 12 + 1
            year = now.year + (now.month - 1 + ahead) // 12
            assert f"delivery_attempt_y{year}m{month:02d}" in names

    async def test_the_service_creates_partitions_ahead_once(
        self, session: AsyncSession, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        later = datetime(2031, 6, 15, tzinfo=UTC)
        try:
            assert (
                await attempt_partition_service.keep(session, later, retention_days=1096, months_ahead=1) == 2
            )
            await session.commit()
            assert (
                await attempt_partition_service.keep(session, later, retention_days=1096, months_ahead=1) == 0
            )
            await session.commit()
            assert {"delivery_attempt_y2031m06", "delivery_attempt_y2031m07"} <= set(await attached(conn))
            # The new partition carries the parent's grants, no more: the service still cannot drop it.
            assert await conn.fetchval("SELECT has_table_privilege('delivery_attempt_y2031m06', 'UPDATE')")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DROP TABLE delivery_attempt_y2031m06")
        finally:
            await session.rollback()
            await owner_conn.execute(
                "DROP TABLE IF EXISTS delivery_attempt_y2031m06, delivery_attempt_y2031m07"
            )


class TestTheWorkerFillsThem:
    async def test_an_attempt_lands_in_its_month_and_its_answer_is_recorded_there(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        conn: asyncpg.Connection,
    ) -> None:
        _, delivery = await delivered(client, subscriber, education, child, receiver, start_worker)
        assert [(a["attempt"], a["outcome"], a["status_code"]) for a in delivery["attempt_log"]] == [
            (1, "delivered", 200)
        ]
        row = await conn.fetchrow(
            "SELECT tableoid::regclass::text AS part, sent_at, at FROM delivery_attempt "
            "WHERE delivery_id = $1",
            delivery["id"],
        )
        assert row["part"] == month_name(row["sent_at"].astimezone(UTC))
        assert row["at"] >= row["sent_at"]

    async def test_a_claim_left_sending_months_ago_is_marked_abandoned_when_reclaimed(
        self,
        app: Any,
        loopback_settings: Settings,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        owner_conn: asyncpg.Connection,
        old_month: str,
    ) -> None:
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await publish(client, education, DROPOUT, child["id"])
        crashed = worker_for(app, loopback_settings, name="crashed")
        await crashed.dispatch()
        (job,) = await crashed.claim(1)
        await crashed.aclose()
        # As if that worker had claimed it in March 2022 and died, and its lease had run out since.
        await owner_conn.execute(
            "UPDATE event_delivery SET created_at = '2022-03-15T09:00:00Z', "
            "next_attempt_at = now() - interval '1 second' WHERE id = $1",
            job.delivery_id,
        )
        await owner_conn.execute(
            # Its claim transaction began a moment before the delivery's own: a claim can see a
            # delivery committed after it began.
            "UPDATE delivery_attempt SET sent_at = '2022-03-15T08:59:58Z', at = '2022-03-15T08:59:58Z' "
            "WHERE delivery_id = $1",
            job.delivery_id,
        )
        assert await owner_conn.fetchval(f"SELECT count(*) FROM {old_month}") == 1  # noqa: S608

        reclaiming = worker_for(app, loopback_settings, name="next")
        (again,) = await reclaiming.claim(1)
        await reclaiming.aclose()
        assert again.delivery_id == job.delivery_id
        listed = (
            await client.get(f"/v1/subscriptions/{sub['id']}/deliveries", headers=bearer(subscriber))
        ).json()
        assert [(a["attempt"], a["outcome"]) for a in listed["items"][0]["attempt_log"]] == [
            (1, "abandoned"),
            (2, "sending"),
        ]


class TestRetention:
    async def test_a_month_past_retention_is_dropped_and_leaves_the_delivery_log(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        app: Any,
        conn: asyncpg.Connection,
        owner_conn: asyncpg.Connection,
        old_month: str,
    ) -> None:
        sub, delivery = await delivered(client, subscriber, education, child, receiver, start_worker)
        # As if the delivery had been made in March 2022 and first failed then.
        await owner_conn.execute(
            "UPDATE event_delivery SET created_at = '2022-03-15T09:00:00Z' WHERE id = $1", delivery["id"]
        )
        await owner_conn.execute(
            "INSERT INTO delivery_attempt (delivery_id, attempt, outcome, status_code, at, sent_at) "
            "VALUES ($1, 0, 'failed', 503, '2022-03-15T10:00:00Z', '2022-03-15T10:00:00Z')",
            delivery["id"],
        )
        assert await owner_conn.fetchval(f"SELECT count(*) FROM {old_month}") == 1  # noqa: S608

        async def attempt_log() -> list[tuple[int, str]]:
            response = await client.get(
                f"/v1/subscriptions/{sub['id']}/deliveries", headers=bearer(subscriber)
            )
            assert response.status_code == 200, response.text
            (listed,) = [d for d in response.json()["items"] if d["id"] == delivery["id"]]
            return [(a["attempt"], a["outcome"]) for a in listed["attempt_log"]]

        assert await attempt_log() == [(1, "delivered"), (0, "failed")]
        # A longer retention keeps it: March 2022 ended less than 1,800 days ago.
        (job,) = [
            j
            for j in registered_jobs(app.state.door.policy, delivery_attempt_retention_days=1800)
            if j.name == "events.attempt-partitions"
        ]
        assert await Scheduler(app.state.db, [job]).run_job(job, datetime.now(UTC)) == 0
        assert old_month in await attached(conn)

        (job,) = [
            j
            for j in registered_jobs(app.state.door.policy, delivery_attempt_retention_days=1096)
            if j.name == "events.attempt-partitions"
        ]
        assert await Scheduler(app.state.db, [job]).run_job(job, datetime.now(UTC)) == 1
        assert old_month not in await attached(conn)
        assert month_name(datetime.now(UTC)) in await attached(conn)

        assert await attempt_log() == [(1, "delivered")]

    async def test_the_service_cannot_drop_recent_attempts(self, conn: asyncpg.Connection) -> None:
        before = set(await attached(conn))
        dropped = await conn.fetchval("SELECT delivery_attempt_drop_partitions(now() + interval '10 years')")
        assert dropped == []
        assert set(await attached(conn)) == before
        assert month_name(datetime.now(UTC)) in before


class TestMigration:
    async def test_existing_attempts_are_copied_into_their_months(
        self, owner_database_url: str, owner_conn: asyncpg.Connection
    ) -> None:
        name = f"{TEST_DB_NAME}_attempts"
        url = _with_database(owner_database_url, name)
        await owner_conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await owner_conn.execute(f'CREATE DATABASE "{name}"')
        try:
            await asyncio.to_thread(_upgrade, url, "0014")
            conn = await asyncpg.connect(asyncpg_dsn(url))
            try:
                await conn.execute(
                    "INSERT INTO agency (code, name, kind) "
                    "VALUES ('civil-affairs', 'Civil affairs', 'civil-affairs');"
                    "INSERT INTO subscription "
                    "(id, agency, created_by_client, mode, type_patterns, purpose_of_use) "
                    "VALUES ('00000000-0000-0000-0000-000000000001', 'civil-affairs', 'cl_x', 'pull', "
                    "'{x}', 'child_protection');"
                    "INSERT INTO event_delivery (subscription_id, webhook_id, kind) "
                    "VALUES ('00000000-0000-0000-0000-000000000001', 'msg_1', 'ping');"
                    "INSERT INTO delivery_attempt (delivery_id, attempt, outcome, status_code, at) VALUES "
                    # five years back: more months than one call of the partition function makes
                    "(1, 1, 'failed', 503, '2021-11-03T10:00:00Z'), (1, 2, 'delivered', 200, now())"
                )
                await asyncio.to_thread(_upgrade, url, "0018")
                rows = await conn.fetch(
                    "SELECT id, attempt, outcome, tableoid::regclass::text AS part, sent_at = at AS same "
                    "FROM delivery_attempt ORDER BY id"
                )
                now = datetime.now(UTC)
                assert [tuple(r) for r in rows] == [
                    (1, 1, "failed", "delivery_attempt_y2021m11", True),
                    (2, 2, "delivered", month_name(now), True),
                ]
                # New attempts continue the ids.
                assert (
                    await conn.fetchval(
                        "INSERT INTO delivery_attempt (delivery_id, attempt, outcome) "
                        "VALUES (1, 3, 'sending') RETURNING id"
                    )
                    == 3
                )
            finally:
                await conn.close()
        finally:
            await owner_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _upgrade(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)
