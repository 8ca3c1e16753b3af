"""``childlink audit verify`` and ``audit seal`` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from app.audit import AuditWriter
from tests.audit.conftest import make_record, write_sealed


async def childlink(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


class TestAuditCommands:
    async def test_verify_exits_0_with_a_summary_when_intact(
        self, writer: AuditWriter, database_url: str
    ) -> None:
        for _ in range(3):
            await writer.record(make_record())
        code, out, _ = await childlink(database_url, "audit", "seal")
        assert code == 0
        assert "sealed" in out
        code, out, err = await childlink(database_url, "audit", "verify")
        assert code == 0, err
        assert out.startswith("access log intact: 3 records verified, 0 not yet sealed; chain head 3:")
        assert len(out.strip().splitlines()) == 1

    async def test_verify_exits_1_naming_an_edited_row(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection, database_url: str
    ) -> None:
        ids = await write_sealed(writer, conn, 4)
        async with owner_conn.transaction():
            await owner_conn.execute("SET LOCAL session_replication_role = replica")
            await owner_conn.execute("UPDATE access_log SET purpose = 'statistics' WHERE id = $1", ids[2])
        code, out, err = await childlink(database_url, "audit", "verify")
        assert code == 1
        assert f"edited (row {ids[2]}, chain position 3)" in err
        assert out == ""

    async def test_verify_with_an_anchor_from_a_longer_chain_fails(
        self, writer: AuditWriter, conn: asyncpg.Connection, database_url: str
    ) -> None:
        await write_sealed(writer, conn, 2)
        code, _, err = await childlink(database_url, "audit", "verify", "--anchor", "9:" + "0" * 64)
        assert code == 1
        assert "deleted" in err
        code, _, err = await childlink(database_url, "audit", "verify", "--anchor", "nonsense")
        assert code == 2

    async def test_verify_says_a_forged_row_with_a_correct_hash_needs_an_anchor(
        self, writer: AuditWriter, conn: asyncpg.Connection, database_url: str
    ) -> None:
        await write_sealed(writer, conn, 2)
        code, out, err = await childlink(database_url, "audit", "verify")
        assert code == 0, err
        assert "consistent, not authentic" in err
        assert "forged row with a correct hash" in err
        assert "--anchor POSITION:HASH" in err
        head = out.strip().rsplit("chain head ", 1)[1]
        code, out, err = await childlink(database_url, "audit", "verify", "--anchor", head)
        assert code == 0, err
        assert f"anchored at position {head.split(':')[0]}" in err
        assert "rows after it are only as trustworthy as the database" in err
        code, help_text, _ = await childlink(database_url, "audit", "verify", "--help")
        assert "forged row appended with a correct hash" in " ".join(help_text.split())
