"""Cases (协同处置): an agency's coordinated handling of one child's situation."""

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
from app.models.case import CaseClose, CaseCreate, CaseKind, CasePage, CasePublic, CaseStatus
from app.models.referral import ReferralCreate, ReferralPublic
from app.services import case as case_service
from app.services import referral as referral_service

router = APIRouter(prefix="/v1/cases", tags=["cases"], responses=responses(Unauthorized, Forbidden))

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Reading = Annotated[Reader, Security(get_reader, scopes=[Scope.children_read])]
Writing = Annotated[Reader, Security(get_reader, scopes=[Scope.cases_write])]
AGENCY = r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$"


@router.post(
    "",
    response_model=CasePublic,
    status_code=status.HTTP_201_CREATED,
    summary="Open a case",
    responses=responses(BadRequest, NotFound, Unprocessable),
)
async def open_case(session: Session, door: DoorDep, reader: Writing, data: CaseCreate) -> Any:
    """Open a case about a child in your region; your agency leads it. Keep names and ID numbers
    out of `summary`. Emits `platform.case.opened`."""
    return await case_service.open_case(session, door, reader, data=data)


@router.get("", response_model=CasePage, summary="List cases", responses=responses(BadRequest, Unprocessable))
async def list_cases(
    session: Session,
    door: DoorDep,
    reader: Reading,
    case_status: Annotated[CaseStatus | None, Query(alias="status")] = None,
    kind: CaseKind | None = None,
    lead_agency: Annotated[str | None, Query(pattern=AGENCY, description="Led by this agency.")] = None,
    involved_agency: Annotated[
        str | None, Query(pattern=AGENCY, description="Led by this agency or referred to it.")
    ] = None,
    child_id: uuid.UUID | None = None,
    region: Annotated[str | None, Query(pattern=r"^\d{2,12}$", description="Division-code prefix.")] = None,
    overdue: Annotated[
        bool | None, Query(description="Only cases with (or without) an overdue referral.")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=case_service.MAX_PAGE)] = 50,
) -> Any:
    """Cases your agency leads or has a referral on, in your region, newest first, each released
    by the access layer for your purpose (`child_protection`) and recorded in the access log."""
    items, next_cursor = await case_service.list_cases(
        session,
        door,
        reader,
        status=case_status,
        kind=kind,
        lead_agency=lead_agency,
        involved_agency=involved_agency,
        child_id=child_id,
        region=region,
        overdue=overdue,
        cursor=cursor,
        limit=limit,
    )
    return CasePage(items=items, next_cursor=next_cursor)


@router.get(
    "/{case_id}",
    response_model=CasePublic,
    summary="Get a case",
    responses=responses(BadRequest, NotFound, Unprocessable),
)
async def get_case(session: Session, door: DoorDep, reader: Reading, case_id: uuid.UUID) -> Any:
    """A case with its referrals and linked events. Only the lead and agencies with a referral on
    it see it (404 for everyone else); a referral's receiver reads it on the ground `referral`
    while the referral is open."""
    return await case_service.get(session, door, reader, case_id)


@router.post(
    "/{case_id}/close",
    response_model=CasePublic,
    summary="Close a case",
    responses=responses(BadRequest, NotFound, Conflict, Unprocessable),
)
async def close_case(
    session: Session, door: DoorDep, reader: Writing, case_id: uuid.UUID, data: CaseClose
) -> Any:
    """Close a case with its outcome (lead only). While referrals are open it is a 409 unless you
    give a `reason`, which withdraws them. Emits `platform.case.closed`."""
    return await case_service.close(session, door, reader, case_id, data=data)


@router.post(
    "/{case_id}/referrals",
    response_model=ReferralPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Refer a case (转介)",
    responses=responses(BadRequest, NotFound, Conflict, Unprocessable),
)
async def refer_case(
    session: Session, door: DoorDep, reader: Writing, case_id: uuid.UUID, data: ReferralCreate
) -> Any:
    """Ask another agency to act on the case by `respond_by` and `complete_by` (each within the
    policy's bounds), optionally narrowed to a division containing the child (`to_region`). The
    named data categories, and the case's own, are released to the receiver for this case while
    the referral is open. Emits `platform.referral.requested`."""
    return await referral_service.create(session, door, reader, case_id, data=data)
