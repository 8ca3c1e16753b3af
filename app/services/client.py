"""API clients: creation (secret shown once), revocation, secret rotation, authentication.

Client secrets are 256-bit random values, so a single SHA-256 is a sound verifier for them (a
slow password hash protects low-entropy secrets, which these are not) and keeps the token
endpoint fast. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.auth.scopes import Scope
from app.errors import BadRequest, Conflict, NotFound
from app.models.agency import Agency
from app.models.client import ApiClient, ClientCreate, ClientPublic, ClientStatus, ClientWithSecret
from app.models.common import utcnow

SECRET_PREFIX = "cs_"  # noqa: S105  (a prefix, not a secret)
CLIENT_ID_PREFIX = "cl_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return "sha256$" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


# A fixed hash to compare against when the client id is unknown, so an unknown id and a wrong
# secret take the same time.
_DUMMY_HASH = hash_secret("cs_unknown-client")


def to_public(client: ApiClient) -> ClientPublic:
    return ClientPublic(
        client_id=client.id,
        name=client.name,
        agency=client.agency_code,
        scopes=[Scope(s) for s in client.allowed_scopes],
        region=client.region,
        status=client.status,
        created_at=client.created_at,
        secret_rotated_at=client.secret_rotated_at,
        revoked_at=client.revoked_at,
    )


async def create(session: AsyncSession, *, data: ClientCreate) -> ClientWithSecret:
    """Create a client and return it with its secret; the secret is never retrievable again."""
    agency = await session.get(Agency, data.agency)
    if agency is None:
        raise BadRequest("No agency with this code.", code="unknown_agency")
    if Scope.admin in data.scopes and agency.kind != "platform":
        raise BadRequest("Only the platform agency's clients may hold `admin`.", code="scope_not_allowed")
    secret = new_secret()
    client = ApiClient(
        id=CLIENT_ID_PREFIX + secrets.token_hex(8),
        name=data.name,
        agency_code=agency.code,
        allowed_scopes=[str(s) for s in data.scopes],
        region=data.region,
        secret_hash=hash_secret(secret),
    )
    session.add(client)
    await session.flush()
    await session.refresh(client)
    return ClientWithSecret(**to_public(client).model_dump(), client_secret=secret)


async def get(session: AsyncSession, client_id: str) -> ApiClient:
    client = await session.get(ApiClient, client_id)
    if client is None:
        raise NotFound("No client with this id.", code="client_not_found")
    return client


async def list_page(
    session: AsyncSession, *, agency: str | None, after: str | None, limit: int
) -> tuple[Sequence[ApiClient], str | None]:
    """Clients ordered by id; returns the page and the cursor for the next one."""
    query = select(ApiClient).order_by(col(ApiClient.id)).limit(limit + 1)
    if agency:
        query = query.where(ApiClient.agency_code == agency)
    if after:
        query = query.where(col(ApiClient.id) > after)
    rows = (await session.execute(query)).scalars().all()
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor


async def revoke(session: AsyncSession, client_id: str) -> ApiClient:
    """Revoke a client: no new tokens, and its outstanding tokens are refused within seconds.

    Revoking twice is a 409 so the caller learns that the first attempt took effect.
    """
    client = await get(session, client_id)
    if client.status == ClientStatus.revoked:
        raise Conflict("The client is already revoked.", code="client_already_revoked")
    client.status = ClientStatus.revoked
    client.revoked_at = utcnow()
    session.add(client)
    await session.flush()
    return client


async def rotate_secret(session: AsyncSession, client_id: str) -> ClientWithSecret:
    """Issue a new secret; the old one stops working at once. Tokens already issued stay valid."""
    client = await get(session, client_id)
    if client.status == ClientStatus.revoked:
        raise Conflict("A revoked client cannot get a new secret.", code="client_revoked")
    secret = new_secret()
    client.secret_hash = hash_secret(secret)
    client.secret_rotated_at = utcnow()
    session.add(client)
    await session.flush()
    return ClientWithSecret(**to_public(client).model_dump(), client_secret=secret)


async def authenticate(
    session: AsyncSession, client_id: str, client_secret: str
) -> tuple[ApiClient, Agency] | None:
    """The active client with this id and secret, with its agency; None otherwise."""
    row = (
        await session.execute(
            select(ApiClient, Agency)
            .join(Agency, col(Agency.code) == col(ApiClient.agency_code))
            .where(ApiClient.id == client_id)
        )
    ).first()
    if row is None:
        secret_matches(client_secret, _DUMMY_HASH)
        return None
    client, agency = row
    if not secret_matches(client_secret, client.secret_hash):
        return None
    if client.status != ClientStatus.active:
        return None
    return client, agency
