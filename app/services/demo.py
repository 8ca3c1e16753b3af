"""Demo data for a newcomer's first run: the five agencies, the platform operator, and one API
client each. Loading is idempotent; each load issues fresh secrets for the demo clients (only
hashes are stored, so a secret can be shown only when it is made)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.scopes import Scope
from app.models.agency import Agency, AgencyKind
from app.models.client import ApiClient
from app.services import client as client_service

DEMO_REGION = "51"
"""Sichuan province: the demo children live in Chengdu's districts."""

_COMMON = [
    Scope.children_read,
    Scope.custody_read,
    Scope.events_publish,
    Scope.events_read,
    Scope.subscriptions_manage,
]

DEMO_AGENCIES: list[tuple[str, str, AgencyKind, list[Scope]]] = [
    (
        "civil-affairs",
        "民政厅 Civil Affairs",
        AgencyKind.civil_affairs,
        [*_COMMON, Scope.children_write, Scope.custody_write, Scope.consents_read, Scope.consents_write],
    ),
    ("education", "教育厅 Education", AgencyKind.education, _COMMON),
    ("health", "卫生健康委 Health", AgencyKind.health, _COMMON),
    ("police", "公安厅 Police", AgencyKind.police, [*_COMMON, Scope.custody_write, Scope.break_glass]),
    ("womens-federation", "妇联 Women's Federation", AgencyKind.womens_federation, _COMMON),
    ("platform", "Platform operator", AgencyKind.platform, [Scope.admin, Scope.audit_read]),
]


@dataclass(frozen=True)
class DemoCredential:
    agency: str
    client_id: str
    client_secret: str
    scopes: list[str]
    region: str


async def is_empty(session: AsyncSession) -> bool:
    return (await session.execute(select(col(Agency.code)).limit(1))).first() is None


async def load(session: AsyncSession) -> list[DemoCredential]:
    """Create what is missing and return a fresh secret for every demo client."""
    credentials = []
    for code, name, kind, scopes in DEMO_AGENCIES:
        if await session.get(Agency, code) is None:
            session.add(Agency(code=code, name=name, kind=kind))
            await session.flush()
        client_id = f"demo-{code}"
        region = "" if kind is AgencyKind.platform else DEMO_REGION
        secret = client_service.new_secret()
        client = await session.get(ApiClient, client_id)
        if client is None:
            client = ApiClient(
                id=client_id,
                name=f"Demo client ({code})",
                agency_code=code,
                allowed_scopes=[str(s) for s in scopes],
                region=region,
                secret_hash=client_service.hash_secret(secret),
            )
        else:
            client.secret_hash = client_service.hash_secret(secret)
        session.add(client)
        await session.flush()
        credentials.append(DemoCredential(code, client_id, secret, [str(s) for s in scopes], region))
    return credentials
