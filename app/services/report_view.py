"""How a mandatory report is shown: the filer's status view, and a receiver's view as the door
releases it (the reporter only to the policy's ``reporter_readers``)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.decision import Decision
from app.access.door import Door
from app.access.reading import Reader
from app.access.report_policy import report_policy
from app.models.case import Case, CaseStatus
from app.models.referral import OPEN_STATUSES, Referral, ReferralStatus
from app.models.report import (
    ReceiverStatus,
    Report,
    ReporterPublic,
    ReportOutcome,
    ReportPublic,
    ReportReceiver,
    ReportStatus,
    ReportSubject,
    SubjectPublic,
)
from app.models.vocabulary import DataCategory
from app.services import case as case_service
from app.services.child import access_summary

RECEIVER_STATUS = {
    ReferralStatus.requested: ReceiverStatus.received,
    ReferralStatus.accepted: ReceiverStatus.acknowledged,
    ReferralStatus.completed: ReceiverStatus.handled,
    ReferralStatus.declined: ReceiverStatus.declined,
    ReferralStatus.withdrawn: ReceiverStatus.withdrawn,
}


async def load_referrals(session: AsyncSession, case_id: uuid.UUID) -> list[Referral]:
    rows = await session.execute(
        select(Referral)
        .where(col(Referral.case_id) == case_id)
        .order_by(col(Referral.to_agency), col(Referral.id))
    )
    return list(rows.scalars())


async def load_outcomes(session: AsyncSession, report_id: uuid.UUID) -> dict[uuid.UUID, ReportOutcome]:
    rows = await session.execute(select(ReportOutcome).where(col(ReportOutcome.report_id) == report_id))
    return {o.referral_id: o for o in rows.scalars()}


async def render_subject(session: AsyncSession, report: Report) -> SubjectPublic | None:
    if report.subject_id is None:
        return None
    subject = await session.get(ReportSubject, report.subject_id)
    assert subject is not None
    return SubjectPublic.model_validate(subject, from_attributes=True)


async def is_linked(session: AsyncSession, report: Report) -> bool:
    if report.subject_id is None:
        return True
    subject = await session.get(ReportSubject, report.subject_id)
    return subject is not None and subject.linked_child_id is not None


def report_status(case: Case, referrals: list[Referral]) -> ReportStatus:
    if case.status == CaseStatus.closed:
        return ReportStatus.closed
    answered = [r for r in referrals if r.status in (ReferralStatus.accepted, ReferralStatus.completed)]
    if not answered:
        return ReportStatus.received
    if all(r.status == ReferralStatus.completed for r in answered):
        return ReportStatus.handled
    return ReportStatus.acknowledged


def render_receiver(referral: Referral, outcome: ReportOutcome | None, *, full: bool) -> ReportReceiver:
    return ReportReceiver(
        agency=referral.to_agency,
        referral_id=referral.id,
        status=RECEIVER_STATUS[referral.status],
        acknowledge_by=referral.respond_by,
        handle_by=referral.complete_by,
        acknowledged_at=referral.answered_at if referral.status != ReferralStatus.declined else None,
        handled_at=outcome.recorded_at if outcome is not None else None,
        overdue=referral.overdue_since is not None and referral.status in OPEN_STATUSES,
        result=outcome.result if outcome is not None and full else None,
        case_reference=outcome.case_reference if outcome is not None and full else None,
    )


async def filer_view(session: AsyncSession, report_id: uuid.UUID) -> ReportPublic:
    """The filer's view: the status, who received, acknowledged and handled it, and when, and
    the kinds the routing named that no agency of the county covered (as at filing)."""
    report = await session.get(Report, report_id)
    assert report is not None
    case = await session.get(Case, report.case_id)
    assert case is not None
    referrals = await load_referrals(session, case.id)
    outcomes = await load_outcomes(session, report.id)
    return ReportPublic(
        id=report.id,
        case_id=None,
        child_id=report.child_id,
        linked=await is_linked(session, report),
        region_code=report.region_code,
        concern=report.concern,
        urgency=report.urgency,
        status=report_status(case, referrals),
        observed_at=report.observed_at,
        filed_by_agency=report.filed_by_agency,
        receivers=[render_receiver(r, outcomes.get(r.id), full=False) for r in referrals],
        unrouted_agency_kinds=list(report.unrouted_agency_kinds),
        created_at=report.created_at,
    )


def read_categories(reader: Reader, door: Door) -> list[DataCategory]:
    if reader.agency_kind in report_policy(door.policy).reporter_readers:
        return [DataCategory.law_enforcement, DataCategory.reporter]
    return [DataCategory.law_enforcement]


async def decide(session: AsyncSession, door: Door, reader: Reader, case: Case, action: str) -> Decision:
    """The door's decision on a receiver's read (the case's lead reads as owner, the others on
    their referral while it is open), on record."""
    return await door.admit(
        session,
        reader,
        action=action,
        subject=case_service.subject(case),
        categories=read_categories(reader, door),
        case_id=case.id,
    )


async def receiver_view(
    session: AsyncSession, door: Door, reader: Reader, report: Report, case: Case, decision: Decision
) -> ReportPublic:
    """A receiver's view as ``decision`` releases it. The reporter is shown only to the policy's
    ``reporter_readers``, whatever else might release the category."""
    referrals = await load_referrals(session, case.id)
    outcomes = await load_outcomes(session, report.id)
    released = decision.allows(DataCategory.law_enforcement)
    shows_reporter = reader.agency_kind in report_policy(door.policy).reporter_readers and decision.allows(
        DataCategory.reporter
    )
    return ReportPublic(
        id=report.id,
        case_id=case.id,
        child_id=report.child_id,
        subject=await render_subject(session, report) if released else None,
        linked=await is_linked(session, report),
        region_code=report.region_code,
        concern=report.concern,
        urgency=report.urgency,
        status=report_status(case, referrals),
        observed=report.observed if released else None,
        observed_at=report.observed_at,
        filed_by_agency=report.filed_by_agency,
        reporter=ReporterPublic(
            role=report.reporter_role, name=report.reporter_name, phone=report.reporter_phone
        )
        if shows_reporter
        else None,
        receivers=[render_receiver(r, outcomes.get(r.id), full=released) for r in referrals],
        unrouted_agency_kinds=list(report.unrouted_agency_kinds),
        created_at=report.created_at,
        access=access_summary(decision),
    )
