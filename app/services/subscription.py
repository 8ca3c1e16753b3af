"""Subscriptions: owned by the subscribing agency (another agency's is a 404), filtered by type,
region and data category, delivered by webhook or read from the pull feed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import delete, select, text
from sqlalchemy import update as update_rows
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.principal import Principal
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.events import audience, catalog, numbering, operational, signing
from app.events.openapi import PING_TYPE
from app.events.sender import Outcome, WebhookSender
from app.events.vault import SecretBox, valid_retired
from app.models.common import utcnow
from app.models.subscription import (
    AttemptPublic,
    DeliveryAttempt,
    DeliveryPage,
    DeliveryPublic,
    DeliveryStatus,
    EventDelivery,
    PingResult,
    ReplayAccepted,
    ReplayRequest,
    ResumeFrom,
    SecretRotated,
    Subscription,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionMode,
    SubscriptionPublic,
    SubscriptionStatus,
    SubscriptionUpdate,
)
from app.models.vocabulary import DataCategory, PurposeOfUse

MAX_REPLAY = 10_000
NOTIFY_SQL = "SELECT pg_notify('childlink_events', '')"


def new_webhook_id() -> str:
    return "msg_" + uuid.uuid4().hex


def _rotation_ends(sub: Subscription, now: datetime) -> datetime | None:
    ends = [datetime.fromisoformat(e["expires_at"]) for e in sub.retired_secrets or []]
    return max((end for end in ends if end > now), default=None)


def to_public(sub: Subscription) -> SubscriptionPublic:
    return SubscriptionPublic(
        id=sub.id,
        agency=sub.agency,
        description=sub.description,
        mode=SubscriptionMode(sub.mode),
        url=sub.url,
        types=list(sub.type_patterns),
        region_prefix=sub.region_prefix,
        categories=[DataCategory(c) for c in sub.categories],
        purpose_of_use=PurposeOfUse(sub.purpose_of_use),
        status=SubscriptionStatus(sub.status),
        disabled_reason=sub.disabled_reason,
        blocking=sub.blocking,
        failing_since=sub.failing_since,
        position=sub.dispatched_seq,
        secret_rotation_ends_at=_rotation_ends(sub, utcnow()),
        created_at=sub.created_at,
        updated_at=sub.updated_at,
    )


def signing_secrets(sub: Subscription, box: SecretBox, now: datetime | None = None) -> list[str]:
    """The current secret and every retired one whose own rotation overlap lasts, opened."""
    stored: list[str] = [str(sub.secret), *valid_retired(sub.retired_secrets, now or utcnow())]
    return [box.open(sub.id, value) for value in stored]


async def head_sequence(session: AsyncSession) -> int:
    """The head after a numbering pass (app/events/numbering.py), on a connection of its own in
    autocommit: an event committed before this call is at or below it."""
    async with session.bind.connect() as conn:  # type: ignore[union-attr]
        return await numbering.head(await conn.execution_options(isolation_level="AUTOCOMMIT"))


def _check_types(patterns: list[str]) -> None:
    for pattern in patterns:
        if not catalog.matching([pattern]):
            raise Unprocessable(
                "A type filter matches no event type in the catalog; see `GET /v1/event-types`.",
                code="unknown_event_type",
                extra={"errors": [{"loc": ["body", "types"], "msg": "matches no type", "type": "catalog"}]},
            )


def _region(principal: Principal, prefix: str | None) -> str:
    if prefix is None:
        return principal.region
    if not prefix.startswith(principal.region):
        raise Forbidden("The region prefix lies outside your own region.", code="outside_region")
    return prefix


async def create(
    session: AsyncSession,
    principal: Principal,
    sender: WebhookSender,
    box: SecretBox,
    *,
    data: SubscriptionCreate,
) -> SubscriptionCreated:
    """Add a subscription for the caller's agency. A webhook's URL is checked against SSRF rules
    (422, nothing stored) and its signing secret is returned once."""
    _check_types(data.types)
    region = _region(principal, data.region_prefix)
    secret = None
    if data.mode is SubscriptionMode.webhook:
        assert data.url is not None
        await sender.check(data.url)
        secret = signing.new_secret()
    head = await head_sequence(session)
    start = head if data.from_sequence is None else min(data.from_sequence, head)
    subscription_id = uuid.uuid4()
    sub = Subscription(
        id=subscription_id,
        agency=principal.agency,
        created_by_client=principal.client_id,
        reader_region=principal.region,
        description=data.description,
        mode=str(data.mode),
        url=data.url,
        secret=box.seal(subscription_id, secret) if secret else None,
        type_patterns=data.types,
        region_prefix=region,
        categories=[str(c) for c in data.categories],
        purpose_of_use=str(data.purpose_of_use),
        dispatched_seq=start,
        blocking=data.blocking,
    )
    session.add(sub)
    await session.flush()
    return SubscriptionCreated(**to_public(sub).model_dump(), secret=secret)


async def list_for(session: AsyncSession, principal: Principal) -> list[SubscriptionPublic]:
    rows = (
        await session.execute(
            select(Subscription)
            .where(col(Subscription.agency) == principal.agency)
            .order_by(col(Subscription.created_at), col(Subscription.id))
        )
    ).scalars()
    return [to_public(sub) for sub in rows if sub.region_prefix.startswith(principal.region)]


async def load(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, *, for_update: bool = False
) -> Subscription:
    """The agency's own subscription; any other is a 404, the same as a missing one."""
    query = select(Subscription).where(
        col(Subscription.id) == subscription_id, col(Subscription.agency) == principal.agency
    )
    if for_update:
        query = query.with_for_update()
    sub = (await session.execute(query)).scalar_one_or_none()
    # A client manages its agency's subscriptions inside its own region only, like everything
    # else it sees; one reaching beyond it is as absent as another agency's.
    if sub is None or not sub.region_prefix.startswith(principal.region):
        raise NotFound("No subscription with this id.", code="subscription_not_found")
    return sub


async def update(
    session: AsyncSession,
    principal: Principal,
    sender: WebhookSender,
    subscription_id: uuid.UUID,
    *,
    data: SubscriptionUpdate,
) -> SubscriptionPublic:
    sub = await load(session, principal, subscription_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    if "url" in changes:
        if sub.mode != SubscriptionMode.webhook or not changes["url"]:
            raise Unprocessable(
                "Only a webhook subscription has a url, and it cannot be removed.", code="url_invalid"
            )
        await sender.check(changes["url"])
        sub.url = changes["url"]
    if changes.get("types") is not None:
        _check_types(changes["types"])
        sub.type_patterns = changes["types"]
    if "region_prefix" in changes:
        region = _region(principal, changes["region_prefix"])
        if not region.startswith(sub.reader_region):
            # Deliveries are read as the creating client would read them, inside its region.
            raise Forbidden(
                "The region prefix lies outside the subscription's region.", code="outside_region"
            )
        sub.region_prefix = region
    if changes.get("categories") is not None:
        sub.categories = [str(c) for c in changes["categories"]]
    if changes.get("purpose_of_use") is not None:
        sub.purpose_of_use = str(changes["purpose_of_use"])
    if changes.get("description") is not None:
        sub.description = changes["description"]
    if changes.get("status") is not None:
        if changes["status"] == SubscriptionStatus.disabled:
            raise Unprocessable(
                "Set `active` or `paused`; only the platform disables.", code="status_invalid"
            )
        if sub.status == SubscriptionStatus.disabled and changes["status"] != SubscriptionStatus.active:
            # Re-enabling is where the caller chooses what happens to the backlog: not skipped.
            raise Unprocessable(
                "The platform disabled this subscription: re-enable it with `active` and `resume`.",
                code="status_invalid",
            )
        re_enabling = (
            sub.status == SubscriptionStatus.disabled and changes["status"] == SubscriptionStatus.active
        )
        if re_enabling:
            await _resume(session, sub, changes.get("resume"))
        elif changes.get("resume") is not None:
            raise Unprocessable(
                "`resume` applies only to re-enabling a disabled subscription.", code="resume_invalid"
            )
        sub.status = str(changes["status"])
        sub.disabled_reason = None
    elif changes.get("resume") is not None:
        raise Unprocessable(
            "`resume` applies only to re-enabling a disabled subscription.", code="resume_invalid"
        )
    sub.version += 1
    sub.updated_at = utcnow()
    session.add(sub)
    await session.flush()
    return to_public(sub)


# A pending delivery whose lease ran out has an attempt ``sending`` that no worker will record
# (its worker stopped): a claim would mark it abandoned before sending again, and a delivery
# taken out of the queue must do the same. One delivery (``:delivery``) or all of the
# subscription's (NULL). The time bound is the claim's: an attempt starts at most a day before
# its delivery's row (ATTEMPTS_AFTER_DELIVERY_SLACK).
ABANDON_SQL = """
UPDATE delivery_attempt AS a
SET outcome = 'abandoned', error = 'the worker stopped before recording the result'
FROM event_delivery AS d
WHERE d.subscription_id = :sub AND (CAST(:delivery AS bigint) IS NULL OR d.id = CAST(:delivery AS bigint))
  AND d.status = 'pending' AND d.lease_token IS NOT NULL AND d.next_attempt_at <= now()
  AND a.delivery_id = d.id AND a.outcome = 'sending' AND a.sent_at >= d.created_at - interval '1 day'
"""

# A delivery answered 410 is ``gone``: it disabled the subscription, and was never received.
# Re-enabling sends it again (same ``webhook-id``) or skips it with the rest.
_SKIP_PENDING = """
UPDATE event_delivery
SET status = 'skipped', lease_token = NULL, finished_at = now(), updated_at = now(),
    last_error = 'skipped when the subscription was re-enabled from now'
WHERE subscription_id = :sub AND status IN ('pending', 'gone')
"""


async def requeue(
    session: AsyncSession, subscription_id: uuid.UUID, statuses: Sequence[DeliveryStatus]
) -> int:
    """Queue the subscription's deliveries in ``statuses`` again, due now, each with a fresh retry
    schedule and its own ``webhook-id`` (the redrive, and re-enabling ``where_stopped`` for the
    ones answered 410); returns how many."""
    now = utcnow()
    result = await session.execute(
        update_rows(EventDelivery)
        .where(
            col(EventDelivery.subscription_id) == subscription_id,
            col(EventDelivery.status).in_([str(s) for s in statuses]),
        )
        .values(
            status=str(DeliveryStatus.pending),
            retry_base=EventDelivery.attempts,
            next_attempt_at=now,
            lease_token=None,
            finished_at=None,
            updated_at=now,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def _resume(session: AsyncSession, sub: Subscription, resume: ResumeFrom | None) -> None:
    """Re-enable a disabled subscription as the caller chose: its pending deliveries, and those
    its endpoint answered 410, go out (``where_stopped``) or are skipped, with the cursor moved
    to the head (``now``). Either way it starts healthy: no back-off, no failure clock."""
    if resume is None:
        raise Unprocessable(
            "The subscription was disabled: say whether to resume `where_stopped` (its pending "
            "deliveries, and those answered 410, are sent) or from `now` (they are skipped).",
            code="resume_choice_required",
        )
    if resume is ResumeFrom.now:
        await session.execute(text(ABANDON_SQL), {"sub": sub.id, "delivery": None})
        await session.execute(text(_SKIP_PENDING), {"sub": sub.id})
        sub.dispatched_seq = max(sub.dispatched_seq, await head_sequence(session))
    else:
        await requeue(session, sub.id, [DeliveryStatus.gone])
    sub.consecutive_failures, sub.failing_since, sub.backoff_until = 0, None, None


async def remove(session: AsyncSession, principal: Principal, subscription_id: uuid.UUID) -> None:
    """Delete the subscription and its delivery history (the access log keeps every disclosure)."""
    sub = await load(session, principal, subscription_id, for_update=True)
    await session.execute(delete(Subscription).where(col(Subscription.id) == sub.id))


async def rotate_secret(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    subscription_id: uuid.UUID,
    *,
    overlap_seconds: int,
    max_secrets: int,
) -> SecretRotated:
    """Issue a new secret; the one it replaces keeps signing until its own overlap ends, and so
    does every earlier one still inside its own (a second rotation never cuts the first's short).
    At most ``max_secrets`` sign at once: 409 ``too_many_secrets`` until the oldest overlap ends."""
    sub = await load(session, principal, subscription_id, for_update=True)
    if sub.mode != SubscriptionMode.webhook:
        raise Conflict("A pull subscription has no signing secret.", code="not_a_webhook")
    now = utcnow()
    still_valid = [
        entry for entry in sub.retired_secrets or [] if datetime.fromisoformat(entry["expires_at"]) > now
    ]
    if len(still_valid) + 2 > max_secrets:
        raise Conflict(
            "Too many secrets still sign deliveries; rotate again when the oldest overlap ends.",
            code="too_many_secrets",
        )
    secret = signing.new_secret()
    valid_until = now + timedelta(seconds=overlap_seconds)
    if overlap_seconds > 0:
        still_valid.append({"secret": str(sub.secret), "expires_at": valid_until.isoformat()})
    sub.retired_secrets = still_valid
    sub.secret = box.seal(sub.id, secret)
    sub.updated_at = now
    session.add(sub)
    await session.flush()
    return SecretRotated(secret=secret, previous_secret_valid_until=valid_until)


ATTEMPTS_AFTER_DELIVERY_SLACK = timedelta(days=1)


async def delivery_items(session: AsyncSession, rows: list[EventDelivery]) -> list[DeliveryPublic]:
    """Deliveries as the API shows them, each with its attempts in order."""
    attempts: dict[int, list[AttemptPublic]] = {}
    if rows:
        # No attempt is older than its delivery: bounding the partition key by the oldest
        # delivery's creation (a day early, for any clock skew between hosts) leaves out the
        # partitions of every earlier month.
        since = min(r.created_at for r in rows) - ATTEMPTS_AFTER_DELIVERY_SLACK
        found = await session.execute(
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.delivery_id).in_([r.id for r in rows]))
            .where(col(DeliveryAttempt.sent_at) >= since)
            .order_by(col(DeliveryAttempt.id))
        )
        for attempt in found.scalars():
            attempts.setdefault(attempt.delivery_id, []).append(
                AttemptPublic(
                    attempt=attempt.attempt,
                    outcome=attempt.outcome,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    duration_ms=attempt.duration_ms,
                    categories_withheld=[DataCategory(c) for c in attempt.categories_withheld],
                    at=attempt.at,
                )
            )
    items = [
        DeliveryPublic(
            id=row.id or 0,
            kind=row.kind,
            webhook_id=row.webhook_id,
            event_id=row.event_id,
            sequence=row.event_seq,
            child_id=row.child_id,
            status=DeliveryStatus(row.status),
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at if row.status == DeliveryStatus.pending else None,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            created_at=row.created_at,
            finished_at=row.finished_at,
            attempt_log=attempts.get(row.id or 0, []),
        )
        for row in rows
    ]
    return items


async def deliveries(
    session: AsyncSession,
    principal: Principal,
    subscription_id: uuid.UUID,
    *,
    status: DeliveryStatus | None,
    before: int | None,
    limit: int,
) -> DeliveryPage:
    """Deliveries newest first, each with its attempts."""
    await load(session, principal, subscription_id)
    query = select(EventDelivery).where(col(EventDelivery.subscription_id) == subscription_id)
    if status is not None:
        query = query.where(col(EventDelivery.status) == str(status))
    if before is not None:
        query = query.where(col(EventDelivery.id) < before)
    rows = list(
        (await session.execute(query.order_by(col(EventDelivery.id).desc()).limit(limit + 1))).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = await delivery_items(session, rows)
    return DeliveryPage(items=items, next_cursor=str(rows[-1].id) if more and rows else None)


_REPLAY_SQL = """
INSERT INTO event_delivery (subscription_id, kind, event_id, event_seq, child_id, webhook_id)
SELECT CAST(:sub AS uuid), 'replay', e.id, e.seq, e.subject,
       'msg_' || replace(gen_random_uuid()::text, '-', '')
FROM outbox_event AS e
WHERE e.seq BETWEEN CAST(:from_seq AS bigint) AND CAST(:to_seq AS bigint)
  AND EXISTS (SELECT 1 FROM unnest(CAST(:types AS text[])) AS p WHERE e.type LIKE replace(p, '*', '%'))
  AND {match}
ORDER BY e.seq
LIMIT :limit
""".format(  # noqa: S608 (the audience rule is a constant)
    match=audience.match_sql(
        subscription="CAST(:sub AS uuid)",
        agency="CAST(:agency AS text)",
        region="CAST(:region AS text)",
        reader_region="CAST(:reader_region AS text)",
        categories="CAST(:categories AS varchar[])",
    )
)


async def replay(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, *, data: ReplayRequest
) -> ReplayAccepted:
    """Queue the subscription's events again from a sequence number or a time, each as a new
    delivery (new ``webhook-id``, same event ``id``), decided by the access layer when sent."""
    sub = await load(session, principal, subscription_id)
    if sub.mode != SubscriptionMode.webhook:
        raise Conflict(
            "A pull subscription replays by reading the feed from an earlier `after`.", code="not_a_webhook"
        )
    head = await head_sequence(session)
    to_seq = min(data.to_sequence or head, head)
    if data.from_sequence is not None:
        from_seq = data.from_sequence
    else:
        found = (
            await session.execute(
                text("SELECT min(seq) FROM outbox_event WHERE created_at >= :t AND seq IS NOT NULL"),
                {"t": data.from_time},
            )
        ).scalar_one()
        from_seq = int(found) if found is not None else head + 1
    queued = 0
    if from_seq <= to_seq:
        result = await session.execute(
            text(_REPLAY_SQL),
            {
                "sub": sub.id,
                "from_seq": from_seq,
                "to_seq": to_seq,
                "types": list(sub.type_patterns),
                "region": sub.region_prefix,
                "categories": list(sub.categories),
                "agency": sub.agency,
                "reader_region": sub.reader_region,
                "limit": MAX_REPLAY + 1,
            },
        )
        queued = int(getattr(result, "rowcount", 0) or 0)
    if queued > MAX_REPLAY:
        raise Unprocessable(
            f"More than {MAX_REPLAY} events match; replay a smaller range (set to_sequence).",
            code="replay_too_large",
        )
    await session.execute(text(NOTIFY_SQL))
    return ReplayAccepted(queued=queued, from_sequence=from_seq, to_sequence=to_seq)


async def ping(
    session: AsyncSession,
    principal: Principal,
    sender: WebhookSender,
    box: SecretBox,
    subscription_id: uuid.UUID,
) -> PingResult:
    """Send a signed test event now and report how the endpoint answered; recorded as a delivery."""
    sub = await load(session, principal, subscription_id, for_update=True)
    if sub.mode != SubscriptionMode.webhook or sub.url is None:
        raise Conflict("A pull subscription has no endpoint to ping.", code="not_a_webhook")
    webhook_id = new_webhook_id()
    now = datetime.now(UTC)
    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/childlink/platform",
            "type": PING_TYPE,
            "subject": None,
            "time": now.isoformat(),
            "datacontenttype": "application/json",
            "data": {"subscription_id": str(sub.id)},
            "childlinkseq": 0,
            "childlinkagency": "platform",
        }
    )
    result = await sender.send(sub.url, webhook_id=webhook_id, body=body, secrets=signing_secrets(sub, box))
    delivered = result.outcome is Outcome.delivered
    delivery = EventDelivery(
        subscription_id=sub.id,
        kind="ping",
        webhook_id=webhook_id,
        status=str(DeliveryStatus.delivered if delivered else DeliveryStatus.dead),
        attempts=1,
        last_status_code=result.status_code,
        last_error=result.error,
        finished_at=utcnow(),
    )
    session.add(delivery)
    await session.flush()
    assert delivery.id is not None
    session.add(
        DeliveryAttempt(
            delivery_id=delivery.id,
            attempt=1,
            outcome=str(result.outcome),
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            worker="api",
        )
    )
    if result.outcome is Outcome.gone:
        sub.status, sub.disabled_reason = str(SubscriptionStatus.disabled), "gone"
        session.add(sub)
    await session.flush()
    if result.outcome is Outcome.gone:
        await operational.disabled(await session.connection(), [sub.id])
    return PingResult(
        delivered=delivered,
        webhook_id=webhook_id,
        status_code=result.status_code,
        error=result.error,
        duration_ms=result.duration_ms,
    )
