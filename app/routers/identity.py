"""The caller's own identity, and the platform operator's registry of agencies and clients."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Security, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import require
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.db import commit, get_session
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, responses
from app.models.agency import AgencyCreate, AgencyPublic
from app.models.client import ClientCreate, ClientPublic, ClientWithSecret
from app.services import agency as agency_service
from app.services import client as client_service

router = APIRouter(prefix="/v1", responses=responses(Unauthorized))

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Admin = Annotated[Principal, Security(require, scopes=[Scope.admin])]
ClientId = Annotated[str, Query(max_length=64)]


class MePublic(BaseModel):
    client_id: str = Field(examples=["cl_6f1d0c2a9e4b7d31"])
    agency: str = Field(examples=["police"])
    scopes: list[Scope] = Field(examples=[["children:read", "custody:read"]])
    region: str = Field(
        description="Division-code prefix the caller is confined to; empty for all.", examples=["510107"]
    )
    issuer: str = Field(examples=["http://localhost:8000"])
    token_id: str


class ClientPage(BaseModel):
    items: list[ClientPublic]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null at the end.")


@router.get("/me", response_model=MePublic, tags=["auth"], summary="Who am I")
async def me(principal: Annotated[Principal, Security(require)]) -> Any:
    """The client, agency, scopes and region the presented token speaks for: a quick check that
    a token works and grants what you expect."""
    return MePublic(
        client_id=principal.client_id,
        agency=principal.agency,
        scopes=sorted(principal.scopes),
        region=principal.region,
        issuer=principal.issuer,
        token_id=principal.token_id,
    )


@router.post(
    "/agencies",
    response_model=AgencyPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["admin"],
    summary="Register an agency",
    responses=responses(Forbidden, Conflict, Unprocessable),
)
async def create_agency(session: Session, _: Admin, data: AgencyCreate) -> Any:
    """Register an agency (platform operator, `admin`). Its clients are created separately."""
    return await agency_service.register(session, data=data)


@router.get(
    "/agencies",
    response_model=list[AgencyPublic],
    tags=["admin"],
    summary="List agencies",
    responses=responses(Forbidden),
)
async def list_agencies(session: Session, _: Admin) -> Any:
    """Every registered agency, ordered by code."""
    return await agency_service.list_all(session)


@router.post(
    "/clients",
    response_model=ClientWithSecret,
    status_code=status.HTTP_201_CREATED,
    tags=["admin"],
    summary="Create an API client",
    responses=responses(BadRequest, Forbidden, Unprocessable),
)
async def create_client(session: Session, _: Admin, data: ClientCreate) -> Any:
    """Create a client for an agency. The response carries `client_secret` **once**; only its
    hash is stored, so a lost secret is replaced with `rotate-secret`, never recovered."""
    return await client_service.create(session, data=data)


@router.get(
    "/clients",
    response_model=ClientPage,
    tags=["admin"],
    summary="List API clients",
    responses=responses(Forbidden, Unprocessable),
)
async def list_clients(
    session: Session,
    _: Admin,
    agency: Annotated[str | None, Query(max_length=64, description="Only this agency's clients.")] = None,
    after: Annotated[str | None, Query(max_length=64, description="Cursor from the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """Clients ordered by id, with cursor pagination. Secrets are never listed."""
    rows, next_cursor = await client_service.list_page(session, agency=agency, after=after, limit=limit)
    return ClientPage(items=[client_service.to_public(c) for c in rows], next_cursor=next_cursor)


@router.get(
    "/clients/{client_id}",
    response_model=ClientPublic,
    tags=["admin"],
    summary="Get an API client",
    responses=responses(Forbidden, NotFound),
)
async def get_client(session: Session, _: Admin, client_id: str) -> Any:
    """One client's agency, scopes, region and status."""
    return client_service.to_public(await client_service.get(session, client_id))


@router.post(
    "/clients/{client_id}/revoke",
    response_model=ClientPublic,
    tags=["admin"],
    summary="Revoke an API client",
    responses=responses(Forbidden, NotFound, Conflict),
)
async def revoke_client(request: Request, session: Session, _: Admin, client_id: str) -> Any:
    """Revoke a client: it gets no new tokens and its outstanding tokens are refused within a
    few seconds on every instance. Revocation is permanent."""
    client = await client_service.revoke(session, client_id)
    # Committed first: a request of this client arriving in between would otherwise read it still
    # active and keep that for the cache's whole lifetime.
    await commit(session)
    request.app.state.client_directory.forget(client_id)
    return client_service.to_public(client)


@router.post(
    "/clients/{client_id}/rotate-secret",
    response_model=ClientWithSecret,
    tags=["admin"],
    summary="Rotate an API client's secret",
    responses=responses(Forbidden, NotFound, Conflict),
)
async def rotate_client_secret(session: Session, _: Admin, client_id: str) -> Any:
    """Issue a new secret (returned once); the old secret stops working immediately, tokens
    already issued keep working until they expire."""
    return await client_service.rotate_secret(session, client_id)
