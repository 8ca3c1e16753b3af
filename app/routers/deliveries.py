"""Operating a subscription's deliveries: retry or skip one, the dead letters and their redrive."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import require
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.models.subscription import DeliveryPage, DeliveryPublic, RedriveAccepted
from app.services import delivery as delivery_service

router = APIRouter(
    prefix="/v1/subscriptions", tags=["subscriptions"], responses=responses(Unauthorized, Forbidden)
)

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Manager = Annotated[Principal, Security(require, scopes=[Scope.subscriptions_manage])]
BIGINT_MAX = 2**63 - 1
DeliveryId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The delivery's `id`.")]


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/retry",
    response_model=DeliveryPublic,
    summary="Retry a delivery now",
    responses=responses(NotFound, Conflict, Unprocessable),
)
async def retry_delivery(
    session: Session, principal: Manager, subscription_id: uuid.UUID, delivery_id: DeliveryId
) -> Any:
    """Send a pending, dead-lettered, skipped or `gone` delivery again now, with the same
    `webhook-id` and a fresh retry schedule (409 `delivery_in_flight` while it is being sent).
    If the subscription was backing off because its endpoint failed, the back-off ends too: one
    delivery goes at once as a probe, and once one succeeds the subscription has its full share
    again (deliveries already retried during the outage keep their own next try). On a disabled
    subscription it waits for re-enabling."""
    return await delivery_service.retry(session, principal, subscription_id, delivery_id)


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/skip",
    response_model=DeliveryPublic,
    summary="Skip a delivery",
    responses=responses(NotFound, Conflict, Unprocessable),
)
async def skip_delivery(
    session: Session, principal: Manager, subscription_id: uuid.UUID, delivery_id: DeliveryId
) -> Any:
    """Dead-letter a pending (or dead, or `gone`) delivery as `skipped`: it is not sent again unless
    redriven, and the child's next event goes ahead. Use it for an event your endpoint will never
    accept."""
    return await delivery_service.skip(session, principal, subscription_id, delivery_id)


@router.get(
    "/{subscription_id}/dead-letters",
    response_model=DeliveryPage,
    summary="List dead letters",
    responses=responses(NotFound, Unprocessable),
)
async def list_dead_letters(
    session: Session,
    principal: Manager,
    subscription_id: uuid.UUID,
    before: Annotated[
        int | None, Query(ge=1, le=BIGINT_MAX, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """Deliveries that will not be sent again by themselves, newest first with every attempt: `dead`
    (the retry schedule ran out, or your endpoint answered `webhook-delivery: abort-message`) and
    `skipped`."""
    return await delivery_service.dead_letters(
        session, principal, subscription_id, before=before, limit=limit
    )


@router.post(
    "/{subscription_id}/dead-letters/redrive",
    response_model=RedriveAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Redrive dead letters",
    responses=responses(NotFound, Unprocessable),
)
async def redrive_dead_letters(session: Session, principal: Manager, subscription_id: uuid.UUID) -> Any:
    """Queue every dead letter of the subscription again (same `webhook-id`s, a fresh retry
    schedule), in event order per child; each is decided by the access layer again when sent.
    Like a retry, it ends the subscription's back-off (when it queues anything)."""
    return await delivery_service.redrive(session, principal, subscription_id)
