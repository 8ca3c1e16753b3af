"""Writing events to the outbox inside the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
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
    categories: list[DataCategory],
) -> OutboxEvent:
    """Add an event; the caller's transaction commits it together with the change it reports."""
    event = OutboxEvent(
        type=type,
        source=f"{SOURCE}/{principal.agency}",
        subject=subject,
        data=data,
        data_categories=sorted(str(c) for c in categories),
        region_code=region_code,
        publisher_agency=principal.agency,
        publisher_client=principal.client_id,
    )
    session.add(event)
    await session.flush()
    return event
