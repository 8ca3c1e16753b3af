"""What falls due on the care schedule: guardianship assessments (监护评估) and home visits
(定期探访), by the intervals of the policy's ``care_schedule``; the list civil affairs works from,
and the scheduler job that tells the township, once, when one is overdue.

A child's next one is due on the date its last assessment or visit set, else the last one's date
plus the shortest interval that applies to it (the default, its registry categories', its
custody status's), else ``first_within_days`` after registration. One SQL expression computes it
for both the list and the scheduler, so the two never disagree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.door import Door
from app.access.policy import CareInterval, Policy
from app.access.reading import Reader, Subject
from app.auth.principal import Principal
from app.errors import Forbidden
from app.models.agency import AgencyKind
from app.models.care import DueItem, DueWhat
from app.models.vocabulary import DataCategory
from app.services import cursor as cursor_codec
from app.services import outbox

CHINA = ZoneInfo("Asia/Shanghai")
MAX_PAGE = 200
OVERDUE_BATCH = 500
"""Notices fired per scheduler run: keeps each transaction short when a backlog first appears."""

OVERDUE_TYPES = {
    DueWhat.assessment: "cn.gov.childlink.platform.assessment.overdue.v1",
    DueWhat.home_visit: "cn.gov.childlink.platform.home-visit.overdue.v1",
}
DUE_CATEGORY = {DueWhat.assessment: DataCategory.custody, DueWhat.home_visit: DataCategory.welfare}
SCHEDULER = Principal(
    client_id="childlink-scheduler",
    agency="platform",
    scopes=frozenset(),
    region="",
    token_id="scheduler",  # noqa: S106 (a label, not a secret)
    issuer="childlink",
)

_INTERVAL = """LEAST(
    CAST(:default_days AS integer),
    (SELECT min(e.value::integer) FROM jsonb_each_text(CAST(:by_category AS jsonb)) AS e
     WHERE e.key = ANY(c.categories)),
    (CAST(:by_status AS jsonb) ->> g.custody_status)::integer)"""

_LAST = {
    DueWhat.assessment: ("", "g.last_assessment_date", "g.next_assessment_due"),
    DueWhat.home_visit: (
        "LEFT JOIN LATERAL (SELECT h.visited_on, h.follow_up_due FROM home_visit AS h "
        "WHERE h.child_id = c.id ORDER BY h.visited_on DESC, h.recorded_at DESC LIMIT 1) AS v ON true",
        "v.visited_on",
        "v.follow_up_due",
    ),
}


def _due_sql(what: DueWhat) -> str:
    join, last, explicit = _LAST[what]
    return f"""
SELECT c.id AS child_id, c.name, c.region_code, c.owner_agency, {last} AS last_done_on,
       COALESCE({explicit}, {last} + {_INTERVAL},
                (c.created_at AT TIME ZONE 'Asia/Shanghai')::date + CAST(:first_days AS integer)) AS due_on
FROM child AS c
LEFT JOIN guardianship AS g ON g.child_id = c.id AND g.superseded_at IS NULL
{join}
WHERE c.status = 'active' AND c.region_code LIKE :prefix || '%'
"""  # noqa: S608 (fixed fragments, values bound)


def _params(interval: CareInterval) -> dict[str, Any]:
    return {
        "default_days": interval.default_days,
        "first_days": interval.first_within_days,
        "by_category": orjson.dumps(interval.by_category).decode(),
        "by_status": orjson.dumps(interval.by_custody_status).decode(),
    }


def today_in_china(now: datetime) -> date:
    return now.astimezone(CHINA).date()


class DueListNotAllowed(Forbidden):
    code, title = "due_list_not_allowed", "Only civil affairs reads what falls due"


async def due(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    what: DueWhat,
    region: str,
    within_days: int,
    cursor: str | None,
    limit: int,
    now: datetime,
) -> tuple[list[DueItem], str | None]:
    """Children in ``region`` whose next ``what`` is due within ``within_days`` or overdue,
    earliest first; civil affairs at county, township or village level only, inside its own
    region (403 otherwise, on record). The page is decided and recorded by the door."""
    query = {"what": str(what), "region": region, "within_days": str(within_days), "limit": str(limit)}
    action = "care.due.list"
    if reader.agency_kind != AgencyKind.civil_affairs or not region.startswith(reader.principal.region):
        await door.record_refusal(reader, action=action, reason="due_list_not_allowed")
        raise DueListNotAllowed(
            "The due list is civil affairs' work list, for a county, township or village inside its region."
        )
    await door.admit_list_query(reader, action=action, query=query, required=None)
    params: dict[str, Any] = {
        **_params(door.policy.care_schedule[str(what)]),
        "prefix": region,
        "until": today_in_china(now) + timedelta(days=within_days),
        "limit": limit + 1,
        "after_due": date.min,
        "after_id": uuid.UUID(int=0),
    }
    if cursor:
        stamp, ident = cursor_codec.decode(cursor)
        params["after_due"], params["after_id"] = stamp.date(), ident
    sql = (
        f"SELECT * FROM ({_due_sql(what)}) AS d WHERE d.due_on <= :until "  # noqa: S608
        "AND (d.due_on, d.child_id) > (:after_due, :after_id) ORDER BY d.due_on, d.child_id LIMIT :limit"
    )
    rows = (await session.execute(text(sql), params)).mappings().all()
    page = list(rows[:limit])
    category = DUE_CATEGORY[what]
    decisions = await door.admit_many(
        session,
        reader,
        action=action,
        subjects=[Subject(r["child_id"], r["owner_agency"], r["region_code"]) for r in page],
        categories=[DataCategory.identity, category],
        query=query,
    )
    today = today_in_china(now)
    items = []
    for r in page:
        decision = decisions.get(r["child_id"])
        if decision is None:
            continue
        shown = decision.allows(category)
        items.append(
            DueItem(
                child_id=r["child_id"],
                name=r["name"] if decision.allows(DataCategory.identity) else None,
                region_code=r["region_code"],
                what=what,
                due_on=r["due_on"] if shown else None,
                last_done_on=r["last_done_on"] if shown else None,
                overdue=r["due_on"] < today if shown else None,
            )
        )
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = cursor_codec.encode(datetime.combine(last["due_on"], time(), UTC), last["child_id"])
    return items, next_cursor


async def fire_overdue(session: AsyncSession, now: datetime, *, policy: Policy) -> int:
    """Scheduler job: for every child whose assessment or home visit is overdue at ``now``, note
    it in ``overdue_notice`` and emit the overdue event to its township, in this transaction.
    The notice's key (child, what, due date) makes each fire exactly once, however many workers
    run this at once: a concurrent insert of the same key waits for the first and then inserts
    nothing. Returns how many events were emitted."""
    today = today_in_china(now)
    fired = 0
    for what, event_type in OVERDUE_TYPES.items():
        rows = (
            await session.execute(
                text(
                    f"WITH d AS ({_due_sql(what)}), "  # noqa: S608
                    "f AS (INSERT INTO overdue_notice (child_id, what, due_on) "
                    "SELECT d.child_id, :what, d.due_on FROM d WHERE d.due_on < :today "
                    "ORDER BY d.due_on LIMIT :batch ON CONFLICT DO NOTHING RETURNING child_id, due_on) "
                    "SELECT f.child_id, f.due_on, d.region_code, d.last_done_on "
                    "FROM f JOIN d USING (child_id)"
                ),
                {
                    **_params(policy.care_schedule[str(what)]),
                    "prefix": "",
                    "what": str(what),
                    "today": today,
                    "batch": OVERDUE_BATCH,
                },
            )
        ).all()
        for row in rows:
            data: dict[str, Any] = {
                "child_id": str(row.child_id),
                "township_code": row.region_code[:9] if len(row.region_code) >= 9 else row.region_code,
                "due_on": row.due_on.isoformat(),
            }
            if row.last_done_on is not None:
                data["last_done_on"] = row.last_done_on.isoformat()
            event = await outbox.emit(
                session,
                SCHEDULER,
                type=event_type,
                subject=row.child_id,
                region_code=row.region_code,
                data=data,
            )
            await session.execute(
                text(
                    "UPDATE overdue_notice SET event_id = :event WHERE child_id = :child AND what = :what "
                    "AND due_on = :due"
                ),
                {"event": event.id, "child": row.child_id, "what": str(what), "due": row.due_on},
            )
            fired += 1
    return fired
