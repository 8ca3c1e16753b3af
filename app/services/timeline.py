"""A child's timeline (what a joint meeting 联席会议 reviews): the child's registry changes,
guardianship records, every agency's events and every step of its cases, newest first.

Everything on it is an outbox event about the child (the registry, guardianship, cases,
referrals, consultations and actions all emit one), so one indexed keyset query on
(subject, seq) serves a page. Each entry passes the door: entries with the same publisher, data
categories and case share one decision and one access-log record, and an entry the door releases
nothing of appears only as "something happened then". Entries of a case the reader is not
involved in are left out altogether, as the case itself answers 404 to such a reader.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.decision import Decision
from app.access.door import Door
from app.access.reading import AccessDenied, Reader
from app.errors import BadRequest
from app.events import audience
from app.events.envelope import EVENT_COLUMNS, StoredEvent, redact
from app.models.case import Case
from app.models.timeline import TimelineItem, TimelinePage
from app.services import case as case_service
from app.services import child as child_service

MAX_PAGE = 200

_PAGE = f"""
SELECT {EVENT_COLUMNS} FROM outbox_event
WHERE subject = :child AND seq IS NOT NULL AND seq < :before
  AND (audience IS NULL OR audience = :agency)  -- another agency's notice is not on the timeline
ORDER BY seq DESC
LIMIT :limit
"""  # noqa: S608  (EVENT_COLUMNS is a constant)


def _encode(seq: int) -> str:
    return base64.urlsafe_b64encode(f"t|{seq}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, seq = raw.partition("|")
        if tag != "t":
            raise ValueError("not a timeline cursor")
        return int(seq)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise BadRequest("The cursor is not one this API issued.", code="invalid_cursor") from exc


async def _visible_cases(session: AsyncSession, reader: Reader, case_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    if not case_ids:
        return set()
    rows = await session.execute(
        select(col(Case.id)).where(col(Case.id).in_(list(case_ids)), case_service.involved(reader))
    )
    return set(rows.scalars())


def _item(event: StoredEvent, decision: Decision | None) -> TimelineItem:
    if decision is None:
        return TimelineItem(sequence=event.seq, time=event.time, released=False)
    data, withheld = redact(event, decision.granted)
    return TimelineItem(
        sequence=event.seq,
        time=event.time,
        released=True,
        event_id=event.id,
        type=event.type,
        publisher_agency=event.publisher_agency,
        case_id=event.case_id,
        data=data,
        withheld=list(withheld),
    )


async def timeline(
    session: AsyncSession, door: Door, reader: Reader, child_id: uuid.UUID, *, cursor: str | None, limit: int
) -> TimelinePage:
    """One page of the child's timeline for this reader and purpose; 404 for a child absent or
    outside the reader's region."""
    await child_service.require_child(session, door, reader, child_id, "timeline.read")
    before = _decode(cursor) if cursor else 2**62
    params = {"child": child_id, "before": before, "limit": limit + 1, "agency": reader.principal.agency}
    rows = (await session.execute(text(_PAGE), params)).mappings().all()
    events: Sequence[StoredEvent] = [StoredEvent.from_row(r) for r in rows]
    page = list(events[:limit])
    cases = await _visible_cases(session, reader, {e.case_id for e in page if e.case_id is not None})
    shown = [e for e in page if e.case_id is None or e.case_id in cases]
    decisions: dict[tuple[str, tuple[str, ...], uuid.UUID | None], Decision | None] = {}
    items = []
    for event in shown:
        key = (event.audience or event.publisher_agency, tuple(event.data_categories), event.case_id)
        if key not in decisions:
            try:
                decisions[key] = await audience.admit_event(
                    door, session, reader, event, action="timeline.read"
                )
            except AccessDenied:
                decisions[key] = None  # on record; the entry shows only that something happened
        items.append(_item(event, decisions[key]))
    next_cursor = _encode(page[-1].seq) if len(events) > limit else None
    return TimelinePage(child_id=child_id, items=items, next_cursor=next_cursor)
