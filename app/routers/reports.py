"""Mandatory reports (强制报告): file, acknowledge (受理), record outcomes, follow the status."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientScope,
    NotFound,
    Unauthorized,
    Unprocessable,
    responses,
)
from app.models.event import IDEMPOTENCY_KEY_PATTERN
from app.models.report import (
    ReportConcern,
    ReportCreate,
    ReportLink,
    ReportOutcomeCreate,
    ReportPage,
    ReportPublic,
    ReportStatus,
    ReportUrgency,
)
from app.services import report as report_service
from app.services import report_list

router = APIRouter(prefix="/v1/reports", tags=["reports"], responses=responses(Unauthorized, Forbidden))

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Filing = Annotated[Reader, Security(get_reader, scopes=[Scope.reports_file])]
Answering = Annotated[Reader, Security(get_reader, scopes=[Scope.cases_write])]


async def _reading(reader: Annotated[Reader, Security(get_reader)]) -> Reader:
    """A filer (`reports:file`) follows its report; a receiver (`children:read`) reads it."""
    if not reader.principal.scopes & {Scope.reports_file, Scope.children_read}:
        raise InsufficientScope(
            "Reading a report needs `reports:file` (its filer) or `children:read` (a receiver).",
            headers={"WWW-Authenticate": 'Bearer realm="childlink", error="insufficient_scope"'},
        )
    return reader


Reading = Annotated[Reader, Depends(_reading)]


@router.post(
    "",
    response_model=ReportPublic,
    status_code=status.HTTP_201_CREATED,
    summary="File a mandatory report (强制报告)",
    responses=responses(BadRequest, NotFound, Unprocessable),
)
async def file_report(
    session: Session,
    door: DoorDep,
    reader: Filing,
    data: ReportCreate,
    response: Response,
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Your unique key for this report (e.g. a UUID). Retrying with the same key "
            "and body returns the first answer (`Idempotent-Replayed: true`); the same key with "
            "another body is a 422.",
        ),
    ],
) -> Any:
    """Report a child in danger (Minors Protection Law art. 11) in one call, about a registered
    `child_id` or, for a child not in the registry, a `subject` met in a township or village of
    your region. The report is routed
    by the policy's `report_routing` to police, civil affairs and the other agencies its concern
    names, whose clients cover the child's county; each gets `platform.report.received` at once
    and must acknowledge by its `acknowledge_by`, or it escalates. The answer lists the receivers
    and their deadlines. The reporter's name and phone are confidential: only the receiving
    police and civil affairs read them."""
    view, replayed = await report_service.file(
        session, door, reader, data=data, idempotency_key=idempotency_key
    )
    response.headers["Location"] = f"/v1/reports/{view.id}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return view


@router.get(
    "", response_model=ReportPage, summary="List reports", responses=responses(BadRequest, Unprocessable)
)
async def list_reports(
    session: Session,
    door: DoorDep,
    reader: Reading,
    role: Annotated[
        Literal["received", "filed"],
        Query(description="`received`: routed to your agency (or led by it); `filed`: your own reports."),
    ] = "received",
    report_status: Annotated[ReportStatus | None, Query(alias="status")] = None,
    urgency: ReportUrgency | None = None,
    concern: ReportConcern | None = None,
    overdue: Annotated[bool | None, Query(description="With (or without) an overdue receiver.")] = None,
    region: Annotated[str | None, Query(pattern=r"^\d{2,12}$", description="Division-code prefix.")] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=report_list.MAX_PAGE)] = 50,
) -> Any:
    """Reports newest first. A receiver's list is released by the access layer (purpose
    `child_protection`) and never carries the reporter, which is read one report at a time; a
    filer's list shows its reports' status."""
    items, next_cursor = await report_list.list_reports(
        session,
        door,
        reader,
        role=role,
        status=report_status,
        urgency=urgency,
        concern=concern,
        overdue=overdue,
        region=region,
        cursor=cursor,
        limit=limit,
    )
    return ReportPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{report_id}",
    response_model=ReportPublic,
    summary="Get a report",
    responses=responses(BadRequest, NotFound, Unprocessable),
)
async def get_report(session: Session, door: DoorDep, reader: Reading, report_id: uuid.UUID) -> Any:
    """A receiver reads the report (through the access layer, purpose `child_protection`); its
    filer sees its status: received, acknowledged by whom and when, handled. 404 for anyone else."""
    return await report_service.get(session, door, reader, report_id)


@router.post(
    "/{report_id}/acknowledge",
    response_model=ReportPublic,
    summary="Acknowledge a report (受理)",
    responses=responses(BadRequest, NotFound, Conflict, Unprocessable),
)
async def acknowledge_report(session: Session, door: DoorDep, reader: Answering, report_id: uuid.UUID) -> Any:
    """Acknowledge (受理) a report routed to your agency: accepts your referral of its case and stops
    your acknowledgement clock. Acknowledging again answers the same and changes nothing."""
    return await report_service.acknowledge(session, door, reader, report_id)


@router.post(
    "/{report_id}/outcome",
    response_model=ReportPublic,
    summary="Record your outcome of a report",
    responses=responses(BadRequest, NotFound, Conflict, Unprocessable),
)
async def record_outcome(
    session: Session, door: DoorDep, reader: Answering, report_id: uuid.UUID, data: ReportOutcomeCreate
) -> Any:
    """Record what your agency did (police: 受案/立案/不予立案/移送 with the case number; civil affairs:
    临时监护, 救助, family follow-up ...) after acknowledging. Completes your referral; the filer
    then sees the report handled by you. Further handling continues as the report's case."""
    return await report_service.record_outcome(session, door, reader, report_id, data=data)


@router.post(
    "/{report_id}/link",
    response_model=ReportPublic,
    summary="Link a report to a registered child",
    responses=responses(BadRequest, NotFound, Conflict, Unprocessable),
)
async def link_report(
    session: Session, door: DoorDep, reader: Answering, report_id: uuid.UUID, data: ReportLink
) -> Any:
    """A report filed about an unregistered child (`subject`) is linked by a receiving civil-affairs
    agency to the child it registered or found: from then on the report, its case and its
    referrals are about that child. Until then they stand on the subject, region-scoped like a
    child. Linking again to the same child answers the same; to another child is a 409."""
    return await report_service.link(session, door, reader, report_id, data=data)
