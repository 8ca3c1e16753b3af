"""The delivery worker: fan events out to webhook subscriptions, claim due deliveries, pass each
through the access layer, send it signed, record the attempt. Any number may run at once.

**Fan-out.** Each webhook subscription keeps a cursor (``dispatched_seq``). A round locks the
active subscriptions behind the head (``FOR UPDATE SKIP LOCKED``: two workers never fan out the
same subscription), inserts one delivery per matching event up to the committed head, and
advances the cursors, all in one transaction. Sequence numbers become visible in order without
holes (migration 0020), so a cursor never steps over an event that commits later. A fan-out
first numbers whatever committed events nobody has numbered yet (app/events/numbering.py).

**Claims are leases.** A worker claims due deliveries with ``FOR UPDATE SKIP LOCKED``, counts
the attempt, writes its ``delivery_attempt`` row (``sending``) and moves ``next_attempt_at`` a
lease into the future, then commits: no transaction stays open while a receiver thinks, and an
attempt is on record before it is sent. A worker that dies (SIGKILL, power loss) between sending
and recording leaves the lease to run out; whoever claims next (expired leases first) marks the
old attempt ``abandoned`` and sends the same ``webhook-id`` again: at-least-once. A worker sends
only when the whole exchange still fits in its lease, records the answer it got even if it was
paused past its deadline, and changes the delivery's state only under the lease it claimed with.

**Fair shares.** A subscription holds at most its share of live leases (across workers), one
while its endpoint is failing, and a failing endpoint backs off as a whole: a receiver that hangs
ties up its share of the slots, never everyone's.

**Order.** A delivery is claimable only when no earlier one (by event sequence) for the same
subscription and child is still pending (or, for a ``blocking`` subscription, dead-lettered),
so per subscription and child, events arrive in sequence order, across retries and workers.

**Priority.** Each delivery carries its event's priority (0, or 1 for a report of a child in
immediate danger, set by the emitter): a subscription's higher-priority due deliveries are
claimed before its ordinary backlog, within its fair share and the per-child order above.

**Every delivery is a read.** Before each attempt the door decides the subscriber's read of the
event (its agency, the creating client's region, the subscription's purpose of use) and writes
the access-log record; categories without a legal basis are cut from the payload, and a delivery
with nothing left to release is recorded as ``denied`` and never sent.

Hot path: Core SQL on the engine (no ORM unit of work): one statement per claim batch, and the
outcomes of finished deliveries written together by the group-committing :class:`Recorder`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets as secrets_module
import socket
import time
import uuid
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.access.deps import AgencyKinds
from app.access.door import Door
from app.access.reading import Reader
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.config import Settings
from app.db import Database, OnDemandSession
from app.errors import AppError, Forbidden, NotFound
from app.events import audience, numbering, vault
from app.events.envelope import envelope
from app.events.notify import Notifier
from app.events.recorder import Job, Recorder, Result
from app.events.scheduler import Scheduler
from app.events.sender import Outcome, SendResult, WebhookSender
from app.events.vault import SecretBox
from app.models.vocabulary import DataCategory

logger = logging.getLogger(__name__)

IDEMPOTENCY_RETENTION_DAYS = 7
"""How long a publisher's Idempotency-Key is remembered; a retry comes within minutes, not weeks."""

_PRUNE = "DELETE FROM event_idempotency WHERE created_at < now() - make_interval(days => :days)"
_PRUNE_SQL = text(_PRUNE)

DISPATCH_BATCH = 1000
"""Events fanned out per subscription per round: keeps each transaction short during catch-up."""

GATHER_SECONDS = 0.005
"""After a wake-up, how long the loop lets notifications and finished deliveries pile up before
its next round of queries: a few milliseconds of latency for a round shared by all of them."""

FAN_OUT_SECONDS = 0.02
"""The shortest time between two fan-outs of one worker while events keep committing: each one
rewrites the cursor of every subscription with new events, and a row rewritten hundreds of times
a second leaves that many dead versions for every later scan to step over until vacuumed."""

_DISABLE_REVOKED = """
UPDATE subscription AS s SET status = 'disabled', disabled_reason = 'client_revoked', updated_at = now()
FROM api_client AS c
WHERE c.id = s.created_by_client AND c.status <> 'active' AND s.status = 'active'
"""
_DISABLE_REVOKED_SQL = text(_DISABLE_REVOKED)

_DISPATCH = """
WITH head AS (SELECT COALESCE((SELECT last_seq FROM event_sequence WHERE id = 1), 0) AS seq),
subs AS (
    SELECT s.id, s.dispatched_seq, LEAST((SELECT seq FROM head), s.dispatched_seq + :batch) AS upto,
           s.type_patterns, s.region_prefix, s.categories, s.agency, s.reader_region
    FROM subscription AS s
    WHERE s.mode = 'webhook' AND s.status = 'active' AND s.dispatched_seq < (SELECT seq FROM head)
    FOR UPDATE SKIP LOCKED
),
queued AS (
    INSERT INTO event_delivery (subscription_id, kind, event_id, event_seq, child_id, webhook_id, priority)
    SELECT subs.id, 'event', e.id, e.seq, e.subject, 'msg_' || replace(gen_random_uuid()::text, '-', ''),
           e.priority
    FROM subs
    JOIN outbox_event AS e ON e.seq > subs.dispatched_seq AND e.seq <= subs.upto
    WHERE EXISTS (SELECT 1 FROM unnest(subs.type_patterns) AS p WHERE e.type LIKE replace(p, '*', '%'))
      AND {match}
    ORDER BY subs.id, e.seq
    RETURNING 1
),
advanced AS (
    UPDATE subscription AS s SET dispatched_seq = subs.upto FROM subs WHERE s.id = subs.id RETURNING 1
)
SELECT (SELECT count(*) FROM queued) AS queued, (SELECT count(*) FROM advanced) AS subscriptions
""".format(  # noqa: S608 (the audience rule is a constant)
    match=audience.match_sql(
        subscription="subs.id",
        agency="subs.agency",
        region="subs.region_prefix",
        reader_region="subs.reader_region",
        categories="subs.categories",
    )
)
_DISPATCH_SQL = text(_DISPATCH)

# The claim, in one statement (a hot path: Core SQL, no ORM).
# - Fair shares: each active subscription out of back-off may hold ``:share`` live leases at once
#   (counted across all workers), one while it is failing (a probe); a receiver that hangs ties
#   up its share, never every slot.
# - Expired leases first: a crashed worker's deliveries go ahead of newer work.
# - Then priority (migration 0015): a subscription's higher-priority deliveries are taken before
#   its older ordinary ones, and ahead of other subscriptions' ordinary ones, still within its
#   share and never before an earlier pending delivery for the same child.
# - Order: nothing is claimed while an earlier delivery for the same subscription and child is
#   pending (or, for a blocking subscription, dead-lettered).
# - On record before sent: the attempt row is written now, ``sending``; whatever an earlier
#   claimer left ``sending`` is marked ``abandoned``.
_CLAIM = """
WITH subs AS MATERIALIZED (  -- computed once: ``room`` is used in several places below
    SELECT s.id, s.blocking,
           (CASE WHEN s.consecutive_failures > 0 THEN 1 ELSE :share END) - (
               SELECT count(*) FROM event_delivery AS l
               WHERE l.subscription_id = s.id AND l.status = 'pending' AND l.lease_token IS NOT NULL
                 AND l.next_attempt_at > now()
           ) AS room
    FROM subscription AS s
    WHERE s.mode = 'webhook' AND s.status = 'active' AND (s.backoff_until IS NULL OR s.backoff_until <= now())
),
candidates AS (
    -- Locked here, inside each subscription's own LIMIT, so that a second worker claiming at the
    -- same moment skips these rows and takes the next ones instead of finding its share locked.
    -- No more than one claim can take (its room, and at most ``:limit``): each lock is a write.
    -- The conditions are re-checked on the newest row version once locked: a row another worker
    -- claimed (and committed) since this statement began has its lease in the future, and is
    -- skipped. Never our own deliveries still in flight, even when their lease ran out while this
    -- process was paused: we are about to record their answer, not send them twice.
    SELECT ranked.id, ranked.subscription_id, ranked.room, ranked.expired, ranked.priority,
           ranked.next_attempt_at, ranked.turn
    FROM (
        SELECT c.id, subs.id AS subscription_id, c.expired, c.priority, c.next_attempt_at, subs.room,
               row_number() OVER (
                   PARTITION BY subs.id ORDER BY c.priority DESC, c.next_attempt_at, c.id
               ) AS turn
        FROM subs, LATERAL (
            SELECT d.id, true AS expired, d.priority, d.next_attempt_at
            FROM event_delivery AS d
            WHERE d.subscription_id = subs.id AND d.status = 'pending' AND d.lease_token IS NOT NULL
              AND d.next_attempt_at <= now() AND d.id <> ALL(CAST(:held AS bigint[]))
            ORDER BY d.priority DESC, d.next_attempt_at, d.id
            LIMIT LEAST(subs.room, :limit)
            FOR UPDATE SKIP LOCKED
        ) AS c
        WHERE subs.room > 0
        UNION ALL
        SELECT c.id, subs.id AS subscription_id, c.expired, c.priority, c.next_attempt_at, subs.room,
               row_number() OVER (
                   PARTITION BY subs.id ORDER BY c.priority DESC, c.next_attempt_at, c.id
               ) AS turn
        FROM subs, LATERAL (
            SELECT d.id, false AS expired, d.priority, d.next_attempt_at
            FROM event_delivery AS d
            WHERE d.subscription_id = subs.id AND d.status = 'pending' AND d.lease_token IS NULL
              AND d.kind <> 'ping' AND d.next_attempt_at <= now()
              -- Two checks, each on its own partial index (an OR of the two would scan them all).
              -- The first: d is its child's head of line, the child's first pending delivery. A
              -- correlated lookup of that one row, not a NOT EXISTS: the planner turned that into
              -- an anti-join probing the index by subscription alone and filtering every pending
              -- row of the subscription for each candidate (50 ms a claim with a backlog).
              AND (d.child_id IS NULL OR d.id = (
                  SELECT p.id FROM event_delivery AS p
                  WHERE p.subscription_id = d.subscription_id AND p.child_id = d.child_id
                    AND p.status = 'pending'
                  ORDER BY p.event_seq, p.id
                  LIMIT 1
              ))
              AND NOT (subs.blocking AND EXISTS (
                  SELECT 1 FROM event_delivery AS p
                  WHERE p.subscription_id = d.subscription_id AND p.child_id = d.child_id
                    AND p.status = 'dead' AND (p.event_seq, p.id) < (d.event_seq, d.id)
              ))
            ORDER BY d.priority DESC, d.next_attempt_at, d.id
            LIMIT LEAST(subs.room, :limit)
            FOR UPDATE SKIP LOCKED
        ) AS c
        WHERE subs.room > 0
    ) AS ranked
),
due AS (
    -- Expired leases first, then priority (a child in danger), then each subscription's oldest,
    -- taking turns; within its room.
    SELECT picked.id FROM (
        SELECT candidates.id, candidates.expired, candidates.priority, candidates.next_attempt_at,
               row_number() OVER (
                   PARTITION BY candidates.subscription_id ORDER BY candidates.expired DESC, candidates.turn
               ) AS place,
               candidates.room
        FROM candidates
    ) AS picked
    WHERE picked.place <= picked.room
    ORDER BY picked.expired DESC, picked.priority DESC, picked.place, picked.next_attempt_at
    LIMIT :limit
),
claimed AS (
    UPDATE event_delivery AS d
    SET attempts = d.attempts + 1, lease_token = :lease,
        next_attempt_at = now() + make_interval(secs => :lease_seconds), updated_at = now()
    FROM due
    WHERE d.id = due.id
    RETURNING d.id, d.attempts, d.retry_base, d.webhook_id, d.subscription_id, d.event_id, d.created_at
),
abandoned AS (
    -- A bound on the partition key, so older months of the attempt history are not read: an
    -- attempt's sent_at is its claim transaction's start, which can precede the delivery's
    -- created_at (another transaction's start) only by as long as that claim transaction had
    -- been open; a day's slack, as the delivery list allows (ATTEMPTS_AFTER_DELIVERY_SLACK).
    -- Only deliveries claimed before: every claim counts its attempt and writes its row, so a
    -- first attempt has no earlier one to look for (the look cost a claim about as much as the
    -- rest of it, for nothing, on a busy exchange).
    UPDATE delivery_attempt AS a
    SET outcome = 'abandoned', error = 'the worker stopped before recording the result'
    FROM claimed
    WHERE claimed.attempts > 1 AND a.delivery_id = claimed.id AND a.outcome = 'sending'
      AND a.sent_at >= claimed.created_at - interval '1 day'
    RETURNING 1
),
on_record AS (
    INSERT INTO delivery_attempt (delivery_id, attempt, outcome, worker)
    SELECT claimed.id, claimed.attempts, 'sending', CAST(:worker AS text) FROM claimed
    RETURNING 1
)
SELECT claimed.id AS delivery_id, claimed.attempts, claimed.retry_base, claimed.webhook_id,
    s.id AS subscription_id, s.agency, s.created_by_client, s.reader_region, s.url, s.secret,
    s.retired_secrets, s.purpose_of_use, now() AS claimed_at,
    e.id, e.seq, e.type, e.source, e.subject, e.time, e.data, e.data_categories, e.region_code,
    e.publisher_agency, e.publisher_event_id, e.case_id, e.audience
FROM claimed
JOIN subscription AS s ON s.id = claimed.subscription_id
JOIN outbox_event AS e ON e.id = claimed.event_id
"""
_CLAIM_SQL = text(_CLAIM)


def retry_delay(
    attempts: int, schedule: list[float], jitter: float, retry_after: float | None = None
) -> float | None:
    """Seconds until the next try after ``attempts`` failed ones, or None when the schedule is
    spent (dead letter). Each wait is spread by +/- ``jitter`` so receivers that failed together
    are not retried in lock-step; a receiver's ``Retry-After`` is a floor, never shortened."""
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1] * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 (not crypto)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class DeliveryWorker:
    def __init__(
        self,
        *,
        db: Database,
        door: Door,
        kinds: AgencyKinds,
        settings: Settings,
        sender: WebhookSender | None = None,
        notifier: Notifier | None = None,
        name: str | None = None,
        box: SecretBox | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.db = db
        self.door = door
        self.kinds = kinds
        self.settings = settings
        self.sender = sender or WebhookSender(settings, max_connections=settings.worker_concurrency * 2)
        self._own_sender = sender is None
        self.notifier = notifier
        self.box = box or vault.load(settings.resolved_key_dir, create_if_missing=settings.is_development)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets_module.token_hex(2)}"
        self._in_flight: set[asyncio.Task[None]] = set()
        self._held: set[int] = set()
        """Ids of the deliveries this worker is sending or recording right now."""
        self._stopping = asyncio.Event()
        self._progress = asyncio.Event()
        self.recorder = Recorder(
            db.engine,
            self.name,
            backoff_schedule=settings.webhook_retry_schedule,
            disable_after_seconds=settings.webhook_disable_after_failing_seconds,
        )
        pool_size = getattr(db.engine.pool, "size", lambda: 10)()
        self._door_slots = asyncio.Semaphore(max(2, min(settings.worker_concurrency, pool_size // 2)))
        self._investigation_purposes = frozenset(str(p) for p in door.policy.investigation_purposes)
        self.delivered = 0
        self.scheduler = scheduler
        """The timed jobs (app/events/scheduler.py), run between rounds: one worker, one scheduler."""

    # -- the rounds ------------------------------------------------------------------------

    async def dispatch(self, *, housekeeping: bool = True) -> int:
        """Fan new events out to webhook subscriptions; returns how many deliveries were queued.
        ``housekeeping`` also disables the subscriptions of revoked clients first (the loop does
        that once per poll interval, not on every wake-up)."""
        await self.number()
        async with self.db.engine.begin() as conn:
            return await self._dispatch(conn, housekeeping=housekeeping)

    async def number(self) -> None:
        """Number the committed events nobody numbered yet (a scheduler job's, or those of a
        request whose process died between its commit and its pass; app/events/numbering.py),
        on an autocommit connection: the pass's lock is held only for the pass."""
        async with self.db.engine.connect() as conn:
            await numbering.number(await conn.execution_options(isolation_level="AUTOCOMMIT"))

    async def _dispatch(self, conn: AsyncConnection, *, housekeeping: bool) -> int:
        if housekeeping:
            await conn.execute(_DISABLE_REVOKED_SQL)
        row = (await conn.execute(_DISPATCH_SQL, {"batch": DISPATCH_BATCH})).one()
        return int(row.queued)

    async def prune(self) -> int:
        """Forget idempotency keys past their retention; returns how many."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(_PRUNE_SQL, {"days": IDEMPOTENCY_RETENTION_DAYS})
        return int(getattr(result, "rowcount", 0) or 0)

    @property
    def claim_batch(self) -> int:
        """Free slots a busy worker waits for before claiming again (an idle one claims at once):
        a claim costs about the same for one delivery as for several."""
        return max(1, self.settings.worker_concurrency // 8)

    @property
    def subscription_share(self) -> int:
        """Live leases one subscription may hold at once, across all workers."""
        settings = self.settings
        return max(1, int(settings.worker_concurrency * settings.webhook_subscription_share))

    async def claim(self, limit: int) -> list[Job]:
        async with self.db.engine.begin() as conn:
            return await self._claim(conn, limit)

    async def _round(self, *, fan_out: bool, housekeeping: bool, room: int) -> list[Job]:
        """A fan-out and a claim in one transaction (two statements, one BEGIN and COMMIT): the
        claim sees the deliveries the fan-out just queued. The fan-out's subscription locks are
        held to the commit, so another worker fanning out meanwhile skips those subscriptions
        for this round, which is all a fan-out would do anyway."""
        if fan_out:
            await self.number()
        async with self.db.engine.begin() as conn:
            if fan_out:
                await self._dispatch(conn, housekeeping=housekeeping)
            return await self._claim(conn, room) if room > 0 else []

    async def _claim(self, conn: AsyncConnection, limit: int) -> list[Job]:
        lease = uuid.uuid4()
        params = {
            "limit": limit,
            "lease": lease,
            "lease_seconds": self.settings.webhook_lease_seconds,
            "share": self.subscription_share,
            "worker": self.recorder.worker_name,
            # Never our own deliveries still in flight, even when their lease ran out while this
            # process was paused: we are about to record their answer, not send them twice.
            "held": sorted(self._held),
        }
        rows = (await conn.execute(_CLAIM_SQL, params)).mappings().all()
        claimed = time.monotonic()
        return [Job.from_row(row, lease, self.box, claimed_monotonic=claimed) for row in rows]

    async def run_once(self) -> int:
        """One dispatch, one claim, every claimed delivery sent and recorded; returns the number
        sent. For tests and ``childlink worker --once``."""
        await self.dispatch()
        if self.scheduler is not None:
            await self.scheduler.tick()
        jobs = await self.claim(self.settings.worker_concurrency)
        await asyncio.gather(*(self.deliver(job) for job in jobs))
        return len(jobs)

    async def run(self) -> None:
        """Until :meth:`stop`: fan out (when a commit was notified, or every poll interval),
        claim what there is room for, then wait for a notification, a finished delivery (which
        may unblock the next event for its child) or the poll interval.

        A busy exchange wakes the loop hundreds of times a second (every publish notifies, every
        delivery finishes), and each round of queries costs the database about the same whether
        it serves one delivery or thirty. So after a wake-up the loop lets
        :data:`GATHER_SECONDS` pass; it fans out at most every :data:`FAN_OUT_SECONDS` (each
        fan-out rewrites every busy subscription's cursor row); and while deliveries are in
        flight it claims once :attr:`claim_batch` slots are free, not for each one."""
        backoff = 0.5
        fan_out_due, last_fan_out, last_housekeeping, last_prune = True, 0.0, 0.0, 0.0
        notified_at_fan_out = -1
        poll = self.settings.worker_poll_seconds
        while not self._stopping.is_set():
            # From here on a finished delivery wakes the next pause at once, even one that
            # finished during this round (it may have freed its child's next event).
            self._progress.clear()
            try:
                if time.monotonic() - last_prune >= 3600:
                    last_prune = time.monotonic()
                    await self.prune()
                if self.scheduler is not None:
                    await self.scheduler.tick()
                now = time.monotonic()
                since = now - last_fan_out
                fan_out = (fan_out_due and since >= FAN_OUT_SECONDS) or since >= poll
                housekeeping = fan_out and now - last_housekeeping >= poll
                if fan_out:
                    last_fan_out, fan_out_due = now, False
                    notified_at_fan_out = self.notifier.generation if self.notifier is not None else 0
                if housekeeping:
                    last_housekeeping = now
                room = self.settings.worker_concurrency - len(self._in_flight)
                claim = room >= self.claim_batch or (room > 0 and not self._in_flight)
                if fan_out or claim:
                    jobs = await self._round(
                        fan_out=fan_out, housekeeping=housekeeping, room=room if claim else 0
                    )
                    for job in jobs:
                        task = asyncio.create_task(self.deliver(job), name=f"deliver-{job.delivery_id}")
                        self._in_flight.add(task)
                        task.add_done_callback(self._finished)
                backoff = 0.5
            except (DBAPIError, OSError, TimeoutError) as exc:
                # The database is away (a restart, a failover): nothing is lost, the outbox and
                # the leases wait for us. Try again with a growing pause.
                logger.warning("delivery worker round failed: %s", type(exc).__name__)
                self._progress.clear()  # only a delivery finishing from now on cuts the pause short
                await self._pause(backoff)
                backoff = min(backoff * 2, 10.0)
                fan_out_due = True
                continue
            # A commit notified during the round is not waited for again: the pause below would
            # wake only at the next notification, or a poll later.
            if self.notifier is not None and self.notifier.generation != notified_at_fan_out:
                fan_out_due = True
            # A fan-out put off by FAN_OUT_SECONDS is due when that has passed, not a poll later.
            wait = poll if not fan_out_due else max(0.0, last_fan_out + FAN_OUT_SECONDS - time.monotonic())
            woke = await self._pause(wait)
            if woke in ("finished", "notified"):
                await asyncio.sleep(GATHER_SECONDS)
            # Fan out again when anything committed since the last fan-out (during the gathering
            # pause too); without a notifier, on every wake-up but a finished delivery.
            if self.notifier is not None:
                fan_out_due = (
                    fan_out_due or woke == "timeout" or self.notifier.generation != notified_at_fan_out
                )
            else:
                fan_out_due = fan_out_due or woke != "finished"
        await self._drain()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._progress.set()

    async def _pause(self, seconds: float) -> str:
        """Wait; returns why we woke: ``stop``, ``notified``, ``finished`` (a delivery finished
        since the loop's round began) or ``timeout``."""
        waiters: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(self._stopping.wait()): "stop",
            asyncio.ensure_future(self._progress.wait()): "finished",
        }
        if self.notifier is not None:
            waiters[asyncio.ensure_future(self.notifier.wait(seconds))] = "notified"
        try:
            done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        for waiter in done:
            if waiter.result() is not False:  # the notifier answers False on its own timeout
                return waiters[waiter]
        return "timeout"

    def stop(self) -> None:
        self._stopping.set()

    async def _drain(self, grace: float = 10.0) -> None:
        """Let in-flight deliveries finish (their leases would otherwise be re-sent later)."""
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        self.stop()
        await self._drain()
        if self._own_sender:
            await self.sender.aclose()

    # -- one delivery ----------------------------------------------------------------------

    def _reader(self, job: Job, kind: str) -> Reader:
        principal = Principal(
            client_id=job.client_id,
            agency=job.agency,
            scopes=frozenset({Scope.events_read}),
            region=job.reader_region,
            token_id=f"subscription:{job.subscription_id}",
            issuer="childlink",
        )
        return Reader(
            principal=principal,
            agency_kind=kind,
            purpose_raw=job.purpose,
            break_glass_raw=None,
            request_id=job.webhook_id,
        )

    async def _decide(self, job: Job, kind: str) -> Any:
        # The door opens a session only for the rare decision that reads in a transaction (the
        # open referrals of an event's case, an investigation); the rest read no more than the
        # batched consent lookup and write only the access-log record. Those that may open one
        # are bounded, so a busy worker queues here instead of opening (and closing) overflow
        # connections.
        if job.event.case_id is None and job.purpose not in self._investigation_purposes:
            return await self._admit(job, kind)
        async with self._door_slots:
            return await self._admit(job, kind)

    async def _admit(self, job: Job, kind: str) -> Any:
        async with OnDemandSession(self.db.sessionmaker) as session:
            return await audience.admit_event(
                self.door, session, self._reader(job, kind), job.event, action="event.deliver"
            )

    async def _attempt(self, job: Job) -> Result:
        try:
            kind = await self.kinds.kind(job.agency)
        except (DBAPIError, OSError) as exc:
            return self._unsent(job, f"database: {type(exc).__name__}")
        if kind is None:
            return Result("denied", "denied", SendResult(Outcome.failed, error="subscriber agency unknown"))
        lease = self.settings.webhook_lease_seconds
        try:
            async with asyncio.timeout(max(0.1, lease - (time.monotonic() - job.claimed_monotonic) - 0.5)):
                decision = await self._decide(job, kind)
        except TimeoutError:
            return self._unsent(job, "worker deadline")
        except (Forbidden, NotFound) as exc:
            # Decided and on record by the door: this subscriber may see none of it. Final.
            return Result("denied", "denied", SendResult(Outcome.failed, error=exc.code))
        except AppError as exc:
            return self._unsent(job, f"access layer: {exc.code}")
        except (DBAPIError, OSError) as exc:
            # Nothing was sent: an attempt that could not be decided is a failed one.
            return self._unsent(job, f"database: {type(exc).__name__}")
        if not job.signing_secrets:
            return self._unsent(job, "signing secret unreadable")
        # Send only if the whole exchange fits in what is left of the lease: otherwise another
        # worker could claim and send it while we still wait for the answer. Nothing was sent,
        # so "worker deadline" is then the honest record.
        left = lease - (time.monotonic() - job.claimed_monotonic)
        if left < self.sender.timeout + 0.5:
            return self._unsent(job, "worker deadline")
        body = envelope(job.event, decision.granted)
        withheld = tuple(DataCategory(c) for c in decision.withheld)
        sent = await self.sender.send(
            job.url, webhook_id=job.webhook_id, body=orjson.dumps(body), secrets=job.signing_secrets
        )
        if sent.outcome is Outcome.delivered:
            return Result("delivered", "delivered", sent, withheld)
        if sent.outcome is Outcome.gone:
            return Result("gone", "gone", sent, withheld)
        if sent.outcome is Outcome.aborted:
            return Result("dead", "aborted", sent, withheld)
        result = self._failed(job, sent)
        return Result(result.status, result.outcome, sent, withheld, result.delay)

    def _unsent(self, job: Job, error: str) -> Result:
        """A failed attempt that reached no receiver: retried, and no mark on the endpoint's health."""
        return self._failed(job, SendResult(Outcome.failed, error=error, not_sent=True))

    def _failed(self, job: Job, sent: SendResult) -> Result:
        settings = self.settings
        delay = retry_delay(
            job.attempt - job.retry_base,
            settings.webhook_retry_schedule,
            settings.webhook_retry_jitter,
            sent.retry_after,
        )
        status = "dead" if delay is None else "pending"
        return Result(status, str(sent.outcome), sent, delay=delay or 0.0)

    async def deliver(self, job: Job) -> None:
        """Decide, send and record one claimed delivery; never raises (a failure to record is
        logged, and the lease running out brings the delivery back)."""
        self._held.add(job.delivery_id)
        try:
            await self._deliver(job)
        finally:
            self._held.discard(job.delivery_id)

    async def _deliver(self, job: Job) -> None:
        try:
            result = await self._attempt(job)
        except Exception as exc:
            # A bug must not take the worker down, nor send the delivery again and again: the
            # attempt is recorded as failed (the class name only: a message may quote data) and
            # follows the retry schedule to its dead letter like any other failure.
            logger.exception("delivery %s failed unexpectedly", job.delivery_id)
            result = self._unsent(job, f"internal error: {type(exc).__name__}")
        try:
            await self.recorder.record(job, result)
        except (DBAPIError, OSError, TimeoutError) as exc:
            # The lease running out brings the delivery back: sent again, same webhook-id.
            logger.warning(
                "could not record delivery %s: %s %s",
                job.delivery_id,
                type(exc).__name__,
                getattr(getattr(exc, "orig", None), "sqlstate", "") or "",
            )
            return
        if result.status == "delivered":
            self.delivered += 1
