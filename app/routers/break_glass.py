"""Review of emergency break-glass reads, and closing police investigations."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Security
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import Oversight
from app.auth.deps import require
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.models.break_glass import (
    BreakGlassPage,
    BreakGlassReviewCreate,
    BreakGlassReviewPublic,
    InvestigationPublic,
    ReviewStatus,
)
from app.services import break_glass as break_glass_service
from app.services import investigation as investigation_service

router = APIRouter(prefix="/v1", responses=responses(Unauthorized, Forbidden))

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Auditor = Annotated[Principal, Security(require, scopes=[Scope.audit_read])]


@router.get(
    "/audit/break-glass",
    response_model=BreakGlassPage,
    tags=["audit"],
    summary="Break-glass uses awaiting or after review",
    responses=responses(BadRequest, Unprocessable),
)
async def list_break_glass(
    session: Session,
    scope: Oversight,
    review_status: Annotated[
        ReviewStatus | None, Query(alias="status", description="e.g. `pending`.")
    ] = None,
    agency: Annotated[str | None, Query(max_length=64, description="Only uses by this agency.")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """Every emergency break-glass read, newest first: who, which child, the reason code and
    justification, the categories it released and the review state. Only uses on children inside
    your token's region; the platform and the policy's oversight kinds see every agency's, any
    other agency its own uses and those on the records it keeps."""
    items, next_cursor = await break_glass_service.list_page(
        session, scope, status=review_status, agency=agency, cursor=cursor, limit=limit
    )
    return BreakGlassPage(items=items, next_cursor=next_cursor)


@router.post(
    "/audit/break-glass/{review_id}/review",
    response_model=BreakGlassReviewPublic,
    tags=["audit"],
    summary="Review a break-glass use",
    responses=responses(NotFound, Conflict, Unprocessable),
)
async def review_break_glass(
    session: Session,
    principal: Auditor,
    scope: Oversight,
    review_id: uuid.UUID,
    data: BreakGlassReviewCreate,
) -> Any:
    """Mark a break-glass use `justified` or `not_justified`, with a note. The reviewer must see
    the use (the child lies inside its region: 404 otherwise) and be of another agency than the one
    that used it (403); each use is reviewed once (409)."""
    return await break_glass_service.review(
        session, scope, review_id, reviewer_client=principal.client_id, data=data
    )


@router.post(
    "/investigations/{ref}/close",
    response_model=InvestigationPublic,
    tags=["audit"],
    summary="Close an investigation",
    responses=responses(NotFound, Conflict, Unprocessable),
)
async def close_investigation(
    session: Session,
    principal: Annotated[Principal, Security(require, scopes=[Scope.children_read])],
    ref: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["WH-2026-0117"])],
) -> Any:
    """Close one of your agency's investigations (named by `X-Investigation-Ref` on its reads):
    from now on its reads appear in the guardians' access reports."""
    return await investigation_service.close(session, principal, ref)
