"""Guardianship records and the custody check ("who has custody of this child and whom do I
call"). Every read goes through the access layer's door."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.decision import Decision
from app.access.door import Door
from app.access.reading import Reader, Subject
from app.auth.principal import Principal
from app.batching import BatchedLookup
from app.db import Database, OnDemandSession
from app.errors import Conflict, Forbidden, Unprocessable
from app.models.agency import AgencyKind
from app.models.child import ChildStatus
from app.models.common import utcnow
from app.models.guardianship import (
    Assessment,
    AssessmentResult,
    CustodyStatus,
    GuardianContact,
    Guardianship,
    GuardianshipCreate,
    GuardianshipHistory,
    GuardianshipPublic,
    ResponsibleOrganisation,
    RiskFlag,
)
from app.models.vocabulary import DataCategory
from app.services import child as child_service
from app.services import outbox

CUSTODY_CATEGORIES = (DataCategory.custody, DataCategory.contact)


def render(record: Guardianship, decision: Decision) -> GuardianshipPublic:
    """A guardianship record as this reader may see it: custody facts need `custody`, whom to
    call needs `contact`."""
    contact = decision.allows(DataCategory.contact)
    custody_ok = decision.allows(DataCategory.custody)
    assessed = custody_ok and record.last_assessment_date and record.last_assessment_result
    return GuardianshipPublic(
        id=record.id,
        child_id=record.child_id,
        custody_status=CustodyStatus(record.custody_status) if custody_ok else None,
        guardian=GuardianContact(
            name=record.guardian_name, relationship=record.guardian_relationship, phone=record.guardian_phone
        )
        if contact
        else None,
        responsible_organisation=ResponsibleOrganisation(
            name=record.responsible_org if custody_ok else None,
            duty_phone=record.responsible_org_duty_phone if contact else None,
        ),
        effective_from=record.effective_from if custody_ok else None,
        effective_to=record.effective_to if custody_ok else None,
        entrustment_confirmation_ref=record.entrustment_confirmation_ref if custody_ok else None,
        entrustment_confirmed_on=record.entrustment_confirmed_on if custody_ok else None,
        last_assessment=Assessment(
            date=record.last_assessment_date,
            result=AssessmentResult(record.last_assessment_result),
            event_id=record.last_assessment_event_id,
        )
        if assessed and record.last_assessment_date and record.last_assessment_result
        else None,
        risk_flags=[RiskFlag(f) for f in record.risk_flags] if custody_ok else [],
        emergency_intervention=record.emergency_intervention,
        event_id=record.changed_by_event_id,
        recorded_by_agency=record.recorded_by_agency,
        recorded_at=record.recorded_at,
        superseded_at=record.superseded_at,
        current=record.superseded_at is None,
    )


class CustodyChangeByEvent(Unprocessable):
    code, title = "custody_change_by_event", "This custody change is recorded by publishing its event"


# Custody that only a custody-changing event may create (the policy's `custody_changes`).
_BY_EVENT_ONLY = {CustodyStatus.temporary_state, CustodyStatus.emergency_protection}


async def record(
    session: AsyncSession, door: Door, reader: Reader, child_id: uuid.UUID, *, data: GuardianshipCreate
) -> GuardianshipPublic:
    """Record a new ordinary guardianship (parents, relatives, entrusted care, an institution,
    long-term state guardianship) that supersedes the current one; civil affairs, the record's
    keeper, only. Emergency interventions and temporary state guardianship are recorded by
    publishing their events (:mod:`app.services.custody_event`), which write through the same
    :func:`supersede`. Emits ``guardianship.changed``."""
    if reader.agency_kind != AgencyKind.civil_affairs:
        raise Forbidden(
            "Only civil affairs records guardianship here; police record an emergency intervention "
            "by publishing `police.custody.intervention`.",
            code="custody_write_not_allowed",
        )
    if data.emergency_intervention or data.custody_status in _BY_EVENT_ONLY:
        raise CustodyChangeByEvent(
            "Emergency interventions and temporary state guardianship are recorded by publishing "
            "`police.custody.intervention` or `civil-affairs.temporary-guardianship.started` to "
            "`POST /v1/events`."
        )
    # Lock the child row: two concurrent records for one child supersede in a defined order.
    child = await child_service.require_child(session, door, reader, child_id, "guardianship.write")
    if child.owner_agency != reader.principal.agency:
        raise Forbidden("Only the agency that keeps this record may change it.", code="not_record_owner")
    await session.refresh(child, with_for_update=True)
    if child.status == ChildStatus.exited:
        raise Conflict("An exited record is read-only.", code="child_exited")
    entry = Guardianship(
        child_id=child_id,
        custody_status=data.custody_status,
        guardian_name=data.guardian_name,
        guardian_relationship=data.guardian_relationship,
        guardian_phone=data.guardian_phone,
        responsible_org=data.responsible_org,
        responsible_org_duty_phone=data.responsible_org_duty_phone,
        effective_from=data.effective_from,
        effective_to=data.effective_to,
        entrustment_confirmation_ref=data.entrustment_confirmation_ref,
        entrustment_confirmed_on=data.entrustment_confirmed_on,
        last_assessment_date=data.last_assessment_date,
        last_assessment_result=data.last_assessment_result,
        risk_flags=[str(f) for f in data.risk_flags],
        emergency_intervention=False,
        recorded_by_agency=reader.principal.agency,
        recorded_by_client=reader.principal.client_id,
    )
    await supersede(session, reader.principal, entry, region_code=child.region_code)
    decision = await door.admit(
        session,
        reader,
        action="guardianship.read",
        subject=Subject(child.id, child.owner_agency, child.region_code),
        categories=CUSTODY_CATEGORIES,
    )
    return render(entry, decision)


async def current(session: AsyncSession, child_id: uuid.UUID) -> Guardianship | None:
    """The record in force (the caller holds the child row's lock when it means to change it)."""
    return (
        await session.execute(
            select(Guardianship).where(
                col(Guardianship.child_id) == child_id, col(Guardianship.superseded_at).is_(None)
            )
        )
    ).scalar_one_or_none()


async def supersede(
    session: AsyncSession, principal: Principal, entry: Guardianship, *, region_code: str
) -> Guardianship:
    """The one writer of guardianship records: ``entry`` supersedes the record in force (history
    is kept), the child's record counts as changed and ``guardianship.changed`` is emitted, all in
    the caller's transaction. The caller has locked the child row."""
    now = utcnow()
    await session.execute(
        update(Guardianship)
        .where(col(Guardianship.child_id) == entry.child_id, col(Guardianship.superseded_at).is_(None))
        .values(superseded_at=now)
    )
    entry.recorded_at = now
    session.add(entry)
    await child_service.mark_updated(session, entry.child_id)
    await session.flush()
    await outbox.emit(
        session,
        principal,
        type="cn.gov.childlink.civil-affairs.guardianship.changed.v1",
        subject=entry.child_id,
        region_code=region_code,
        data={
            "child_id": str(entry.child_id),
            "guardianship_id": str(entry.id),
            "custody_status": str(entry.custody_status),
            "effective_from": entry.effective_from.isoformat(),
            "emergency_intervention": entry.emergency_intervention,
        },
    )
    return entry


async def history(
    session: AsyncSession, door: Door, reader: Reader, child_id: uuid.UUID
) -> GuardianshipHistory:
    """Every guardianship record of the child, newest first."""
    child = await child_service.require_child(session, door, reader, child_id, "guardianship.read")
    decision = await door.admit(
        session,
        reader,
        action="guardianship.read",
        subject=Subject(child.id, child.owner_agency, child.region_code),
        categories=CUSTODY_CATEGORIES,
    )
    rows = (
        (
            await session.execute(
                select(Guardianship)
                .where(col(Guardianship.child_id) == child_id)
                .order_by(col(Guardianship.recorded_at).desc(), col(Guardianship.id))
            )
        )
        .scalars()
        .all()
    )
    return GuardianshipHistory(
        items=[render(r, decision) for r in rows], access=child_service.access_summary(decision)
    )


# The custody check's one query, run through a BatchedLookup (app/batching.py): concurrent checks
# share one `= ANY($1)` query on a dedicated asyncpg connection (DESIGN §3: a hot path may use
# asyncpg directly). Through the ORM session the same SELECT cost about five times the CPU of the
# driver call, and one round trip per request cost more than the lookup itself (bench/README.md).
CUSTODY_SQL = """
SELECT c.id AS child_id, c.owner_agency, c.region_code, c.status,
       g.id, g.custody_status, g.effective_from, g.guardian_name, g.guardian_relationship,
       g.guardian_phone, g.responsible_org, g.responsible_org_duty_phone, g.last_assessment_date,
       g.last_assessment_result, g.risk_flags, g.emergency_intervention, g.changed_by_event_id,
       g.last_assessment_event_id,
       m.reported_event_id AS missing_event_id, m.reported_at AS missing_since,
       m.handling_unit AS missing_unit, m.handling_unit_duty_phone AS missing_unit_phone
FROM child AS c
LEFT JOIN guardianship AS g ON g.child_id = c.id AND g.superseded_at IS NULL
LEFT JOIN missing_report AS m ON m.child_id = c.id AND m.resolved_at IS NULL
WHERE c.id = ANY($1::uuid[])
"""


# Stored codes to their published values, each a member of its enum: a code outside the
# vocabulary fails the check (KeyError, a 500) as the enum would, at a dictionary lookup's cost.
_CHILD_STATUS = {str(v): str(v) for v in ChildStatus}
_CUSTODY_STATUS = {str(v): str(v) for v in CustodyStatus}
_ASSESSMENT_RESULT = {str(v): str(v) for v in AssessmentResult}
_RISK_FLAG = {str(v): str(v) for v in RiskFlag}


def _risk_flags(stored: list[str], missing: bool) -> list[str]:
    flags = [_RISK_FLAG[f] for f in stored]
    if missing and RiskFlag.missing not in flags:
        flags.append(str(RiskFlag.missing))
    return flags


def custody_lookup(dsn: str, *, pooled: bool = False) -> BatchedLookup:
    return BatchedLookup(dsn, CUSTODY_SQL, "child_id", pooled=pooled)


async def custody(
    session: AsyncSession | OnDemandSession,
    door: Door,
    reader: Reader,
    child_id: uuid.UUID,
    *,
    lookup: BatchedLookup,
) -> dict[str, Any]:
    """The custody check, as the JSON document :class:`CustodyPublic` describes. One (shared)
    query for the child joined with its current guardianship, an in-memory decision, one
    group-committed access-log record: the hot path of the service. The session is used only if
    the door writes (an investigation or a break-glass review), which then commits with the
    request.

    The document is built from plain values rather than as a model: validating and dumping the
    nested models cost about five times what the check's own logic does (bench/README.md). The
    shapes agree by test (``tests/routers/test_custody.py`` validates each branch against
    :class:`CustodyPublic`); the values come from enums and columns already constrained."""
    row = await lookup.get(child_id)
    if row is None or not reader.principal.covers_region(row["region_code"]):
        await door.refuse_unseen(reader, action="custody.read", child_id=child_id)
    assert row is not None
    decision = await door.admit(
        session,
        reader,
        action="custody.read",
        subject=Subject(child_id, row["owner_agency"], row["region_code"]),
        categories=CUSTODY_CATEGORIES,
    )
    current = row["id"] is not None  # a child may have no guardianship on record yet
    contact = current and decision.allows(DataCategory.contact)
    custody_ok = current and decision.allows(DataCategory.custody)
    assessed = row["last_assessment_date"] is not None and row["last_assessment_result"] is not None
    # A missing report stands whether or not a guardianship is on record.
    missing = row["missing_event_id"] is not None
    may_custody = decision.allows(DataCategory.custody)
    may_contact = decision.allows(DataCategory.contact)
    return {
        "child_id": str(child_id),
        "child_status": _CHILD_STATUS[row["status"]],
        "custody_status": _CUSTODY_STATUS[row["custody_status"]] if custody_ok else None,
        "since": row["effective_from"].isoformat() if custody_ok else None,
        "guardian": {
            "name": row["guardian_name"],
            "relationship": row["guardian_relationship"],
            "phone": row["guardian_phone"],
        }
        if contact
        else None,
        "responsible_organisation": {
            "name": row["responsible_org"] if custody_ok else None,
            "duty_phone": row["responsible_org_duty_phone"] if contact else None,
        }
        if current
        else None,
        "last_assessment": {
            "date": row["last_assessment_date"].isoformat(),
            "result": _ASSESSMENT_RESULT[row["last_assessment_result"]],
            "event_id": str(row["last_assessment_event_id"]) if row["last_assessment_event_id"] else None,
        }
        if custody_ok and assessed
        else None,
        "risk_flags": _risk_flags(row["risk_flags"], missing) if custody_ok else [],
        "emergency_intervention": bool(row["emergency_intervention"]) if custody_ok else False,
        "missing": {
            "since": row["missing_since"].isoformat() if may_custody else None,
            "handling_unit": {
                "name": row["missing_unit"] if may_custody else None,
                "duty_phone": row["missing_unit_phone"] if may_contact else None,
            },
            "event_id": str(row["missing_event_id"]),
        }
        if missing and may_custody
        else None,
        "guardianship_id": str(row["id"]) if current else None,
        "event_id": str(row["changed_by_event_id"]) if current and row["changed_by_event_id"] else None,
        "access": child_service.access_document(decision),
    }


async def custody_body(
    db: Database, door: Door, reader: Reader, child_id: uuid.UUID, *, lookup: BatchedLookup
) -> bytes:
    """The custody check as its response body, in the request's own transaction (opened only if
    the door writes, committed before the answer leaves): what both the documented route and
    ``app.direct`` serve."""
    async with OnDemandSession(db.sessionmaker) as session:
        document = await custody(session, door, reader, child_id, lookup=lookup)
    return orjson.dumps(document)
