"""Claimed deliveries and their outcomes, and the group-committing recorder that writes them.

Each finished delivery must land in the database (its new state and one ``delivery_attempt``
row). One transaction per delivery would cost four round trips each; instead finished
deliveries queue up and one flusher writes everything pending in one transaction (pipelined
``executemany``), starting again as soon as the previous flush ends: no timer, so a lone
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

from app.events.envelope import StoredEvent
from app.events.sender import SendResult
from app.events.vault import SecretBox
from app.models.vocabulary import DataCategory

logger = logging.getLogger(__name__)

_RECORD = """
UPDATE event_delivery
SET status = CAST(:status AS text), lease_token = NULL, last_status_code = :status_code,
    last_error = CAST(:error AS text),
    next_attempt_at = CASE WHEN CAST(:status AS text) = 'pending'
                           THEN now() + make_interval(secs => CAST(:delay AS double precision))
                           ELSE next_attempt_at END,
    finished_at = CASE WHEN CAST(:status AS text) = 'pending' THEN NULL ELSE now() END,
    updated_at = now()
WHERE id = :delivery_id AND lease_token = :lease
"""

# Only while the delivery still exists: a subscription deleted mid-delivery takes its
# deliveries with it, and one vanished row must not fail the whole batch.
_ATTEMPT = """
INSERT INTO delivery_attempt
    (delivery_id, attempt, outcome, status_code, error, duration_ms, categories_withheld, worker)
SELECT CAST(:delivery_id AS bigint), :attempt, CAST(:outcome AS text), :status_code, CAST(:error AS text),
       :duration_ms, CAST(:withheld AS text[]), CAST(:worker AS text)
WHERE EXISTS (SELECT 1 FROM event_delivery WHERE id = CAST(:delivery_id AS bigint))
"""

_DISABLE_GONE = """
UPDATE subscription SET status = 'disabled', disabled_reason = 'gone', updated_at = now()
WHERE id = :subscription_id AND status = 'active'
"""


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed delivery, with everything needed to send it."""

    delivery_id: int
    attempt: int
    webhook_id: str
    lease: uuid.UUID
    previous_lease: uuid.UUID | None
    subscription_id: uuid.UUID
    agency: str
    client_id: str
    reader_region: str
    url: str
    signing_secrets: list[str]
    purpose: str
    event: StoredEvent

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], lease: uuid.UUID, box: SecretBox) -> Job:
        stored = [row["secret"]]
        expires: datetime | None = row["previous_secret_expires_at"]
        if row["previous_secret"] and expires is not None and expires > row["claimed_at"]:
            stored.append(row["previous_secret"])
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
            previous_lease=row["previous_lease"],
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
    def __init__(self, engine: AsyncEngine, worker_name: str, *, max_batch: int = 500) -> None:
        self.engine = engine
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
        abandoned: list[dict[str, Any]] = [
            {
                "delivery_id": e.job.delivery_id,
                "attempt": e.job.attempt - 1,
                "outcome": "abandoned",
                "status_code": None,
                "error": "the worker stopped before recording the result",
                "duration_ms": None,
                "withheld": [],
                "worker": None,
            }
            for e in batch
            if e.job.previous_lease is not None
        ]
        updates = [
            {
                "status": e.result.status,
                "status_code": e.result.send.status_code,
                "error": e.result.send.error,
                "delay": e.result.delay,
                "delivery_id": e.job.delivery_id,
                "lease": e.job.lease,
            }
            for e in batch
        ]
        attempts = [
            {
                "delivery_id": e.job.delivery_id,
                "attempt": e.job.attempt,
                "outcome": e.result.outcome,
                "status_code": e.result.send.status_code,
                "error": e.result.send.error,
                "duration_ms": e.result.send.duration_ms,
                "withheld": [str(c) for c in e.result.withheld],
                "worker": self.worker_name,
            }
            for e in batch
        ]
        gone = [{"subscription_id": e.job.subscription_id} for e in batch if e.result.status == "gone"]
        async with self.engine.begin() as conn:
            if abandoned:
                await conn.execute(text(_ATTEMPT), abandoned)
            # A delivery whose lease ran out (another worker owns it now) is not updated; our
            # attempt is still history, so its row is written either way.
            await conn.execute(text(_RECORD), updates)
            await conn.execute(text(_ATTEMPT), attempts)
            for params in gone:
                await conn.execute(text(_DISABLE_GONE), params)
        self.flushes += 1
        if len(batch) > 1:
            logger.debug("recorded %d deliveries in one transaction", len(batch))
