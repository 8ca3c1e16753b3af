"""The joint-meeting dashboard (联席会议): a printable page in Chinese, charts drawn on the server.

Every figure comes from the same controlled counts as the API (each read an access-log record
of its own), so the page never shows what the tables would suppress; a suppressed count is
drawn as no bar, labelled ``×`` and explained under the charts (below the threshold, or hidden
with one that is: the page does not say which, as that would help work it out). The page loads
nothing: inline CSS, inline SVG, no script, no font or image from anywhere, and the response
forbids any other request (CSP).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.access.aggregate import admit_aggregate
from app.access.door import Door
from app.access.reading import Reader
from app.models.statistics import (
    ChildDimension,
    Count,
    FlowDimension,
    FlowDirection,
    Lang,
    Period,
    RegionLevel,
    ServiceDimension,
    StatisticsTable,
    StatusFilter,
)
from app.services import statistics as statistics_service
from app.services import statistics_activity as activity_service
from app.services import statistics_labels as labels

SUPPRESSED = "×"
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'"

_STYLE = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif;
margin:24px;color:#1a1a1a}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:16px;margin:0 0 8px;border-left:4px solid #b5302a;padding-left:8px}
.meta{color:#555;font-size:12px;margin-bottom:16px}
.totals{display:flex;gap:16px;margin-bottom:16px}
.total{border:1px solid #ccc;border-radius:4px;padding:8px 16px;min-width:140px}
.total b{display:block;font-size:26px;color:#b5302a}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
section{border:1px solid #ddd;border-radius:4px;padding:12px;break-inside:avoid}
.wide{grid-column:1 / span 2}
.note{font-size:11px;color:#555;margin-top:16px}
@media print{body{margin:8mm}.grid{gap:8px}section{border-color:#999}}
@page{size:A4 landscape;margin:10mm}
"""


def _figure(count: Count, threshold: int) -> str:
    return SUPPRESSED if count.suppressed or count.count is None else str(count.count)


def bar_chart(items: Sequence[tuple[str, Count]], threshold: int, *, title: str) -> str:
    """Horizontal bars, one per item; a suppressed count has no bar and reads ``<5``."""
    height = 24 * len(items) + 8
    top = max([c.count or 0 for _, c in items] + [1])
    rows = []
    for i, (label, count) in enumerate(items):
        y = 4 + 24 * i
        width = 0 if count.count is None else round(260 * count.count / top)
        fill = "#b5302a"
        rows.append(
            f'<text x="128" y="{y + 15}" text-anchor="end" font-size="12">{html.escape(label)}</text>'
            f'<rect x="136" y="{y + 3}" width="{width}" height="16" fill="{fill}"/>'
            f'<text x="{142 + width}" y="{y + 15}" font-size="12">'
            f"{html.escape(_figure(count, threshold))}</text>"
        )
    if not items:
        rows.append('<text x="8" y="16" font-size="12">无数据</text>')
    return (
        f'<svg class="chart" role="img" aria-label="{html.escape(title)}" '
        f'viewBox="0 0 460 {max(height, 28)}" '
        f'width="100%" style="max-width:620px" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>'
    )


def column_chart(
    periods: Sequence[str], series: Sequence[tuple[str, str, dict[str, Count]]], threshold: int
) -> str:
    """Grouped columns per period (entries and exits by month)."""
    top = max([c.count or 0 for _, _, values in series for c in values.values()] + [1])
    step = 880 / max(len(periods), 1)
    bar = step / (len(series) + 1)
    parts = []
    for i, period in enumerate(periods):
        x0 = 40 + i * step
        for j, (_, colour, values) in enumerate(series):
            count = values.get(period, Count(count=0, suppressed=False))
            h = 0 if count.count is None else 150 * count.count / top
            x = x0 + j * bar
            parts.append(
                f'<rect x="{x:.1f}" y="{170 - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                f'fill="{colour}"/>'
            )
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{166 - h:.1f}" font-size="10" text-anchor="middle">'
                f"{html.escape(_figure(count, threshold))}</text>"
            )
        parts.append(
            f'<text x="{x0 + step / 2:.1f}" y="186" font-size="10" text-anchor="middle">{period[2:]}</text>'
        )
    legend = "".join(
        f'<rect x="{40 + 90 * j}" y="196" width="10" height="10" fill="{colour}"/>'
        f'<text x="{54 + 90 * j}" y="205" font-size="11">{html.escape(name)}</text>'
        for j, (name, colour, _) in enumerate(series)
    )
    return (
        '<svg class="chart" role="img" aria-label="新增与退出" viewBox="0 0 940 212" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg"><line x1="36" y1="170" x2="930" y2="170" stroke="#999"/>'
        f"{''.join(parts)}{legend}</svg>"
    )


def _one_way(table: StatisticsTable, dimension: str) -> list[tuple[str, Count]]:
    return [
        (labels.value(m.value, Lang.zh), Count(count=m.count, suppressed=m.suppressed))
        for m in table.margins
        if m.dimension == dimension
    ]


def _section(title: str, body: str, wide: bool = False) -> str:
    return f'<section class="{"wide" if wide else ""}"><h2>{html.escape(title)}</h2>{body}</section>'


async def render(session: AsyncSession, door: Door, reader: Reader, *, region: str | None) -> str:
    """The page for the reader's region (or the region asked for, inside it)."""
    threshold = door.policy.statistics.threshold
    charts = [ChildDimension.category, ChildDimension.sex, ChildDimension.age_band, ChildDimension.region]
    # One access-log record for the page, with every category its charts reveal, before any count.
    await admit_aggregate(
        door,
        reader,
        action="statistics.dashboard",
        query={
            "region": statistics_service.region_prefix(reader, region),
            "level": str(RegionLevel.township),
        },
        categories=sorted(
            {
                *statistics_service.child_categories(charts, None),
                *activity_service.FLOW_CATEGORIES,
                *activity_service.SERVICE_CATEGORIES,
            }
        ),
    )
    options = statistics_service.Options(
        region=region, level=RegionLevel.township, exact=False, lang=Lang.zh, on_record=True
    )

    async def children(*dimensions: ChildDimension) -> StatisticsTable:
        return await statistics_service.count_children(
            session,
            door,
            reader,
            group_by=dimensions,
            options=options,
            category=None,
            status=StatusFilter.active,
            as_of=None,
        )

    by_category = await children(ChildDimension.category)
    by_sex_age = await children(ChildDimension.sex, ChildDimension.age_band)
    by_township = await children(ChildDimension.region)
    # Entries and exits as two tables: in one, every month with a handful of exits would hide
    # its entries too (secondary suppression along the month's line).
    flows = {
        direction: await activity_service.count_flows(
            session,
            door,
            reader,
            group_by=[FlowDimension.period],
            options=options,
            period=Period.month,
            start=None,
            end=None,
            direction=direction,
        )
        for direction in FlowDirection
    }
    services = await activity_service.count_services(
        session,
        door,
        reader,
        group_by=[ServiceDimension.type],
        options=options,
        period=Period.month,
        start=None,
        end=None,
        event_type=None,
    )
    scope = by_category.query["region"] or "全部"
    periods = sorted({c.values["period"] for table in flows.values() for c in table.cells})
    flow_series = [
        (
            name,
            colour,
            {
                c.values["period"]: Count(count=c.count, suppressed=c.suppressed)
                for c in flows[direction].cells
            },
        )
        for name, colour, direction in (
            ("新增", "#b5302a", FlowDirection.entry),
            ("退出", "#4a6fa5", FlowDirection.exit),
        )
    ]
    entries = flows[FlowDirection.entry].total
    exits = flows[FlowDirection.exit].total
    zero = Count(count=0, suppressed=False)

    def total(title: str, count: Count | None) -> str:
        value = _figure(count or zero, threshold)
        return f'<div class="total">{html.escape(title)}<b>{html.escape(value)}</b></div>'

    body = [
        "<h1>留守儿童和困境儿童关爱保护 联席会议统计</h1>",
        f'<div class="meta">地区：{html.escape(scope)}　统计日期：{by_category.reference_date.isoformat()}'
        f"　策略版本：{html.escape(door.policy.version)}</div>",
        '<div class="totals">',
        total("在册儿童总数", by_category.total),
        total("近12个月新增", entries),
        total("近12个月退出", exits),
        total("近12个月服务次数", services.total),
        "</div>",
        '<div class="grid">',
        _section("按类别", bar_chart(_one_way(by_category, "category"), threshold, title="按类别")),
        _section("按性别", bar_chart(_one_way(by_sex_age, "sex"), threshold, title="按性别")),
        _section("按年龄段", bar_chart(_one_way(by_sex_age, "age_band"), threshold, title="按年龄段")),
        _section("按乡镇（街道）", bar_chart(_one_way(by_township, "region"), threshold, title="按乡镇")),
        _section("近12个月新增与退出", column_chart(periods, flow_series, threshold), wide=True),
        _section("服务（按类型）", bar_chart(_one_way(services, "type"), threshold, title="服务"), wide=True),
        "</div>",
        f'<p class="note">“{SUPPRESSED}”：不予显示的数字（小于{threshold}，'
        "或为防止由合计推算而一并隐藏）；"
        f"其余数字四舍五入到{door.policy.statistics.rounding_base}的倍数。一名儿童可属多个类别。</p>",
    ]
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        "<title>联席会议统计</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
