"""Operators' hands on one subscription's deliveries: retry or skip one, list the dead letters,
redrive them. A retried or redriven delivery keeps its ``webhook-id`` (it is the same message,
so a receiver deduplicating by it stays right) and starts the retry schedule afresh. A retry or
a redrive also ends the subscription's back-off: the operator says the endpoint works again, so
the worker probes it at once (one delivery while it is marked failing, then the full share once
one succeeds) instead of waiting out hours of a schedule that the outage built up. Deliveries
already retried during the outage keep their own next try; retry or skip them to move them."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.principal import Principal
from app.errors import Conflict, NotFound
from app.events import operational
from app.models.common import utcnow
from app.models.subscription import (
    DeliveryPage,
    DeliveryPublic,
    DeliveryStatus,
    EventDelivery,
    RedriveAccepted,
)
from app.services import subscription as subscription_service

DEAD_LETTERS = (DeliveryStatus.dead, DeliveryStatus.skipped)
RETRYABLE = (DeliveryStatus.pending, DeliveryStatus.gone, *DEAD_LETTERS)
SKIPPABLE = (DeliveryStatus.pending, DeliveryStatus.dead, DeliveryStatus.gone)

# The failures stay counted (a probe, one delivery at a time, until an answer resets them); only
# the subscription's wait ends. Deliveries retried during the outage keep their own next try.
_END_BACKOFF = "UPDATE subscription SET backoff_until = NULL WHERE id = :sub AND backoff_until > now()"


async def _load(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, delivery_id: int
) -> EventDelivery:
    await subscription_service.load(session, principal, subscription_id)
    found = (
        await session.execute(
            select(EventDelivery)
            .where(
                col(EventDelivery.id) == delivery_id, col(EventDelivery.subscription_id) == subscription_id
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if found is None or found.kind == "ping":
        raise NotFound("No delivery with this id on this subscription.", code="delivery_not_found")
    return found


async def _one(session: AsyncSession, delivery: EventDelivery) -> DeliveryPublic:
    await session.flush()
    return (await subscription_service.delivery_items(session, [delivery]))[0]


async def retry(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, delivery_id: int
) -> DeliveryPublic:
    """Make a pending, dead, skipped or gone delivery due now with a fresh retry schedule, and end
    the subscription's back-off. One being sent right now is a 409 ``delivery_in_flight``; a
    delivered or denied one is a 409 ``delivery_not_retryable`` (``/replay`` sends an event
    again as a new message)."""
    delivery = await _load(session, principal, subscription_id, delivery_id)
    now = utcnow()
    if delivery.status not in RETRYABLE:
        raise Conflict(
            f"A {delivery.status} delivery is not retried; replay its event instead.",
            code="delivery_not_retryable",
        )
    if delivery.status == DeliveryStatus.pending and delivery.lease_token and delivery.next_attempt_at > now:
        raise Conflict("The delivery is being sent right now.", code="delivery_in_flight")
    await session.execute(
        text(subscription_service.ABANDON_SQL), {"sub": subscription_id, "delivery": delivery_id}
    )
    await session.execute(text(_END_BACKOFF), {"sub": subscription_id})
    delivery.status = str(DeliveryStatus.pending)
    delivery.retry_base = delivery.attempts
    delivery.next_attempt_at = now
    delivery.lease_token = None
    delivery.finished_at = None
    delivery.updated_at = now
    session.add(delivery)
    await session.execute(text(subscription_service.NOTIFY_SQL))
    return await _one(session, delivery)


async def skip(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, delivery_id: int
) -> DeliveryPublic:
    """Dead-letter a pending, dead or gone delivery as ``skipped``: it is not sent again (unless
    redriven) and the child's next event goes ahead, also on a blocking subscription. An attempt
    in flight still finishes and is recorded, but changes nothing; one whose lease ran out (its
    worker stopped) is recorded ``abandoned``, since no worker is left to record it. Skipping a
    pending or gone delivery emits ``platform.delivery.dead-lettered`` (reason ``skipped``) to
    the agency."""
    delivery = await _load(session, principal, subscription_id, delivery_id)
    if delivery.status not in SKIPPABLE:
        raise Conflict(f"A {delivery.status} delivery cannot be skipped.", code="delivery_not_skippable")
    was = delivery.status
    now = utcnow()
    await session.execute(
        text(subscription_service.ABANDON_SQL), {"sub": subscription_id, "delivery": delivery_id}
    )
    delivery.status = str(DeliveryStatus.skipped)
    delivery.lease_token = None  # an attempt in flight then records its answer but not its status
    delivery.finished_at = now
    delivery.updated_at = now
    session.add(delivery)
    await session.flush()
    if was != DeliveryStatus.dead:  # a dead one was reported when it died
        assert delivery.id is not None
        await operational.dead_lettered(await session.connection(), [(delivery.id, "skipped")])
    await session.execute(text(subscription_service.NOTIFY_SQL))
    return await _one(session, delivery)


async def dead_letters(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, *, before: int | None, limit: int
) -> DeliveryPage:
    """Dead and skipped deliveries, newest first, each with its attempts."""
    await subscription_service.load(session, principal, subscription_id)
    query = select(EventDelivery).where(
        col(EventDelivery.subscription_id) == subscription_id,
        col(EventDelivery.status).in_([str(s) for s in DEAD_LETTERS]),
    )
    if before is not None:
        query = query.where(col(EventDelivery.id) < before)
    rows = list(
        (await session.execute(query.order_by(col(EventDelivery.id).desc()).limit(limit + 1))).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = await subscription_service.delivery_items(session, rows)
    return DeliveryPage(items=items, next_cursor=str(rows[-1].id) if more and rows else None)


async def redrive(session: AsyncSession, principal: Principal, subscription_id: uuid.UUID) -> RedriveAccepted:
    """Queue every dead letter (dead or skipped) of the subscription again, due now, each with a
    fresh retry schedule, in event order per child as always; when it queues any, the
    subscription's back-off ends."""
    await subscription_service.load(session, principal, subscription_id, for_update=True)
    queued = await subscription_service.requeue(session, subscription_id, DEAD_LETTERS)
    if queued:
        await session.execute(text(_END_BACKOFF), {"sub": subscription_id})
    await session.execute(text(subscription_service.NOTIFY_SQL))
    return RedriveAccepted(queued=queued)
