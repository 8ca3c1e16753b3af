"""The guardian's access report."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.deps import DoorDep, get_reader
from app.access.reading import Reader
from app.auth.scopes import Scope
from app.db import get_session
from app.errors import BadRequest, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.models.access_report import AccessReport
from app.routers.query import UnknownParameter, refuse_unknown_query
from app.services import access_report as report_service

router = APIRouter(
    prefix="/v1/children",
    tags=["consents"],
    responses=responses(Unauthorized, Forbidden, UnknownParameter),
    dependencies=[Depends(refuse_unknown_query)],
)


@router.get(
    "/{child_id}/access-report",
    response_model=AccessReport,
    summary="The guardian's access report",
    responses={
        **responses(BadRequest, NotFound, Unprocessable),
        200: {"content": {"text/html": {"example": "<!doctype html>…儿童个人信息查阅记录…"}}},
    },
)
async def access_report(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session, scope="function")],
    door: DoorDep,
    reader: Annotated[Reader, Security(get_reader, scopes=[Scope.children_read])],
    child_id: uuid.UUID,
    response_format: Annotated[
        Literal["json", "html"] | None,
        Query(
            alias="format",
            description="`html` for a printable page in Chinese; also chosen by `Accept: text/html`.",
        ),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Any:
    """For a guardian who asks (PIPL arts. 44-45): every read of this child's data by another
    agency, when, by whom, for what purpose, on what ground and which categories, newest first.
    Produced by the agency that keeps the record. Reads under an open police investigation are
    withheld until it closes; the report then says only that some entries are withheld."""
    result = await report_service.report(session, door, reader, child_id, cursor=cursor, limit=limit)
    wants_html = response_format == "html" or (
        response_format is None and "text/html" in request.headers.get("accept", "")
    )
    if wants_html:
        return HTMLResponse(report_service.render_html(result))
    return result
