"""Mandatory reports (强制报告): file, route, acknowledge, record outcomes, read.

Filing opens a case of kind ``mandatory_report`` led by the first police receiver and sends one
referral per receiver (the policy's ``report_routing``), each with the urgency's deadlines, so the
referral deadline job escalates what is not acknowledged in time. Acknowledging (受理) accepts the
receiver's referral; the outcome completes it.

Confidentiality of the reporter (category ``reporter``): the name and phone live on the report
row only. They are never put in an event, a case, a referral or an error, and are rendered only
to a receiver of a kind the policy's ``reporter_readers`` lists, when the door releases
``reporter`` to it (its referral carries the category while it is open). The filer sees the
report's status and nothing else new about the child.
"""

from __future__ import annotations

import hashlib
import uuid

import orjson
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.door import Door
from app.access.reading import Reader
from app.access.report_policy import report_policy
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.models.case import Case, CaseKind, CaseStatus
from app.models.child import Child
from app.models.common import utcnow
from app.models.referral import Referral, ReferralAction, ReferralStatus
from app.models.report import (
    POLICE_RESULTS,
    URGENCY_PRIORITY,
    Report,
    ReportCreate,
    ReportIdempotency,
    ReportLink,
    ReportOutcome,
    ReportOutcomeCreate,
    ReportPublic,
    ReportSubject,
)
from app.services import referral as referral_service
from app.services import report_routing, report_view
from app.services.event import IdempotencyKeyReused

POLICE = report_routing.POLICE
CIVIL_AFFAIRS = "civil-affairs"


class ReportNotFound(NotFound):
    code, title = "report_not_found", "No such report"


class NotReportReceiver(Forbidden):
    code, title = "not_report_receiver", "The report was not routed to your agency"


class NotAcknowledged(Conflict):
    code, title = "not_acknowledged", "Acknowledge the report first"


class OutcomeRecorded(Conflict):
    code, title = "outcome_recorded", "Your outcome is already recorded"


class SubjectOutsideRegion(Unprocessable):
    code, title = "subject_outside_region", "The subject lies outside your region"


class AlreadyLinked(Conflict):
    code, title = "already_linked", "The report is linked to another child"


class NotLinkable(Forbidden):
    code, title = "not_linkable", "Only a receiving civil-affairs agency links a report"


class ResultNotForAgency(Unprocessable):
    code, title = "result_not_for_agency", "Only police record this result"


def request_hash(data: ReportCreate) -> str:
    canonical = orjson.dumps(data.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


async def _replay(session: AsyncSession, reader: Reader, key: str, digest: str) -> uuid.UUID | None:
    row = (
        await session.execute(
            select(col(ReportIdempotency.request_hash), col(ReportIdempotency.report_id)).where(
                col(ReportIdempotency.client_id) == reader.principal.client_id,
                col(ReportIdempotency.key) == key,
            )
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different body; use a new key for a new report."
        )
    return uuid.UUID(str(row.report_id))


async def file(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    data: ReportCreate,
    idempotency_key: str,
    report_id: uuid.UUID | None = None,
) -> tuple[ReportPublic, bool]:
    """File a report; returns the filer's view (receivers and deadlines) and whether it is a
    replay of the key. Emits ``platform.report.received`` once, to every receiver at once
    (an ``immediate_danger`` one ahead of the receivers' backlogs).
    A child absent or outside the filer's region is a 404 and nothing is written. ``report_id``
    fixes the new report's id (the demo's documented reports); a request never sets it."""
    digest = request_hash(data)
    replayed = await _replay(session, reader, idempotency_key, digest)
    if replayed is not None:
        return await report_view.filer_view(session, replayed), True
    subject: ReportSubject | None = None
    if data.subject is not None:
        if not reader.principal.covers_region(data.subject.region_code):
            raise SubjectOutsideRegion("The subject's `region_code` lies outside your token's region.")
        subject = ReportSubject(**data.subject.model_dump())
        child_id, child_region = subject.id, subject.region_code
    else:
        child = (
            await session.execute(
                select(col(Child.id), col(Child.region_code)).where(col(Child.id) == data.child_id)
            )
        ).first()
        if child is None or not reader.principal.covers_region(child.region_code):
            await door.refuse_unseen(reader, action="report.file", child_id=data.child_id)
        assert child is not None
        child_id, child_region = child.id, child.region_code
    report_id = report_id or uuid.uuid4()
    # The key first: a concurrent filing with the same key waits here for this one to commit,
    # then answers as a replay instead of filing the report twice.
    claimed = (
        await session.execute(
            insert(ReportIdempotency)
            .values(
                client_id=reader.principal.client_id,
                key=idempotency_key,
                request_hash=digest,
                report_id=report_id,
            )
            .on_conflict_do_nothing()
            .returning(col(ReportIdempotency.key))
        )
    ).first()
    if claimed is None:
        again = await _replay(session, reader, idempotency_key, digest)
        assert again is not None
        return await report_view.filer_view(session, again), True

    routing = report_policy(door.policy)
    route = routing.by_concern[str(data.concern)]
    receivers = await report_routing.receivers_of(session, route.agency_kinds, child_region[:6])
    lead = report_routing.lead_of(receivers, reader.principal.agency)
    now = utcnow()
    if subject is not None:
        session.add(subject)
        await session.flush()
    case = Case(
        child_id=child_id,
        region_code=child_region,
        kind=CaseKind.mandatory_report,
        priority=URGENCY_PRIORITY[data.urgency],
        summary=f"Mandatory report (强制报告): {data.concern}, {data.urgency}. The report has what was seen.",
        lead_agency=lead,
        opened_by_client=reader.principal.client_id,
    )
    session.add(case)
    await session.flush()
    report = Report(
        id=report_id,
        case_id=case.id,
        child_id=child_id,
        subject_id=subject.id if subject is not None else None,
        region_code=child_region,
        concern=data.concern,
        urgency=data.urgency,
        observed=data.observed,
        observed_at=data.observed_at,
        reporter_role=data.reporter.role,
        reporter_name=data.reporter.name,
        reporter_phone=data.reporter.phone,
        filed_by_agency=reader.principal.agency,
        filed_by_client=reader.principal.client_id,
        policy_version=door.policy.version,
        created_at=now,
    )
    report.unrouted_agency_kinds = report_routing.unrouted(routing, report, receivers)
    session.add(report)
    report_routing.add_referrals(session, routing, report, receivers, now=now)
    await session.flush()
    await report_routing.announce(session, reader, routing, report, case, receivers, now=now)
    return await report_view.filer_view(session, report.id), False


def _own_referral(reader: Reader, referrals: list[Referral]) -> Referral | None:
    for referral in referrals:
        if referral.to_agency == reader.principal.agency and reader.principal.covers_region(
            referral.target_region
        ):
            return referral
    return None


async def _load(
    session: AsyncSession, door: Door, reader: Reader, report_id: uuid.UUID, action: str
) -> tuple[Report, Case, Referral | None, bool]:
    """The report, its case, the reader's referral on it and whether the reader filed it; a 404
    on record for anyone else (the same whether the report exists or not)."""
    report = await session.get(Report, report_id)
    case = await session.get(Case, report.case_id) if report is not None else None
    if report is None or case is None:
        await door.record_refusal(reader, action=action, reason="not_found")
        raise ReportNotFound("No report with this id.")
    own = _own_referral(reader, await report_view.load_referrals(session, case.id))
    is_lead = case.lead_agency == reader.principal.agency and reader.principal.covers_region(case.region_code)
    filed = report.filed_by_agency == reader.principal.agency and reader.principal.covers_region(
        report.region_code
    )
    if own is None and not is_lead and not filed:
        await door.record_refusal(reader, action=action, reason="not_found")
        raise ReportNotFound("No report with this id.")
    return report, case, own, filed and own is None and not is_lead


async def get(session: AsyncSession, door: Door, reader: Reader, report_id: uuid.UUID) -> ReportPublic:
    """A receiver's view of the report, or the filer's status view."""
    report, case, _, filer_only = await _load(session, door, reader, report_id, "report.read")
    if filer_only:
        return await report_view.filer_view(session, report.id)
    decision = await report_view.decide(session, door, reader, case, "report.read")
    return await report_view.receiver_view(session, door, reader, report, case, decision)


async def acknowledge(
    session: AsyncSession, door: Door, reader: Reader, report_id: uuid.UUID
) -> ReportPublic:
    """Acknowledge (受理) the report as one of its receivers: accepts the receiver's referral
    (``platform.referral.accepted``), which stops its acknowledgement clock. A second
    acknowledgement answers with the first and changes nothing."""
    report, case, own, _ = await _load(session, door, reader, report_id, "report.acknowledge")
    if own is None:
        raise NotReportReceiver("Only a receiver of the report acknowledges it.")
    decision = await report_view.decide(session, door, reader, case, "report.acknowledge")
    if own.status == ReferralStatus.requested:
        await referral_service.transition(session, door, reader, own.id, ReferralAction.accept)
    elif own.status not in (ReferralStatus.accepted, ReferralStatus.completed):
        raise referral_service.InvalidTransition(
            f"Your referral of this report is `{own.status}`.", extra={"current_status": str(own.status)}
        )
    return await report_view.receiver_view(session, door, reader, report, case, decision)


async def record_outcome(
    session: AsyncSession, door: Door, reader: Reader, report_id: uuid.UUID, *, data: ReportOutcomeCreate
) -> ReportPublic:
    """Record the receiver's result: completes its referral (``platform.referral.completed``),
    after which the filer sees the report handled by it. Refused before acknowledgement (409)."""
    report, case, own, _ = await _load(session, door, reader, report_id, "report.outcome")
    if own is None:
        raise NotReportReceiver("Only a receiver of the report records an outcome.")
    if data.result in POLICE_RESULTS and reader.agency_kind != POLICE:
        raise ResultNotForAgency(f"`{data.result}` is a police result (受案/立案/不予立案).")
    # Decided while the referral stands: recording the outcome is the receiver's last read under it.
    decision = await report_view.decide(session, door, reader, case, "report.outcome")
    existing = await session.get(ReportOutcome, own.id)
    if existing is not None:
        if (existing.result, existing.case_reference, existing.note) == (
            data.result,
            data.case_reference,
            data.note,
        ):
            return await report_view.receiver_view(session, door, reader, report, case, decision)
        raise OutcomeRecorded("Your agency's outcome of this report is already recorded.")
    if own.status == ReferralStatus.requested:
        raise NotAcknowledged("Acknowledge (受理) the report before recording its outcome.")
    if own.status != ReferralStatus.accepted:
        raise referral_service.InvalidTransition(
            f"Your referral of this report is `{own.status}`.", extra={"current_status": str(own.status)}
        )
    summary = str(data.result) + (f" {data.case_reference}" if data.case_reference else "")
    await referral_service.transition(session, door, reader, own.id, ReferralAction.complete, text=summary)
    session.add(
        ReportOutcome(
            referral_id=own.id,
            report_id=report.id,
            agency=reader.principal.agency,
            result=data.result,
            case_reference=data.case_reference,
            note=data.note,
        )
    )
    await session.flush()
    return await report_view.receiver_view(session, door, reader, report, case, decision)


async def link(
    session: AsyncSession, door: Door, reader: Reader, report_id: uuid.UUID, *, data: ReportLink
) -> ReportPublic:
    """Link a report about an unregistered child to the registered child (civil affairs, as a
    receiver): the report, its case and its referrals are about that child from then on. A child
    of another county takes the report there: the open referrals are re-addressed to that
    county's receivers per the routing (:func:`app.services.report_routing.readdress`), unless
    its case is closed. Linking again to the same child answers the same; to another child it is
    a 409."""
    report, case, own, _ = await _load(session, door, reader, report_id, "report.link")
    if own is None or reader.agency_kind != CIVIL_AFFAIRS:
        raise NotLinkable("A receiving civil-affairs agency links the report to a registered child.")
    if report.subject_id is None:
        if report.child_id == data.child_id:
            return await report_view.receiver_view(
                session,
                door,
                reader,
                report,
                case,
                await report_view.decide(session, door, reader, case, "report.link"),
            )
        raise AlreadyLinked("The report is about a registered child already.")
    subject = await session.get(ReportSubject, report.subject_id, with_for_update=True)
    assert subject is not None
    if subject.linked_child_id is not None and subject.linked_child_id != data.child_id:
        raise AlreadyLinked("The report is linked to another child.")
    child = (
        await session.execute(
            select(col(Child.id), col(Child.region_code)).where(col(Child.id) == data.child_id)
        )
    ).first()
    if child is None or not reader.principal.covers_region(child.region_code):
        await door.refuse_unseen(reader, action="report.link", child_id=data.child_id)
    assert child is not None
    if subject.linked_child_id is None:
        now = utcnow()
        # A closed case keeps its record as it was handled: nothing is re-addressed.
        moves = child.region_code[:6] != report.region_code[:6] and case.status == CaseStatus.open
        if moves:
            routing = report_policy(door.policy)
            referrals = await report_view.load_referrals(session, case.id)
            receivers = await report_routing.receivers_of(
                session, routing.by_concern[str(report.concern)].agency_kinds, child.region_code[:6]
            )
            # Told to the county the report leaves, before it leaves.
            await report_routing.withdraw_outside(session, reader, case, referrals, receivers, now=now)
        subject.linked_child_id = child.id
        subject.linked_at = now
        session.add(subject)
        await session.execute(
            update(Referral).where(col(Referral.case_id) == case.id).values(child_id=child.id, updated_at=now)
        )
        case.child_id = child.id
        case.region_code = child.region_code
        case.updated_at = now
        report.child_id = child.id
        report.region_code = child.region_code
        session.add(case)
        session.add(report)
        await session.flush()
        if moves:
            await report_routing.readdress(
                session, reader, routing, report, case, referrals, receivers, now=now
            )
            await session.flush()
    decision = await report_view.decide(session, door, reader, case, "report.link")
    return await report_view.receiver_view(session, door, reader, report, case, decision)
