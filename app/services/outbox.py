"""Writing events to the outbox inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.events import catalog, numbering
from app.models.common import utcnow
from app.models.outbox import OutboxEvent
from app.models.vocabulary import DataCategory

SOURCE = "/childlink/registry"


async def emit(
    session: AsyncSession,
    principal: Principal,
    *,
    type: str,
    subject: uuid.UUID,
    region_code: str,
    data: dict[str, Any],
    categories: Sequence[DataCategory] = (),
    case_id: uuid.UUID | None = None,
    priority: int = 0,
    audience: str | None = None,
) -> OutboxEvent:
    """Add an event; the caller's transaction commits it together with the change it reports,
    and :func:`app.db.commit` numbers it after the commit (app/events/numbering.py).

    A type in the catalog must match its schema (a mismatch is a bug in the emitter, raised
    here rather than delivered), and its data categories are those its fields carry, so the
    delivery path withholds exactly what a receiver may not see. ``categories`` is the
    emitter's own claim, used only for types outside the catalog. ``priority`` above 0 puts the
    event's deliveries ahead of every subscription's ordinary backlog (a child in danger).
    ``audience`` addresses the event to that one agency alone (app/events/audience.py).
    """
    event = OutboxEvent(
        type=type,
        source=f"{SOURCE}/{principal.agency}",
        subject=subject,
        data=data,
        data_categories=_carried(type, data, categories),
        region_code=region_code,
        publisher_agency=principal.agency,
        publisher_client=principal.client_id,
        case_id=case_id,
        priority=priority,
        audience=audience,
    )
    session.add(event)
    await session.flush()
    numbering.mark_emitted(session)
    return event


@dataclass(frozen=True, slots=True)
class Draft:
    """One event for :func:`emit_many`; the fields mean what :func:`emit`'s arguments mean."""

    type: str
    subject: uuid.UUID
    region_code: str
    data: dict[str, Any]
    audience: str | None = None
    priority: int = 0


async def emit_many(session: AsyncSession, principal: Principal, drafts: Sequence[Draft]) -> list[uuid.UUID]:
    """Add many events (a job's batch) in one statement executed for them all (the driver
    pipelines it), checked as :func:`emit` checks each; returns their ids, in order. Nothing is
    added if any one does not match its schema."""
    ids = [uuid.uuid4() for _ in drafts]
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": event_id,
            "type": draft.type,
            "source": f"{SOURCE}/{principal.agency}",
            "subject": draft.subject,
            "time": now,
            "data": draft.data,
            "data_categories": _carried(draft.type, draft.data, ()),
            "region_code": draft.region_code,
            "publisher_agency": principal.agency,
            "publisher_client": principal.client_id,
            "priority": draft.priority,
            "audience": draft.audience,
            "created_at": now,
        }
        for event_id, draft in zip(ids, drafts, strict=True)
    ]
    if rows:
        await session.execute(insert(OutboxEvent.__table__), rows)  # type: ignore[attr-defined]
        numbering.mark_emitted(session)
    return ids


def _carried(type: str, data: dict[str, Any], categories: Sequence[DataCategory]) -> list[str]:
    """The data categories an event carries; a catalogued type's data must match its schema."""
    event_type = catalog.get(type)
    carried = [str(c) for c in categories]
    if event_type is not None:
        errors = event_type.validate(data)
        if errors:
            raise ValueError(
                f"{type} does not match its schema at {'.'.join(errors[0].loc)}: {errors[0].msg}"
            )
        carried = [str(c) for c in event_type.classify(data)] or carried
    return sorted(carried)
