"""Counts of registry entries and exits (flows) and of services delivered (events), for joint
meetings; same admission, counting and disclosure control as the children's counts
(:mod:`app.services.statistics`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.access.aggregate import admit_aggregate
from app.access.door import Door
from app.access.reading import Reader
from app.errors import BadRequest
from app.models.statistics import (
    REGION_DIGITS,
    FlowDimension,
    FlowDirection,
    Period,
    ServiceDimension,
    StatisticsTable,
)
from app.models.vocabulary import DataCategory
from app.services import disclosure
from app.services.statistics import (
    CHINA,
    Options,
    grouped,
    margins_from,
    region_prefix,
    release,
    select_sql,
    today,
    unique_dimensions,
)

_EVENT_PREFIX = "cn.gov.childlink."
_REGISTRY_EVENTS = "cn.gov.childlink.civil-affairs.child.%"
# The platform's own events (cases, referrals, consultations, mandatory reports, notices) are the
# coordination around services, not services; counted by publisher, a report's would point at the
# school or hospital that filed it. Reports are counted by ``what=reports``, without the filer.
_PLATFORM_EVENTS = "cn.gov.childlink.platform.%"
_PERIOD_FORMAT = {
    Period.week: 'IYYY-"W"IW',
    Period.month: "YYYY-MM",
    Period.quarter: 'YYYY-"Q"Q',
    Period.year: "YYYY",
}
_EVENT_DIMENSIONS = frozenset(
    {ServiceDimension.type, ServiceDimension.publisher, ServiceDimension.region, ServiceDimension.period}
)
FLOW_CATEGORIES = [DataCategory.welfare]
SERVICE_CATEGORIES = [
    DataCategory.welfare,
    DataCategory.custody,
    DataCategory.education,
    DataCategory.health,
    DataCategory.disability,
    DataCategory.law_enforcement,
]


def window(start: date | None, end: date | None) -> tuple[date, date]:
    """The days counted: ``start`` to ``end`` (today, and 11 months before its month, by default)."""
    end = end or today()
    if start is None:
        first = end.replace(day=1)
        month = first.month - 11
        year = first.year + (month - 1) // 12
        start = first.replace(year=year, month=(month - 1) % 12 + 1)
    if not (1900 <= start.year and end.year <= 2200):
        raise BadRequest("from and to lie between 1900 and 2200.", code="invalid_period")
    if start > end:
        raise BadRequest("from is after to.", code="invalid_period")
    if (end - start).days > 366 * 20:
        raise BadRequest("Ask for at most twenty years at a time.", code="invalid_period")
    return start, end


async def count_flows(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    group_by: Sequence[FlowDimension],
    options: Options,
    period: Period,
    start: date | None,
    end: date | None,
    direction: FlowDirection | None = None,
) -> StatisticsTable:
    """Entries (新增, by registration date) and exits (退出, by exit date, with the reason) per
    period, or only one ``direction``; one aggregate access-log record."""
    dimensions = unique_dimensions(group_by)
    start, end = window(start, end)
    prefix = region_prefix(reader, options.region)
    query: dict[str, Any] = {
        "group_by": [str(d) for d in dimensions],
        "period": str(period),
        "level": str(options.level),
        "region": prefix,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "exact": options.exact,
    }
    if direction is not None:
        query["direction"] = str(direction)
    if not options.on_record:
        await admit_aggregate(
            door, reader, action="statistics.flows", query=query, categories=FLOW_CATEGORIES
        )
    source = (
        "(SELECT 'entry' AS direction, 'new' AS reason,"
        " (c.created_at AT TIME ZONE 'Asia/Shanghai')::date AS day,"
        " c.region_code, c.owner_agency FROM child c"
        " UNION ALL SELECT 'exit', c.exit_reason, c.exit_date, c.region_code, c.owner_agency"
        " FROM child c WHERE c.status = 'exited') f"
    )
    expressions = {
        FlowDimension.period: f"to_char(f.day, '{_PERIOD_FORMAT[period]}')",
        FlowDimension.direction: "f.direction",
        FlowDimension.reason: "f.reason",
        FlowDimension.region: f"left(f.region_code, {REGION_DIGITS[options.level]})",
    }
    where = ["f.region_code LIKE :prefix", "f.day >= :start", "f.day <= :end"]
    if direction is not None:
        where.append("f.direction = :direction")
    if options.exact:
        where.append("f.owner_agency = :owner")
    sql = select_sql([expressions[d] for d in dimensions], source, where, "count(*)")
    params = {
        "prefix": prefix + "%",
        "start": start,
        "end": end,
        "owner": reader.principal.agency,
        "direction": str(direction) if direction else "",
    }
    cells = await grouped(session, sql, params, len(dimensions))
    names = [str(d) for d in dimensions]
    raw = disclosure.RawTable(tuple(names), cells, margins_from(cells, names), sum(cells.values()))
    return release(door, raw, measure="flows", query=query, reference=end, options=options)


def short_type(event_type: str) -> str:
    """``cn.gov.childlink.health.check.completed.v1`` -> ``health.check.completed``."""
    name = event_type.removeprefix(_EVENT_PREFIX)
    head, _, version = name.rpartition(".")
    return head if version.startswith("v") and version[1:].isdigit() else name


async def count_services(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    group_by: Sequence[ServiceDimension],
    options: Options,
    period: Period,
    start: date | None,
    end: date | None,
    event_type: str | None,
) -> StatisticsTable:
    """Events published about children in the region (home visits, health checks, aid granted,
    dropout flagged and returned, caring-mother pairings ...) by type, publisher, region and
    period; registry entries and exits are counted by ``flows``. One aggregate access-log record."""
    dimensions = unique_dimensions(group_by)
    if not set(dimensions) <= _EVENT_DIMENSIONS:
        raise BadRequest(
            "Events group by: " + ", ".join(sorted(_EVENT_DIMENSIONS)) + ".", code="unknown_dimension"
        )
    start, end = window(start, end)
    prefix = region_prefix(reader, options.region)
    query: dict[str, Any] = {
        "group_by": [str(d) for d in dimensions],
        "period": str(period),
        "level": str(options.level),
        "region": prefix,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "exact": options.exact,
    }
    if event_type:
        query["type"] = event_type
    if not options.on_record:
        await admit_aggregate(
            door, reader, action="statistics.services", query=query, categories=SERVICE_CATEGORIES
        )
    day = "(e.time AT TIME ZONE 'Asia/Shanghai')::date"
    expressions = {
        ServiceDimension.type: "regexp_replace(substr(e.type, 18), '\\.v[0-9]+$', '')",
        ServiceDimension.publisher: "e.publisher_agency",
        ServiceDimension.region: f"left(e.region_code, {REGION_DIGITS[options.level]})",
        ServiceDimension.period: f"to_char({day}, '{_PERIOD_FORMAT[period]}')",
    }
    where = [
        "e.region_code LIKE :prefix",
        "e.type NOT LIKE :registry",
        "e.type NOT LIKE :platform",
        "e.audience IS NULL",  # notices to one agency are not services
        "e.time >= :start_at",
        "e.time < :end_at",
    ]
    params: dict[str, Any] = {
        "prefix": prefix + "%",
        "registry": _REGISTRY_EVENTS,
        "platform": _PLATFORM_EVENTS,
        "start_at": datetime.combine(start, time(0), CHINA),
        "end_at": datetime.combine(end + timedelta(days=1), time(0), CHINA),
    }
    if event_type:
        where.append("(e.type = :type OR regexp_replace(substr(e.type, 18), '\\.v[0-9]+$', '') = :type)")
        params["type"] = event_type
    if options.exact:
        where.append("e.publisher_agency = :owner")
        params["owner"] = reader.principal.agency
    sql = select_sql([expressions[d] for d in dimensions], "outbox_event e", where, "count(*)")
    cells = await grouped(session, sql, params, len(dimensions))
    names = [str(d) for d in dimensions]
    raw = disclosure.RawTable(tuple(names), cells, margins_from(cells, names), sum(cells.values()))
    return release(door, raw, measure="services", query=query, reference=end, options=options)
