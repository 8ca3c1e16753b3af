"""Operational events to a subscribing agency (Svix's "operational webhooks"): a delivery was
dead-lettered (``platform.delivery.dead-lettered``), a subscription was disabled
(``platform.subscription.disabled``).

Each is written in the transaction that made the change it reports (the recorder's flush, an
operator's skip, a ping answered 410), so the notice and the change commit together or not at
all. It is addressed to the subscription's agency (``audience``), never delivered to the
subscription it is about (``about_subscription``), and carries ids and codes only: the
subscription, the delivery, the event and its type, a reason and a time. Its region is the
subscription's reading region, so only the agency's subscriptions and readers covering that
region see it (app/events/audience.py).

**No loops.** A dead-lettered delivery of an operational event emits nothing (the condition on
``e.type`` below): a receiver that rejects these notices is not told so by more of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.events.audience import OPERATIONAL_PREFIXES
from app.events.spec import PREFIX

DEAD_LETTERED = f"{PREFIX}platform.delivery.dead-lettered.v1"
DISABLED = f"{PREFIX}platform.subscription.disabled.v1"
SOURCE = "/childlink/platform"
CLIENT = "childlink-worker"

_UTC = """to_char({at} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

_INSERT = """
INSERT INTO outbox_event (id, type, source, subject, time, data, data_categories, region_code,
                          publisher_agency, publisher_client, audience, about_subscription)
"""

# ``fresh``: only deliveries this transaction dead-lettered (``updated_at`` is the transaction's
# ``now()``): a result recorded under a lease that ran out changed nothing, and reports nothing.
_DEAD_LETTERED = (
    _INSERT
    + """
SELECT gen_random_uuid(), CAST(:type AS text), CAST(:source AS text), NULL, now(),
       jsonb_build_object(
           'subscription_id', s.id, 'delivery_id', d.id, 'event_id', e.id, 'event_type', e.type,
           'reason', x.reason, 'attempts', d.attempts, 'dead_lettered_at', {at}),
       '{{}}', s.reader_region, 'platform', CAST(:client AS text), s.agency, s.id
FROM unnest(CAST(:ids AS bigint[]), CAST(:reasons AS text[])) AS x(delivery_id, reason)
JOIN event_delivery AS d ON d.id = x.delivery_id
JOIN subscription AS s ON s.id = d.subscription_id
JOIN outbox_event AS e ON e.id = d.event_id
WHERE d.status IN ('dead', 'skipped')
  AND (NOT CAST(:fresh AS boolean) OR d.updated_at = now())
  AND NOT (e.type LIKE ANY (CAST(:operational AS text[])))
ORDER BY d.id
""".format(at=_UTC.format(at="now()"))
)
_DEAD_LETTERED_SQL = text(_DEAD_LETTERED)

_DISABLED = (
    _INSERT
    + """
SELECT gen_random_uuid(), CAST(:type AS text), CAST(:source AS text), NULL, now(),
       jsonb_strip_nulls(jsonb_build_object(
           'subscription_id', s.id, 'reason', s.disabled_reason, 'disabled_at', {at},
           'failing_since', {since},
           'pending_deliveries', (SELECT count(*) FROM event_delivery AS p
                                  WHERE p.subscription_id = s.id AND p.status IN ('pending', 'gone')))),
       '{{}}', s.reader_region, 'platform', CAST(:client AS text), s.agency, s.id
FROM subscription AS s
WHERE s.id = ANY (CAST(:ids AS uuid[])) AND s.status = 'disabled'
ORDER BY s.id
""".format(at=_UTC.format(at="now()"), since=_UTC.format(at="s.failing_since"))  # noqa: S608 (constants)
)
_DISABLED_SQL = text(_DISABLED)

_NOTIFY = "SELECT pg_notify('childlink_events', '')"
_NOTIFY_SQL = text(_NOTIFY)


async def dead_lettered(
    conn: AsyncConnection, deliveries: Sequence[tuple[int, str]], *, fresh: bool = False
) -> int:
    """Tell each delivery's agency that it was dead-lettered, with its reason (``exhausted``,
    ``aborted``, ``skipped``); returns how many notices were written. ``fresh``: only those this
    transaction dead-lettered."""
    if not deliveries:
        return 0
    result = await conn.execute(
        _DEAD_LETTERED_SQL,
        {
            "type": DEAD_LETTERED,
            "source": SOURCE,
            "client": CLIENT,
            "ids": [d for d, _ in deliveries],
            "reasons": [r for _, r in deliveries],
            "fresh": fresh,
            "operational": [p + "%" for p in OPERATIONAL_PREFIXES],
        },
    )
    written = int(getattr(result, "rowcount", 0) or 0)
    if written:
        await conn.execute(_NOTIFY_SQL)
    return written


async def disabled(conn: AsyncConnection, subscription_ids: Sequence[uuid.UUID]) -> int:
    """Tell each subscription's agency that the platform disabled it; returns how many."""
    if not subscription_ids:
        return 0
    result = await conn.execute(
        _DISABLED_SQL,
        {"type": DISABLED, "source": SOURCE, "client": CLIENT, "ids": list(subscription_ids)},
    )
    written = int(getattr(result, "rowcount", 0) or 0)
    if written:
        await conn.execute(_NOTIFY_SQL)
    return written
