"""Referrals (转介): refer a case to another agency with deadlines, answer it, list an inbox.

Transitions are checked against the one lifecycle table, ``app.models.referral.TRANSITIONS``.
Repeating a transition that already happened with the same content answers with the referral as
it is (no second event); anything else the table does not allow is a 409 naming the state.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.case_policy import case_policy
from app.access.case_reads import admit_case_reads
from app.access.decision import Decision
from app.access.door import Door
from app.access.reading import AccessDenied, Reader
from app.errors import BadRequest, Conflict, Forbidden, NotFound
from app.models.agency import Agency
from app.models.case import KIND_CATEGORY, Case, CaseKind, CaseStatus
from app.models.child import Child
from app.models.common import utcnow
from app.models.referral import (
    BY_RECEIVER,
    OPEN_STATUSES,
    TRANSITIONS,
    Referral,
    ReferralAction,
    ReferralCreate,
    ReferralPublic,
    ReferralStatus,
)
from app.services import case as case_service
from app.services import cursor as cursor_codec

MAX_PAGE = 200


class ReferralNotFound(NotFound):
    code, title = "referral_not_found", "No such referral"


class InvalidTransition(Conflict):
    code, title = "invalid_transition", "This referral cannot take that step"


class NotReferralParty(Forbidden):
    code, title = "not_referral_party", "Only the other side of this referral may take that step"


class InvalidDeadline(BadRequest):
    code, title = "invalid_deadline", "Deadline out of bounds"


class InvalidReceiver(BadRequest):
    code, title = "invalid_receiver", "The referral cannot go to that agency"


class RegionOutsideChild(BadRequest):
    code, title = "to_region_outside_child", "to_region does not contain the child"


def _check_deadlines(door: Door, respond_by: datetime, complete_by: datetime, now: datetime) -> None:
    bounds = case_policy(door.policy)
    if respond_by <= now:
        raise InvalidDeadline("`respond_by` lies in the past.")
    if respond_by > now + bounds.respond_within_max:
        raise InvalidDeadline(
            f"`respond_by` lies beyond the policy's bound ({bounds.respond_within_max} from now)."
        )
    if complete_by < respond_by:
        raise InvalidDeadline("`complete_by` lies before `respond_by`.")
    if complete_by > now + bounds.complete_within_max:
        raise InvalidDeadline(
            f"`complete_by` lies beyond the policy's bound ({bounds.complete_within_max.days} days from now)."
        )


async def create(
    session: AsyncSession, door: Door, reader: Reader, case_id: uuid.UUID, *, data: ReferralCreate
) -> ReferralPublic:
    """Refer an open case to another agency (lead only); emits ``platform.referral.requested``.
    Refused, with nothing written: a deadline in the past or beyond the policy's bound (400), a
    ``to_region`` not containing the child (400), an unknown or own agency (400), a closed case
    (409), a case the reader is not involved in (404)."""
    case = await case_service.load_visible(session, door, reader, case_id, "referral.create", for_update=True)
    if case.lead_agency != reader.principal.agency:
        raise case_service.NotCaseLead("Only the lead agency refers a case.")
    if case.status != CaseStatus.open:
        raise case_service.CaseClosed("A closed case cannot be referred.")
    now = utcnow()
    bounds = case_policy(door.policy)
    respond_by = data.respond_by or now + bounds.respond_within_default
    complete_by = data.complete_by or max(respond_by, now + bounds.complete_within_default)
    _check_deadlines(door, respond_by, complete_by, now)
    if data.to_agency == reader.principal.agency:
        raise InvalidReceiver("A case is referred to another agency, not to its lead.")
    if await session.get(Agency, data.to_agency) is None:
        raise InvalidReceiver("No agency with this code is registered.", code="unknown_agency")
    # A report's case about an unregistered child stands on its subject's division.
    child_region = (
        await session.execute(select(col(Child.region_code)).where(col(Child.id) == case.child_id))
    ).scalar_one_or_none() or case.region_code
    if data.to_region is not None and not child_region.startswith(data.to_region):
        raise RegionOutsideChild("`to_region` must be the child's division or one containing it.")
    categories = sorted({str(c) for c in data.categories} | {str(KIND_CATEGORY[case.kind])})
    referral = Referral(
        case_id=case.id,
        child_id=case.child_id,
        from_agency=reader.principal.agency,
        to_agency=data.to_agency,
        to_region=data.to_region,
        target_region=data.to_region or child_region,
        request=data.request,
        categories=categories,
        respond_by=respond_by,
        complete_by=complete_by,
        next_deadline_at=respond_by,
        created_by_client=reader.principal.client_id,
    )
    session.add(referral)
    await session.flush()
    await case_service.emit(
        session, reader, case, "referral.requested", case_service.referral_event_data(referral)
    )
    await case_service.touch(session, case.id)
    decision = await case_service.decide(session, door, reader, case, "referral.create")
    return case_service.render_referral(referral, decision, case.kind)


def _is_receiver(reader: Reader, referral: Referral) -> bool:
    return referral.to_agency == reader.principal.agency and reader.principal.covers_region(
        referral.target_region
    )


def _is_referrer(reader: Reader, referral: Referral, case: Case) -> bool:
    return referral.from_agency == reader.principal.agency and reader.principal.covers_region(
        case.region_code
    )


async def _load(
    session: AsyncSession, door: Door, reader: Reader, referral_id: uuid.UUID, action: str
) -> tuple[Referral, Case]:
    row = (
        await session.execute(
            select(Referral, Case)
            .join(Case, col(Case.id) == col(Referral.case_id))
            .where(col(Referral.id) == referral_id)
            .with_for_update(of=Referral)
        )
    ).first()
    if row is None or not (_is_receiver(reader, row[0]) or _is_referrer(reader, row[0], row[1])):
        await door.record_refusal(reader, action=action, reason="not_found")
        raise ReferralNotFound("No referral with this id.")
    return row[0], row[1]


_TEXT_FIELD: dict[ReferralAction, str] = {
    ReferralAction.decline: "decline_reason",
    ReferralAction.complete: "outcome",
    ReferralAction.withdraw: "withdraw_reason",
}


async def transition(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    referral_id: uuid.UUID,
    action: ReferralAction,
    *,
    text: str | None = None,
) -> ReferralPublic:
    """Take one step of the lifecycle; emits ``platform.referral.<new state>``. ``text`` is the
    decline reason, the completion outcome or the withdrawal reason."""
    referral, case = await _load(session, door, reader, referral_id, f"referral.{action}")
    receiver_step = action in BY_RECEIVER
    if receiver_step and not _is_receiver(reader, referral):
        raise NotReferralParty(f"Only the receiving agency may {action} a referral.")
    if not receiver_step and not _is_referrer(reader, referral, case):
        raise NotReferralParty("Only the referring agency may withdraw a referral.")
    if not receiver_step and case.kind == CaseKind.mandatory_report:
        # The filer of a mandatory report cannot take it back from the police; the lead closes the case.
        raise NotReferralParty("A mandatory report's referrals are not withdrawn; its lead closes the case.")
    # Decided while the referral still stands: answering it is the receiver's last read under it.
    decision = await _decision(session, door, reader, case)
    field = _TEXT_FIELD.get(action)
    reached = {target for (_, a), target in TRANSITIONS.items() if a == action}
    if referral.status in reached and (field is None or getattr(referral, field) == text):
        return case_service.render_referral(referral, decision, case.kind)  # a repeat: nothing changes
    target = TRANSITIONS.get((referral.status, action))
    if target is None:
        raise InvalidTransition(
            f"The referral is `{referral.status}`; it cannot be {action}ed from there.",
            extra={"current_status": str(referral.status)},
        )
    if target is ReferralStatus.accepted and case.status != CaseStatus.open:
        raise case_service.CaseClosed("The case is closed.")
    now = utcnow()
    referral.status = target
    if field is not None:
        setattr(referral, field, text)
    if action in (ReferralAction.accept, ReferralAction.decline):
        referral.answered_at = now
    referral.next_deadline_at = referral.complete_by if target is ReferralStatus.accepted else None
    referral.overdue_since = None
    referral.updated_at = now
    session.add(referral)
    await session.flush()
    await case_service.emit(
        session, reader, case, f"referral.{target}", case_service.referral_event_data(referral)
    )
    await case_service.touch(session, case.id)
    return case_service.render_referral(referral, decision, case.kind)


async def _decision(session: AsyncSession, door: Door, reader: Reader, case: Case) -> Decision | None:
    """The door's decision on the case record, or None when it releases nothing (on record)."""
    try:
        return await case_service.decide(session, door, reader, case, "referral.read")
    except AccessDenied:
        return None


async def inbox(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    direction: Literal["incoming", "outgoing"],
    status: ReferralStatus | None,
    overdue: bool | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[ReferralPublic], str | None]:
    """An agency's referrals, newest first: ``incoming`` addressed to it within the reader's
    region, ``outgoing`` sent by it. Each case's record is decided once for the page."""
    filters: dict[str, Any] = {"direction": direction, "limit": str(limit)}
    if status is not None:
        filters["status"] = str(status)
    if overdue is not None:
        filters["overdue"] = str(overdue)
    await door.admit_list_query(reader, action="referral.list", query=filters, required=None)
    principal = reader.principal
    query = select(Referral, Case).join(Case, col(Case.id) == col(Referral.case_id))
    if direction == "incoming":
        query = query.where(
            col(Referral.to_agency) == principal.agency,
            col(Referral.target_region).startswith(principal.region, autoescape=True),
        )
    else:
        query = query.where(
            col(Referral.from_agency) == principal.agency,
            col(Case.region_code).startswith(principal.region, autoescape=True),
        )
    if status is not None:
        query = query.where(col(Referral.status) == status)
    if overdue is not None:
        late = and_(
            col(Referral.overdue_since).is_not(None),
            col(Referral.status).in_([str(s) for s in OPEN_STATUSES]),
        )
        query = query.where(late if overdue else ~late)
    if cursor:
        stamp, ident = cursor_codec.decode(cursor)
        query = query.where(
            or_(
                col(Referral.created_at) < stamp,
                and_(col(Referral.created_at) == stamp, col(Referral.id) < ident),
            )
        )
    query = query.order_by(col(Referral.created_at).desc(), col(Referral.id).desc()).limit(limit + 1)
    rows = (await session.execute(query)).all()
    page = rows[:limit]
    cases = list({case.id: case for _, case in page}.values())
    decided = await admit_case_reads(
        session,
        door,
        reader,
        action="referral.list",
        reads=[case_service.case_read(c) for c in cases],
        query=filters,
    )
    decisions = {c.id: d for c, d in zip(cases, decided, strict=True)}
    items = [case_service.render_referral(r, decisions[c.id], c.kind) for r, c in page]
    last = page[-1][0] if page else None
    next_cursor = (
        cursor_codec.encode(last.created_at, last.id) if last is not None and len(rows) > limit else None
    )
    return items, next_cursor
