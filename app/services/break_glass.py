"""Reviewing break-glass reads: each use opens a review item; a reviewer from another agency
marks it justified or not."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.principal import Principal
from app.errors import Conflict, Forbidden, NotFound
from app.models.break_glass import (
    BreakGlassReason,
    BreakGlassReview,
    BreakGlassReviewCreate,
    BreakGlassReviewPublic,
    ReviewStatus,
)
from app.models.common import utcnow
from app.services import cursor as cursor_codec


def to_public(item: BreakGlassReview) -> BreakGlassReviewPublic:
    return BreakGlassReviewPublic(
        id=item.id,
        access_log_id=item.access_log_id,
        request_id=item.request_id,
        client_id=item.client_id,
        agency=item.agency,
        child_id=item.child_id,
        action=item.action,
        reason_code=BreakGlassReason(item.reason_code),
        justification=item.justification,
        categories=list(item.categories),
        used_at=item.used_at,
        status=ReviewStatus(item.status),
        reviewer_agency=item.reviewer_agency,
        review_note=item.review_note,
        reviewed_at=item.reviewed_at,
    )


async def list_page(
    session: AsyncSession, *, status: ReviewStatus | None, agency: str | None, cursor: str | None, limit: int
) -> tuple[list[BreakGlassReviewPublic], str | None]:
    """Break-glass uses, newest first."""
    query = select(BreakGlassReview)
    if status is not None:
        query = query.where(col(BreakGlassReview.status) == status)
    if agency is not None:
        query = query.where(col(BreakGlassReview.agency) == agency)
    if cursor:
        stamp, ident = cursor_codec.decode(cursor)
        query = query.where(
            or_(
                col(BreakGlassReview.used_at) < stamp,
                and_(col(BreakGlassReview.used_at) == stamp, col(BreakGlassReview.id) < ident),
            )
        )
    query = query.order_by(col(BreakGlassReview.used_at).desc(), col(BreakGlassReview.id).desc()).limit(
        limit + 1
    )
    rows = (await session.execute(query)).scalars().all()
    page = list(rows[:limit])
    next_cursor = cursor_codec.encode(page[-1].used_at, page[-1].id) if len(rows) > limit else None
    return [to_public(r) for r in page], next_cursor


async def review(
    session: AsyncSession, principal: Principal, review_id: uuid.UUID, *, data: BreakGlassReviewCreate
) -> BreakGlassReviewPublic:
    """Record the review outcome. The reviewer must belong to another agency than the user of
    the break-glass; an item is reviewed once (409 after)."""
    item = (
        await session.execute(
            select(BreakGlassReview).where(col(BreakGlassReview.id) == review_id).with_for_update()
        )
    ).scalar_one_or_none()
    if item is None:
        raise NotFound("No break-glass use with this id.", code="break_glass_not_found")
    if item.agency == principal.agency:
        raise Forbidden(
            "A break-glass use is reviewed by another agency than the one that used it.",
            code="own_agency_review",
        )
    if item.status != ReviewStatus.pending:
        raise Conflict("This break-glass use has already been reviewed.", code="already_reviewed")
    item.status = ReviewStatus(str(data.outcome))
    item.review_note = data.note
    item.reviewer_client = principal.client_id
    item.reviewer_agency = principal.agency
    item.reviewed_at = utcnow()
    session.add(item)
    await session.flush()
    return to_public(item)
