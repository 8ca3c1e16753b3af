"""The monthly partitions: kept ahead by the service's own role, append-only like the log, and
past retention exported to a signed archive, verified from it, then detached, with the live chain
still verifying."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import AuditWriter
from app.audit import partitions as partition_service
from app.audit.partitions import ArchiveError, Partition, verify_archive
from app.audit.sealer import seal_committed
from app.audit.verify import verify
from app.audit.writer import INSERT_SQL, encode_row
from app.auth.keys import KeyRing
from tests.audit.conftest import horizon_held, make_record
from tests.audit.test_cli import childlink

OLD_MONTH = "access_log_y2022m03"


async def write_at(conn: asyncpg.Connection, logged_at: datetime, count: int) -> list[int]:
    """Records dated ``logged_at`` (as if written then), through the service's role."""
    documents = [
        encode_row(make_record(), logged_at + timedelta(seconds=i))[1].decode() for i in range(count)
    ]
    rows = await conn.fetch(INSERT_SQL, "[" + ",".join(documents) + "]")
    return sorted(r["id"] for r in rows)


@pytest.fixture
async def old_month(owner_conn: asyncpg.Connection) -> AsyncIterator[str]:
    """March 2022's partition, as a deployment three years old would hold it; dropped afterwards
    whether attached or detached."""
    await owner_conn.execute("SELECT access_log_create_partitions(0, '2022-03-10T00:00:00Z')")
    yield OLD_MONTH
    await owner_conn.execute(f"DROP TABLE IF EXISTS {OLD_MONTH}")


async def attached(conn: asyncpg.Connection) -> list[str]:
    return [p.name for p in await partition_service.partitions(conn)]


class TestPartitionsAhead:
    async def test_this_month_and_three_more_exist_after_migrate(self, conn: asyncpg.Connection) -> None:
        now = datetime.now(UTC)
        names = await attached(conn)
        for ahead in range(4):
            month = (now.month - 1 + ahead) % 12 + 1
            year = now.year + (now.month - 1 + ahead) // 12
            assert f"access_log_y{year}m{month:02d}" in names

    async def test_the_service_creates_partitions_ahead_and_they_are_append_only(
        self, session: AsyncSession, conn: asyncpg.Connection, owner_conn: asyncpg.Connection
    ) -> None:
        later = datetime(2031, 6, 15, tzinfo=UTC)
        try:
            assert await partition_service.create_ahead(session, later, months_ahead=1) == 2
            await session.commit()
            assert await partition_service.create_ahead(session, later, months_ahead=1) == 0  # once
            await write_at(conn, datetime(2031, 6, 20, tzinfo=UTC), 2)
            for statement in (
                "UPDATE access_log_y2031m06 SET purpose = 'x'",
                "DELETE FROM access_log_y2031m06",
                "TRUNCATE access_log_y2031m06",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
            # Even the owner meets the triggers on the new partition.
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner_conn.execute("TRUNCATE access_log_y2031m06")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner_conn.execute("DELETE FROM access_log_y2031m06")
        finally:
            await session.rollback()
            await owner_conn.execute("DROP TABLE IF EXISTS access_log_y2031m06, access_log_y2031m07")

    async def test_a_record_of_a_month_without_a_partition_is_still_written(
        self, conn: asyncpg.Connection
    ) -> None:
        (row_id,) = await write_at(conn, datetime(2019, 1, 5, tzinfo=UTC), 1)
        assert await conn.fetchval(
            "SELECT tableoid::regclass::text FROM access_log WHERE id = $1", row_id
        ) == ("access_log_default")
        await seal_committed(conn)
        assert (await verify(conn)).ok

    async def test_partitions_past_retention_are_the_expired_ones(
        self, conn: asyncpg.Connection, old_month: str
    ) -> None:
        now = datetime(2025, 3, 31, tzinfo=UTC)  # April 2022 ends 1096 days before 1 April 2025
        assert [p.name for p in await partition_service.expired(conn, now=now, retention_days=1096)] == []
        later = datetime(2025, 4, 1, tzinfo=UTC)
        assert [p.name for p in await partition_service.expired(conn, now=later, retention_days=1096)] == [
            old_month
        ]


class TestArchive:
    async def test_a_partition_is_exported_verified_from_its_archive_and_detached(
        self,
        writer: AuditWriter,
        conn: asyncpg.Connection,
        old_month: str,
        database_url: str,
        owner_database_url: str,
        key_dir: Path,
        tmp_path: Path,
    ) -> None:
        march = datetime(2022, 3, 1, 8, tzinfo=UTC)
        old = await write_at(conn, march, 4)
        for _ in range(3):
            await writer.record(make_record())
        old += await write_at(conn, march + timedelta(days=20), 2)  # sealed among this month's
        await seal_committed(conn)
        env = {"CHILDLINK_MIGRATION_DATABASE_URL": owner_database_url, "CHILDLINK_KEY_DIR": str(key_dir)}
        out = tmp_path / "archive"
        code, stdout, err = await childlink(
            database_url, "audit", "export", "--partition", old_month, "--out", str(out), env=env
        )
        assert code == 0, err
        assert f"exported {old_month}" in stdout and "6 records), verified, detached" in stdout
        assert old_month not in await attached(conn)
        assert await conn.fetchval("SELECT count(*) FROM access_log") == 3

        manifest = out / f"{old_month}.manifest.json"
        code, stdout, err = await childlink(
            database_url, "audit", "verify", "--archive", str(manifest), env=env
        )
        assert code == 0, err
        assert stdout.startswith(f"archive intact: {old_month}, 6 records, positions 1 to 9")

        report = await verify(conn)  # the live chain still verifies, across the detached month
        assert report.ok, report.summary()
        assert (report.verified, report.archived) == (9, 6)
        assert "(6 of them archived)" in report.summary()

    async def test_a_tampered_archive_fails_verification(
        self,
        conn: asyncpg.Connection,
        owner_conn: asyncpg.Connection,
        old_month: str,
        key_dir: Path,
        tmp_path: Path,
    ) -> None:
        await write_at(conn, datetime(2022, 3, 9, tzinfo=UTC), 5)
        await seal_committed(conn)
        keys = KeyRing(key_dir, create_if_empty=True)
        partition = Partition(old_month, datetime(2022, 3, 1, tzinfo=UTC), datetime(2022, 4, 1, tzinfo=UTC))
        manifest = await partition_service.export_partition(
            owner_conn, partition, tmp_path, keys=keys, issuer="https://childlink.test"
        )
        assert verify_archive(manifest, keys.jwks()).rows == 5
        data = tmp_path / f"{old_month}.jsonl.gz"
        original = gzip.decompress(data.read_bytes())

        data.write_bytes(
            gzip.compress(original.replace(b'"purpose":"child_protection"', b'"purpose":"statistics"', 1))
        )
        with pytest.raises(ArchiveError, match="does not match its row hash"):
            verify_archive(manifest, keys.jwks())

        lines = original.splitlines(keepends=True)
        data.write_bytes(gzip.compress(b"".join(lines[:-1])))  # the last record cut off
        with pytest.raises(ArchiveError, match="differs from the digest"):
            verify_archive(manifest, keys.jwks())

        data.write_bytes(gzip.compress(original))
        document = json.loads(manifest.read_text())
        document["manifest"]["rows"] = 4
        manifest.write_text(json.dumps(document))
        with pytest.raises(ArchiveError, match="differs from what was signed"):
            verify_archive(manifest, keys.jwks())

    async def test_a_partition_with_unsealed_records_is_not_exported(
        self,
        conn: asyncpg.Connection,
        owner_conn: asyncpg.Connection,
        old_month: str,
        key_dir: Path,
        tmp_path: Path,
        dsn: str,
    ) -> None:
        partition = Partition(old_month, datetime(2022, 3, 1, tzinfo=UTC), datetime(2022, 4, 1, tzinfo=UTC))
        async with horizon_held(dsn):  # the test app's own sealer may not chain the record first
            await write_at(conn, datetime(2022, 3, 9, tzinfo=UTC), 1)
            with pytest.raises(ArchiveError, match="not yet sealed"):
                await partition_service.export_partition(
                    owner_conn, partition, tmp_path, keys=KeyRing(key_dir, create_if_empty=True), issuer="x"
                )
