"""Statistics for joint meetings (摸底排查): counts under disclosure control, exports, a dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Security
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import BadRequest, Forbidden, Unauthorized, Unprocessable, responses
from app.models.child import ChildCategory
from app.models.statistics import (
    ChildDimension,
    ExportFormat,
    FlowDimension,
    FlowDirection,
    Lang,
    Period,
    RegionLevel,
    ServiceDimension,
    ServiceMeasure,
    StatisticsTable,
    StatusFilter,
)
from app.services import dashboard as dashboard_service
from app.services import export
from app.services import statistics as statistics_service
from app.services import statistics_activity as activity_service
from app.services import statistics_reports as reports_service

router = APIRouter(
    prefix="/v1/statistics",
    tags=["statistics"],
    responses=responses(BadRequest, Unauthorized, Forbidden, Unprocessable),
)

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Counting = Annotated[Reader, Security(get_reader, scopes=[Scope.statistics_read])]
RegionQuery = Annotated[
    str | None,
    Query(
        pattern=r"^\d{2,12}$", description="Division-code prefix inside your own region.", examples=["510107"]
    ),
]
LevelQuery = Annotated[RegionLevel, Query(description="The level `region` is grouped at.")]
ExactQuery = Annotated[
    bool,
    Query(
        description="Exact counts of your own agency's records (those it keeps or published); "
        "otherwise every count is released under disclosure control."
    ),
]
FormatQuery = Annotated[
    ExportFormat, Query(alias="format", description="`json`, `csv` (UTF-8 with BOM) or `xlsx`.")
]
LangQuery = Annotated[Lang, Query(description="Headings and labels in CSV and XLSX: `en` or `zh` (中文).")]
FromQuery = Annotated[
    date | None, Query(alias="from", description="First day (default: 11 months before `to`'s month).")
]
ToQuery = Annotated[date | None, Query(alias="to", description="Last day (default: today).")]
PeriodQuery = Annotated[Period, Query(description="Counting period.")]

# Defaults of the list parameters (FastAPI copies a default for each request).
_FLOWS_BY = ["period,direction"]
_SERVICES_BY = ["type"]

_EXPORTS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            export.XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "The table as JSON, or as CSV or XLSX with `format`.",
    }
}


@dataclass(frozen=True, slots=True)
class TableQuery:
    """What every count route shares: where, how released, and the answer's format."""

    options: statistics_service.Options
    fmt: ExportFormat


def table_query(
    level: LevelQuery = RegionLevel.county,
    region: RegionQuery = None,
    exact: ExactQuery = False,
    fmt: FormatQuery = ExportFormat.json,
    lang: LangQuery = Lang.en,
) -> TableQuery:
    return TableQuery(statistics_service.Options(region=region, level=level, exact=exact, lang=lang), fmt)


@dataclass(frozen=True, slots=True)
class Window:
    """The counting period and the days counted (flows and services)."""

    period: Period
    start: date | None
    end: date | None


def window(period: PeriodQuery = Period.month, start: FromQuery = None, end: ToQuery = None) -> Window:
    return Window(period, start, end)


Table = Annotated[TableQuery, Depends(table_query)]
Days = Annotated[Window, Depends(window)]


def _answer(table: StatisticsTable, asked: TableQuery) -> Any:
    fmt, lang = asked.fmt, asked.options.lang
    if fmt is ExportFormat.csv:
        return Response(
            export.to_csv(table, lang),
            media_type=export.CSV_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{export.filename(table, "csv")}"'},
        )
    if fmt is ExportFormat.xlsx:
        return Response(
            export.to_xlsx(table, lang),
            media_type=export.XLSX_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{export.filename(table, "xlsx")}"'},
        )
    # Serialised once by pydantic-core; returning the model would have FastAPI validate every
    # cell again against `response_model`, which stays for the documentation.
    return Response(table.model_dump_json(), media_type="application/json")


def _dimensions(raw: list[str], kind: Any) -> list[Any]:
    try:
        return [kind(item.strip()) for part in raw for item in part.split(",") if item.strip()]
    except ValueError:
        raise BadRequest(
            "group_by takes: " + ", ".join(d.value for d in kind) + ".", code="unknown_dimension"
        ) from None


@router.get("/children", response_model=StatisticsTable, summary="Count children", responses=_EXPORTS)
async def count_children(
    session: Session,
    door: DoorDep,
    reader: Counting,
    group_by: Annotated[
        list[str],
        Query(
            description="Comma-separated: " + ", ".join(d.value for d in ChildDimension) + ".",
            examples=["region,category,sex"],
        ),
    ],
    asked: Table,
    category: Annotated[ChildCategory | None, Query(description="Only children in this category.")] = None,
    child_status: Annotated[StatusFilter, Query(alias="status")] = StatusFilter.active,
    as_of: Annotated[
        date | None, Query(description="The registry as it stood at the end of this day.")
    ] = None,
) -> Any:
    """Children in your region grouped by up to four dimensions, with totals per dimension and
    overall; small counts are suppressed and the rest rounded unless you ask for your own
    records exactly. Each read is one access-log record without child ids."""
    table = await statistics_service.count_children(
        session,
        door,
        reader,
        group_by=_dimensions(group_by, ChildDimension),
        options=asked.options,
        category=category,
        status=child_status,
        as_of=as_of,
    )
    return _answer(table, asked)


@router.get("/flows", response_model=StatisticsTable, summary="Count entries and exits", responses=_EXPORTS)
async def count_flows(
    session: Session,
    door: DoorDep,
    reader: Counting,
    days: Days,
    asked: Table,
    group_by: Annotated[
        list[str], Query(description="Comma-separated: period, direction, reason, region.")
    ] = _FLOWS_BY,
    direction: Annotated[FlowDirection | None, Query(description="Only entries or only exits.")] = None,
) -> Any:
    """Children entering (新增) and leaving (退出, by reason) the registry per week, month,
    quarter or year, under the same disclosure control."""
    table = await activity_service.count_flows(
        session,
        door,
        reader,
        group_by=_dimensions(group_by, FlowDimension),
        options=asked.options,
        period=days.period,
        start=days.start,
        end=days.end,
        direction=direction,
    )
    return _answer(table, asked)


@router.get("/services", response_model=StatisticsTable, summary="Count services", responses=_EXPORTS)
async def count_services(
    session: Session,
    door: DoorDep,
    reader: Counting,
    days: Days,
    asked: Table,
    group_by: Annotated[
        list[str] | None,
        Query(
            description="Comma-separated. Events: type (the default), publisher, region, period. "
            "Reports: concern (the default), urgency, acknowledgement, region, period. "
            "Acknowledgements: the same and receiver; acknowledgement is the default."
        ),
    ] = None,
    what: Annotated[
        ServiceMeasure,
        Query(
            description="`events` published (the default); mandatory `reports` (强制报告), each "
            "once; or each receiver's `acknowledgements` (受理) of them, in time or not."
        ),
    ] = ServiceMeasure.events,
    event_type: Annotated[
        str | None,
        Query(
            alias="type",
            pattern=r"^[a-z0-9][a-z0-9.-]{2,118}[a-z0-9]$",
            description="Only this event type (full, or without prefix and version); `what=events` only.",
            examples=["civil-affairs.home-visit.recorded"],
        ),
    ] = None,
) -> Any:
    """Events published about children in your region (home visits, health checks, aid
    granted, dropout flagged and returned, caring-mother pairings ...) by type, publisher,
    region and period; or mandatory reports by concern, urgency and whether they were
    acknowledged in time, never by reporter or filer; under the same disclosure control."""
    if what is not ServiceMeasure.events:
        if event_type:
            raise BadRequest(
                "`type` filters events; leave it out with `what=reports`.", code="unknown_parameter"
            )
        start, end = activity_service.window(days.start, days.end)
        table = await reports_service.count_reports(
            session,
            door,
            reader,
            what=what,
            group_by=_dimensions(group_by or [], ServiceDimension),
            options=asked.options,
            period=days.period,
            start=start,
            end=end,
        )
        return _answer(table, asked)
    table = await activity_service.count_services(
        session,
        door,
        reader,
        group_by=_dimensions(group_by or _SERVICES_BY, ServiceDimension),
        options=asked.options,
        period=days.period,
        start=days.start,
        end=days.end,
        event_type=event_type,
    )
    return _answer(table, asked)


@router.get(
    "/dashboard",
    response_class=HTMLResponse,
    summary="Joint-meeting dashboard",
    responses={
        200: {
            "content": {
                "text/html": {
                    "schema": {"type": "string"},
                    "example": '<!DOCTYPE html><html lang="zh-CN">…<h1>联席会议统计</h1>…',
                }
            },
            "description": "A printable page.",
        }
    },
)
async def dashboard(session: Session, door: DoorDep, reader: Counting, region: RegionQuery = None) -> Any:
    """A printable page in Chinese for a joint meeting (联席会议): totals, children by category,
    sex, age band and township, entries and exits over twelve months and services by type, as
    charts drawn on the server; works offline and shows suppressed counts as <5."""
    page = await dashboard_service.render(session, door, reader, region=region)
    return HTMLResponse(page, headers={"Content-Security-Policy": dashboard_service.CONTENT_SECURITY_POLICY})
