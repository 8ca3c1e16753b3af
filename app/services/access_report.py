"""The guardian's access report, drawn from the access log: every read of the child's data by
another agency that released something, newest first. Reads under an open police investigation
are left out until the investigation closes (the report says only that some are withheld);
break-glass reads are never withheld."""

from __future__ import annotations

import html
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.door import Door
from app.access.reading import Reader
from app.errors import BadRequest, Forbidden
from app.models.access_report import AccessReport, AccessReportEntry, ReportGround
from app.models.common import utcnow
from app.services import child as child_service

# Reads that released data, of this child, by agencies other than the record keeper. The child
# appears either as the single subject or among a list read's children (GIN index on child_ids).
_ENTRIES = text(
    """
    SELECT l.id, l.logged_at, l.agency, a.name AS agency_name, l.action, l.purpose,
           l.categories_returned, l.basis, l.break_glass
    FROM access_log l
    LEFT JOIN agency a ON a.code = l.agency
    WHERE (l.child_id = :child OR l.child_ids @> ARRAY[CAST(:child AS uuid)])
      AND l.decision IN ('allow', 'allow_redacted')
      AND l.agency <> :owner
      AND (l.break_glass OR l.investigation_ref IS NULL OR EXISTS (
            SELECT 1 FROM investigation i
            WHERE i.agency = l.agency AND i.ref = l.investigation_ref AND i.closed_at IS NOT NULL))
      -- While a mandatory report about the child is open, its receivers' reads since it was
      -- filed are left out: the guardian may be the one reported (强制报告 confidentiality).
      AND NOT EXISTS (
            SELECT 1 FROM "case" c JOIN referral r ON r.case_id = c.id
            WHERE c.child_id = :child AND c.kind = 'mandatory_report' AND c.status = 'open'
              AND r.to_agency = l.agency AND l.logged_at >= c.created_at)
      AND (CAST(:before AS bigint) IS NULL OR l.id < CAST(:before AS bigint))
    ORDER BY l.id DESC
    LIMIT :limit
    """
)
_WITHHELD = text(
    """
    SELECT EXISTS (
      SELECT 1 FROM access_log l
      JOIN investigation i ON i.agency = l.agency AND i.ref = l.investigation_ref
      WHERE (l.child_id = :child OR l.child_ids @> ARRAY[CAST(:child AS uuid)])
        AND l.decision IN ('allow', 'allow_redacted') AND l.agency <> :owner AND i.closed_at IS NULL
        AND NOT l.break_glass)
    """
)


def _grounds(basis: dict[str, Any]) -> list[ReportGround]:
    return [
        ReportGround(
            category=category, ground=str(b.get("ground")), ref=str(b.get("ref")), citation=b.get("citation")
        )
        for category, b in sorted(basis.items())
    ]


async def report(
    session: AsyncSession, door: Door, reader: Reader, child_id: uuid.UUID, *, cursor: str | None, limit: int
) -> AccessReport:
    """Only the agency that keeps the child's record produces the report (for the guardian who
    asks); anyone else gets 403, or 404 outside their region."""
    child = await child_service.require_child(session, door, reader, child_id, "access_report.read")
    if child.owner_agency != reader.principal.agency:
        raise Forbidden(
            "The access report is produced by the agency that keeps the record.", code="not_record_owner"
        )
    before: int | None = None
    if cursor:
        try:
            before = int(cursor)
        except ValueError:
            before = 0
        if not 0 < before < 2**63:
            raise BadRequest("The cursor is not one this API issued.", code="invalid_cursor")
    params = {"child": str(child_id), "owner": child.owner_agency, "before": before, "limit": limit + 1}
    rows = (await session.execute(_ENTRIES, params)).all()
    withheld = bool(
        (await session.execute(_WITHHELD, {"child": str(child_id), "owner": child.owner_agency})).scalar()
    )
    page = rows[:limit]
    return AccessReport(
        child_id=child_id,
        generated_at=utcnow(),
        entries=[
            AccessReportEntry(
                read_at=r.logged_at,
                agency=r.agency,
                agency_name=r.agency_name,
                action=r.action,
                purpose=r.purpose,
                categories=list(r.categories_returned),
                grounds=_grounds(r.basis or {}),
                break_glass=r.break_glass,
            )
            for r in page
        ],
        some_entries_withheld=withheld,
        next_cursor=str(page[-1].id) if len(rows) > limit else None,
    )


_ACTIONS_ZH = {
    "child.read": "查阅儿童信息",
    "child.list": "查询儿童名单",
    "child.lookup": "按身份证号查找",
    "custody.read": "查询监护状况",
    "guardianship.read": "查阅监护记录",
    "consent.read": "查阅同意书",
    "event.deliver": "接收事件通知",
    "event.feed": "拉取事件",
}
_GROUNDS_ZH = {"statute": "法定依据", "consent": "监护人同意", "break_glass": "紧急查阅", "owner": "本机构"}
_CATEGORIES_ZH = {
    "identity": "身份信息",
    "identifier": "身份证号",
    "contact": "联系方式",
    "custody": "监护状况",
    "welfare": "救助信息",
    "education": "教育信息",
    "health": "健康信息",
    "disability": "残疾信息",
    "law_enforcement": "执法信息",
}
_PURPOSES_ZH = {
    "child_protection": "儿童保护",
    "investigation": "案件调查",
    "education_support": "控辍保学/教育支持",
    "health_care": "医疗卫生",
    "welfare_assistance": "社会救助",
    "emergency": "紧急情况",
    "statistics": "统计",
}


CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
"""UTC+8, all year (China has no daylight saving time): the time a guardian reads on a clock."""


def _beijing(moment: datetime) -> str:
    """A stored (UTC) moment in China Standard Time, whatever the server's own zone."""
    return moment.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M")


def render_html(result: AccessReport) -> str:
    """A printable page in Chinese for the guardian."""
    e = html.escape
    rows = []
    for entry in result.entries:
        grounds = "；".join(
            f"{_CATEGORIES_ZH.get(g.category, g.category)}：{_GROUNDS_ZH.get(g.ground, g.ground)}"
            + (f"（{g.citation}）" if g.citation else "")
            for g in entry.grounds
        )
        purpose = _PURPOSES_ZH.get(entry.purpose or "", entry.purpose or "")
        rows.append(
            "<tr>"
            f"<td>{e(_beijing(entry.read_at))}</td>"
            f"<td>{e(entry.agency_name or entry.agency)}</td>"
            f"<td>{e(_ACTIONS_ZH.get(entry.action, entry.action))}</td>"
            f"<td>{e(purpose)}</td>"
            f"<td>{e('、'.join(_CATEGORIES_ZH.get(c, c) for c in entry.categories))}</td>"
            f"<td>{e(grounds)}{'（紧急查阅，待审核）' if entry.break_glass else ''}</td>"
            "</tr>"
        )
    withheld = (
        '<p class="note">部分记录因涉及正在进行的案件调查，依法暂不显示，调查结束后将予以补充。</p>'
        if result.some_entries_withheld
        else ""
    )
    body = "\n".join(rows) or '<tr><td colspan="6">暂无其他部门查阅记录。</td></tr>'
    generated = _beijing(result.generated_at) + "（北京时间）"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>儿童个人信息查阅记录</title>
<style>
body{{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em;color:#111}}
table{{border-collapse:collapse;width:100%}}
th,td{{border:1px solid #999;padding:.4em;font-size:.9em;vertical-align:top}}
th{{background:#eee}}.note{{border-left:4px solid #c60;padding-left:.6em}}@media print{{body{{margin:0}}}}
</style></head><body>
<h1>儿童个人信息查阅记录</h1>
<p>儿童编号：{e(str(result.child_id))}<br>生成时间：{e(generated)}</p>
<p>根据《中华人民共和国个人信息保护法》第四十四条、第四十五条，本记录列出其他部门查阅该儿童信息的时间、部门、目的、依据和信息类别（按时间倒序）。</p>
{withheld}
<table><thead><tr><th>时间（北京时间 UTC+8）</th>
<th>查阅部门</th><th>操作</th><th>目的</th><th>信息类别</th><th>依据</th></tr></thead>
<tbody>
{body}
</tbody></table>
</body></html>
"""
