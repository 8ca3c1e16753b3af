"""Referrals (转介): an agency's inbox and the steps of the referral lifecycle."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Security
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.models.referral import (
    ReferralAction,
    ReferralComplete,
    ReferralDecline,
    ReferralPage,
    ReferralPublic,
    ReferralStatus,
    ReferralWithdraw,
)
from app.services import referral as referral_service

router = APIRouter(prefix="/v1/referrals", tags=["cases"], responses=responses(Unauthorized, Forbidden))

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Reading = Annotated[Reader, Security(get_reader, scopes=[Scope.children_read])]
Writing = Annotated[Reader, Security(get_reader, scopes=[Scope.cases_write])]
STEP_ERRORS = responses(BadRequest, NotFound, Conflict, Unprocessable)


@router.get(
    "", response_model=ReferralPage, summary="Referral inbox", responses=responses(BadRequest, Unprocessable)
)
async def list_referrals(
    session: Session,
    door: DoorDep,
    reader: Reading,
    direction: Annotated[
        Literal["incoming", "outgoing"], Query(description="Sent to you, or by you.")
    ] = "incoming",
    referral_status: Annotated[ReferralStatus | None, Query(alias="status")] = None,
    overdue: bool | None = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=referral_service.MAX_PAGE)] = 50,
) -> Any:
    """Your agency's referrals, newest first: `incoming` addressed to a division your client
    covers, `outgoing` sent by your agency."""
    items, next_cursor = await referral_service.inbox(
        session,
        door,
        reader,
        direction=direction,
        status=referral_status,
        overdue=overdue,
        cursor=cursor,
        limit=limit,
    )
    return ReferralPage(items=items, next_cursor=next_cursor)


@router.post(
    "/{referral_id}/accept",
    response_model=ReferralPublic,
    summary="Accept a referral (受理)",
    responses=STEP_ERRORS,
)
async def accept(session: Session, door: DoorDep, reader: Writing, referral_id: uuid.UUID) -> Any:
    """Take the referral up (receiver; from `requested`). Its completion deadline now runs.
    Repeating it answers the same. Emits `platform.referral.accepted`."""
    return await referral_service.transition(session, door, reader, referral_id, ReferralAction.accept)


@router.post(
    "/{referral_id}/decline",
    response_model=ReferralPublic,
    summary="Decline a referral",
    responses=STEP_ERRORS,
)
async def decline(
    session: Session, door: DoorDep, reader: Writing, referral_id: uuid.UUID, data: ReferralDecline
) -> Any:
    """Decline with a reason (receiver; from `requested`); the lead may refer the case again.
    Emits `platform.referral.declined`."""
    return await referral_service.transition(
        session, door, reader, referral_id, ReferralAction.decline, text=data.reason
    )


@router.post(
    "/{referral_id}/complete",
    response_model=ReferralPublic,
    summary="Complete a referral",
    responses=STEP_ERRORS,
)
async def complete(
    session: Session, door: DoorDep, reader: Writing, referral_id: uuid.UUID, data: ReferralComplete
) -> Any:
    """Report what was done (receiver; from `accepted`). Emits `platform.referral.completed`."""
    return await referral_service.transition(
        session, door, reader, referral_id, ReferralAction.complete, text=data.outcome
    )


@router.post(
    "/{referral_id}/withdraw",
    response_model=ReferralPublic,
    summary="Withdraw a referral",
    responses=STEP_ERRORS,
)
async def withdraw(
    session: Session, door: DoorDep, reader: Writing, referral_id: uuid.UUID, data: ReferralWithdraw
) -> Any:
    """Take the referral back (referrer; from `requested` or `accepted`). Emits
    `platform.referral.withdrawn`."""
    return await referral_service.transition(
        session, door, reader, referral_id, ReferralAction.withdraw, text=data.reason
    )
