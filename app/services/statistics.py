"""Counts of children for joint meetings (摸底排查), and what every statistics count shares
(entries, exits and services are counted in :mod:`app.services.statistics_activity`).

Each function admits the read through :func:`app.access.aggregate.admit_aggregate` (one
access-log record, no child ids) before anything is counted, counts in SQL with ``GROUP BY``,
and releases the table under disclosure control (:mod:`app.services.disclosure`) unless the
reader asks for exact counts of its own records.

Where the counts come from: current counts by region, category, sex and status read
``child_tally``, kept by the registry's own writes (a few thousand rows for a province, however
many children); any other dimension, and any ``as_of`` date, reads ``child_history``, the
registry as it stood at the end of that day (China Standard Time). SQL is built from fixed
fragments chosen by enum; every value is a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.aggregate import admit_aggregate
from app.access.door import Door
from app.access.reading import Reader
from app.errors import BadRequest, Forbidden
from app.models.child import CATEGORY_DATA, ChildCategory
from app.models.statistics import (
    REGION_DIGITS,
    Cell,
    ChildDimension,
    Count,
    Disclosure,
    Lang,
    Margin,
    RegionLevel,
    StatisticsTable,
    StatusFilter,
)
from app.models.vocabulary import DataCategory
from app.services import disclosure
from app.services import statistics_labels as labels

CHINA = timezone(timedelta(hours=8))
_LEADING_AGE = re.compile(r"^(\d{1,3})(?!\d)")
MAX_DIMENSIONS = 4
_TALLY_DIMENSIONS = {
    ChildDimension.region,
    ChildDimension.category,
    ChildDimension.sex,
    ChildDimension.status,
}
_TALLY_LEVELS = (6, 9, 12)
"""The levels ``child_tally`` keeps (migration 0010): county, township, village."""
_ALL_REGISTRY_CATEGORIES = sorted({DataCategory.welfare, *CATEGORY_DATA.values()})


@dataclass(frozen=True, slots=True)
class Options:
    """What every statistics query shares: where, how released, how labelled."""

    region: str | None
    level: RegionLevel
    exact: bool
    lang: Lang
    on_record: bool = False
    """The read is already admitted and on the access log as part of a page of several tables
    (the dashboard), which is one record of its own."""


def today() -> date:
    """The date in China, which every statistics date refers to."""
    return datetime.now(CHINA).date()


def region_prefix(reader: Reader, region: str | None) -> str:
    """The region prefix to count in: the asked one, inside the reader's own region."""
    scope = reader.principal.region
    if region is None or scope.startswith(region):
        return scope
    if region.startswith(scope):
        return region
    raise Forbidden("The region lies outside the caller's region.", code="outside_region")


def unique_dimensions(dimensions: Sequence[Any]) -> list[Any]:
    seen = list(dict.fromkeys(dimensions))
    if len(seen) > MAX_DIMENSIONS:
        raise BadRequest(f"Group by at most {MAX_DIMENSIONS} dimensions.", code="too_many_dimensions")
    return seen


def _sort_key(value: str) -> tuple[int, Any]:
    """Ages and age bands (``3-5`` before ``12-14``) by number, everything else as text."""
    match = _LEADING_AGE.match(value)
    return (0, int(match.group(1))) if match else (1, value)


def _key_order(key: tuple[str, ...]) -> tuple[tuple[int, Any], ...]:
    return tuple(_sort_key(v) for v in key)


async def grouped(
    session: AsyncSession, sql: str, params: dict[str, Any], width: int
) -> dict[tuple[str, ...], int]:
    rows = (await session.execute(text(sql), params)).all()
    return {tuple(str(v) for v in row[:width]): int(row[width]) for row in rows if int(row[width]) > 0}


def margins_from(cells: dict[tuple[str, ...], int], dimensions: Sequence[str]) -> dict[str, dict[str, int]]:
    margins: dict[str, dict[str, int]] = {d: {} for d in dimensions}
    for key, n in cells.items():
        for position, dimension in enumerate(dimensions):
            margins[dimension][key[position]] = margins[dimension].get(key[position], 0) + n
    return margins


def select_sql(expressions: Sequence[str], source: str, where: Sequence[str], count: str) -> str:
    columns = [f"{e} AS d{i}" for i, e in enumerate(expressions)]
    group = f" GROUP BY {', '.join(f'd{i}' for i in range(len(expressions)))}" if expressions else ""
    # Every fragment is one of this module's constants; values travel as bound parameters.
    select = ", ".join([*columns, f"{count} AS n"])
    return f"SELECT {select} FROM {source} WHERE {' AND '.join(where)}{group}"  # noqa: S608


def release(
    door: Door,
    raw: disclosure.RawTable,
    *,
    measure: str,
    query: dict[str, Any],
    reference: date,
    options: Options,
) -> StatisticsTable:
    rules = door.policy.statistics
    release = disclosure.exact if options.exact else disclosure.control
    table = release(raw, threshold=rules.threshold, rounding_base=rules.rounding_base)
    dimensions = list(table.dimensions)
    numeric = bool({"age", "age_band"} & set(dimensions))
    cells = sorted(table.cells.items(), key=(lambda item: _key_order(item[0])) if numeric else None)
    # Built without validation (model_construct): every value here is already of its field's type,
    # and a province's table has thousands of cells.
    return StatisticsTable.model_construct(
        measure=measure,
        dimensions=dimensions,
        query=query,
        reference_date=reference,
        policy_version=door.policy.version,
        disclosure=Disclosure.model_construct(
            method=table.method, threshold=table.threshold, rounding_base=table.rounding_base
        ),
        headings=labels.headings([*dimensions, "count", "suppressed", "total"], options.lang),
        cells=[
            Cell.model_construct(
                values=dict(zip(dimensions, key, strict=True)), count=r.count, suppressed=r.suppressed
            )
            for key, r in cells
        ],
        margins=[
            Margin.model_construct(dimension=d, value=v, count=r.count, suppressed=r.suppressed)
            for d in dimensions
            for v, r in sorted(table.margins.get(d, {}).items(), key=lambda item: _sort_key(item[0]))
        ],
        total=Count.model_construct(count=table.total.count, suppressed=table.total.suppressed),
    )


# -- children -------------------------------------------------------------------------------


def child_categories(
    dimensions: Sequence[ChildDimension], category: ChildCategory | None
) -> list[DataCategory]:
    revealed = {DataCategory.welfare}
    for d in dimensions:
        if d in (ChildDimension.sex, ChildDimension.age, ChildDimension.age_band, ChildDimension.ethnicity):
            revealed.add(DataCategory.identity)
        elif d is ChildDimension.category:
            revealed.update(_ALL_REGISTRY_CATEGORIES)
        elif d is ChildDimension.custody_status:
            revealed.add(DataCategory.custody)
    if category is not None:
        revealed.add(CATEGORY_DATA[category])
    return sorted(revealed)


def _age_band_sql(door: Door) -> str:
    age = "date_part('year', age(CAST(:reference AS date), h.birth_date))::int"
    branches = " ".join(
        f"WHEN {age} BETWEEN {int(b.start)} AND {int(b.end)} THEN '{_literal(b.label)}'"
        for b in door.policy.statistics.age_bands
    )
    return f"CASE {branches} ELSE 'other' END"


def _literal(value: str) -> str:
    if not all(ch.isalnum() or ch in "-+ " for ch in value):
        raise ValueError("policy age band labels are letters, digits, '-', '+' and spaces")
    return value


def _child_expression(door: Door, dimension: ChildDimension, level: RegionLevel, alias: str) -> str:
    digits = REGION_DIGITS[level]
    return {
        ChildDimension.region: f"left({alias}.region_code, {digits})",
        ChildDimension.category: "cat.c" if alias == "h" else "t.category",
        ChildDimension.sex: f"{alias}.sex",
        ChildDimension.status: f"{alias}.status",
        ChildDimension.age: "date_part('year', age(CAST(:reference AS date), h.birth_date))::int",
        ChildDimension.age_band: _age_band_sql(door) if alias == "h" else "",
        ChildDimension.ethnicity: "coalesce(h.ethnicity, 'unknown')",
        ChildDimension.care_arrangement: "coalesce(h.care_arrangement, 'none')",
        ChildDimension.custody_status: "coalesce(g.custody_status, 'none')",
    }[dimension]


def _tally_level(level: RegionLevel, prefix: str) -> int:
    """The coarsest tally level that still tells apart the asked level and the region filter."""
    needed = max(REGION_DIGITS[level], len(prefix))
    return next(lv for lv in _TALLY_LEVELS if lv >= needed)


def _child_sql(
    door: Door,
    dimensions: Sequence[ChildDimension],
    *,
    level: RegionLevel,
    fast: bool,
    category: ChildCategory | None,
    status: StatusFilter,
    owner: bool,
    as_of: date | None,
) -> str:
    """One ``GROUP BY`` over the tally (``fast``) or the history; a ``category`` dimension counts
    a child once per category."""
    by_category = ChildDimension.category in dimensions
    if fast:
        where = ["t.level = :tally_level", "t.region_code LIKE :prefix"]
        if category is not None:
            where.append("t.category = :category")
        elif by_category:
            where.append("t.category <> '*'")
        else:
            where.append("t.category = '*'")
        if status is not StatusFilter.any:
            where.append("t.status = :status")
        if owner:
            where.append("t.owner_agency = :owner")
        expressions = [_child_expression(door, d, level, "t") for d in dimensions]
        return select_sql(expressions, "child_tally t", where, "sum(t.n)")
    source = "child_history h"
    if ChildDimension.custody_status in dimensions:
        if as_of is None:
            source += " LEFT JOIN guardianship g ON g.child_id = h.child_id AND g.superseded_at IS NULL"
        else:
            source += (
                " LEFT JOIN LATERAL (SELECT gg.custody_status FROM guardianship gg"
                " WHERE gg.child_id = h.child_id AND gg.recorded_at <= :moment"
                " AND (gg.superseded_at IS NULL OR gg.superseded_at > :moment)"
                " ORDER BY gg.recorded_at DESC LIMIT 1) g ON true"
            )
    if by_category:
        source += " CROSS JOIN LATERAL unnest(h.categories) AS cat(c)"
    where = ["h.region_code LIKE :prefix"]
    if as_of is None:
        where.append("h.valid_to IS NULL")
    else:
        where.append("h.valid_from <= :moment AND (h.valid_to IS NULL OR h.valid_to > :moment)")
    if category is not None:
        where.append("h.categories @> ARRAY[CAST(:category AS varchar)]")
        if by_category:
            where.append("cat.c = :category")
    if status is not StatusFilter.any:
        where.append("h.status = :status")
    if owner:
        where.append("h.owner_agency = :owner")
    expressions = [_child_expression(door, d, level, "h") for d in dimensions]
    return select_sql(expressions, source, where, "count(*)")


async def count_children(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    group_by: Sequence[ChildDimension],
    options: Options,
    category: ChildCategory | None,
    status: StatusFilter,
    as_of: date | None,
) -> StatisticsTable:
    """Children in the reader's region by the asked dimensions, with margins and total; one
    aggregate access-log record."""
    dimensions = unique_dimensions(group_by)
    now = today()
    if as_of is not None and as_of > now:
        raise BadRequest("as_of lies in the future.", code="invalid_as_of")
    prefix = region_prefix(reader, options.region)
    query: dict[str, Any] = {
        "group_by": [str(d) for d in dimensions],
        "level": str(options.level),
        "region": prefix,
        "status": str(status),
        "exact": options.exact,
    }
    if category is not None:
        query["category"] = str(category)
    if as_of is not None:
        query["as_of"] = as_of.isoformat()
    if not options.on_record:
        await admit_aggregate(
            door,
            reader,
            action="statistics.children",
            query=query,
            categories=child_categories(dimensions, category),
        )
    reference = as_of or now
    params: dict[str, Any] = {
        "prefix": prefix + "%",
        "category": str(category) if category else None,
        "status": str(status),
        "owner": reader.principal.agency,
        "reference": reference,
        "moment": datetime.combine(reference + timedelta(days=1), time(0), CHINA),
        "tally_level": _tally_level(options.level, prefix),
    }
    fast = as_of is None and set(dimensions) <= _TALLY_DIMENSIONS

    def sql(over: Sequence[ChildDimension]) -> str:
        return _child_sql(
            door,
            over,
            level=options.level,
            fast=fast,
            category=category,
            status=status,
            owner=options.exact,
            as_of=as_of,
        )

    params = {k: v for k, v in params.items() if v is not None}
    cells = await grouped(session, sql(dimensions), params, len(dimensions))
    names = [str(d) for d in dimensions]
    if ChildDimension.category in dimensions:
        # A child in two categories is in two cells: totals other than by category count it once.
        others = [d for d in dimensions if d is not ChildDimension.category]
        once = await grouped(session, sql(others), params, len(others))
        margins = margins_from(once, [str(d) for d in others])
        margins[str(ChildDimension.category)] = margins_from(cells, names)[str(ChildDimension.category)]
        total = sum(once.values())
    else:
        margins = margins_from(cells, names)
        total = sum(cells.values())
    raw = disclosure.RawTable(tuple(names), cells, margins, total)
    return release(door, raw, measure="children", query=query, reference=reference, options=options)
