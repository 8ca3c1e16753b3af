"""Publishing events and reading them one at a time: the catalog, ``POST /v1/events``,
``GET /v1/events/{id}``. The pull feed lives in :mod:`app.services.event_feed`."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.door import Door
from app.access.policy import Policy
from app.access.reading import Reader
from app.db import Database
from app.errors import AppError, Conflict, Forbidden, NotFound, Unprocessable
from app.events import audience, catalog, numbering
from app.events.envelope import EVENT_COLUMNS, StoredEvent, envelope
from app.models.common import utcnow
from app.models.event import CloudEventIn, CloudEventOut, EventAccepted, EventTypePublic
from app.services import case as case_service
from app.services import event_effects


class IdempotencyKeyReused(Unprocessable):
    code, title = "idempotency_key_reused", "The Idempotency-Key was used with another request"


class EventTypeNotAllowed(Forbidden):
    code, title = "event_type_not_allowed", "Your agency may not publish this event type"


def event_types() -> list[EventTypePublic]:
    return [
        EventTypePublic(
            type=t.type,
            version=t.spec.version,
            title=t.spec.title,
            description=t.spec.description,
            publishers=[str(p) for p in t.spec.publishers],
            published_by_registry=t.spec.registry_only,
            categories=sorted(t.categories),
            data_schema=t.schema,
        )
        for t in catalog.catalog().values()
    ]


def event_type(type_name: str) -> EventTypePublic:
    for item in event_types():
        if item.type == type_name:
            return item
    raise NotFound("No such event type.", code="event_type_not_found")


def request_hash(event: CloudEventIn) -> str:
    """Of the parsed body, so key order and whitespace do not make a replay "another body"."""
    canonical = orjson.dumps(event.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


# Publishing's first read, in one round trip: a replay's event under this key (if any) and the
# child's region (NULL when there is no such child).
_FIRST_READ = """
SELECT (SELECT region_code FROM child WHERE id = :subject) AS child_region,
       i.request_hash, e.id, e.seq, e.type, e.subject, e.time
FROM (SELECT 1) AS one
LEFT JOIN event_idempotency AS i ON i.client_id = :client AND i.key = :key
LEFT JOIN outbox_event AS e ON e.id = i.event_id
"""
_FIRST_READ_SQL = text(_FIRST_READ)

# The key first, then the event, in one statement: a concurrent request with the same key waits
# on the key's insert for this one to commit, then inserts neither and sees a replay, instead of
# publishing the event twice.
_STORE = """
WITH claimed AS (
    INSERT INTO event_idempotency (client_id, key, request_hash, event_id)
    VALUES (:client, :key, :request_hash, :id)
    ON CONFLICT DO NOTHING
    RETURNING event_id
)
INSERT INTO outbox_event (id, type, source, subject, time, data, data_categories, region_code,
                          publisher_agency, publisher_client, publisher_event_id, case_id, created_at)
SELECT claimed.event_id, :type, :source, :subject, :time, CAST(:data AS jsonb),
       CAST(:categories AS varchar[]), :region, :agency, :client, :publisher_event_id, :case_id, now()
FROM claimed
RETURNING id
"""
_STORE_SQL = text(_STORE)


_LOCK_CHILD_SQL = text("SELECT 1 FROM child WHERE id = :subject FOR UPDATE")


async def _replay(
    session: AsyncSession, reader: Reader, key: str, digest: str
) -> EventAccepted | Stored | None:
    row = (
        await session.execute(
            _FIRST_READ_SQL, {"subject": None, "client": reader.principal.client_id, "key": key}
        )
    ).one()
    return _replayed(row, digest)


def _replayed(row: Any, digest: str) -> EventAccepted | Stored | None:
    """The first request's receipt, or its stored event when that is not numbered yet (its
    request ended between commit and numbering): :func:`publish` numbers it."""
    if row.request_hash is None:
        return None
    if row.request_hash != digest:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different body; use a new key for a new event."
        )
    if row.seq is None:
        return Stored(id=row.id, type=row.type, subject=row.subject, time=row.time)
    return EventAccepted(id=row.id, sequence=row.seq, type=row.type, subject=row.subject, time=row.time)


def _checked(reader: Reader, event: CloudEventIn, policy: Policy) -> catalog.EventType:
    """The event's type, when the body alone lets this reader publish it: a known type, one its
    agency may publish (and, for a custody change, one the policy lets its kind make), data that
    matches the type's schema. Raises the refusal otherwise; nothing is read or written."""
    event_type = catalog.get(event.type)
    if event_type is None:
        raise Unprocessable("Unknown event type; see `GET /v1/event-types`.", code="unknown_event_type")
    event_effects.check_allowed(policy, event_type=event.type, agency_kind=reader.agency_kind)
    if not event_type.may_publish(reader.agency_kind):
        detail = (
            "This type is emitted by the registry itself when a record changes."
            if event_type.spec.registry_only
            else "Only " + ", ".join(str(p) for p in event_type.spec.publishers) + " may publish this type."
        )
        raise EventTypeNotAllowed(detail)
    errors = event_type.validate(event.data)
    if errors:
        raise Unprocessable(
            "`data` does not match the type's schema; see `errors`.",
            code="invalid_event_data",
            extra={"errors": [{"loc": e.loc, "msg": e.msg, "type": e.rule} for e in errors]},
        )
    return event_type


# Publishing in one statement, its own transaction (autocommit), when nothing else needs one: a
# type with no effect on the records or with an effect that is one statement, and no case to link.
# The statement reads the replay under this key and the child's region, and stores the key, the
# event and the effect only when there is no replay and the child is in the reader's region
# (``starts_with``: Principal.covers_region's rule). Otherwise it stores nothing and the row
# says why. One round trip instead of six (BEGIN, the first read, the child's lock, the store,
# the effect, COMMIT): on a busy exchange most of a publish's cost is its round trips, on both
# sides. A type that changes records takes the child's row lock in the same statement before
# its event draws its ordinal (see :data:`_LOCK_CHILD_SQL`).
_AT_ONCE = """
WITH child_row AS (
    SELECT c.region_code, starts_with(c.region_code, :reader_region) AS covered
    FROM child AS c WHERE c.id = :subject{lock}
),
prior AS (
    SELECT i.request_hash, i.event_id FROM event_idempotency AS i
    WHERE i.client_id = :client AND i.key = :key
),
claimed AS (
    INSERT INTO event_idempotency (client_id, key, request_hash, event_id)
    SELECT :client, :key, :request_hash, :id
    FROM child_row WHERE child_row.covered AND NOT EXISTS (SELECT 1 FROM prior)
    ON CONFLICT DO NOTHING
    RETURNING event_id
),
stored AS (
    INSERT INTO outbox_event (id, type, source, subject, time, data, data_categories, region_code,
                              publisher_agency, publisher_client, publisher_event_id, created_at)
    SELECT claimed.event_id, :type, :source, :subject, :time, CAST(:data AS jsonb),
           CAST(:categories AS varchar[]), (SELECT region_code FROM child_row), :agency, :client,
           :publisher_event_id, now()
    FROM claimed
    RETURNING id
){effect}
SELECT (SELECT region_code FROM child_row) AS child_region, (SELECT covered FROM child_row) AS covered,
       (SELECT id FROM stored) AS stored_id,
       prior.request_hash, e.id, e.seq, e.type, e.subject, e.time
FROM (SELECT 1) AS one
LEFT JOIN prior ON true
LEFT JOIN outbox_event AS e ON e.id = prior.event_id
"""
_AT_ONCE_SQL: dict[tuple[bool, str | None], Any] = {}


def _at_once_statement(*, lock: bool, effect: event_effects.StatementEffect | None) -> Any:
    """The one-statement publish for a type: with the child's lock or not, with its effect or
    none; built once per shape (a constant, parsed once)."""
    shape = (lock, effect.sql if effect is not None else None)
    statement = _AT_ONCE_SQL.get(shape)
    if statement is None:
        sql = _AT_ONCE.format(
            lock=" FOR UPDATE" if lock else "",
            effect=f",\neffect AS (\n    {effect.sql}\n    RETURNING 1\n)" if effect is not None else "",
        )
        statement = _AT_ONCE_SQL[shape] = text(sql)
    return statement


def _stored_values(
    reader: Reader,
    event: CloudEventIn,
    event_type: catalog.EventType,
    *,
    key: str,
    digest: str,
    event_id: uuid.UUID,
    when: datetime,
) -> dict[str, Any]:
    """The parameters both ways of storing an event share: the key and the event's columns."""
    principal = reader.principal
    return {
        "client": principal.client_id,
        "key": key,
        "request_hash": digest,
        "id": event_id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": when,
        "data": orjson.dumps(event.data).decode(),
        "categories": [str(c) for c in event_type.classify(event.data)],
        "agency": principal.agency,
        "publisher_event_id": event.id,
    }


def _duplicate() -> Conflict:
    return Conflict("You already published an event with this `source` and `id`.", code="duplicate_event")


_PUBLISHER_ID_UNIQUE = "uq_outbox_event_publisher_id"
"""One event per publishing agency, ``source`` and ``id``: the only constraint a publish's own
statement can break (the key and the effect insert nothing on a conflict)."""


def _violated(exc: IntegrityError) -> str | None:
    """The constraint (or unique index) an integrity error names, as asyncpg reports it."""
    return getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)


async def _publish_at_once(
    db: Database, reader: Reader, *, event: CloudEventIn, idempotency_key: str, policy: Policy
) -> tuple[EventAccepted, bool] | None:
    """:func:`publish` in one statement; None (having written nothing) when the publish needs
    the transaction of :func:`store`: a body the route refuses (whose refusal then comes in
    :func:`store`'s order, a replay first), a case to link, an effect that is not one statement,
    or a key another request took while this one ran."""
    if event.childlinkcase is not None:
        return None
    effect = event_effects.statement_effect(event.type)
    changes_records = event_effects.changes_records(event.type)
    if changes_records and effect is None:
        return None
    try:
        event_type = _checked(reader, event, policy)
    except AppError:
        return None
    principal = reader.principal
    digest = request_hash(event)
    event_id = uuid.uuid4()
    when = event.time or utcnow()
    params = _stored_values(
        reader, event, event_type, key=idempotency_key, digest=digest, event_id=event_id, when=when
    ) | {"reader_region": principal.region}
    if effect is not None:
        params |= effect.values(event_id, event.subject, event.data)
    statement = _at_once_statement(lock=changes_records, effect=effect)
    async with db.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            row = (await autocommit.execute(statement, params)).one()
        except IntegrityError as exc:  # the statement is undone whole: key, event and effect
            if _violated(exc) != _PUBLISHER_ID_UNIQUE:
                raise
            raise _duplicate() from exc
        replayed = _replayed(row, digest)
        if isinstance(replayed, EventAccepted):
            return replayed, True
        if replayed is not None:  # the first request ended between its commit and its number
            own, was_replay = replayed.id, True
        elif row.stored_id is not None:
            own, was_replay = event_id, False
        elif row.child_region is None or not row.covered:
            raise NotFound("No child with this id.", code="child_not_found")
        else:
            return None  # the key was taken meanwhile, by a request that has committed since
        sequence = await numbering.number(autocommit, own)
    assert sequence is not None  # committed, and events are never deleted
    stored = replayed or Stored(id=event_id, type=event.type, subject=event.subject, time=when)
    return EventAccepted(
        id=stored.id, sequence=sequence, type=stored.type, subject=stored.subject, time=stored.time
    ), was_replay


async def publish(
    db: Database, reader: Reader, *, event: CloudEventIn, idempotency_key: str, policy: Policy
) -> tuple[EventAccepted, bool]:
    """Validate, store and commit one event; returns the receipt and whether it is a replay.

    The one service that owns its transaction: the receipt carries the event's sequence number,
    which it gets after the commit (app/events/numbering.py). Most publishes are one statement
    (:func:`_publish_at_once`), which refuses a reused key, a child it may not see and a
    duplicate itself; the rest, and every body refused on its own merits (type, right to
    publish, schema), go through :func:`store` in a transaction, with its checks in its order.
    Publishes commit side by side;
    the numbering pass that follows takes every event committed meanwhile, so under load one
    pass numbers many publishes. Everything written (the key, the event, a custody change)
    still commits together or not at all; see :func:`store` for what is refused.
    """
    done = await _publish_at_once(db, reader, event=event, idempotency_key=idempotency_key, policy=policy)
    if done is not None:
        return done
    async with db.sessionmaker() as session:
        async with session.begin():
            stored, replayed = await store(
                session, reader, event=event, idempotency_key=idempotency_key, policy=policy
            )
        if isinstance(stored, EventAccepted):
            return stored, replayed
        # Committed; numbered by one autocommit call, no transaction of its own.
        conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        sequence = await numbering.number(conn, stored.id)
    assert sequence is not None  # committed above, and events are never deleted
    return EventAccepted(
        id=stored.id, sequence=sequence, type=stored.type, subject=stored.subject, time=stored.time
    ), replayed


@dataclass(frozen=True, slots=True)
class Stored:
    """An event written in the caller's transaction, numbered after it commits."""

    id: uuid.UUID
    type: str
    subject: uuid.UUID
    time: datetime


async def store(
    session: AsyncSession, reader: Reader, *, event: CloudEventIn, idempotency_key: str, policy: Policy
) -> tuple[EventAccepted | Stored, bool]:
    """Validate and store one event in the outbox, in the caller's transaction; returns a replay's
    receipt, or the stored event (numbered after the commit), and whether it is a replay.

    Refuses (and stores nothing): an unknown type (422), a type the agency may not publish (403),
    data that does not match the type's schema (422), a child absent or outside the caller's
    region (404, the same either way), a reused key with another body (422), a reused
    (`source`, `id`) under a new key (409). A custody-changing type is published only by the
    agency kinds the policy's ``custody_changes`` names (403 otherwise) and changes the
    guardianship record in this transaction (:mod:`app.services.event_effects`): if the change
    cannot be made (409, 422), neither is the event stored. The key, the event and the change
    commit together; the event gets its sequence number after the commit.
    """
    principal = reader.principal
    digest = request_hash(event)
    first = (
        await session.execute(
            _FIRST_READ_SQL,
            {"subject": event.subject, "client": principal.client_id, "key": idempotency_key},
        )
    ).one()
    replayed = _replayed(first, digest)
    if replayed is not None:
        return replayed, True

    event_type = _checked(reader, event, policy)
    region = first.child_region
    if region is None or not principal.covers_region(region):
        raise NotFound("No child with this id.", code="child_not_found")
    if event.childlinkcase is not None:
        await case_service.require_linkable(session, reader, event.childlinkcase, child_id=event.subject)

    changes_records = event_effects.changes_records(event.type)
    if changes_records:
        # The child's row lock, which the change takes anyway, before the event is written: two
        # changes of one child then draw their events' ordinals in the order they take effect,
        # and a numbering pass (by ordinal) keeps that order even when both commit before it.
        await session.execute(_LOCK_CHILD_SQL, {"subject": event.subject})
    event_id = uuid.uuid4()
    when = event.time or utcnow()
    try:
        stored = (
            await session.execute(
                _STORE_SQL,
                _stored_values(
                    reader,
                    event,
                    event_type,
                    key=idempotency_key,
                    digest=digest,
                    event_id=event_id,
                    when=when,
                )
                | {"region": region, "case_id": event.childlinkcase},
            )
        ).first()
    except IntegrityError as exc:  # the transaction is spoilt; publish() rolls it back
        raise _duplicate() from exc
    if stored is None:  # the key was taken meanwhile, by a request that has committed since
        replayed = await _replay(session, reader, idempotency_key, digest)
        assert replayed is not None
        return replayed, True
    if changes_records:
        await event_effects.apply(
            session,
            event_effects.Published(
                principal=principal,
                event_id=event_id,
                type=event.type,
                child_id=event.subject,
                region_code=region,
                data=event.data,
            ),
        )
    return Stored(id=event_id, type=event.type, subject=event.subject, time=when), False


async def load(session: AsyncSession, event_id: uuid.UUID) -> StoredEvent | None:
    row = (
        (
            await session.execute(
                text(f"SELECT {EVENT_COLUMNS} FROM outbox_event WHERE id = :id AND seq IS NOT NULL"),  # noqa: S608
                {"id": event_id},
            )
        )
        .mappings()
        .first()
    )
    return StoredEvent.from_row(row) if row is not None else None


async def read(session: AsyncSession, door: Door, reader: Reader, event_id: uuid.UUID) -> dict[str, Any]:
    """One event as this reader may see it, decided and recorded by the door like any read."""
    event = await load(session, event_id)
    if event is None or not reader.principal.covers_region(event.region_code):
        await door.refuse_unseen(reader, action="event.read", child_id=event.subject if event else None)
    assert event is not None
    if event.subject is None and event.audience is None:
        await door.refuse_unseen(reader, action="event.read", child_id=None)
    decision = await audience.admit_event(door, session, reader, event, action="event.read")
    return CloudEventOut.model_validate(envelope(event, decision.granted)).model_dump(mode="json")
