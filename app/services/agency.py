"""Registering and listing agencies (platform operator only)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.errors import Conflict, NotFound
from app.models.agency import Agency, AgencyCreate


async def register(session: AsyncSession, *, data: AgencyCreate) -> Agency:
    """Add an agency; a second agency with the same code is a 409."""
    if await session.get(Agency, data.code) is not None:
        raise Conflict("An agency with this code exists.", code="agency_exists")
    agency = Agency.model_validate(data)
    session.add(agency)
    await session.flush()
    await session.refresh(agency)
    return agency


async def get(session: AsyncSession, code: str) -> Agency:
    agency = await session.get(Agency, code)
    if agency is None:
        raise NotFound("No agency with this code.", code="agency_not_found")
    return agency


async def list_all(session: AsyncSession) -> Sequence[Agency]:
    result = await session.execute(select(Agency).order_by(col(Agency.code)))
    return result.scalars().all()
