"""Who receives a mandatory report: the policy's ``report_routing`` applied to the child's county.

At filing, each receiver gets a referral with the urgency's deadlines and one
``platform.report.received`` event tells them all at once. When civil affairs links a report to a
registered child of another county, the report follows the child: the open referrals of agencies
that do not cover the new county are withdrawn (``platform.referral.withdrawn``, told to the old
county), the new county's receivers get fresh referrals and deadlines and their own
``platform.report.received``, and the case's lead becomes the new county's police. Referrals
already declined or completed stay as they are: they are the record of what was done.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.reading import Reader
from app.access.report_policy import ReportPolicy
from app.models.case import Case
from app.models.referral import OPEN_STATUSES, TRANSITIONS, Referral, ReferralAction, ReferralStatus
from app.models.report import Report
from app.models.vocabulary import DataCategory
from app.services import case as case_service
from app.services import outbox

POLICE = "police"
REQUEST = (
    "Mandatory report (强制报告): acknowledge (受理) by `respond_by` at POST /v1/reports/{id}/acknowledge "
    "and record the outcome by `complete_by`."
)
MOVED = "The child is registered in another county; the report now goes to that county's receivers."
# Agencies of the routed kinds with a live client whose region covers the child's county.
_RECEIVERS = text(
    """
    SELECT a.code, a.kind FROM agency a
    WHERE a.kind = ANY(:kinds) AND EXISTS (
      SELECT 1 FROM api_client c
      WHERE c.agency_code = a.code AND c.revoked_at IS NULL AND starts_with(:county, c.region))
    ORDER BY a.code
    """
)

Receivers = list[tuple[str, str]]
"""(agency code, agency kind) of each receiver, by code."""


async def receivers_of(session: AsyncSession, kinds: Sequence[str], county: str) -> Receivers:
    rows = await session.execute(_RECEIVERS, {"kinds": list(kinds), "county": county})
    return [(row.code, row.kind) for row in rows]


def lead_of(receivers: Receivers, fallback: str) -> str:
    """The first police receiver leads the report's case (else the first receiver)."""
    police = [code for code, kind in receivers if kind == POLICE]
    return police[0] if police else (receivers[0][0] if receivers else fallback)


def unrouted(routing: ReportPolicy, report: Report, receivers: Receivers) -> list[str]:
    routed = {kind for _, kind in receivers}
    return [k for k in routing.by_concern[str(report.concern)].agency_kinds if k not in routed]


def add_referrals(
    session: AsyncSession, routing: ReportPolicy, report: Report, receivers: Receivers, *, now: datetime
) -> None:
    """One referral per receiver, with the urgency's deadlines from ``now``; the reporter's
    identity only to the policy's ``reporter_readers``."""
    clock = routing.by_urgency[str(report.urgency)]
    base = {DataCategory.law_enforcement, *routing.receiver_categories}
    for code, kind in receivers:
        categories = base | ({DataCategory.reporter} if kind in routing.reporter_readers else set())
        session.add(
            Referral(
                case_id=report.case_id,
                child_id=report.child_id,
                from_agency=report.filed_by_agency,
                to_agency=code,
                target_region=report.region_code[:6],
                request=REQUEST,
                categories=sorted(str(c) for c in categories),
                respond_by=now + clock.acknowledge_within,
                complete_by=now + clock.handle_within,
                next_deadline_at=now + clock.acknowledge_within,
                created_by_client=report.filed_by_client,
            )
        )


async def announce(
    session: AsyncSession,
    reader: Reader,
    routing: ReportPolicy,
    report: Report,
    case: Case,
    receivers: Receivers,
    *,
    now: datetime,
) -> None:
    """``platform.report.received`` to the county's receivers, at the urgency's delivery priority
    (policy ``report_routing.by_urgency``: an ``immediate_danger`` one goes ahead of every
    receiver's backlog)."""
    clock = routing.by_urgency[str(report.urgency)]
    await outbox.emit(
        session,
        reader.principal,
        type=f"{case_service.PREFIX}report.received.v1",
        subject=report.child_id,
        region_code=report.region_code,
        data={
            "case_id": str(case.id),
            "kind": str(case.kind),
            "lead_agency": case.lead_agency,
            "report_id": str(report.id),
            "concern": str(report.concern),
            "urgency": str(report.urgency),
            "receivers": [code for code, _ in receivers],
            "acknowledge_by": (now + clock.acknowledge_within).isoformat(),
        },
        case_id=case.id,
        priority=clock.delivery_priority,
    )


async def withdraw_outside(
    session: AsyncSession,
    reader: Reader,
    case: Case,
    referrals: Sequence[Referral],
    receivers: Receivers,
    *,
    now: datetime,
) -> None:
    """Withdraw the open referrals of agencies not among ``receivers`` (the lifecycle's
    ``withdraw``), each announced to the case's current region: call it before the case moves."""
    keep = {code for code, _ in receivers}
    for referral in referrals:
        if referral.status not in OPEN_STATUSES or referral.to_agency in keep:
            continue
        target = TRANSITIONS[(referral.status, ReferralAction.withdraw)]
        referral.status = target
        referral.withdraw_reason = MOVED
        referral.next_deadline_at = None
        referral.overdue_since = None
        referral.updated_at = now
        session.add(referral)
        await session.flush()
        await case_service.emit(
            session, reader, case, f"referral.{target}", case_service.referral_event_data(referral)
        )


async def readdress(
    session: AsyncSession,
    reader: Reader,
    routing: ReportPolicy,
    report: Report,
    case: Case,
    referrals: Sequence[Referral],
    receivers: Receivers,
    *,
    now: datetime,
) -> None:
    """Send a report that has moved to its child's county (``report`` and ``case`` already carry
    the child's id and region) to that county's ``receivers``, after :func:`withdraw_outside`.

    Agencies that receive in both counties keep their referral, its state and its deadlines
    (retargeted to the new county); receivers new to the report get referrals with fresh
    deadlines and a ``platform.report.received`` in the new county. The case's lead follows the
    police of the new county.
    """
    county = report.region_code[:6]
    involved = {r.to_agency for r in referrals if r.status != ReferralStatus.withdrawn}
    for referral in referrals:
        if referral.status in OPEN_STATUSES:
            referral.target_region = county
            session.add(referral)
    fresh = [(code, kind) for code, kind in receivers if code not in involved]
    report.unrouted_agency_kinds = unrouted(routing, report, receivers)
    case.lead_agency = lead_of(receivers, case.lead_agency)
    add_referrals(session, routing, report, fresh, now=now)
    await session.flush()
    if fresh:
        await announce(session, reader, routing, report, case, receivers, now=now)
