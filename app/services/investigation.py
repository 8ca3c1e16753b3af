"""Police investigations: reads made for one stay out of the guardian's access report until the
investigating agency closes it. A case is its agency's (``agency``, ``ref``) and is closed from
inside the region that opened it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.principal import Principal
from app.errors import Conflict, NotFound
from app.models.break_glass import Investigation, InvestigationPublic
from app.models.common import utcnow


async def close(session: AsyncSession, principal: Principal, ref: str) -> InvestigationPublic:
    """Close an investigation of the caller's own agency, opened inside the caller's region; its
    reads then appear in access reports. Any other case answers 404, as an absent one does."""
    item = (
        await session.execute(
            select(Investigation)
            .where(col(Investigation.agency) == principal.agency, col(Investigation.ref) == ref)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if item is None or not principal.covers_region(item.opened_region):
        raise NotFound("No investigation of your agency with this reference.", code="investigation_not_found")
    if item.closed_at is not None:
        raise Conflict("The investigation is already closed.", code="investigation_closed")
    item.closed_at = utcnow()
    session.add(item)
    await session.flush()
    return InvestigationPublic(
        ref=item.ref,
        agency=item.agency,
        opened_region=item.opened_region,
        opened_at=item.opened_at,
        closed_at=item.closed_at,
    )
