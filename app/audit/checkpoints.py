"""Signed checkpoints: the chain head, signed by the platform at a fixed interval, as evidence an
outside party can check (X-Road's signed log heads are the model).

A checkpoint is a compact JWS (ES256, the platform's token-signing key, ``kid`` in the header,
``typ`` :data:`CHECKPOINT_TYPE`) over::

    {"iss": "<CHILDLINK_ISSUER>", "position": 1234, "chain_hash": "<64 hex>",
     "signed_at": "2026-12-01T08:00:00.000000Z", "complete_before": "2026-12-01T07:59:00.000000Z",
     "iat": 1796112000}

``position`` and ``chain_hash`` are an entry of ``access_log_chain``, so the checkpoint proves the
whole chain up to that position (each chain hash covers every one before it). ``complete_before``
says every record logged before that time had been sealed at or below ``position``: a record
sealed after the checkpoint that claims an earlier time was written afterwards (a forged,
backdated row). It is the oldest record still waiting for the sealer when the checkpoint was
signed, or :data:`COMPLETENESS_MARGIN` before the signing time, whichever is earlier; the margin
covers a write still in flight (the writer gives up on a batch after 5 s) and clock skew between
hosts.

Anyone holding the platform's JWKS (``/.well-known/jwks.json``) verifies a checkpoint with
:func:`read_checkpoint`; nothing else of the platform is needed. Keys rotate and old ones leave
the JWKS (``app/auth/keys.py``), so an agency keeping checkpoints keeps the JWKS it fetched with
them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from jose import jws
from jose.exceptions import JOSEError
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.records import format_logged_at
from app.audit.sealer import SEAL_LOCK_KEY
from app.auth.keys import ALGORITHM, KeyRing

CHECKPOINT_TYPE = "childlink-checkpoint+jws"
COMPLETENESS_MARGIN = timedelta(seconds=60)


class CheckpointInvalid(ValueError):
    """A checkpoint whose signature, key or content does not check out."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint whose signature has been verified (or that this process just signed)."""

    position: int
    chain_hash: str
    signed_at: datetime
    complete_before: datetime
    kid: str
    jws: str


class CheckpointPublic(BaseModel):
    position: int = Field(description="The chain position signed.", examples=[120_000])
    chain_hash: str = Field(
        description="The chain hash at that position (sha256, hex).",
        examples=["9f2c4be1d0a7e35c8b6f1a2d3e4c5b6a79808172635445362718293a4b5c6d7e"],
    )
    signed_at: datetime = Field(
        description="When the platform signed it (UTC).", examples=["2026-12-01T08:05:00Z"]
    )
    complete_before: datetime = Field(
        description="Every record logged before this time is sealed at or below `position`.",
        examples=["2026-12-01T08:04:00Z"],
    )
    kid: str = Field(
        description="The signing key, as published at `/.well-known/jwks.json`.",
        examples=["k-20261201080000-1a2b3c4d"],
    )
    jws: str = Field(
        description="The evidence: a compact JWS (ES256) over the fields above. Keep it, with the JWKS.",
        examples=[
            "eyJhbGciOiJFUzI1NiIsImtpZCI6ImstMjAyNjEyMDEwODAwMDAtMWEyYjNjNGQifQ.eyJwb3NpdGlvbiI6MTIwMDAwfQ.c2ln"
        ],
    )


class CheckpointPage(BaseModel):
    items: list[CheckpointPublic] = Field(description="Oldest first.")
    next_after: int | None = Field(
        description="Pass as `after` for the next (newer) page; null on the last page."
    )


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str) or not value.endswith("Z"):
        raise CheckpointInvalid("a checkpoint time must be UTC text ending in Z")
    try:
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError:
        raise CheckpointInvalid("a checkpoint time is not ISO 8601") from None


def sign_checkpoint(
    keys: KeyRing,
    *,
    issuer: str,
    position: int,
    chain_hash: str,
    signed_at: datetime,
    complete_before: datetime,
) -> Checkpoint:
    key = keys.current
    payload = {
        "iss": issuer,
        "position": position,
        "chain_hash": chain_hash,
        "signed_at": format_logged_at(signed_at),
        "complete_before": format_logged_at(complete_before),
        "iat": int(signed_at.timestamp()),
    }
    token = jws.sign(
        orjson.dumps(payload, option=orjson.OPT_SORT_KEYS),
        key.private_pem.decode("ascii"),
        headers={"kid": key.kid, "typ": CHECKPOINT_TYPE},
        algorithm=ALGORITHM,
    )
    return Checkpoint(position, chain_hash, signed_at, complete_before, key.kid, token)


def read_checkpoint(token: str, jwks: Mapping[str, Any]) -> Checkpoint:
    """Verify ``token`` against a JWKS (``{"keys": [...]}``) and return what it signs.

    Raises :class:`CheckpointInvalid` for a bad signature, an unknown key, another algorithm or
    type, or a payload that is not a checkpoint."""
    try:
        header = jws.get_unverified_header(token)
    except JOSEError:
        raise CheckpointInvalid("not a compact JWS") from None
    if header.get("alg") != ALGORITHM or header.get("typ") != CHECKPOINT_TYPE:
        raise CheckpointInvalid(f"not a checkpoint (alg {ALGORITHM}, typ {CHECKPOINT_TYPE} expected)")
    kid = header.get("kid")
    key = next((k for k in jwks.get("keys", ()) if isinstance(k, Mapping) and k.get("kid") == kid), None)
    if key is None:
        raise CheckpointInvalid(f"signed by key {kid!r}, which the JWKS does not hold")
    try:
        payload = orjson.loads(jws.verify(token, dict(key), algorithms=[ALGORITHM]))
    except (JOSEError, orjson.JSONDecodeError):
        raise CheckpointInvalid(f"the signature does not verify with key {kid!r}") from None
    position, chain_hash = payload.get("position"), payload.get("chain_hash")
    if not isinstance(position, int) or position < 1:
        raise CheckpointInvalid("a checkpoint's position must be a positive integer")
    if not isinstance(chain_hash, str) or len(chain_hash) != 64:
        raise CheckpointInvalid("a checkpoint's chain_hash must be 64 hex digits")
    return Checkpoint(
        position,
        chain_hash,
        _parse_time(payload.get("signed_at")),
        _parse_time(payload.get("complete_before")),
        str(kid),
        token,
    )


def tokens_in(document: Any) -> list[str]:
    """The JWS strings of a kept checkpoint list: a page of ``GET /v1/audit/checkpoints``
    (``{"items": [...]}``), a list of such items or of JWS strings. Only the ``jws`` of an item
    counts; its other fields are a convenience and are not trusted."""
    items = document.get("items") if isinstance(document, Mapping) else document
    if not isinstance(items, list):
        raise CheckpointInvalid("a checkpoint list is a JSON list or a page with `items`")
    found = []
    for item in items:
        token = item.get("jws") if isinstance(item, Mapping) else item
        if not isinstance(token, str):
            raise CheckpointInvalid("each kept checkpoint must be a JWS string or an object with `jws`")
        found.append(token)
    return found


def read_checkpoints(tokens: Iterable[str], jwks: Mapping[str, Any]) -> list[Checkpoint]:
    """Every token verified, ordered by position; the first invalid one raises."""
    return sorted((read_checkpoint(token, jwks) for token in tokens), key=lambda c: c.position)


_LAST = "SELECT position, signed_at FROM access_log_checkpoint ORDER BY position DESC LIMIT 1"
_HEAD = """
SELECT position, chain_hash, watermark::text AS watermark
FROM access_log_chain ORDER BY position DESC LIMIT 1
"""
_OLDEST_WAITING = """
SELECT min(a.logged_at) FROM access_log AS a
WHERE a.txid >= $1::text::xid8
  AND NOT EXISTS (SELECT 1 FROM access_log_chain AS c WHERE c.row_id = a.id)
"""
_INSERT = """
INSERT INTO access_log_checkpoint (position, chain_hash, signed_at, complete_before, kid, jws)
VALUES ($1, $2, $3, $4, $5, $6)
"""


async def take_checkpoint(
    conn: asyncpg.Connection,
    keys: KeyRing,
    *,
    issuer: str,
    every_seconds: float,
    now: datetime | None = None,
) -> Checkpoint | None:
    """Sign the chain head if the last checkpoint is ``every_seconds`` old (or there is none) and
    the chain has grown since; returns the new checkpoint, or None.

    Runs under the sealer's advisory lock, so the head cannot move while it is read and several
    instances never sign twice: one takes the lock, the others skip the round."""
    now = now or datetime.now(UTC)
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEAL_LOCK_KEY):
            return None
        last = await conn.fetchrow(_LAST)
        if last is not None and (now - last["signed_at"]).total_seconds() < every_seconds:
            return None
        head = await conn.fetchrow(_HEAD)
        if head is None or (last is not None and head["position"] <= last["position"]):
            return None  # nothing sealed since the last one: it still stands
        complete_before = now - COMPLETENESS_MARGIN
        oldest_waiting = await conn.fetchval(_OLDEST_WAITING, head["watermark"])
        if oldest_waiting is not None and oldest_waiting < complete_before:
            complete_before = oldest_waiting
        checkpoint = sign_checkpoint(
            keys,
            issuer=issuer,
            position=head["position"],
            chain_hash=head["chain_hash"],
            signed_at=now,
            complete_before=complete_before,
        )
        await conn.execute(
            _INSERT,
            checkpoint.position,
            checkpoint.chain_hash,
            checkpoint.signed_at,
            checkpoint.complete_before,
            checkpoint.kid,
            checkpoint.jws,
        )
    return checkpoint


async def stored_tokens(conn: asyncpg.Connection) -> list[str]:
    """Every checkpoint the database keeps, oldest first (to be verified before use)."""
    return [r["jws"] for r in await conn.fetch("SELECT jws FROM access_log_checkpoint ORDER BY position")]


async def list_page(session: AsyncSession, *, after: int | None, limit: int) -> CheckpointPage:
    """Checkpoints oldest first, from just after position ``after``."""
    rows = (
        await session.execute(
            text(
                "SELECT position, chain_hash, signed_at, complete_before, kid, jws "
                "FROM access_log_checkpoint WHERE position > :after ORDER BY position LIMIT :limit"
            ),
            {"after": after or 0, "limit": limit + 1},
        )
    ).mappings()
    items = [dict(row) for row in rows]
    more = len(items) > limit
    page = [CheckpointPublic(**item) for item in items[:limit]]
    return CheckpointPage(items=page, next_after=page[-1].position if more and page else None)
