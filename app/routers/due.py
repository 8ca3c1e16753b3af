"""What falls due on the care schedule (监护评估, 定期探访)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Security
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import BadRequest, Forbidden, MethodNotAllowed, Unauthorized, Unprocessable, responses
from app.models.care import DuePage, DueWhat
from app.models.common import utcnow
from app.routers.query import UnknownParameter, refuse_unknown_query
from app.services import due as due_service

router = APIRouter(
    prefix="/v1/children",
    tags=["care schedule"],
    responses=responses(Unauthorized, Forbidden, UnknownParameter),
)

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


@router.get(
    "/due",
    response_model=DuePage,
    summary="What falls due: assessments and home visits",
    responses=responses(BadRequest, Unprocessable),
    # On the list only: another method answers 405 whatever query it carries.
    dependencies=[Depends(refuse_unknown_query)],
)
async def list_due(
    session: Session,
    door: DoorDep,
    reader: Annotated[Reader, Security(get_reader, scopes=[Scope.children_read])],
    what: Annotated[DueWhat, Query(description="`assessment` (监护评估) or `home_visit` (定期探访).")],
    region: Annotated[
        str,
        Query(
            pattern=r"^(\d{6}|\d{9}|\d{12})$",
            description="A county (6 digits), township (9) or village (12) inside your region.",
            examples=["510107005"],
        ),
    ],
    within_days: Annotated[
        int, Query(ge=0, le=90, description="Also list what falls due within this many days.")
    ] = 0,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` from the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=due_service.MAX_PAGE)] = 50,
) -> Any:
    """Civil affairs' work list: the children in a county, township or village whose next
    guardianship assessment or home visit is due or overdue (dates in China Standard Time),
    earliest first, by the intervals of the policy's `care_schedule` (`GET /v1/policy`). Each
    child is released as the access layer allows and the page is recorded in the access log.
    An overdue one is also announced once to the township as a
    `cn.gov.childlink.platform.*.overdue.v1` event."""
    items, next_cursor = await due_service.due(
        session,
        door,
        reader,
        what=what,
        region=region,
        within_days=within_days,
        cursor=cursor,
        limit=limit,
        now=utcnow(),
    )
    return DuePage(items=items, next_cursor=next_cursor)


wrong_methods = APIRouter(prefix="/v1/children")
"""Methods `/due` does not have, before the query check: a PATCH carrying the list's own query
parameters is answered 405, not 400 for parameters the PATCH does not declare."""


@wrong_methods.api_route("/due", methods=["PATCH"], include_in_schema=False)
async def due_other_methods() -> None:
    """`/due` is a fixed path, not a child id: `PATCH /v1/children/{child_id}` answers 405 here
    (with the `Allow` the spec gives), not 422 "not a UUID"."""
    raise MethodNotAllowed("The due list is read with GET.", headers={"Allow": "GET"})
