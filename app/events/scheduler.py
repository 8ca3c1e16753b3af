"""The worker's timers: a registry of timed jobs run by the delivery worker between rounds.

"One scheduler, one worker": timers share the worker process, its database pool and its
shutdown, never a second background mechanism. Every worker runs every job; a job is written to
be safe when several run it at once (its writes are keyed so that a step fires exactly once,
e.g. ``INSERT ... ON CONFLICT DO NOTHING``), so no lease is needed to run a timer. A job takes
``now`` as a parameter, which is how tests drive it with a controlled clock. Jobs other
deadline features (referrals, acknowledgements) add are registered the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.policy import Policy
from app.audit import partitions as partition_service
from app.db import Database, commit
from app.events import attempt_partitions as attempt_partition_service
from app.models.common import utcnow
from app.services import access_notice as access_notice_service
from app.services import deadline as deadline_service
from app.services import due as due_service

logger = logging.getLogger(__name__)

JobRun = Callable[[AsyncSession, datetime], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class TimedJob:
    name: str
    every_seconds: float
    run: JobRun
    """One run in one transaction; returns how many steps it fired."""


class Scheduler:
    def __init__(self, db: Database, jobs: Sequence[TimedJob]) -> None:
        self.db = db
        self.jobs = tuple(jobs)
        self._last_run: dict[str, float] = {}

    async def run_job(self, job: TimedJob, now: datetime) -> int:
        """One run of ``job`` as of ``now``, committed (or rolled back) as one transaction."""
        async with self.db.sessionmaker() as session:
            fired = await job.run(session, now)
            await commit(session)
        return fired

    async def tick(self, now: datetime | None = None) -> dict[str, int]:
        """Run each job whose interval has passed since its last run in this process. A job that
        fails (the database away) is logged and tried at its next interval."""
        results: dict[str, int] = {}
        clock = time.monotonic()
        for job in self.jobs:
            last = self._last_run.get(job.name)
            if last is not None and clock - last < job.every_seconds:
                continue
            self._last_run[job.name] = clock
            try:
                results[job.name] = await self.run_job(job, now or utcnow())
            except (DBAPIError, OSError, TimeoutError) as exc:
                logger.warning("scheduled job %s failed: %s", job.name, type(exc).__name__)
        return results


CARE_OVERDUE_EVERY_SECONDS = 300.0
DEFAULT_ATTEMPT_RETENTION_DAYS = 1096
REFERRAL_OVERDUE_EVERY_SECONDS = 60.0
ACTION_OVERDUE_EVERY_SECONDS = 60.0


def registered_jobs(
    policy: Policy, *, delivery_attempt_retention_days: int = DEFAULT_ATTEMPT_RETENTION_DAYS
) -> list[TimedJob]:
    """Every timed job the worker runs."""

    async def care_overdue(session: AsyncSession, now: datetime) -> int:
        return await due_service.fire_overdue(session, now, policy=policy)

    async def referral_overdue(session: AsyncSession, now: datetime) -> int:
        return await deadline_service.fire_overdue(session, now, policy=policy)

    async def action_overdue(session: AsyncSession, now: datetime) -> int:
        return await deadline_service.fire_overdue_actions(session, now, policy=policy)

    async def access_recorded(session: AsyncSession, now: datetime) -> int:
        return await access_notice_service.fire_notices(session, now, policy=policy)

    async def attempt_partitions(session: AsyncSession, now: datetime) -> int:
        return await attempt_partition_service.keep(
            session, now, retention_days=delivery_attempt_retention_days
        )

    return [
        TimedJob("care.overdue", CARE_OVERDUE_EVERY_SECONDS, care_overdue),
        TimedJob("referral.overdue", REFERRAL_OVERDUE_EVERY_SECONDS, referral_overdue),
        TimedJob("action.overdue", ACTION_OVERDUE_EVERY_SECONDS, action_overdue),
        # Owners told of other agencies' reads of their marked children, per child per hour.
        TimedJob("access.recorded", access_notice_service.NOTICE_EVERY_SECONDS, access_recorded),
        # The access log's monthly partitions, kept MONTHS_AHEAD ahead of the calendar.
        TimedJob(
            "audit.partitions",
            partition_service.CREATE_PARTITIONS_EVERY_SECONDS,
            partition_service.create_ahead,
        ),
        # The delivery attempts' monthly partitions: ahead of the calendar, and past retention dropped.
        TimedJob(
            "events.attempt-partitions",
            attempt_partition_service.KEEP_PARTITIONS_EVERY_SECONDS,
            attempt_partitions,
        ),
    ]
