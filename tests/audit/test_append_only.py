"""The database itself refuses to change or remove access-log rows and chain entries: its
triggers hold even against the tables' owner (the service's role is refused before them, by its
grants: tests/test_db_roles.py)."""

from __future__ import annotations

import asyncpg
import pytest

from app.audit import AuditWriter
from tests.audit.conftest import write_sealed

STATEMENTS = [
    "UPDATE access_log SET agency = 'education'",
    "DELETE FROM access_log",
    "TRUNCATE access_log CASCADE",
    "UPDATE access_log_chain SET chain_hash = 'x'",
    "DELETE FROM access_log_chain",
    "TRUNCATE access_log_chain",
]


class TestAppendOnly:
    @pytest.mark.parametrize("statement", STATEMENTS)
    async def test_update_delete_and_truncate_are_refused(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection, statement: str
    ) -> None:
        await write_sealed(writer, conn, 3)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner_conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM access_log") == 3
        assert await conn.fetchval("SELECT count(*) FROM access_log_chain") == 3
        assert await conn.fetchval("SELECT count(*) FROM access_log WHERE agency = 'police'") == 3
