"""Cases (协同处置): open, read, list and close.

A case belongs to its lead agency and is about one child. Only the lead and agencies with a
referral on it see that it exists (everyone else gets the same 404 as for no case at all); what
they see of it is decided by the door like any child data: the case's record carries the data
category of its kind (``KIND_CATEGORY``), released to the lead as owner and to a referral's
receiver on the ground ``referral`` while the referral is open.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, exists, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.case_reads import CaseRead, admit_case_reads
from app.access.decision import Decision
from app.access.door import Door
from app.access.reading import Reader, Subject
from app.errors import Conflict, Forbidden, NotFound
from app.models.case import (
    KIND_CATEGORY,
    Case,
    CaseClose,
    CaseCreate,
    CaseKind,
    CasePublic,
    CaseStatus,
    LinkedEvent,
)
from app.models.child import Child
from app.models.common import utcnow
from app.models.consultation import Action, ActionPublic, ActionStatus, ConsultationPublic
from app.models.referral import OPEN_STATUSES, Referral, ReferralPublic, ReferralStatus
from app.models.vocabulary import DataCategory
from app.services import cursor as cursor_codec
from app.services import outbox
from app.services.case_view import for_case
from app.services.child import access_summary

MAX_PAGE = 200
PREFIX = "cn.gov.childlink.platform."


class CaseNotFound(NotFound):
    code, title = "case_not_found", "No such case"


class NotCaseLead(Forbidden):
    code, title = "not_case_lead", "Only the lead agency may do this"


class CaseClosed(Conflict):
    code, title = "case_closed", "The case is closed"


class OpenReferrals(Conflict):
    code, title = "open_referrals", "The case has open referrals"


def subject(case: Case) -> Subject:
    """A case's record is the lead agency's: it reads it as owner, every other agency across."""
    return Subject(child_id=case.child_id, owner_agency=case.lead_agency, region_code=case.region_code)


def _open_statuses() -> list[str]:
    return [str(s) for s in OPEN_STATUSES]


def involved(reader: Reader) -> Any:
    """SQL condition: the case is in the reader's region and the reader's agency leads it, has a
    referral on it addressed to a division the reader covers, or has an action assigned on it."""
    principal = reader.principal
    referral = exists().where(
        col(Referral.case_id) == col(Case.id),
        col(Referral.to_agency) == principal.agency,
        col(Referral.target_region).startswith(principal.region, autoescape=True),
    )
    action = exists().where(
        col(Action.case_id) == col(Case.id), col(Action.assigned_agency) == principal.agency
    )
    return and_(
        col(Case.region_code).startswith(principal.region, autoescape=True),
        or_(col(Case.lead_agency) == principal.agency, referral, action),
    )


async def emit(session: AsyncSession, reader: Reader, case: Case, what: str, data: dict[str, Any]) -> None:
    """A ``platform.*`` event about the case, in the caller's transaction, linked to the case."""
    await outbox.emit(
        session,
        reader.principal,
        type=f"{PREFIX}{what}.v1",
        subject=case.child_id,
        region_code=case.region_code,
        data={"case_id": str(case.id), "kind": str(case.kind), "lead_agency": case.lead_agency, **data},
        case_id=case.id,
    )


async def load_visible(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    case_id: uuid.UUID,
    action: str,
    *,
    for_update: bool = False,
) -> Case:
    """The case if the reader is involved in it; otherwise a 404 on record, the same whether the
    case is absent, outside the region or someone else's."""
    query = select(Case).where(col(Case.id) == case_id, involved(reader))
    if for_update:
        query = query.with_for_update(of=Case)
    case = (await session.execute(query)).scalar_one_or_none()
    if case is None:
        await door.record_refusal(reader, action=action, reason="not_found")
        raise CaseNotFound("No case with this id.")
    return case


async def require_linkable(
    session: AsyncSession, reader: Reader, case_id: uuid.UUID, *, child_id: uuid.UUID
) -> None:
    """An event may name an open case about the same child that the publisher is involved in;
    404 for any other (the same answer whether the case exists or not), 409 for a closed one."""
    status = (
        await session.execute(
            select(col(Case.status)).where(
                col(Case.id) == case_id, col(Case.child_id) == child_id, involved(reader)
            )
        )
    ).scalar_one_or_none()
    if status is None:
        raise CaseNotFound("No case with this id about this child.")
    if status != CaseStatus.open:
        raise CaseClosed("Events cannot be added to a closed case.")


def case_read(case: Case) -> CaseRead:
    return CaseRead(subject=subject(case), categories=(KIND_CATEGORY[case.kind],), case_id=case.id)


async def decide(session: AsyncSession, door: Door, reader: Reader, case: Case, action: str) -> Decision:
    """The door's decision on reading this case's record (logged across agencies)."""
    return await door.admit(
        session,
        reader,
        action=action,
        subject=subject(case),
        categories=[KIND_CATEGORY[case.kind]],
        case_id=case.id,
    )


def render_referral(referral: Referral, decision: Decision | None, case_kind: CaseKind) -> ReferralPublic:
    released = decision is not None and decision.allows(KIND_CATEGORY[case_kind])
    return ReferralPublic(
        id=referral.id,
        case_id=referral.case_id,
        child_id=referral.child_id,
        from_agency=referral.from_agency,
        to_agency=referral.to_agency,
        to_region=referral.to_region,
        request=referral.request if released else None,
        categories=[DataCategory(c) for c in sorted(referral.categories)],
        respond_by=referral.respond_by,
        complete_by=referral.complete_by,
        status=referral.status,
        overdue=referral.overdue_since is not None and referral.status in OPEN_STATUSES,
        overdue_since=referral.overdue_since,
        decline_reason=referral.decline_reason if released else None,
        outcome=referral.outcome if released else None,
        withdraw_reason=referral.withdraw_reason if released else None,
        created_at=referral.created_at,
        updated_at=referral.updated_at,
        answered_at=referral.answered_at,
    )


def render(
    case: Case,
    decision: Decision,
    *,
    referrals: Sequence[Referral] = (),
    events: Sequence[LinkedEvent] = (),
    consultations: Sequence[ConsultationPublic] = (),
    actions: Sequence[ActionPublic] = (),
    late_actions: bool = False,
) -> CasePublic:
    released = decision.allows(KIND_CATEGORY[case.kind])
    return CasePublic(
        id=case.id,
        child_id=case.child_id,
        region_code=case.region_code,
        kind=case.kind if released else None,
        priority=case.priority,
        summary=case.summary if released else None,
        status=case.status,
        lead_agency=case.lead_agency,
        outcome=case.outcome if released else None,
        outcome_note=case.outcome_note if released else None,
        overdue=late_actions
        or any(a.overdue for a in actions)
        or any(r.overdue_since is not None and r.status in OPEN_STATUSES for r in referrals),
        created_at=case.created_at,
        updated_at=case.updated_at,
        closed_at=case.closed_at,
        referrals=[render_referral(r, decision, case.kind) for r in referrals],
        consultations=list(consultations),
        actions=list(actions),
        linked_events=list(events) if released else [],
        access=access_summary(decision),
    )


async def _referrals(session: AsyncSession, case_id: uuid.UUID) -> list[Referral]:
    rows = await session.execute(
        select(Referral)
        .where(col(Referral.case_id) == case_id)
        .order_by(col(Referral.created_at), col(Referral.id))
    )
    return list(rows.scalars().all())


async def _linked_events(session: AsyncSession, case_id: uuid.UUID) -> list[LinkedEvent]:
    rows = await session.execute(
        text(
            "SELECT id, type, time, publisher_agency FROM outbox_event "
            "WHERE case_id = :case AND seq IS NOT NULL ORDER BY seq LIMIT 500"
        ),
        {"case": case_id},
    )
    return [LinkedEvent(id=r.id, type=r.type, time=r.time, publisher_agency=r.publisher_agency) for r in rows]


async def detail(
    session: AsyncSession, door: Door, reader: Reader, case: Case, decision: Decision
) -> CasePublic:
    consultations, actions = await for_case(session, case, decision)
    return render(
        case,
        decision,
        referrals=await _referrals(session, case.id),
        events=await _linked_events(session, case.id),
        consultations=consultations,
        actions=actions,
    )


async def open_case(session: AsyncSession, door: Door, reader: Reader, *, data: CaseCreate) -> CasePublic:
    """Open a case led by the reader's agency; emits ``platform.case.opened``."""
    child = (
        await session.execute(
            select(col(Child.id), col(Child.region_code)).where(col(Child.id) == data.child_id)
        )
    ).first()
    if child is None or not reader.principal.covers_region(child.region_code):
        await door.refuse_unseen(reader, action="case.open", child_id=data.child_id)
    assert child is not None
    case = Case(
        child_id=data.child_id,
        region_code=child.region_code,
        kind=data.kind,
        priority=data.priority,
        summary=data.summary,
        lead_agency=reader.principal.agency,
        opened_by_client=reader.principal.client_id,
    )
    session.add(case)
    await session.flush()
    await emit(session, reader, case, "case.opened", {"priority": str(case.priority)})
    decision = await decide(session, door, reader, case, "case.open")
    return render(case, decision)


async def get(session: AsyncSession, door: Door, reader: Reader, case_id: uuid.UUID) -> CasePublic:
    """One case with its referrals and linked events, as the door releases it to the reader."""
    case = await load_visible(session, door, reader, case_id, "case.read")
    decision = await decide(session, door, reader, case, "case.read")
    return await detail(session, door, reader, case, decision)


async def close(
    session: AsyncSession, door: Door, reader: Reader, case_id: uuid.UUID, *, data: CaseClose
) -> CasePublic:
    """Close a case (lead only). With open referrals it needs a reason, and withdraws them
    (``platform.referral.withdrawn`` each); emits ``platform.case.closed``."""
    case = await load_visible(session, door, reader, case_id, "case.close", for_update=True)
    if case.lead_agency != reader.principal.agency:
        raise NotCaseLead("Only the lead agency closes a case.")
    if case.status == CaseStatus.closed:
        raise CaseClosed("The case is already closed.", extra={"outcome": case.outcome})
    referrals = await _referrals(session, case.id)
    still_open = [r for r in referrals if r.status in OPEN_STATUSES]
    if still_open and not data.reason:
        raise OpenReferrals(
            f"{len(still_open)} referral(s) are still open; answer or withdraw them, or give a `reason` "
            "to close anyway (which withdraws them).",
            extra={"open_referrals": [str(r.id) for r in still_open]},
        )
    now = utcnow()
    for referral in still_open:
        referral.status = ReferralStatus.withdrawn
        referral.withdraw_reason = "case closed"
        referral.next_deadline_at = None
        referral.updated_at = now
        session.add(referral)
        await emit(session, reader, case, "referral.withdrawn", referral_event_data(referral))
    case.status = CaseStatus.closed
    case.outcome = str(data.outcome)
    case.outcome_note = data.note
    case.close_reason = data.reason
    case.closed_at = now
    case.updated_at = now
    session.add(case)
    await session.flush()
    await emit(session, reader, case, "case.closed", {})
    decision = await decide(session, door, reader, case, "case.close")
    return await detail(session, door, reader, case, decision)


def referral_event_data(referral: Referral) -> dict[str, Any]:
    data: dict[str, Any] = {
        "referral_id": str(referral.id),
        "from_agency": referral.from_agency,
        "to_agency": referral.to_agency,
        "status": str(referral.status),
        "respond_by": referral.respond_by.isoformat(),
        "complete_by": referral.complete_by.isoformat(),
    }
    if referral.to_region:
        data["to_region"] = referral.to_region
    return data


async def touch(session: AsyncSession, case_id: uuid.UUID) -> None:
    await session.execute(update(Case).where(col(Case.id) == case_id).values(updated_at=utcnow()))


async def list_cases(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    status: CaseStatus | None,
    kind: CaseKind | None,
    lead_agency: str | None,
    involved_agency: str | None,
    child_id: uuid.UUID | None,
    region: str | None,
    overdue: bool | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[CasePublic], str | None]:
    """Cases the reader is involved in, newest first, each released by the door (a case whose
    record the reader may not see is left out; the refusal is on record)."""
    filters = {
        k: str(v)
        for k, v in {
            "status": status,
            "kind": kind,
            "lead_agency": lead_agency,
            "involved_agency": involved_agency,
            "child_id": child_id,
            "region": region,
            "overdue": overdue,
            "limit": limit,
        }.items()
        if v is not None
    }
    await door.admit_list_query(reader, action="case.list", query=filters, required=None)
    query = select(Case).where(involved(reader))
    if status is not None:
        query = query.where(col(Case.status) == status)
    if kind is not None:
        query = query.where(col(Case.kind) == kind)
    if lead_agency is not None:
        query = query.where(col(Case.lead_agency) == lead_agency)
    if involved_agency is not None:
        query = query.where(
            or_(
                col(Case.lead_agency) == involved_agency,
                exists().where(
                    col(Referral.case_id) == col(Case.id), col(Referral.to_agency) == involved_agency
                ),
            )
        )
    if child_id is not None:
        query = query.where(col(Case.child_id) == child_id)
    if region is not None:
        query = query.where(col(Case.region_code).startswith(region, autoescape=True))
    if overdue is not None:
        late = exists().where(
            col(Referral.case_id) == col(Case.id),
            col(Referral.status).in_(_open_statuses()),
            col(Referral.overdue_since).is_not(None),
        )
        late_action = exists().where(
            col(Action.case_id) == col(Case.id),
            col(Action.status) == str(ActionStatus.open),
            col(Action.overdue_since).is_not(None),
        )
        query = query.where(or_(late, late_action) if overdue else ~or_(late, late_action))
    if cursor:
        stamp, ident = cursor_codec.decode(cursor)
        query = query.where(
            or_(col(Case.created_at) < stamp, and_(col(Case.created_at) == stamp, col(Case.id) < ident))
        )
    query = query.order_by(col(Case.created_at).desc(), col(Case.id).desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars().all())
    page = rows[:limit]
    items = []
    referrals_by_case: dict[uuid.UUID, list[Referral]] = {c.id: [] for c in page}
    if page:
        found = await session.execute(
            select(Referral)
            .where(col(Referral.case_id).in_(list(referrals_by_case)))
            .order_by(col(Referral.created_at), col(Referral.id))
        )
        for referral in found.scalars():
            referrals_by_case[referral.case_id].append(referral)
    late_actions = set()
    if page:
        late_actions = set(
            (
                await session.execute(
                    select(col(Action.case_id)).where(
                        col(Action.case_id).in_(list(referrals_by_case)),
                        col(Action.status) == str(ActionStatus.open),
                        col(Action.overdue_since).is_not(None),
                    )
                )
            ).scalars()
        )
    decisions = await admit_case_reads(
        session, door, reader, action="case.list", reads=[case_read(c) for c in page], query=filters
    )
    for case, decision in zip(page, decisions, strict=True):
        if decision is None:
            continue  # on record as denied
        items.append(
            render(case, decision, referrals=referrals_by_case[case.id], late_actions=case.id in late_actions)
        )
    next_cursor = cursor_codec.encode(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return items, next_cursor
