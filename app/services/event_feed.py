"""The pull feed: ``GET /v1/events/feed?after=SEQ&limit=N&wait=S``.

A subscriber in ``pull`` mode reads the events its subscription admits after a sequence number
and continues from the cursor it gets back. Every event on a page is decided by the door for the
subscription's purpose of use and recorded like any other read; an event the reader may see
nothing of is left off the page (its denial is on record) and the cursor moves past it.

Because sequence numbers become visible in order and without holes (migration 0020), "everything
up to ``head`` has been read" is true when a page says so: nothing can commit later below it.
The long poll waits on the commit notifier with no database connection held, then reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import col

from app.access.door import Door
from app.access.reading import AccessDenied, Reader
from app.errors import BadRequest, Conflict, NotFound
from app.events import audience, numbering
from app.events.envelope import EVENT_COLUMNS, StoredEvent, envelope
from app.events.notify import Notifier
from app.models.event import CloudEventOut, FeedPage
from app.models.subscription import Subscription, SubscriptionMode

SCAN_WINDOW = 10_000
"""Sequence numbers one page looks through at most: a subscription whose filters match rarely
still costs each call a bounded index range, and the cursor moves on by the window."""

_MATCH = audience.match_sql(
    subscription="CAST(:sub AS uuid)",
    agency="CAST(:agency AS text)",
    region="CAST(:region AS text)",
    reader_region="CAST(:reader_region AS text)",
    categories="CAST(:categories AS varchar[])",
)

_PAGE = f"""
SELECT {EVENT_COLUMNS} FROM outbox_event AS e
WHERE e.seq > :after AND e.seq <= :head
  AND EXISTS (SELECT 1 FROM unnest(CAST(:types AS text[])) AS p WHERE e.type LIKE replace(p, '*', '%'))
  AND e.region_code LIKE CAST(:reader_region AS text) || '%'
  AND {_MATCH}
ORDER BY e.seq
LIMIT :limit
"""  # noqa: S608  (EVENT_COLUMNS and the audience rule are constants)
_PAGE_SQL = text(_PAGE)


def _overlaps(sub: Subscription, region: str) -> bool:
    """Whether a reader of ``region`` may pull through ``sub``. Another region's subscription of
    the same agency (510108 reading 510107's) is as absent as another agency's. One covering the
    reader's region and more (a county's, read by one of its townships) may be read: every page
    is limited to the reader's own region besides (``_PAGE``'s ``reader_region``)."""
    return sub.region_prefix.startswith(region) or region.startswith(sub.region_prefix)


async def pull_subscription(
    session: AsyncSession, reader: Reader, subscription_id: uuid.UUID | None
) -> Subscription:
    """The named pull subscription of the reader's agency, or its only one."""
    agency = reader.principal.agency
    if subscription_id is not None:
        sub = (
            await session.execute(
                select(Subscription).where(
                    col(Subscription.id) == subscription_id, col(Subscription.agency) == agency
                )
            )
        ).scalar_one_or_none()
        if sub is None or not _overlaps(sub, reader.principal.region):
            raise NotFound("No subscription with this id.", code="subscription_not_found")
        if sub.mode != SubscriptionMode.pull:
            raise Conflict(
                "This subscription delivers by webhook; the feed is for pull subscriptions.",
                code="not_a_pull_subscription",
            )
        return sub
    subs = list(
        (
            await session.execute(
                select(Subscription).where(
                    col(Subscription.agency) == agency, col(Subscription.mode) == str(SubscriptionMode.pull)
                )
            )
        ).scalars()
    )
    subs = [sub for sub in subs if _overlaps(sub, reader.principal.region)]
    if not subs:
        raise NotFound(
            "Your agency has no pull subscription; create one at `POST /v1/subscriptions` with `mode: pull`.",
            code="no_pull_subscription",
        )
    if len(subs) > 1:
        raise BadRequest(
            "Your agency has several pull subscriptions; name one with `subscription`.",
            code="subscription_required",
        )
    return subs[0]


async def _read_page(
    engine: AsyncEngine, sub: Subscription, reader: Reader, *, after: int, limit: int
) -> tuple[int, int, list[StoredEvent]]:
    """(head, the last sequence number looked at, matching events)."""
    # Head first, then the events up to it: a numbering pass commits its numbers and the counter
    # together, so every event at or below a head read earlier is visible to a later statement.
    # The head is read by a numbering pass (app/events/numbering.py), in autocommit so that its
    # lock, when it takes one, is held for the pass alone: an event committed before this read
    # is on the page even when no worker has come by to number it.
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        head = await numbering.head(conn)
        upto = min(head, after + SCAN_WINDOW)
        if upto <= after:
            return head, max(head, after), []
        rows = (
            await conn.execute(
                _PAGE_SQL,
                {
                    "after": after,
                    "head": upto,
                    "types": list(sub.type_patterns),
                    "region": sub.region_prefix,
                    "reader_region": reader.principal.region,
                    "categories": list(sub.categories),
                    "sub": sub.id,
                    "agency": sub.agency,
                    "limit": limit,
                },
            )
        ).mappings()
        return head, upto, [StoredEvent.from_row(row) for row in rows]


async def read(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    notifier: Notifier | None,
    *,
    subscription_id: uuid.UUID | None,
    after: int,
    limit: int,
    wait: float,
) -> FeedPage:
    """A page of the feed, waiting up to ``wait`` seconds for the first matching event."""
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    # Everything before the door runs on short connections of its own, so that no connection
    # (and no open transaction) is held while the long poll waits.
    async with AsyncSession(engine, expire_on_commit=False) as lookup:
        sub = await pull_subscription(lookup, reader, subscription_id)
    # The subscription states why its agency reads; every event is decided for that purpose.
    reader = dataclasses.replace(reader, purpose_raw=sub.purpose_of_use)
    deadline = time.monotonic() + wait
    while True:
        head, upto, events = await _read_page(engine, sub, reader, after=after, limit=limit)
        remaining = deadline - time.monotonic()
        if events or upto < head or remaining <= 0:
            break  # something to return, more to scan (next call), or time is up
        if notifier is not None:
            await notifier.wait(min(remaining, 5.0))
        else:
            await asyncio.sleep(min(remaining, 0.5))
    released: list[dict[str, Any]] = []
    for event in events:
        try:
            decision = await audience.admit_event(door, session, reader, event, action="event.feed")
        except (AccessDenied, NotFound):
            continue  # decided, and on record: nothing of it for this reader
        released.append(
            CloudEventOut.model_validate(envelope(event, decision.granted)).model_dump(mode="json")
        )
    next_after = events[-1].seq if len(events) == limit else upto
    return FeedPage.model_validate(
        {"subscription_id": sub.id, "events": released, "next_after": next_after, "head": head}
    )
