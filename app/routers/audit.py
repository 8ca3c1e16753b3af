"""Oversight of access: the log of every cross-agency read and denial (``audit:read``)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import Oversight
from app.audit import Decision
from app.audit import access_log as access_log_service
from app.audit.access_log import AccessLogPage
from app.db import get_session
from app.errors import BadRequest, Forbidden, Unauthorized, Unprocessable, responses
from app.models.common import IsoDateTime

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=responses(Unauthorized))

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


@router.get(
    "/access-log",
    response_model=AccessLogPage,
    summary="Search the access log",
    responses=responses(BadRequest, Forbidden, Unprocessable),
)
async def list_access_log(
    session: Session,
    scope: Oversight,
    child_id: Annotated[
        UUID | None, Query(description="Reads of this child, including lists that returned it.")
    ] = None,
    agency: Annotated[str | None, Query(max_length=64, description="Reads by this agency.")] = None,
    client_id: Annotated[str | None, Query(max_length=64, description="Reads by this API client.")] = None,
    decision: Annotated[Decision | None, Query(description="Only this decision, e.g. `deny`.")] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="Only this action, e.g. `custody.read`.")
    ] = None,
    since: Annotated[
        IsoDateTime | None, Query(description="Logged at or after this time (ISO 8601; UTC if no offset).")
    ] = None,
    until: Annotated[IsoDateTime | None, Query(description="Logged before this time.")] = None,
    after: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
) -> Any:
    """Every cross-agency read and every denial, newest first: who read which child, when, for
    what purpose, on what legal basis, and what was withheld. Filters combine; follow
    `next_cursor` for older records. Personal data never appears here, only child ids.

    Only children registered inside your token's region are covered. The platform and the
    oversight agency kinds of the access policy see every agency's reads; any other agency sees
    its own reads and the reads of the records it keeps."""
    return await access_log_service.list_page(
        session,
        scope,
        child_id=child_id,
        agency=agency,
        client_id=client_id,
        decision=decision,
        action=action,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )
