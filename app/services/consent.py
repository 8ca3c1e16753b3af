"""Recording, listing and revoking guardian consents. The access layer reads active consents on
every decision that needs them, so a revocation takes effect at the very next read."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.door import Door
from app.access.reading import Reader, Subject
from app.errors import BadRequest, Conflict, Forbidden, NotFound
from app.models.agency import Agency
from app.models.child import ChildStatus
from app.models.common import utcnow
from app.models.consent import Consent, ConsentCreate, ConsentGiver, ConsentPublic, ConsentRevoke
from app.models.vocabulary import DataCategory, PurposeOfUse
from app.services import child as child_service
from app.services import cursor as cursor_codec

MIN_AGE_TO_CONSENT = 14
"""PIPL art. 31: under 14 only the guardian consents."""


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def to_public(consent: Consent) -> ConsentPublic:
    now = utcnow()
    return ConsentPublic(
        id=consent.id,
        child_id=consent.child_id,
        given_by_role=ConsentGiver(consent.given_by_role),
        given_by_name=consent.given_by_name,
        given_by_relationship=consent.given_by_relationship,
        receiving_agency=consent.receiving_agency,
        categories=[DataCategory(c) for c in consent.categories],
        purposes=[PurposeOfUse(p) for p in consent.purposes],
        valid_from=consent.valid_from,
        valid_until=consent.valid_until,
        evidence_ref=consent.evidence_ref,
        recorded_by_agency=consent.recorded_by_agency,
        recorded_at=consent.recorded_at,
        revoked_at=consent.revoked_at,
        revoked_reason=consent.revoked_reason,
        active=consent.revoked_at is None and consent.valid_from <= now < consent.valid_until,
    )


async def record(
    session: AsyncSession, door: Door, reader: Reader, child_id: uuid.UUID, *, data: ConsentCreate
) -> ConsentPublic:
    """Record a consent the guardian (or a child of 14 or over) signed. The child must be in the
    recorder's region; the receiving agency, when named, must be registered."""
    child = await child_service.require_child(session, door, reader, child_id, "consent.write")
    # The agency that keeps the record files the guardian's paper: no agency grants itself access.
    if child.owner_agency != reader.principal.agency:
        raise Forbidden("Consents are recorded by the agency that keeps the record.", code="not_record_owner")
    if child.status == ChildStatus.exited:
        raise Conflict("An exited record is read-only.", code="child_exited")
    if (
        data.given_by_role == ConsentGiver.child
        # Age when the consent is given (recorded now), not when it starts to apply.
        and _age_on(child.birth_date, date.today()) < MIN_AGE_TO_CONSENT
    ):
        raise BadRequest(
            "A child under 14 cannot consent; the guardian must (PIPL art. 31).",
            code="child_too_young_to_consent",
        )
    if data.receiving_agency is not None and await session.get(Agency, data.receiving_agency) is None:
        raise BadRequest("No agency with this code.", code="unknown_agency")
    consent = Consent(
        child_id=child.id,
        given_by_role=data.given_by_role,
        given_by_name=data.given_by_name,
        given_by_relationship=data.given_by_relationship,
        receiving_agency=data.receiving_agency,
        categories=[str(c) for c in data.categories],
        purposes=[str(p) for p in data.purposes],
        valid_from=data.valid_from,
        valid_until=data.valid_until,
        evidence_ref=data.evidence_ref,
        recorded_by_agency=reader.principal.agency,
        recorded_by_client=reader.principal.client_id,
    )
    session.add(consent)
    await session.flush()
    return to_public(consent)


async def list_for_child(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    child_id: uuid.UUID,
    *,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[ConsentPublic], str | None]:
    """The child's consents on record, newest first, a page at a time (keyset on
    ``(recorded_at, id)``). Consents name the guardian, so another agency reads them through the
    door like any contact data."""
    child = await child_service.require_child(session, door, reader, child_id, "consent.read")
    await door.admit(
        session,
        reader,
        action="consent.read",
        subject=Subject(child.id, child.owner_agency, child.region_code),
        categories=[DataCategory.contact],
    )
    query = select(Consent).where(col(Consent.child_id) == child_id)
    if cursor:
        stamp, ident = cursor_codec.decode(cursor)
        query = query.where(
            or_(
                col(Consent.recorded_at) < stamp,
                and_(col(Consent.recorded_at) == stamp, col(Consent.id) < ident),
            )
        )
    query = query.order_by(col(Consent.recorded_at).desc(), col(Consent.id).desc()).limit(limit + 1)
    rows = (await session.execute(query)).scalars().all()
    page = list(rows[:limit])
    next_cursor = cursor_codec.encode(page[-1].recorded_at, page[-1].id) if len(rows) > limit else None
    return [to_public(c) for c in page], next_cursor


async def revoke(
    session: AsyncSession, door: Door, reader: Reader, consent_id: uuid.UUID, *, data: ConsentRevoke
) -> ConsentPublic:
    """Revoke a consent; it grants nothing from the next read on. Revoking twice is a 409."""
    consent = (
        await session.execute(select(Consent).where(col(Consent.id) == consent_id).with_for_update())
    ).scalar_one_or_none()
    if consent is None:
        raise NotFound("No consent with this id.", code="consent_not_found")
    # The consent's child must be one the caller may see; otherwise it is as absent.
    try:
        child = await child_service.require_child(session, door, reader, consent.child_id, "consent.revoke")
    except NotFound:
        raise NotFound("No consent with this id.", code="consent_not_found") from None
    if child.owner_agency != reader.principal.agency:
        raise Forbidden("Consents are revoked by the agency that keeps the record.", code="not_record_owner")
    if consent.revoked_at is not None:
        raise Conflict("The consent is already revoked.", code="consent_already_revoked")
    consent.revoked_at = utcnow()
    consent.revoked_reason = data.reason
    consent.revoked_by_client = reader.principal.client_id
    session.add(consent)
    await session.flush()
    return to_public(consent)
