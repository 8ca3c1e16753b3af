"""Reading the access log for oversight (``GET /v1/audit/access-log``).

Pages run newest first on ``id``; the cursor is the last id of a page, opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, Boolean, DateTime, Text, column, literal_column, or_, select, table
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.oversight import OversightScope
from app.audit.records import Decision
from app.errors import BadRequest

# A lightweight table clause, not an ORM model: the log is written by asyncpg (app.audit.writer)
# and only read here, and keeping it off SQLModel.metadata keeps it out of ORM sessions.
access_log = table(
    "access_log",
    column("id", BigInteger),
    column("logged_at", DateTime(timezone=True)),
    column("request_id", Text),
    column("client_id", Text),
    column("agency", Text),
    column("action", Text),
    column("child_id", PgUUID(as_uuid=True)),
    column("child_ids", ARRAY(PgUUID(as_uuid=True))),
    column("query", JSONB),
    column("purpose", Text),
    column("decision", Text),
    column("reason", Text),
    column("categories_returned", ARRAY(Text)),
    column("categories_withheld", ARRAY(Text)),
    column("basis", JSONB),
    column("break_glass", Boolean),
    column("investigation_ref", Text),
)


class AccessLogEntryPublic(BaseModel):
    """One recorded read or denial. Carries ids and codes only: no names, no ID numbers."""

    id: int = Field(description="Position in the log; newer records have higher ids.", examples=[1042])
    logged_at: datetime = Field(description="When the read was decided (UTC).")
    txid: str = Field(
        description="Database transaction that wrote the record; records written together share it.",
        examples=["771"],
    )
    request_id: str | None = Field(
        description="The request's `X-Request-ID`, to match the caller's own logs.",
        examples=["2f1c7e0a9b5d4c1e"],
    )
    client_id: str | None = Field(description="API client that read.", examples=["cl_6f1d0c2a9e4b7d31"])
    agency: str | None = Field(description="Agency the client acts for.", examples=["police"])
    action: str = Field(
        description="What was read: `child.read`, `child.list`, `child.lookup`, `custody.read`, "
        "`guardianship.read`, `event.deliver`, `event.feed`.",
        examples=["custody.read"],
    )
    child_id: UUID | None = Field(description="The child read, for single-child reads.")
    child_ids: list[UUID] | None = Field(description="For lists and feeds: the children returned.")
    query: dict[str, Any] | None = Field(
        description="For lists: the filters used (never names or ID numbers).",
        examples=[{"region": "510107", "category": "left_behind", "limit": 50}],
    )
    purpose: str | None = Field(description="Stated purpose of use.", examples=["child_protection"])
    decision: Decision = Field(description="`allow`, `allow_redacted` (some categories withheld) or `deny`.")
    reason: str | None = Field(description="For denials: the reason code.", examples=["purpose_missing"])
    categories_returned: list[str] = Field(examples=[["identity", "custody"]])
    categories_withheld: list[str] = Field(examples=[["health", "law_enforcement"]])
    basis: dict[str, Any] = Field(
        description="Legal basis per category returned.",
        examples=[
            {"custody": {"ground": "statute", "ref": "police-custody", "citation": "未成年人保护法 第十一条"}}
        ],
    )
    break_glass: bool = Field(description="Read under an emergency justification; queued for review.")
    investigation_ref: str | None = Field(description="Case or investigation reference given with the read.")


class AccessLogPage(BaseModel):
    items: list[AccessLogEntryPublic]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null at the end.")


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"al:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, value = raw.partition(":")
        if prefix != "al" or not value.isdigit():
            raise ValueError
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("The cursor is not one this API returned.", code="invalid_cursor") from exc


def _utc(moment: datetime) -> datetime:
    """A time without an offset is taken as UTC, not as the database session's zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _inside(child_ids: list[UUID] | None, inside: set[UUID]) -> list[UUID] | None:
    return [c for c in child_ids if c in inside] if child_ids is not None else None


async def list_page(
    session: AsyncSession,
    scope: OversightScope,
    *,
    child_id: UUID | None = None,
    agency: str | None = None,
    client_id: str | None = None,
    decision: Decision | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: str | None = None,
    limit: int = 50,
) -> AccessLogPage:
    """Records matching every given filter, newest first. ``child_id`` also matches list reads
    that returned the child. ``since`` is inclusive, ``until`` exclusive. Only records inside
    ``scope`` are found, and a list's ``child_ids`` name only the children inside its region."""
    log = access_log.c
    query = select(*log, literal_column("txid::text").label("txid")).select_from(access_log)
    visible = scope.visible(agency=log.agency, child_id=log.child_id, child_ids=log.child_ids)
    if visible is not None:
        query = query.where(visible)
    if child_id is not None:
        query = query.where(or_(log.child_id == child_id, log.child_ids.contains([child_id])))
    if agency is not None:
        query = query.where(log.agency == agency)
    if client_id is not None:
        query = query.where(log.client_id == client_id)
    if decision is not None:
        query = query.where(log.decision == str(decision))
    if action is not None:
        query = query.where(log.action == action)
    if since is not None:
        query = query.where(log.logged_at >= _utc(since))
    if until is not None:
        query = query.where(log.logged_at < _utc(until))
    if after is not None:
        query = query.where(log.id < decode_cursor(after))
    query = query.order_by(log.id.desc()).limit(limit + 1)
    rows = (await session.execute(query)).mappings().all()
    listed = {cid for row in rows[:limit] for cid in row["child_ids"] or ()}
    inside = await scope.children_inside(session, listed)
    items = [
        AccessLogEntryPublic.model_validate(
            {
                **row,
                "child_ids": _inside(row["child_ids"], inside),
                "query": _json(row["query"]),
                "basis": _json(row["basis"]) or {},
            }
        )
        for row in rows[:limit]
    ]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return AccessLogPage(items=items, next_cursor=next_cursor)
