"""Owners told of reads (``platform.access.recorded``): when an agency other than the record
keeper reads a child the policy marks (``access_notifications``), the keeper gets one notice per
child per window (an hour) listing those reads: the agency, when, the purpose, the grounds; no
data. The access log is the source of truth; the scheduler's ``access.recorded`` job sends them.

**Exactly once.** A run takes a transaction-level advisory lock (a second worker's run at the same
moment does nothing and the next one carries on), reads the windows that have ended (plus
``settle``, for the log writer's group commit) since the last one it completed
(``access_notice_window``; at most ``lookback`` back) and, for each (child, window) with reads
not yet sent, emits one notice and an ``access_notice_read`` row per read, in one transaction.
The row's primary key (log record, child) keeps a read from being sent twice even without the
lock. So each hour of the log is read once, not once per run.

**Held back.** A read under a police investigation that is still open (and not break-glass, which
is never hidden, as in the guardian's access report) is skipped; once the investigating agency
closes the case, the next run sends it (``held_until_closed``: true), in a notice of its own for
its window.

**Never.** A read by a receiver of a mandatory report about the child (or by the agency that filed
it), made while the report's case was open, and any read of a report itself, is never sent: it
would tell the keeper that a report was made and who made it (the guardian's access report keeps
the receivers' reads out on the same rule).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.notice_policy import NoticePolicy, notice_policy
from app.access.policy import Policy
from app.auth.principal import Principal
from app.events.notice_types import MAX_READS
from app.events.spec import PREFIX
from app.services import outbox

logger = logging.getLogger(__name__)

ACCESS_RECORDED = f"{PREFIX}platform.access.recorded.v1"
NOTICE_EVERY_SECONDS = 300.0
GROUPS_PER_BATCH = 5000
"""(child, window) notices one query returns at most; a run asks again while there are more."""
BATCHES_PER_RUN = 10
"""A longer backlog (a very busy hour) is carried on by the next run."""

_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('childlink.access_notice'))"

SCHEDULER = Principal(
    client_id="childlink-scheduler",
    agency="platform",
    scopes=frozenset(),
    region="",
    token_id="scheduler",  # noqa: S106 (a label, not a secret)
    issuer="childlink",
)

# Reads of one child: as the single subject, or among a list read's children.
_GROUPS = """
WITH logged AS (
    SELECT l.id, l.logged_at, l.agency, l.action, l.purpose, l.basis, l.break_glass,
           l.investigation_ref, l.child_id AS read_child
    FROM access_log AS l
    WHERE l.decision IN ('allow', 'allow_redacted') AND l.agency IS NOT NULL AND l.child_id IS NOT NULL
      AND l.logged_at >= :since AND l.logged_at < :until
    UNION ALL
    SELECT l.id, l.logged_at, l.agency, l.action, l.purpose, l.basis, l.break_glass,
           l.investigation_ref, c.read_child
    FROM access_log AS l, unnest(l.child_ids) AS c(read_child)
    WHERE l.decision IN ('allow', 'allow_redacted') AND l.agency IS NOT NULL AND l.child_ids IS NOT NULL
      AND l.logged_at >= :since AND l.logged_at < :until
    UNION ALL
    -- Reads held back under an investigation closed within the look-back period, in windows
    -- already looked at, however old (within the log's retention): released now.
    SELECT l.id, l.logged_at, l.agency, l.action, l.purpose, l.basis, l.break_glass,
           l.investigation_ref, r.read_child
    FROM investigation AS i
    JOIN access_log AS l ON l.agency = i.agency AND l.investigation_ref = i.ref
    CROSS JOIN LATERAL (
        SELECT l.child_id WHERE l.child_id IS NOT NULL UNION ALL SELECT unnest(l.child_ids)
    ) AS r(read_child)
    WHERE i.closed_at >= :horizon AND i.closed_at <= :now AND l.logged_at < :since
      AND l.decision IN ('allow', 'allow_redacted') AND NOT l.break_glass
),
reads AS (
    SELECT g.*, ch.owner_agency, ch.region_code,
           to_timestamp(floor(extract(epoch FROM g.logged_at) / :window) * :window) AS window_start,
           (g.investigation_ref IS NOT NULL AND NOT g.break_glass) AS released
    FROM logged AS g
    JOIN child AS ch ON ch.id = g.read_child
    LEFT JOIN investigation AS i ON i.agency = g.agency AND i.ref = g.investigation_ref
    WHERE g.agency <> ch.owner_agency
      -- The policy marks the child: by its registry category, or a case open at the time.
      AND (ch.categories && CAST(:categories AS varchar[]) OR EXISTS (
            SELECT 1 FROM "case" AS c
            WHERE c.child_id = ch.id AND c.kind = ANY (CAST(:kinds AS text[]))
              AND c.created_at <= g.logged_at AND (c.closed_at IS NULL OR c.closed_at > g.logged_at)))
      -- Held back while its investigation is open (break-glass never is).
      AND (g.break_glass OR g.investigation_ref IS NULL OR (i.closed_at IS NOT NULL AND i.closed_at <= :now))
      -- Never: a read of a report, or one by a report's receivers or its filing agency while
      -- the report's case was open, reveals that a report was made and points to its reporter.
      AND g.action NOT LIKE 'report.%'
      AND NOT EXISTS (
            SELECT 1 FROM "case" AS c
            WHERE c.child_id = ch.id AND c.kind = 'mandatory_report'
              AND g.logged_at >= c.created_at AND (c.closed_at IS NULL OR g.logged_at < c.closed_at)
              AND (EXISTS (SELECT 1 FROM referral AS rf WHERE rf.case_id = c.id AND rf.to_agency = g.agency)
                   OR EXISTS (SELECT 1 FROM report AS rp
                              WHERE rp.case_id = c.id AND rp.filed_by_agency = g.agency)))
      AND NOT EXISTS (
            SELECT 1 FROM access_notice_read AS n WHERE n.access_log_id = g.id AND n.child_id = g.read_child)
)
SELECT read_child AS child_id, owner_agency, region_code, window_start, released,
       count(*) AS read_count,
       array_agg(id ORDER BY logged_at, id) AS ids,
       array_agg(logged_at ORDER BY logged_at, id) AS logged,
       (array_agg(jsonb_build_object(
            'agency', agency, 'read_at', logged_at, 'action', action, 'purpose', purpose,
            'basis', basis, 'break_glass', break_glass) ORDER BY logged_at, id))[1:CAST(:max_reads AS int)]
           AS reads
FROM reads
GROUP BY read_child, owner_agency, region_code, window_start, released
ORDER BY window_start, read_child, released
LIMIT :groups
"""

_LAST_WINDOW = "SELECT max(window_start) FROM access_notice_window WHERE window_start >= :horizon"

_COMPLETE = """
INSERT INTO access_notice_window (window_start)
SELECT to_timestamp(w) FROM generate_series(
    CAST(ceil(extract(epoch FROM CAST(:since AS timestamptz)) / :window) * :window AS bigint),
    CAST(extract(epoch FROM CAST(:until AS timestamptz)) AS bigint) - 1,
    CAST(:window AS bigint)) AS w
ON CONFLICT DO NOTHING
"""

# A batch's reads, one row per (read, child), each with its notice.
_MARK = """
INSERT INTO access_notice_read (access_log_id, child_id, logged_at, owner_agency, window_start, event_id)
SELECT x.id, x.child, x.logged_at, x.owner, x.window_start, x.event
FROM unnest(CAST(:ids AS bigint[]), CAST(:children AS uuid[]), CAST(:logged AS timestamptz[]),
            CAST(:owners AS text[]), CAST(:windows AS timestamptz[]), CAST(:events AS uuid[]))
    AS x(id, child, logged_at, owner, window_start, event)
ON CONFLICT DO NOTHING
"""


def _iso(value: Any) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _loaded(item: Any) -> dict[str, Any]:
    """An element of a ``jsonb[]``: decoded by the driver, or its JSON text."""
    return dict(orjson.loads(item)) if isinstance(item, str | bytes) else dict(item)


def _read(item: dict[str, Any]) -> dict[str, Any]:
    basis = item.get("basis") or {}
    grounds = []
    for category, grant in sorted(basis.items()):
        ground: dict[str, Any] = {"category": str(category)[:32], "ground": str(grant.get("ground"))[:32]}
        if grant.get("citation"):
            ground["citation"] = str(grant["citation"])[:500]
        grounds.append(ground)
    return {
        "agency": str(item["agency"]),
        "read_at": _iso(item["read_at"]),
        "action": str(item["action"])[:64],
        "purpose": str(item.get("purpose") or "")[:64],
        "grounds": grounds[:20],
        "break_glass": bool(item.get("break_glass")),
    }


async def fire_notices(session: AsyncSession, now: datetime, *, policy: Policy) -> int:
    """Send the notices due at ``now``; returns how many were sent."""
    rules: NoticePolicy = notice_policy(policy)
    if not rules.enabled or not (await session.execute(text(_LOCK))).scalar_one():
        return 0
    seconds = rules.window.total_seconds()
    settled = now - rules.settle
    # Only whole windows that have ended: a window's reads go out together.
    until = datetime.fromtimestamp((settled.timestamp() // seconds) * seconds, tz=now.tzinfo)
    # From the first window not yet looked at, within the look-back period.
    horizon = now - rules.lookback
    last = (await session.execute(text(_LAST_WINDOW), {"horizon": horizon})).scalar_one_or_none()
    since = max(horizon, last + rules.window) if last is not None else horizon
    params = {
        "since": since,
        "horizon": horizon,
        "until": until,
        "now": now,
        "window": seconds,
        "categories": list(rules.child_categories),
        "kinds": list(rules.open_case_kinds),
        "max_reads": MAX_READS,
        "groups": GROUPS_PER_BATCH,
    }
    sent = 0
    for _ in range(BATCHES_PER_RUN):
        # Reads marked sent earlier in this transaction are left out of the next batch.
        rows = (await session.execute(text(_GROUPS), params)).all()
        await _send(session, rules, rows)
        sent += len(rows)
        if len(rows) < GROUPS_PER_BATCH:
            if since < until:
                # Everything up to ``until`` is looked at; the next run starts there.
                await session.execute(text(_COMPLETE), {"since": since, "until": until, "window": seconds})
            break
    if sent:
        await session.execute(text("SELECT pg_notify('childlink_events', '')"))
        logger.info("sent %d access notices", sent)
    return sent


async def _send(session: AsyncSession, rules: NoticePolicy, rows: Sequence[Any]) -> None:
    """One notice for each (child, window) of a batch, and their reads marked sent: one statement
    for the notices and one for the marks, whatever the batch's size."""
    drafts = [
        outbox.Draft(
            type=ACCESS_RECORDED,
            subject=row.child_id,
            region_code=row.region_code,
            data={
                "child_id": str(row.child_id),
                "window_start": row.window_start.isoformat(),
                "window_end": (row.window_start + rules.window).isoformat(),
                "read_count": int(row.read_count),
                "reads": [_read(_loaded(item)) for item in row.reads],
                "held_until_closed": bool(row.released),
            },
            audience=row.owner_agency,
        )
        for row in rows
    ]
    events = await outbox.emit_many(session, SCHEDULER, drafts)
    marks: dict[str, list[Any]] = {
        k: [] for k in ("ids", "children", "logged", "owners", "windows", "events")
    }
    for row, event_id in zip(rows, events, strict=True):
        for log_id, logged_at in zip(row.ids, row.logged, strict=True):
            marks["ids"].append(log_id)
            marks["children"].append(row.child_id)
            marks["logged"].append(logged_at)
            marks["owners"].append(row.owner_agency)
            marks["windows"].append(row.window_start)
            marks["events"].append(event_id)
    if marks["ids"]:
        await session.execute(text(_MARK), marks)
