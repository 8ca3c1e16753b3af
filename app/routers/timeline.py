"""A child's cross-agency timeline (what a joint meeting 联席会议 reviews)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Security
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import BadRequest, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.models.timeline import TimelinePage
from app.services import timeline as timeline_service

router = APIRouter(prefix="/v1/children", tags=["children"], responses=responses(Unauthorized, Forbidden))

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Reading = Annotated[Reader, Security(get_reader, scopes=[Scope.children_read])]


@router.get(
    "/{child_id}/timeline",
    response_model=TimelinePage,
    summary="A child's timeline",
    responses=responses(BadRequest, NotFound, Unprocessable),
)
async def get_timeline(
    session: Session,
    door: DoorDep,
    reader: Reading,
    child_id: uuid.UUID,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=timeline_service.MAX_PAGE)] = 50,
) -> Any:
    """The child's registry changes, guardianship records, every agency's events and every step of
    its cases, newest first. Each entry is released as the access layer allows for your purpose
    (an entry it releases nothing of shows only its time; entries of cases you are not involved in
    are left out), and the read is recorded in the access log."""
    return await timeline_service.timeline(session, door, reader, child_id, cursor=cursor, limit=limit)
