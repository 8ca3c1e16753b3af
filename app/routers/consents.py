"""Guardian consents: the second ground for a cross-agency read."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.models.consent import ConsentCreate, ConsentPage, ConsentPublic, ConsentRevoke
from app.routers.query import UnknownParameter, refuse_unknown_query
from app.services import consent as consent_service

router = APIRouter(
    prefix="/v1",
    tags=["consents"],
    responses=responses(Unauthorized, Forbidden, UnknownParameter),
    dependencies=[Depends(refuse_unknown_query)],
)

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Writing = Annotated[Reader, Security(get_reader, scopes=[Scope.consents_write])]
Reading = Annotated[Reader, Security(get_reader, scopes=[Scope.consents_read])]


@router.post(
    "/children/{child_id}/consents",
    response_model=ConsentPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Record a guardian consent",
    responses=responses(BadRequest, NotFound, Conflict, Unprocessable),
)
async def record_consent(
    session: Session, door: DoorDep, reader: Writing, child_id: uuid.UUID, data: ConsentCreate
) -> Any:
    """Record what the guardian signed: which agency (or any) may read which data categories for
    which purposes, and for how long. Under 14 only the guardian consents; from 14 the child may
    too (PIPL art. 31). From `valid_from` until `valid_until` or revocation, the access layer
    releases the named categories to the named agency when no statute does.

    Example: the guardian lets the women's federation see the child's health data for child
    protection, so a caring mother (爱心妈妈) knows of a serious illness:
    `{"given_by_role": "guardian", "given_by_name": "卓玛", "receiving_agency": "womens-federation",
    "categories": ["health"], "purposes": ["child_protection"], ...}`.
    """
    return await consent_service.record(session, door, reader, child_id, data=data)


@router.get(
    "/children/{child_id}/consents",
    response_model=ConsentPage,
    summary="List a child's consents",
    responses=responses(BadRequest, NotFound, Unprocessable),
)
async def list_consents(
    session: Session,
    door: DoorDep,
    reader: Reading,
    child_id: uuid.UUID,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """Every consent on record for the child, newest first, with `active` telling whether it
    grants anything now, a page at a time like every list. Another agency reads this through the
    access layer (it names the guardian: contact data)."""
    items, next_cursor = await consent_service.list_for_child(
        session, door, reader, child_id, cursor=cursor, limit=limit
    )
    return ConsentPage(items=items, next_cursor=next_cursor)


@router.post(
    "/consents/{consent_id}/revoke",
    response_model=ConsentPublic,
    summary="Revoke a consent",
    responses=responses(NotFound, Conflict, Unprocessable),
)
async def revoke_consent(
    session: Session, door: DoorDep, reader: Writing, consent_id: uuid.UUID, data: ConsentRevoke
) -> Any:
    """Revoke a consent, with the reason. It grants nothing from the very next read on;
    revoking twice is a 409."""
    return await consent_service.revoke(session, door, reader, consent_id, data=data)
