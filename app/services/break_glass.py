"""Reviewing break-glass reads: each use opens a review item; a reviewer from another agency
marks it justified or not."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.audit.oversight import OversightScope
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


def _visible(scope: OversightScope) -> ColumnElement[bool] | None:
    return scope.visible(agency=col(BreakGlassReview.agency), child_id=col(BreakGlassReview.child_id))


async def list_page(
    session: AsyncSession,
    scope: OversightScope,
    *,
    status: ReviewStatus | None,
    agency: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[BreakGlassReviewPublic], str | None]:
    """Break-glass uses of children inside ``scope``, newest first."""
    query = select(BreakGlassReview)
    visible = _visible(scope)
    if visible is not None:
        query = query.where(visible)
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
    session: AsyncSession,
    scope: OversightScope,
    review_id: uuid.UUID,
    *,
    reviewer_client: str,
    data: BreakGlassReviewCreate,
) -> BreakGlassReviewPublic:
    """Record the review outcome. The reviewer sees the use (``scope``: the child lies inside its
    region; 404 otherwise, as for an absent id) and belongs to another agency than its user (403);
    an item is reviewed once (409 after)."""
    query = select(BreakGlassReview).where(col(BreakGlassReview.id) == review_id)
    visible = _visible(scope)
    if visible is not None:
        query = query.where(visible)
    item = (await session.execute(query.with_for_update(of=BreakGlassReview))).scalar_one_or_none()
    if item is None:
        raise NotFound("No break-glass use with this id.", code="break_glass_not_found")
    if item.agency == scope.agency:
        raise Forbidden(
            "A break-glass use is reviewed by another agency than the one that used it.",
            code="own_agency_review",
        )
    if item.status != ReviewStatus.pending:
        raise Conflict("This break-glass use has already been reviewed.", code="already_reviewed")
    item.status = ReviewStatus(str(data.outcome))
    item.review_note = data.note
    item.reviewer_client = reviewer_client
    item.reviewer_agency = scope.agency
    item.reviewed_at = utcnow()
    session.add(item)
    await session.flush()
    return to_public(item)
