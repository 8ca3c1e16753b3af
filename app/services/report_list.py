"""Lists of mandatory reports: a receiver's inbox (reports routed to its agency within the
reader's region, or whose case it leads) and a filer's own reports (their status)."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.case_reads import CaseRead, admit_case_reads
from app.access.door import Door
from app.access.reading import Reader
from app.models.case import Case, CaseStatus
from app.models.referral import OPEN_STATUSES, Referral, ReferralStatus
from app.models.report import Report, ReportConcern, ReportPublic, ReportStatus, ReportUrgency
from app.models.vocabulary import DataCategory
from app.services import case as case_service
from app.services import cursor as cursor_codec
from app.services import report_view

MAX_PAGE = 100


def _referral_where(*conditions: Any) -> Any:
    return exists().where(col(Referral.case_id) == col(Case.id), *conditions)


def _status_condition(status: ReportStatus) -> Any:
    answered = _referral_where(col(Referral.status) == str(ReferralStatus.accepted))
    handled = _referral_where(col(Referral.status) == str(ReferralStatus.completed))
    is_open = col(Case.status) == str(CaseStatus.open)
    if status is ReportStatus.closed:
        return col(Case.status) == str(CaseStatus.closed)
    if status is ReportStatus.received:
        return and_(is_open, ~answered, ~handled)
    if status is ReportStatus.acknowledged:
        return and_(is_open, answered)
    return and_(is_open, handled, ~answered)


async def list_reports(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    role: Literal["received", "filed"],
    status: ReportStatus | None,
    urgency: ReportUrgency | None,
    concern: ReportConcern | None,
    overdue: bool | None,
    region: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[ReportPublic], str | None]:
    """Newest first. ``received``: each report released by the door for the page (one access-log
    record per group), without the reporter, which is read one report at a time. ``filed``: the
    filer's status view of its own reports."""
    principal = reader.principal
    filters = {
        k: str(v)
        for k, v in {
            "role": role,
            "status": status,
            "urgency": urgency,
            "concern": concern,
            "overdue": overdue,
            "region": region,
            "limit": limit,
        }.items()
        if v is not None
    }
    query = select(Report, Case).join(Case, col(Case.id) == col(Report.case_id))
    if role == "filed":
        query = query.where(
            col(Report.filed_by_agency) == principal.agency,
            col(Report.region_code).startswith(principal.region, autoescape=True),
        )
    else:
        await door.admit_list_query(reader, action="report.list", query=filters, required=None)
        query = query.where(
            or_(
                _referral_where(
                    col(Referral.to_agency) == principal.agency,
                    col(Referral.target_region).startswith(principal.region, autoescape=True),
                ),
                and_(
                    col(Case.lead_agency) == principal.agency,
                    col(Case.region_code).startswith(principal.region, autoescape=True),
                ),
            )
        )
    if status is not None:
        query = query.where(_status_condition(status))
    if urgency is not None:
        query = query.where(col(Report.urgency) == urgency)
    if concern is not None:
        query = query.where(col(Report.concern) == concern)
    if region is not None:
        query = query.where(col(Report.region_code).startswith(region, autoescape=True))
    if overdue is not None:
        late = _referral_where(
            col(Referral.overdue_since).is_not(None),
            col(Referral.status).in_([str(s) for s in OPEN_STATUSES]),
        )
        query = query.where(late if overdue else ~late)
    if cursor:
        stamp, ident = cursor_codec.decode(cursor)
        query = query.where(
            or_(col(Report.created_at) < stamp, and_(col(Report.created_at) == stamp, col(Report.id) < ident))
        )
    query = query.order_by(col(Report.created_at).desc(), col(Report.id).desc()).limit(limit + 1)
    rows = (await session.execute(query)).all()
    page = rows[:limit]
    items: list[ReportPublic] = []
    if role == "filed":
        items = [await report_view.filer_view(session, report.id) for report, _ in page]
    else:
        reads = [
            CaseRead(
                subject=case_service.subject(case),
                categories=(DataCategory.law_enforcement,),
                case_id=case.id,
            )
            for _, case in page
        ]
        decisions = await admit_case_reads(
            session, door, reader, action="report.list", reads=reads, query=filters
        )
        for (report, case), decision in zip(page, decisions, strict=True):
            if decision is not None:  # a refusal is on record
                items.append(await report_view.receiver_view(session, door, reader, report, case, decision))
    last = page[-1][0] if page else None
    next_cursor = (
        cursor_codec.encode(last.created_at, last.id) if last is not None and len(rows) > limit else None
    )
    return items, next_cursor
