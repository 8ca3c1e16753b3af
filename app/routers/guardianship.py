"""Guardianship (监护) and the custody check."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_database, get_session
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.models.guardianship import CustodyPublic, GuardianshipCreate, GuardianshipHistory, GuardianshipPublic
from app.routers.query import UnknownParameter, refuse_unknown_query
from app.services import guardianship as guardianship_service

router = APIRouter(
    prefix="/v1/children",
    tags=["guardianship"],
    responses=responses(Unauthorized, Forbidden, UnknownParameter),
    dependencies=[Depends(refuse_unknown_query)],
)

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


@router.get(
    "/{child_id}/custody",
    response_model=None,
    summary="Custody check: who has custody and whom to call",
    responses={
        200: {"model": CustodyPublic, "description": "The custody status and whom to call."},
        **responses(BadRequest, NotFound, Unprocessable),
    },
)
async def custody(
    request: Request,
    reader: Annotated[Reader, Security(get_reader, scopes=[Scope.custody_read])],
    child_id: uuid.UUID,
) -> Response:
    """The police question, at any hour: the child's current custody status and since when, the
    guardian to contact, the responsible organisation and its duty phone, the last assessment and
    open risk flags. Send `X-Purpose-Of-Use` (e.g. `child_protection`); the read is recorded in the
    access log before the answer leaves."""
    # Well-formed checks are answered by app.direct, with the same functions this route's
    # dependencies call; this route documents the operation and answers what that path passes
    # on. Both serve the service's JSON body as it is (no response-model round trip).
    state = request.app.state
    body = await guardianship_service.custody_body(
        get_database(request), state.door, reader, child_id, lookup=state.custody_lookup
    )
    return Response(body, media_type="application/json")


@router.post(
    "/{child_id}/guardianship",
    response_model=GuardianshipPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Record a guardianship",
    responses=responses(BadRequest, NotFound, Conflict, Unprocessable),
)
async def record_guardianship(
    session: Session,
    door: DoorDep,
    reader: Annotated[Reader, Security(get_reader, scopes=[Scope.custody_write])],
    child_id: uuid.UUID,
    data: GuardianshipCreate,
) -> Any:
    """Record a new guardianship; it supersedes the current one, whose history is kept. Civil
    affairs records any; police record emergency interventions (`emergency_intervention: true`).
    An entrusted guardianship (委托监护) needs the signed confirmation's reference and date.
    Emits `guardianship.changed`."""
    return await guardianship_service.record(session, door, reader, child_id, data=data)


@router.get(
    "/{child_id}/guardianship",
    response_model=GuardianshipHistory,
    summary="Guardianship history",
    responses=responses(BadRequest, NotFound, Unprocessable),
)
async def guardianship_history(
    session: Session,
    door: DoorDep,
    reader: Annotated[Reader, Security(get_reader, scopes=[Scope.custody_read])],
    child_id: uuid.UUID,
) -> Any:
    """Every guardianship record of the child, newest first, released as the access layer allows."""
    return await guardianship_service.history(session, door, reader, child_id)
