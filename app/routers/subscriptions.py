"""Event subscriptions: webhooks and pull, their deliveries, replay and the test ping."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import require
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.events.lifecycle import get_secret_box, get_sender
from app.events.sender import WebhookSender
from app.events.vault import SecretBox
from app.models.common import BIGINT_MAX
from app.models.subscription import (
    DeliveryPage,
    DeliveryStatus,
    PingResult,
    ReplayAccepted,
    ReplayRequest,
    SecretRotated,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionPublic,
    SubscriptionUpdate,
)
from app.services import subscription as subscription_service

router = APIRouter(
    prefix="/v1/subscriptions", tags=["subscriptions"], responses=responses(Unauthorized, Forbidden)
)

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Manager = Annotated[Principal, Security(require, scopes=[Scope.subscriptions_manage])]
Sender = Annotated[WebhookSender, Depends(get_sender)]
Box = Annotated[SecretBox, Depends(get_secret_box)]


@router.post(
    "",
    response_model=SubscriptionCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create a subscription",
    responses=responses(Unprocessable),
)
async def create_subscription(
    session: Session,
    principal: Manager,
    sender: Sender,
    box: Box,
    data: SubscriptionCreate,
    response: Response,
) -> Any:
    """Subscribe your agency to event types (wildcards allowed), optionally narrowed to a region
    inside yours and to data categories, for a stated purpose of use. `webhook` mode POSTs each
    event to your URL signed per Standard Webhooks with the `whsec_` secret returned here once;
    `pull` mode is read at `GET /v1/events/feed`. Delivery starts with events published from now
    on (or after `from_sequence`)."""
    created = await subscription_service.create(session, principal, sender, box, data=data)
    response.headers["Location"] = f"/v1/subscriptions/{created.id}"
    return created


@router.get("", response_model=SubscriptionList, summary="List subscriptions")
async def list_subscriptions(session: Session, principal: Manager) -> Any:
    """Your agency's subscriptions."""
    return SubscriptionList(items=await subscription_service.list_for(session, principal))


@router.get(
    "/{subscription_id}",
    response_model=SubscriptionPublic,
    summary="Get a subscription",
    responses=responses(NotFound, Unprocessable),
)
async def get_subscription(session: Session, principal: Manager, subscription_id: uuid.UUID) -> Any:
    """One of your agency's subscriptions; another agency's is a 404."""
    return subscription_service.to_public(
        await subscription_service.load(session, principal, subscription_id)
    )


@router.patch(
    "/{subscription_id}",
    response_model=SubscriptionPublic,
    summary="Update a subscription",
    responses=responses(NotFound, Unprocessable),
)
async def update_subscription(
    session: Session, principal: Manager, sender: Sender, subscription_id: uuid.UUID, data: SubscriptionUpdate
) -> Any:
    """Change filters, purpose, URL (checked again) or status: `paused` stops delivery while events
    keep queueing; `active` resumes. Re-enabling a subscription the platform disabled needs
    `active` with `resume`: `where_stopped` sends what queued meanwhile and what its endpoint
    answered 410, `now` skips them (a disabled subscription cannot be set `paused`)."""
    return await subscription_service.update(session, principal, sender, subscription_id, data=data)


@router.delete(
    "/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a subscription",
    responses=responses(NotFound, Unprocessable),
)
async def delete_subscription(session: Session, principal: Manager, subscription_id: uuid.UUID) -> Response:
    """Stop and remove the subscription with its delivery history (the access log keeps every
    delivery that was made)."""
    await subscription_service.remove(session, principal, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{subscription_id}/rotate-secret",
    response_model=SecretRotated,
    summary="Rotate the signing secret",
    responses=responses(NotFound, Conflict, Unprocessable),
)
async def rotate_secret(
    request: Request, session: Session, principal: Manager, box: Box, subscription_id: uuid.UUID
) -> Any:
    """Issue a new `whsec_` secret (shown once). Until `previous_secret_valid_until`, deliveries
    also carry the replaced secret's signature, so your endpoint can switch without losing any;
    an earlier secret still inside its own overlap keeps signing too, until that overlap ends."""
    settings = request.app.state.settings
    return await subscription_service.rotate_secret(
        session,
        principal,
        box,
        subscription_id,
        overlap_seconds=settings.webhook_secret_overlap_seconds,
        max_secrets=settings.webhook_max_secrets,
    )


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryPage,
    summary="List deliveries and their attempts",
    responses=responses(NotFound, Unprocessable),
)
async def list_deliveries(
    session: Session,
    principal: Manager,
    subscription_id: uuid.UUID,
    delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=BIGINT_MAX, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """Deliveries newest first with every attempt: status code, error, duration, categories
    withheld. `status=dead` lists the dead letters."""
    return await subscription_service.deliveries(
        session, principal, subscription_id, status=delivery_status, before=before, limit=limit
    )


@router.post(
    "/{subscription_id}/replay",
    response_model=ReplayAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Replay events",
    responses=responses(NotFound, Conflict, Unprocessable),
)
async def replay(
    session: Session, principal: Manager, subscription_id: uuid.UUID, data: ReplayRequest
) -> Any:
    """Send the subscription's events again from a sequence number or a time (dead letters
    included), as new deliveries with new `webhook-id`s; the event `id`s are unchanged, so you can
    recognise events you already have. Each is decided by the access layer again when sent."""
    return await subscription_service.replay(session, principal, subscription_id, data=data)


@router.post(
    "/{subscription_id}/test",
    response_model=PingResult,
    summary="Send a test ping",
    responses=responses(NotFound, Conflict, Unprocessable),
)
async def test_ping(
    session: Session, principal: Manager, sender: Sender, box: Box, subscription_id: uuid.UUID
) -> Any:
    """Send a signed `cn.gov.childlink.platform.ping.v1` event to the endpoint now and report how it
    answered. It carries no personal data and is recorded among the deliveries."""
    return await subscription_service.ping(session, principal, sender, box, subscription_id)
