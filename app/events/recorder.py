"""Claimed deliveries and their outcomes, and the group-committing recorder that writes them.

Each finished delivery must land in the database (its new state and its ``delivery_attempt``
row's answer). One transaction per delivery would cost four round trips each; instead finished
deliveries queue up and one flusher writes everything pending in one transaction (one
statement for all of them), starting again as soon as the previous flush ends: no timer, so a lone
delivery is written at once and a busy worker's batches grow by themselves (the same rule as the
access-log writer, DESIGN §7). A result is written only under the lease it was claimed with.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.events import operational
from app.events.envelope import StoredEvent
from app.events.sender import SendResult
from app.events.vault import SecretBox, valid_retired
from app.models.vocabulary import DataCategory

logger = logging.getLogger(__name__)

# One statement for the whole batch, whatever its size: the rows travel as parallel arrays
# (``unnest``), the delivery's new state and its attempt's answer together. A delivery whose lease
# ran out (another worker owns it now) keeps its state, but its attempt row is written either way
# (and overwrites the ``abandoned`` a later claimer put there): what the receiver answered is
# history. The attempt row was written (``sending``) when the delivery was claimed; a
# subscription deleted mid-delivery took it with it, and the update then matches nothing.
# Withheld categories travel comma-joined (category names have no commas): unnest would flatten
# an array of arrays. Each attempt row was put on record at its claim, so its ``sent_at`` (the
# partition key) lies between the batch's earliest claim and a day after its latest: bounding it
# lets PostgreSQL skip every other month's partition.
_RECORD = """
WITH r AS (
    SELECT * FROM unnest(
        CAST(:delivery_id AS bigint[]), CAST(:lease AS uuid[]), CAST(:status AS text[]),
        CAST(:status_code AS integer[]), CAST(:error AS text[]), CAST(:delay AS double precision[]),
        CAST(:attempt AS integer[]), CAST(:outcome AS text[]), CAST(:duration_ms AS integer[]),
        CAST(:withheld AS text[])
    ) AS r(delivery_id, lease, status, status_code, error, delay, attempt, outcome, duration_ms, withheld)
),
delivery AS (
    UPDATE event_delivery AS d
    SET status = r.status, lease_token = NULL, last_status_code = r.status_code, last_error = r.error,
        next_attempt_at = CASE WHEN r.status = 'pending'
                               THEN now() + make_interval(secs => r.delay) ELSE d.next_attempt_at END,
        finished_at = CASE WHEN r.status = 'pending' THEN NULL ELSE now() END,
        updated_at = now()
    FROM r
    WHERE d.id = r.delivery_id AND d.lease_token = r.lease
    RETURNING 1
)
UPDATE delivery_attempt AS a
SET outcome = r.outcome, status_code = r.status_code, error = r.error, duration_ms = r.duration_ms,
    categories_withheld = string_to_array(r.withheld, ','), at = now()
FROM r
WHERE a.delivery_id = r.delivery_id AND a.attempt = r.attempt
  AND a.sent_at >= CAST(:claimed_from AS timestamptz)
  AND a.sent_at < CAST(:claimed_to AS timestamptz) + interval '1 day'
"""
_RECORD_SQL = text(_RECORD)

_DISABLE_GONE = """
UPDATE subscription SET status = 'disabled', disabled_reason = 'gone', updated_at = now()
WHERE id = :subscription_id AND status IN ('active', 'paused')  -- paused with a delivery in flight
RETURNING id
"""
_DISABLE_GONE_SQL = text(_DISABLE_GONE)

# Subscription health, once per subscription per batch. An answer resets it; an endpoint failure
# (no answer, 5xx, 429) backs the whole subscription off and leaves it one probe at a time;
# any failure starts the clock that disables a subscription failing for the configured period.
_HEALTHY = """
UPDATE subscription SET consecutive_failures = 0, failing_since = NULL, backoff_until = NULL
WHERE id = ANY(CAST(:subscription_ids AS uuid[])) AND (consecutive_failures <> 0 OR failing_since IS NOT NULL)
"""
_HEALTHY_SQL = text(_HEALTHY)

_UNHEALTHY = """
UPDATE subscription
SET consecutive_failures = consecutive_failures + CAST(:endpoint AS integer),
    failing_since = COALESCE(failing_since, now()),
    backoff_until = CASE
        WHEN CAST(:endpoint AS integer) = 1 THEN now() + make_interval(secs => schedule.s[
            LEAST(consecutive_failures + 1, cardinality(schedule.s))])
        ELSE backoff_until END
FROM (SELECT CAST(:schedule AS double precision[]) AS s) AS schedule
WHERE id = :subscription_id
"""
_UNHEALTHY_SQL = text(_UNHEALTHY)

_DISABLE_FAILING = """
UPDATE subscription SET status = 'disabled', disabled_reason = 'failing', updated_at = now()
WHERE id = :subscription_id AND status = 'active'
  AND failing_since <= now() - make_interval(secs => CAST(:period AS double precision))
RETURNING id
"""
_DISABLE_FAILING_SQL = text(_DISABLE_FAILING)


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed delivery, with everything needed to send it."""

    delivery_id: int
    attempt: int
    webhook_id: str
    lease: uuid.UUID
    retry_base: int
    claimed_monotonic: float
    """When the lease began, on this worker's monotonic clock."""
    claimed_at: datetime
    """When the lease began, on the database's clock (the attempt row's ``sent_at``)."""
    subscription_id: uuid.UUID
    agency: str
    client_id: str
    reader_region: str
    url: str
    signing_secrets: list[str]
    purpose: str
    event: StoredEvent

    @classmethod
    def from_row(
        cls, row: Mapping[Any, Any], lease: uuid.UUID, box: SecretBox, *, claimed_monotonic: float
    ) -> Job:
        stored = [row["secret"], *valid_retired(row["retired_secrets"], row["claimed_at"])]
        try:
            keys = [box.open(row["subscription_id"], value) for value in stored]
        except (ValueError, InvalidTag):
            # Sealed under another key (a misconfigured key folder): the attempt fails and is
            # retried, instead of the worker stopping on one subscription.
            logger.error("subscription %s: webhook secret cannot be opened", row["subscription_id"])
            keys = []
        return cls(
            delivery_id=row["delivery_id"],
            attempt=row["attempts"],
            webhook_id=row["webhook_id"],
            lease=lease,
            retry_base=row["retry_base"],
            claimed_monotonic=claimed_monotonic,
            claimed_at=row["claimed_at"],
            subscription_id=row["subscription_id"],
            agency=row["agency"],
            client_id=row["created_by_client"],
            reader_region=row["reader_region"],
            url=row["url"],
            signing_secrets=keys,
            purpose=row["purpose_of_use"],
            event=StoredEvent.from_row(row),
        )


@dataclass(frozen=True, slots=True)
class Result:
    status: str
    """The delivery's new status: pending (retry), delivered, dead, denied or gone."""
    outcome: str
    """This attempt's outcome, as ``delivery_attempt.outcome``."""
    send: SendResult
    withheld: tuple[DataCategory, ...] = ()
    delay: float = 0.0


@dataclass(slots=True)
class _Pending:
    job: Job
    result: Result
    future: asyncio.Future[None]


class Recorder:
    def __init__(
        self,
        engine: AsyncEngine,
        worker_name: str,
        *,
        backoff_schedule: list[float],
        disable_after_seconds: float,
        max_batch: int = 500,
    ) -> None:
        self.engine = engine
        self.backoff_schedule = backoff_schedule
        self.disable_after_seconds = disable_after_seconds
        self.worker_name = worker_name[:64]
        self.max_batch = max_batch
        self._pending: deque[_Pending] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self.flushes = 0

    async def record(self, job: Job, result: Result) -> None:
        """Write the outcome durably; raises what the database raised if its batch failed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(job, result, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_while_pending(), name="delivery-recorder")
        await future

    async def _flush_while_pending(self) -> None:
        try:
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
                try:
                    await self._flush(batch)
                except BaseException as exc:
                    for entry in batch:
                        if not entry.future.done():
                            entry.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for entry in batch:
                        if not entry.future.done():
                            entry.future.set_result(None)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[_Pending]) -> None:
        rows = {
            "delivery_id": [e.job.delivery_id for e in batch],
            "lease": [e.job.lease for e in batch],
            "status": [e.result.status for e in batch],
            "status_code": [e.result.send.status_code for e in batch],
            "error": [e.result.send.error for e in batch],
            "delay": [e.result.delay for e in batch],
            "attempt": [e.job.attempt for e in batch],
            "outcome": [e.result.outcome for e in batch],
            "duration_ms": [e.result.send.duration_ms for e in batch],
            "withheld": [",".join(str(c) for c in e.result.withheld) for e in batch],
            # The attempts were put on record at their claims: their partition key lies from the
            # earliest claim to a day after the latest.
            "claimed_from": min(e.job.claimed_at for e in batch),
            "claimed_to": max(e.job.claimed_at for e in batch),
        }
        healthy, unhealthy = _health(batch)
        gone = [{"subscription_id": e.job.subscription_id} for e in batch if e.result.status == "gone"]
        dead = [
            (e.job.delivery_id, "aborted" if e.result.outcome == "aborted" else "exhausted")
            for e in batch
            if e.result.status == "dead"
        ]
        disabled: list[uuid.UUID] = []
        async with self.engine.begin() as conn:
            await conn.execute(_RECORD_SQL, rows)
            if healthy:
                await conn.execute(_HEALTHY_SQL, {"subscription_ids": sorted(healthy)})
            for subscription_id, endpoint in unhealthy.items():
                await conn.execute(
                    _UNHEALTHY_SQL,
                    {
                        "subscription_id": subscription_id,
                        "endpoint": int(endpoint),
                        "schedule": self.backoff_schedule,
                    },
                )
                if self.disable_after_seconds > 0:
                    result = await conn.execute(
                        _DISABLE_FAILING_SQL,
                        {"subscription_id": subscription_id, "period": self.disable_after_seconds},
                    )
                    disabled.extend(result.scalars())
            for params in gone:
                disabled.extend((await conn.execute(_DISABLE_GONE_SQL, params)).scalars())
            # The subscriber is told, in the same transaction (app/events/operational.py).
            await operational.dead_lettered(conn, dead, fresh=True)
            await operational.disabled(conn, disabled)
        self.flushes += 1
        if len(batch) > 1:
            logger.debug("recorded %d deliveries in one transaction", len(batch))


def _health(batch: list[_Pending]) -> tuple[set[uuid.UUID], dict[uuid.UUID, bool]]:
    """Per subscription in the batch: answered at least once (healthy), or else failed, and
    whether any failure was the endpoint's (it then backs off as a whole)."""
    answered: set[uuid.UUID] = set()
    failed: dict[uuid.UUID, bool] = {}
    for entry in batch:
        sent, sub, outcome = entry.result.send, entry.job.subscription_id, entry.result.outcome
        if outcome == "delivered":
            answered.add(sub)
        elif outcome in ("failed", "refused") and not sent.not_sent:
            failed[sub] = failed.get(sub, False) or sent.endpoint_failed
    return answered, {sub: endpoint for sub, endpoint in failed.items() if sub not in answered}
