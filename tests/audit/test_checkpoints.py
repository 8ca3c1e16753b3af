"""Signed checkpoints: published, verifiable with the JWKS alone, and held against the chain so a
rewritten chain, a removed tail and a backdated row written after a checkpoint are each named.

Attacks run as the tables' owner with the triggers off (see ``test_chain.py``): only the chain
and the signatures stand in the way.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from jose import jws

from app.audit import AuditWriter
from app.audit.checkpoints import (
    CheckpointInvalid,
    read_checkpoint,
    read_checkpoints,
    take_checkpoint,
    tokens_in,
)
from app.audit.records import content_from_row, row_hash
from app.audit.sealer import GENESIS, chain_hash, seal_committed
from app.audit.verify import verify
from app.audit.writer import INSERT_SQL, encode_row
from app.auth.keys import KeyRing
from tests.audit.conftest import make_record, write_sealed
from tests.audit.test_chain import as_attacker
from tests.audit.test_cli import childlink
from tests.conftest import TokenFactory, bearer

ISSUER = "https://childlink.test"


@pytest.fixture
def keys(key_dir: Path) -> KeyRing:
    return KeyRing(key_dir, create_if_empty=True)


async def checkpoint_now(conn: asyncpg.Connection, keys: KeyRing, now: datetime | None = None):  # type: ignore[no-untyped-def]
    # The test app's own sealer runs in the background: it may hold the lock mid-round (try
    # again for a moment), or have signed this very head already, just now (then that checkpoint
    # is the one to keep; not when the caller wants one signed at another time).
    for _ in range(30):
        taken = await take_checkpoint(conn, keys, issuer=ISSUER, every_seconds=0, now=now)
        if taken is not None:
            return read_checkpoint(taken.jws, keys.jwks())
        if now is None:
            head = await conn.fetchval("SELECT max(position) FROM access_log_chain")
            stored = await conn.fetchrow(
                "SELECT position, jws FROM access_log_checkpoint ORDER BY position DESC LIMIT 1"
            )
            if stored is not None and stored["position"] == head:
                return read_checkpoint(stored["jws"], keys.jwks())
        await asyncio.sleep(0.1)
    raise AssertionError("no checkpoint could be taken")


async def rechain_from(owner_conn: asyncpg.Connection, position: int) -> None:
    """Recompute every chain hash from ``position`` on, as an attacker covering an edit would."""
    rows = await owner_conn.fetch(
        "SELECT c.position, a.row_hash FROM access_log_chain c JOIN access_log a ON a.id = c.row_id "
        "WHERE c.position >= $1 ORDER BY c.position",
        position,
    )
    previous = (
        await owner_conn.fetchval("SELECT chain_hash FROM access_log_chain WHERE position = $1", position - 1)
        or GENESIS
    )
    statements = []
    for row in rows:
        previous = chain_hash(previous, row["row_hash"])
        statements.append(
            (
                "UPDATE access_log_chain SET chain_hash = $2, row_hash = $3 WHERE position = $1",
                (row["position"], previous, row["row_hash"]),
            )
        )
    await as_attacker(owner_conn, *statements)


async def append_backdated(owner_conn: asyncpg.Connection, logged_at: datetime) -> int:
    """A forged record with a correct row hash, inserted as a fresh transaction (so the sealer
    chains it like any new one) but dated ``logged_at``."""
    _, document = encode_row(make_record(request_id="forged"), logged_at)
    (row,) = await owner_conn.fetch(INSERT_SQL, "[" + document.decode() + "]")
    return int(row["id"])


class TestPublishedCheckpoints:
    async def test_a_checkpoint_verifies_with_nothing_but_the_jwks(
        self,
        writer: AuditWriter,
        conn: asyncpg.Connection,
        keys: KeyRing,
        client: httpx.AsyncClient,
        token: TokenFactory,
    ) -> None:
        await write_sealed(writer, conn, 5)
        await take_checkpoint(conn, keys, issuer=ISSUER, every_seconds=0)  # the app's sealer may be first
        auditor = bearer(await token(agency="platform", scopes=["audit:read"]))
        response = await client.get("/v1/audit/checkpoints", headers=auditor)
        assert response.status_code == 200, response.text
        (item,) = response.json()["items"]
        assert item["position"] == 5
        jwks = (await client.get("/.well-known/jwks.json")).json()
        # An outside party's check: the JWKS, a JOSE library, no ChildLink code.
        key = next(k for k in jwks["keys"] if k["kid"] == jws.get_unverified_header(item["jws"])["kid"])
        payload = json.loads(jws.verify(item["jws"], key, algorithms=["ES256"]))
        assert (payload["position"], payload["chain_hash"]) == (5, item["chain_hash"])
        head = await conn.fetchval("SELECT chain_hash FROM access_log_chain WHERE position = 5")
        assert payload["chain_hash"] == head

    async def test_checkpoints_need_audit_read(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        police = bearer(await token(agency="police", scopes=["children:read"]))
        response = await client.get("/v1/audit/checkpoints", headers=police)
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"

    async def test_a_checkpoint_with_an_edited_payload_or_a_foreign_key_is_refused(
        self, writer: AuditWriter, conn: asyncpg.Connection, keys: KeyRing, tmp_path: Path
    ) -> None:
        await write_sealed(writer, conn, 2)
        checkpoint = await checkpoint_now(conn, keys)
        header, payload, signature = checkpoint.jws.split(".")
        forged_payload = jws.base64url_encode(  # type: ignore[attr-defined]
            jws.base64url_decode(payload.encode()).replace(b'"position":2', b'"position":9')  # type: ignore[attr-defined]
        ).decode()
        with pytest.raises(CheckpointInvalid, match="signature"):
            read_checkpoint(f"{header}.{forged_payload}.{signature}", keys.jwks())
        stranger = KeyRing(tmp_path / "other-keys", create_if_empty=True)
        with pytest.raises(CheckpointInvalid, match="JWKS does not hold"):
            read_checkpoint(checkpoint.jws, stranger.jwks())


class TestTakingCheckpoints:
    async def test_one_per_interval_and_only_when_the_chain_grew(
        self, writer: AuditWriter, conn: asyncpg.Connection, keys: KeyRing
    ) -> None:
        assert await take_checkpoint(conn, keys, issuer=ISSUER, every_seconds=300) is None  # empty chain
        await write_sealed(writer, conn, 3)
        now = datetime.now(UTC)
        first = await take_checkpoint(conn, keys, issuer=ISSUER, every_seconds=300, now=now)
        assert first is not None and first.position == 3
        await write_sealed(writer, conn, 2)
        later = now + timedelta(seconds=100)
        assert await take_checkpoint(conn, keys, issuer=ISSUER, every_seconds=300, now=later) is None
        due = now + timedelta(seconds=301)
        second = await take_checkpoint(conn, keys, issuer=ISSUER, every_seconds=300, now=due)
        assert second is not None and second.position == 5
        idle = due + timedelta(seconds=301)
        assert await take_checkpoint(conn, keys, issuer=ISSUER, every_seconds=300, now=idle) is None

    async def test_a_checkpoint_waits_for_rows_not_yet_sealed(
        self, writer: AuditWriter, conn: asyncpg.Connection, keys: KeyRing, dsn: str
    ) -> None:
        # A row held back from the chain by an open transaction must not be taken for a backdated
        # one once it is sealed after the checkpoint.
        await write_sealed(writer, conn, 2)
        slow = await asyncpg.connect(dsn)
        try:
            transaction = slow.transaction()
            await transaction.start()
            await slow.execute("SELECT pg_current_xact_id()")
            early = await writer.record(make_record())  # committed, but behind the open transaction
            await seal_committed(conn, within=0.2)
            taken = await take_checkpoint(
                conn, keys, issuer=ISSUER, every_seconds=0, now=datetime.now(UTC) + timedelta(minutes=10)
            )
            if taken is None:  # the test app's own sealer signed this head first: as good a witness
                stored = await conn.fetchval(
                    "SELECT jws FROM access_log_checkpoint ORDER BY position DESC LIMIT 1"
                )
                checkpoint = read_checkpoint(stored, keys.jwks())
            else:
                checkpoint = read_checkpoint(taken.jws, keys.jwks())
            assert checkpoint.position == 2
            await transaction.commit()
        finally:
            await slow.close()
        report = await verify(conn, checkpoints=[checkpoint])
        assert report.ok, report.summary()
        assert await conn.fetchval("SELECT position FROM access_log_chain WHERE row_id = $1", early) == 3


class TestKeptCheckpointsDetect:
    async def test_a_chain_rewritten_after_a_checkpoint(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection, keys: KeyRing
    ) -> None:
        ids = await write_sealed(writer, conn, 5)
        kept = [await checkpoint_now(conn, keys)]
        row = await conn.fetchrow("SELECT * FROM access_log WHERE id = $1", ids[2])
        assert row is not None
        cleaned = dict(content_from_row(row), purpose="statistics")
        await as_attacker(
            owner_conn,
            (
                "UPDATE access_log SET purpose = 'statistics', row_hash = $2 WHERE id = $1",
                (ids[2], row_hash(cleaned, row["logged_at"])),
            ),
        )
        await rechain_from(owner_conn, 3)
        assert (await verify(conn)).ok  # consistent, with correct hashes throughout...
        report = await verify(conn, checkpoints=kept)  # ...but not what was signed
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("rewritten", 5)
        assert "signed checkpoint" in report.problem.detail

    async def test_a_deleted_tail(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection, keys: KeyRing
    ) -> None:
        ids = await write_sealed(writer, conn, 6)
        kept = [await checkpoint_now(conn, keys)]
        await as_attacker(
            owner_conn,
            ("DELETE FROM access_log_chain WHERE row_id = ANY($1)", (ids[3:],)),
            ("DELETE FROM access_log WHERE id = ANY($1)", (ids[3:],)),
            ("DELETE FROM access_log_checkpoint", ()),  # and the database's own copy of the evidence
        )
        assert (await verify(conn)).ok
        report = await verify(conn, checkpoints=kept)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.position) == ("deleted", 4)
        assert "position 6" in report.problem.detail

    async def test_a_forged_row_written_after_a_checkpoint_and_backdated(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection, keys: KeyRing
    ) -> None:
        await write_sealed(writer, conn, 3)
        kept = [await checkpoint_now(conn, keys)]
        await write_sealed(writer, conn, 2)  # genuine reads after the checkpoint are fine
        assert (await verify(conn, checkpoints=kept)).ok
        forged = await append_backdated(owner_conn, kept[0].signed_at - timedelta(hours=2))
        await seal_committed(conn)
        assert (await verify(conn)).ok  # the chain took it like any new row
        report = await verify(conn, checkpoints=kept)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.row_id, report.problem.position) == ("forged", forged, 6)
        assert "backdated" in report.summary()

    async def test_verify_since_a_checkpoint_checks_only_what_follows(
        self, writer: AuditWriter, conn: asyncpg.Connection, owner_conn: asyncpg.Connection, keys: KeyRing
    ) -> None:
        ids = await write_sealed(writer, conn, 4)
        checkpoint = await checkpoint_now(conn, keys)
        await write_sealed(writer, conn, 3)
        report = await verify(conn, since=checkpoint)
        assert report.ok, report.summary()
        assert (report.verified, report.head_position) == (3, 7)
        await as_attacker(
            owner_conn, ("UPDATE access_log_chain SET chain_hash = $1 WHERE position = 4", ("0" * 64,))
        )
        report = await verify(conn, since=checkpoint)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.row_id) == ("rewritten", ids[3])


class TestCommand:
    async def test_verify_with_a_kept_page_of_checkpoints(
        self,
        writer: AuditWriter,
        conn: asyncpg.Connection,
        owner_conn: asyncpg.Connection,
        keys: KeyRing,
        database_url: str,
        key_dir: Path,
        tmp_path: Path,
    ) -> None:
        ids = await write_sealed(writer, conn, 4)
        checkpoint = await checkpoint_now(conn, keys)
        kept = tmp_path / "kept.json"
        kept.write_text(json.dumps({"items": [{"position": checkpoint.position, "jws": checkpoint.jws}]}))
        jwks = tmp_path / "jwks.json"
        jwks.write_text(json.dumps(keys.jwks()))
        env = {"CHILDLINK_KEY_DIR": str(key_dir)}
        args = ("audit", "verify", "--checkpoints", str(kept), "--jwks", str(jwks))
        code, out, err = await childlink(database_url, *args, env=env)
        assert code == 0, err
        assert "intact: 4 records verified" in out
        assert "1 kept signed checkpoints" in err
        await as_attacker(
            owner_conn,
            ("DELETE FROM access_log_chain WHERE row_id = $1", (ids[3],)),
            ("DELETE FROM access_log WHERE id = $1", (ids[3],)),
        )
        code, out, err = await childlink(database_url, *args, env=env)
        assert code == 1
        assert "deleted (chain position 4)" in err
        kept.write_text(json.dumps([checkpoint.jws[:-4] + "AAAA"]))
        code, _, err = await childlink(database_url, *args, env=env)
        assert code == 2
        assert "signature" in err

    def test_a_kept_list_is_a_page_or_a_list(self) -> None:
        assert tokens_in({"items": [{"jws": "a.b.c"}]}) == ["a.b.c"]
        assert tokens_in(["a.b.c", {"jws": "d.e.f"}]) == ["a.b.c", "d.e.f"]
        with pytest.raises(CheckpointInvalid):
            tokens_in({"checkpoints": []})
        assert read_checkpoints([], {"keys": []}) == []
