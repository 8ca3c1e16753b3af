"""The event exchange: the catalog, publishing, and reading events (one, or the pull feed)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.deps import require
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.db import Database, get_database, get_session
from app.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
    responses,
)
from app.events.lifecycle import get_notifier
from app.events.notify import Notifier
from app.models.common import BIGINT_MAX
from app.models.event import (
    IDEMPOTENCY_KEY_PATTERN,
    CloudEventIn,
    CloudEventOut,
    EventAccepted,
    EventTypeList,
    EventTypePublic,
    FeedPage,
)
from app.services import event as event_service
from app.services import event_feed

router = APIRouter(prefix="/v1", tags=["events"])

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Authenticated = Annotated[Principal, Security(require)]


@router.get(
    "/event-types",
    response_model=EventTypeList,
    summary="List event types",
    responses=responses(Unauthorized),
)
async def list_event_types(principal: Authenticated) -> Any:
    """The event catalog: every versioned type with the JSON Schema of its `data`, the agencies
    that publish it and the data categories it carries. Each schema property's `x-data-category`
    says which category it belongs to: that is what a receiver without a legal basis for the
    category does not get."""
    return EventTypeList(items=event_service.event_types())


@router.get(
    "/event-types/{type_name}",
    response_model=EventTypePublic,
    summary="Get an event type",
    responses=responses(Unauthorized, NotFound),
)
async def get_event_type(principal: Authenticated, type_name: Annotated[str, Path(max_length=120)]) -> Any:
    """One catalog entry with its `data` schema."""
    return event_service.event_type(type_name)


@router.post(
    "/events",
    response_model=EventAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Publish an event",
    responses=responses(Unauthorized, Forbidden, NotFound, Conflict, Unprocessable),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/CloudEventIn"}}
            }
        }
    },
)
async def publish_event(
    db: Annotated[Database, Depends(get_database)],
    door: DoorDep,
    reader: Annotated[Reader, Security(get_reader, scopes=[Scope.events_publish])],
    event: CloudEventIn,
    response: Response,
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Your unique key for this event (e.g. a UUID). Retrying with the same key "
            "and body returns the first answer; the same key with another body is a 422. Keys are "
            "remembered for 7 days.",
        ),
    ],
) -> Any:
    """Publish a CloudEvents 1.0 event about a child in your region (structured JSON). It is
    checked against the type's schema and your agency's right to publish it, stored in the outbox
    with a global sequence number, and delivered to every subscription that may receive it.
    Custody-changing types (`police.custody.intervention`, `civil-affairs.temporary-guardianship.*`,
    `civil-affairs.guardianship.assessed`) are the one way to record those changes: they update
    the child's guardianship record in the same transaction, and only the agencies the policy's
    `custody_changes` names may publish them.
    Answers 202 with the event's id and sequence; a replay of the same key answers the same, with
    `Idempotent-Replayed: true`."""
    accepted, replayed = await event_service.publish(
        db, reader, event=event, idempotency_key=idempotency_key, policy=door.policy
    )
    response.headers["Location"] = f"/v1/events/{accepted.id}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return accepted


@router.get(
    "/events/feed",
    response_model=FeedPage,
    summary="Read the event feed (pull)",
    responses=responses(Unauthorized, Forbidden, BadRequest, NotFound, Conflict, Unprocessable),
)
async def read_feed(
    request: Request,
    session: Session,
    door: DoorDep,
    reader: Annotated[Reader, Security(get_reader, scopes=[Scope.events_read])],
    notifier: Annotated[Notifier | None, Depends(get_notifier)],
    after: Annotated[
        int, Query(ge=0, le=BIGINT_MAX, description="The `next_after` of your previous page; 0 to start.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many events.")] = 100,
    wait: Annotated[
        float,
        Query(ge=0, le=60, description="Seconds to wait for an event when there is none yet (long poll)."),
    ] = 0,
    subscription: Annotated[
        uuid.UUID | None,
        Query(description="Your pull subscription; may be left out when your agency has exactly one."),
    ] = None,
) -> Any:
    """The events your pull subscription admits after sequence `after`, oldest first, each
    released as the access layer allows for the subscription's purpose of use and recorded in the
    access log; events you may see nothing of are left out. Continue with `after=next_after`:
    nothing can appear later below it. With `wait`, the call returns as soon as an event commits
    (at most `wait` seconds, capped by the server)."""
    cap = request.app.state.settings.feed_max_wait_seconds
    return await event_feed.read(
        session,
        door,
        reader,
        notifier,
        subscription_id=subscription,
        after=after,
        limit=limit,
        wait=min(wait, cap),
    )


@router.get(
    "/events/{event_id}",
    response_model=CloudEventOut,
    summary="Get an event",
    responses=responses(Unauthorized, Forbidden, BadRequest, NotFound, Unprocessable),
)
async def get_event(
    session: Session,
    door: DoorDep,
    reader: Annotated[Reader, Security(get_reader, scopes=[Scope.events_read])],
    event_id: uuid.UUID,
) -> Any:
    """One event, as the access layer releases it to you for your `X-Purpose-Of-Use`: fields of
    categories you may not see are left out of `data` and named in `childlinkwithheld`. The read
    is recorded in the access log."""
    return await event_service.read(session, door, reader, event_id)
