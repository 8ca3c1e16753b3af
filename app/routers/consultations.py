"""Joint consultations (会商) on a case and the actions they assign."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.models.consultation import ActionComplete, ActionPublic, ConsultationCreate, ConsultationPublic
from app.services import consultation as consultation_service

router = APIRouter(prefix="/v1", tags=["cases"], responses=responses(Unauthorized, Forbidden))

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Writing = Annotated[Reader, Security(get_reader, scopes=[Scope.cases_write])]


@router.post(
    "/cases/{case_id}/consultations",
    response_model=ConsultationPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Record a joint consultation (会商)",
    responses=responses(BadRequest, NotFound, Conflict, Unprocessable),
)
async def record_consultation(
    session: Session, door: DoorDep, reader: Writing, case_id: uuid.UUID, data: ConsultationCreate
) -> Any:
    """Record when the agencies met on the case, who took part, what was discussed, and each
    decision as an action assigned to an agency with a due date (lead only; open cases). Emits
    `platform.action.assigned` for each action."""
    return await consultation_service.record(session, door, reader, case_id, data=data)


@router.post(
    "/actions/{action_id}/complete",
    response_model=ActionPublic,
    summary="Complete an action",
    responses=responses(BadRequest, NotFound, Conflict, Unprocessable),
)
async def complete_action(
    session: Session, door: DoorDep, reader: Writing, action_id: uuid.UUID, data: ActionComplete
) -> Any:
    """Report an action assigned to your agency as done, with what was done; repeating it with the
    same outcome answers the same. Emits `platform.action.completed`."""
    return await consultation_service.complete(session, door, reader, action_id, outcome=data.outcome)
