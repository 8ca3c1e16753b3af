"""A claim behind a backlog costs one look per candidate, whatever the table's statistics say.

A running platform's statistics are mostly taken when almost nothing is pending (autovacuum
analyzes a busy delivery table every minute or so, and deliveries are usually gone in
milliseconds). When a backlog forms later (a receiver down for an hour, one worker left), the
planner still believes pending rows are rare. In ``bench/bench_events.py`` it then chose the old
index on ``(next_attempt_at, id)`` of every pending delivery for each candidate's line check
and scanned every pending delivery again per candidate: 32 s for one claim behind 14,000, and
the worker stood still (migration 0021 drops that index). The planner's choice depends on more
than this test can set up, so the test holds the claim to its linear cost behind a backlog
analyzed while quiet. Page reads are counted, not time: the bound does not depend on the
machine's speed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text

from app.config import Settings
from app.db import asyncpg_dsn
from app.events.sender import WebhookSender
from app.events.worker import _CLAIM
from tests.events.helpers import PREFIX, subscribe
from tests.events.receiver import Receiver

CHILDREN = 30
PER_CHILD = 100
IN_FLIGHT = 25
"""Children whose first delivery is out with a receiver: all their later ones wait behind it."""


def shared_hits(plan: dict[str, Any]) -> int:
    return int(plan["Shared Hit Blocks"]) + int(plan.get("Shared Read Blocks", 0))


async def test_a_claim_behind_a_backlog_planned_from_quiet_statistics_reads_little(
    app: Any,
    client: httpx.AsyncClient,
    subscriber: str,
    receiver: Receiver,
    loopback_sender: WebhookSender,
    settings: Settings,
    owner_database_url: str,
) -> None:
    sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "*"])
    owner = await asyncpg.connect(asyncpg_dsn(owner_database_url))
    try:
        children = [uuid.uuid4() for _ in range(CHILDREN)]
        await owner.execute(
            "INSERT INTO outbox_event (id, type, source, subject, data, data_categories, region_code, "
            "publisher_agency, publisher_client) "
            "SELECT gen_random_uuid(), 'cn.gov.childlink.test', '/t', c, '{}', '{}', '510107', "
            "'education', 'c' FROM unnest($1::uuid[]) AS c, generate_series(1, $2)",
            children,
            2 * PER_CHILD,
        )
        await owner.execute("SELECT outbox_event_number()")
        queue = (
            "INSERT INTO event_delivery (subscription_id, kind, event_id, event_seq, child_id, webhook_id, "
            "status) SELECT $1, 'event', e.id, e.seq, e.subject, 'msg_' || e.seq, $2 FROM outbox_event AS e "
        )
        sub_id = uuid.UUID(sub["id"])
        # The quiet platform: each child's first half of its events delivered, nothing pending,
        # and analyzed so. Then the second half queues up behind a receiver that went away.
        half = "WHERE e.seq %s (SELECT min(seq) + $3 FROM outbox_event AS f WHERE f.subject = e.subject)"
        await owner.execute(queue + half % "<", sub_id, "delivered", PER_CHILD)
        await owner.execute("ANALYZE event_delivery")
        await owner.execute(queue + half % ">=", sub_id, "pending", PER_CHILD)
        await owner.execute(
            "UPDATE event_delivery SET lease_token = gen_random_uuid(), attempts = 1, "
            "next_attempt_at = now() + interval '1 minute' WHERE id IN ("
            "  SELECT DISTINCT ON (child_id) id FROM event_delivery WHERE status = 'pending' "
            "  AND child_id = ANY($1::uuid[]) ORDER BY child_id, event_seq)",
            children[:IN_FLIGHT],
        )
    finally:
        await owner.close()

    params = {
        "limit": 8,
        "lease": uuid.uuid4(),
        "lease_seconds": settings.webhook_lease_seconds,
        "share": IN_FLIGHT + 16,  # room beside the leases already out
        "worker": "test",
        "held": [],
    }
    async with app.state.db.engine.connect() as conn:
        transaction = await conn.begin()
        explaining = await conn.begin_nested()
        explained = (
            await conn.execute(text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + _CLAIM), params)
        ).scalar_one()
        await explaining.rollback()
        claimed = (await conn.execute(text(_CLAIM), params)).mappings().all()
        await transaction.rollback()
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]

    # Only the children with nobody in flight have a delivery to give: one each, their first.
    free = CHILDREN - IN_FLIGHT
    assert len(claimed) == free
    assert len({row["subject"] for row in claimed}) == free
    # 3,000 pending deliveries, most behind a delivery in flight: one look at each candidate and
    # one index probe for its line is about 9,000 page reads; scanning the pending deliveries
    # again for every candidate (the plan this guards against) is several times that at least.
    assert shared_hits(plan) < 30_000, shared_hits(plan)
