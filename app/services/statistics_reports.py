"""Counts of mandatory reports (强制报告) for joint meetings: reports by concern, urgency and
whether they were acknowledged (受理) in time, and each receiver's acknowledgements; served by
``GET /v1/statistics/services?what=reports|acknowledgements`` with the same admission and
disclosure control as every other count (:mod:`app.services.statistics`).

Nothing here can point at a reporter: there is no dimension or filter on the reporter, the
filing agency or the child, and the counts read only the report's concern, urgency, region and
date and its referrals' deadlines and answers. A referral withdrawn (the report moved to another
county, or its case closed with a reason) is not counted: it was nobody's to answer.
"""

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
    Period,
    ServiceDimension,
    ServiceMeasure,
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
    unique_dimensions,
)

ALLOWED: dict[ServiceMeasure, frozenset[ServiceDimension]] = {
    ServiceMeasure.reports: frozenset(
        {
            ServiceDimension.concern,
            ServiceDimension.urgency,
            ServiceDimension.acknowledgement,
            ServiceDimension.region,
            ServiceDimension.period,
        }
    ),
    ServiceMeasure.acknowledgements: frozenset(
        {
            ServiceDimension.concern,
            ServiceDimension.urgency,
            ServiceDimension.acknowledgement,
            ServiceDimension.receiver,
            ServiceDimension.region,
            ServiceDimension.period,
        }
    ),
}
DEFAULT_DIMENSIONS = {
    ServiceMeasure.reports: [ServiceDimension.concern],
    ServiceMeasure.acknowledgements: [ServiceDimension.acknowledgement],
}
_PERIOD_FORMAT = {
    Period.week: 'IYYY-"W"IW',
    Period.month: "YYYY-MM",
    Period.quarter: 'YYYY-"Q"Q',
    Period.year: "YYYY",
}


def _timeliness(alias: str) -> str:
    """One receiver's answer to its referral (``alias``), as the statistics name it."""
    return f"""CASE
    WHEN {alias}.status IN ('accepted', 'completed')
         AND {alias}.answered_at <= {alias}.respond_by THEN 'in_time'
    WHEN {alias}.status IN ('accepted', 'completed') THEN 'late'
    WHEN {alias}.status = 'declined' THEN 'declined'
    WHEN now() > {alias}.respond_by THEN 'overdue'
    ELSE 'awaiting' END"""


# A report's, from its receivers' (the worst one; none at all: `no_receiver`), by rank.
_RANK = "ARRAY['in_time', 'declined', 'late', 'awaiting', 'overdue']"
_REPORT_TIMELINESS = (
    f"(ARRAY['no_receiver'] || {_RANK})[1 + COALESCE(max(array_position({_RANK}, {_timeliness('x')})), 0)]"
)
# Each receiver's referral of a report in the region and window, with the report's fields.
_REFERRALS = (
    "(SELECT rp.concern, rp.urgency, rp.region_code, rp.created_at, rf.to_agency, a.kind AS receiver,"
    " rf.status, rf.answered_at, rf.respond_by"
    " FROM report rp JOIN referral rf ON rf.case_id = rp.case_id AND rf.status <> 'withdrawn'"
    " JOIN agency a ON a.code = rf.to_agency"
    " WHERE rp.region_code LIKE :prefix AND rp.created_at >= :start_at AND rp.created_at < :end_at) f"
)
# Each report once, with its receivers' worst answer; ``exact``: only those routed to the reader.
_REPORTS = (  # built from this module's constants only
    "(SELECT rp.concern, rp.urgency, rp.region_code, rp.created_at,"  # noqa: S608
    f" (SELECT {_REPORT_TIMELINESS} FROM referral x"
    "   WHERE x.case_id = rp.case_id AND x.status <> 'withdrawn') AS acknowledgement"
    " FROM report rp"
    " WHERE rp.region_code LIKE :prefix AND rp.created_at >= :start_at AND rp.created_at < :end_at"
    " AND (NOT :exact OR EXISTS (SELECT 1 FROM referral rf WHERE rf.case_id = rp.case_id"
    "   AND rf.to_agency = :owner AND rf.status <> 'withdrawn'))) f"
)


def _dimensions(what: ServiceMeasure, group_by: Sequence[ServiceDimension]) -> list[ServiceDimension]:
    dimensions = unique_dimensions(group_by or DEFAULT_DIMENSIONS[what])
    refused = [d for d in dimensions if d not in ALLOWED[what]]
    if refused:
        raise BadRequest(
            f"what={what} groups by: " + ", ".join(sorted(ALLOWED[what])) + ".", code="unknown_dimension"
        )
    return dimensions


async def count_reports(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    what: ServiceMeasure,
    group_by: Sequence[ServiceDimension],
    options: Options,
    period: Period,
    start: date,
    end: date,
) -> StatisticsTable:
    """Reports filed about children in the region (``what=reports``, each report once, its
    acknowledgement the worst of its receivers') or each receiver's acknowledgement of them
    (``what=acknowledgements``), by the day filed (China Standard Time). ``exact`` counts the
    reports routed to the reader's own agency, and only its own acknowledgements. One aggregate
    access-log record, written before anything is counted."""
    dimensions = _dimensions(what, group_by)
    prefix = region_prefix(reader, options.region)
    query: dict[str, Any] = {
        "what": str(what),
        "group_by": [str(d) for d in dimensions],
        "period": str(period),
        "level": str(options.level),
        "region": prefix,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "exact": options.exact,
    }
    await admit_aggregate(
        door, reader, action="statistics.services", query=query, categories=[DataCategory.law_enforcement]
    )
    day = "(f.created_at AT TIME ZONE 'Asia/Shanghai')::date"
    per_report = what is ServiceMeasure.reports
    expressions = {
        ServiceDimension.concern: "f.concern",
        ServiceDimension.urgency: "f.urgency",
        ServiceDimension.region: f"left(f.region_code, {REGION_DIGITS[options.level]})",
        ServiceDimension.period: f"to_char({day}, '{_PERIOD_FORMAT[period]}')",
        ServiceDimension.receiver: "f.receiver",
        ServiceDimension.acknowledgement: "f.acknowledgement" if per_report else _timeliness("f"),
    }
    params: dict[str, Any] = {
        "prefix": prefix + "%",
        "start_at": datetime.combine(start, time(0), CHINA),
        "end_at": datetime.combine(end + timedelta(days=1), time(0), CHINA),
        "owner": reader.principal.agency,
        "exact": options.exact,
    }
    where = ["true"]
    if not per_report and options.exact:
        where.append("f.to_agency = :owner")
    source = _REPORTS if per_report else _REFERRALS
    sql = select_sql([expressions[d] for d in dimensions], source, where, "count(*)")
    cells = await grouped(session, sql, params, len(dimensions))
    names = [str(d) for d in dimensions]
    raw = disclosure.RawTable(tuple(names), cells, margins_from(cells, names), sum(cells.values()))
    return release(door, raw, measure=str(what), query=query, reference=end, options=options)
