"""The child registry (civil affairs writes; every agency reads through the access layer)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Unauthorized,
    Unprocessable,
    responses,
)
from app.models.child import (
    ChildCategory,
    ChildCreate,
    ChildExit,
    ChildLookup,
    ChildPage,
    ChildPublic,
    ChildStatus,
    ChildUpdate,
)
from app.models.common import IsoDateTime
from app.routers.query import UnknownParameter, refuse_unknown_query
from app.services import child as child_service

router = APIRouter(
    prefix="/v1/children",
    tags=["children"],
    responses=responses(Unauthorized, Forbidden, UnknownParameter),
    dependencies=[Depends(refuse_unknown_query)],
)

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Reading = Annotated[Reader, Security(get_reader, scopes=[Scope.children_read])]
Writing = Annotated[Reader, Security(get_reader, scopes=[Scope.children_write])]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=200,
        description="The `ETag` from your last read of the record.",
        examples=['"3"'],
    ),
]


@router.post(
    "",
    response_model=ChildPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Register a child",
    responses=responses(BadRequest, Conflict, Unprocessable),
)
async def register_child(
    session: Session, door: DoorDep, reader: Writing, data: ChildCreate, response: Response
) -> Any:
    """Add a left-behind (留守) or at-risk (困境) child to the registry (civil affairs only).

    The resident ID number, when given, must have a valid check character and agree with the
    birth date and sex; a number already registered is a 409 that names the existing record if
    you may see it. Emits `child.registered`.
    """
    child, public = await child_service.register(session, door, reader, data=data)
    response.headers["ETag"] = child_service.etag(child)
    response.headers["Location"] = f"/v1/children/{child.id}"
    return public


@router.get(
    "",
    response_model=ChildPage,
    summary="List children",
    responses=responses(BadRequest, Unprocessable),
)
async def list_children(
    session: Session,
    door: DoorDep,
    reader: Reading,
    region: Annotated[
        str | None,
        Query(
            pattern=r"^\d{2,12}$",
            description="Division-code prefix inside your own region.",
            examples=["510107"],
        ),
    ] = None,
    category: Annotated[ChildCategory | None, Query(description="Only children in this category.")] = None,
    child_status: Annotated[ChildStatus | None, Query(alias="status")] = None,
    min_age: Annotated[int | None, Query(ge=0, le=25)] = None,
    max_age: Annotated[int | None, Query(ge=0, le=25)] = None,
    updated_since: Annotated[
        IsoDateTime | None, Query(description="Only records changed at or after this time (ISO 8601).")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=child_service.MAX_PAGE)] = 50,
) -> Any:
    """Children in your region matching the filters, oldest change first, with cursor
    pagination; each record is released as the access layer allows for your purpose, and the
    page is recorded in the access log."""
    items, next_cursor = await child_service.list_children(
        session,
        door,
        reader,
        region=region,
        category=category,
        status=child_status,
        min_age=min_age,
        max_age=max_age,
        updated_since=updated_since,
        cursor=cursor,
        limit=limit,
    )
    return ChildPage(items=items, next_cursor=next_cursor)


@router.post(
    "/lookup",
    response_model=ChildPublic,
    summary="Look up a child by resident ID number",
    responses=responses(BadRequest, NotFound, Unprocessable),
)
async def lookup_child(session: Session, door: DoorDep, reader: Reading, data: ChildLookup) -> Any:
    """Find a child by resident ID number. The number travels in the body, so it never appears
    in a URL or a log; 404 when no child with it is in your region."""
    return await child_service.lookup(session, door, reader, number=data.resident_id)


@router.api_route("/lookup", methods=["GET", "PATCH"], include_in_schema=False)
async def lookup_other_methods() -> None:
    """`/lookup` is a fixed path, not a child id: the methods of `/{child_id}` answer 405 here
    (with the `Allow` the spec gives), not 422 "not a UUID"."""
    raise MethodNotAllowed("Look a child up with POST.", headers={"Allow": "POST"})


@router.get(
    "/{child_id}",
    response_model=ChildPublic,
    summary="Get a child",
    responses=responses(BadRequest, NotFound, Unprocessable),
)
async def get_child(
    session: Session, door: DoorDep, reader: Reading, child_id: uuid.UUID, response: Response
) -> Any:
    """One child record as the access layer releases it to you: categories you may not see for
    your purpose are left out and listed under `access.withheld`. The `ETag` header is what
    `PATCH` wants in `If-Match`."""
    child, public = await child_service.get(session, door, reader, child_id)
    response.headers["ETag"] = child_service.etag(child)
    return public


@router.patch(
    "/{child_id}",
    response_model=ChildPublic,
    summary="Update a child",
    responses=responses(
        BadRequest, NotFound, Conflict, PreconditionFailed, PreconditionRequired, Unprocessable
    ),
)
async def update_child(
    session: Session,
    door: DoorDep,
    reader: Writing,
    child_id: uuid.UUID,
    data: ChildUpdate,
    response: Response,
    if_match: IfMatch = None,
) -> Any:
    """Change some fields of a record you keep. Send `If-Match` with the record's ETag: 428
    without it, 412 if the record changed since you read it. Emits `child.updated`."""
    child, public = await child_service.update_child(
        session, door, reader, child_id, data=data, if_match=if_match
    )
    response.headers["ETag"] = child_service.etag(child)
    return public


@router.post(
    "/{child_id}/exit",
    response_model=ChildPublic,
    summary="Exit a child from the registry",
    responses=responses(BadRequest, NotFound, Conflict, PreconditionFailed, Unprocessable),
)
async def exit_child(
    session: Session,
    door: DoorDep,
    reader: Writing,
    child_id: uuid.UUID,
    data: ChildExit,
    response: Response,
    if_match: IfMatch = None,
) -> Any:
    """Record that a child leaves the registry (退出: parents returned, aged out, moved, death,
    other). The record is kept and becomes read-only. Emits `child.exited`."""
    child, public = await child_service.exit_registry(
        session, door, reader, child_id, data=data, if_match=if_match
    )
    response.headers["ETag"] = child_service.etag(child)
    return public
