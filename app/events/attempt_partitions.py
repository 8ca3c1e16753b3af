"""The delivery attempts' monthly partitions: created ahead, dropped past retention.

Partitions are ``delivery_attempt_yYYYYmMM`` by ``sent_at`` (UTC months, migration 0018), beside a
default partition that catches an attempt whose month has none. The worker's scheduler job
``events.attempt-partitions`` keeps this month's and :data:`MONTHS_AHEAD` more in place, and
drops each month that ended more than ``CHILDLINK_DELIVERY_ATTEMPT_RETENTION_DAYS`` ago, through
two SECURITY DEFINER functions the service's role may call (it may not create or drop tables).

Unlike the access log, an attempt is operational history (what the receiver answered, for the
subscriber's delivery log), not the record of a read: the read itself is on the access log, which
keeps its own retention and archives. So an expired month is dropped, not archived; each drop is
logged with the partition's name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

MONTHS_AHEAD = 3
PARTITION_PREFIX = "delivery_attempt_y"
KEEP_PARTITIONS_EVERY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    range_from: datetime
    range_until: datetime


async def keep(
    session: AsyncSession, now: datetime, *, retention_days: int, months_ahead: int = MONTHS_AHEAD
) -> int:
    """Create this month's and the next ``months_ahead`` months' partitions that are missing, and
    drop those whose month ended more than ``retention_days`` before ``now``; returns how many
    were created and dropped. Safe in several workers at once: creation skips existing
    partitions, and a drop takes the parent's lock, so a second worker finds nothing left."""
    created = await session.execute(
        text("SELECT delivery_attempt_create_partitions(:ahead, :at)"), {"ahead": months_ahead, "at": now}
    )
    made = int(created.scalar_one())
    before = now - timedelta(days=retention_days)
    result = await session.execute(
        text("SELECT delivery_attempt_drop_partitions(:before)"), {"before": before}
    )
    dropped: list[str] = list(result.scalar_one() or [])
    for name in dropped:
        logger.info(
            "delivery attempts of %s dropped: past the %d days' retention",
            name,
            retention_days,
            extra={"partition": name},
        )
    return made + len(dropped)


_PARTITIONS = """
SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'delivery_attempt'::regclass AND c.relname LIKE 'delivery\\_attempt\\_y%'
ORDER BY c.relname
"""


def _month_of(name: str) -> Partition:
    year, month = int(name[len(PARTITION_PREFIX) : len(PARTITION_PREFIX) + 4]), int(name[-2:])
    start = datetime(year, month, 1, tzinfo=UTC)
    return Partition(name, start, datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC))


async def partitions(conn: asyncpg.Connection) -> list[Partition]:
    """The monthly partitions attached to ``delivery_attempt``, oldest first (the default aside)."""
    return [_month_of(r["name"]) for r in await conn.fetch(_PARTITIONS)]
