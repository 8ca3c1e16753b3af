"""Police investigations: reads made for one stay out of the guardian's access report until the
investigating agency closes it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.errors import Conflict, NotFound
from app.models.break_glass import Investigation, InvestigationPublic
from app.models.common import utcnow


async def close(session: AsyncSession, principal: Principal, ref: str) -> InvestigationPublic:
    """Close an investigation of the caller's own agency; its reads then appear in access reports."""
    item = await session.get(Investigation, ref, with_for_update=True)
    if item is None or item.agency != principal.agency:
        raise NotFound("No investigation of your agency with this reference.", code="investigation_not_found")
    if item.closed_at is not None:
        raise Conflict("The investigation is already closed.", code="investigation_closed")
    item.closed_at = utcnow()
    session.add(item)
    await session.flush()
    return InvestigationPublic(
        ref=item.ref, agency=item.agency, opened_at=item.opened_at, closed_at=item.closed_at
    )
