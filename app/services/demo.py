"""Demo data for a newcomer's first run: the five agencies, the platform operator, and one API
client each. Loading is idempotent; each load issues fresh secrets for the demo clients (only
hashes are stored, so a secret can be shown only when it is made)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.scopes import Scope
from app.models import resident_id
from app.models.agency import Agency, AgencyKind
from app.models.child import Child, Sex
from app.models.client import ApiClient
from app.models.guardianship import AssessmentResult, CustodyStatus, Guardianship
from app.services import client as client_service
from app.services import demo_population

DEMO_REGION = "51"
"""Sichuan province: the demo children live in Chengdu's districts."""

_COMMON = [
    Scope.children_read,
    Scope.custody_read,
    Scope.events_publish,
    Scope.events_read,
    Scope.subscriptions_manage,
    Scope.reports_file,
    Scope.statistics_read,
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


# Synthetic children for the demo: made-up names, valid-looking resident ID numbers.
DEMO_CHILDREN: list[dict[str, Any]] = [
    {
        "name": "扎西·多吉",
        "sex": "male",
        "birth": date(2015, 3, 4),
        "ethnicity": "藏族",
        "region": "510107005003",
        "categories": ["left_behind"],
        "care": "grandparents",
        "custody": ("kinship_care", "卓玛", "grandmother", "13800138000", []),
    },
    {
        "name": "李小花",
        "sex": "female",
        "birth": date(2017, 9, 21),
        "ethnicity": "汉族",
        "region": "510107005003",
        "categories": ["left_behind", "serious_illness"],
        "care": "relatives_or_friends",
        "custody": ("entrusted", "王芳", "aunt", "13900139000", ["guardian_unreachable"]),
    },
    {
        "name": "阿依古丽·买买提",
        "sex": "female",
        "birth": date(2012, 1, 15),
        "ethnicity": "维吾尔族",
        "region": "510104002001",
        "categories": ["orphan"],
        "care": None,
        "custody": ("long_term_state", None, None, None, []),
    },
    {
        "name": "张伟",
        "sex": "male",
        "birth": date(2011, 6, 30),
        "ethnicity": "汉族",
        "region": "510104002001",
        "categories": ["guardian_harm", "low_income"],
        "care": None,
        "custody": ("temporary_state", None, None, None, ["harm_reported"]),
    },
    {
        "name": "陈晨",
        "sex": "male",
        "birth": date(2019, 11, 2),
        "ethnicity": "彝族",
        "region": "513401001002",
        "categories": ["disability", "de_facto_unsupported"],
        "care": None,
        "custody": ("no_effective_guardian", None, None, None, ["unsafe_home"]),
    },
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


async def load_children(session: AsyncSession) -> list[uuid.UUID]:
    """Register the demo children with a current guardianship each, once."""
    existing = (await session.execute(select(col(Child.id)).limit(1))).first()
    if existing is not None:
        # The demo population has no resident ID numbers; these are the five named children.
        named = col(Child.resident_id).is_not(None)
        query = select(col(Child.id)).where(named).order_by(col(Child.created_at))
        rows = (await session.execute(query)).scalars().all()
        return list(rows)
    ids = []
    for seq, item in enumerate(DEMO_CHILDREN, start=1):
        region = str(item["region"])
        child = Child(
            name=item["name"],
            sex=Sex(item["sex"]),
            birth_date=item["birth"],
            ethnicity=item["ethnicity"],
            resident_id=resident_id.make(region[:6], item["birth"], seq, item["sex"]),
            region_code=region,
            address="示例地址（演示数据）",
            school="示例小学",
            categories=list(item["categories"]),
            care_arrangement=item["care"],
            owner_agency="civil-affairs",
        )
        session.add(child)
        await session.flush()
        status, guardian, relationship, phone, flags = item["custody"]
        state = status in ("long_term_state", "temporary_state", "no_effective_guardian")
        session.add(
            Guardianship(
                child_id=child.id,
                custody_status=CustodyStatus(status),
                guardian_name=guardian,
                guardian_relationship=relationship,
                guardian_phone=phone,
                responsible_org="成都市未成年人救助保护中心" if state else "街道办事处（演示）",
                responsible_org_duty_phone="028-12349" if state else "028-85000000",
                effective_from=date(2026, 9, 1),
                entrustment_confirmation_ref="WT-DEMO-0001" if status == "entrusted" else None,
                entrustment_confirmed_on=date(2026, 8, 28) if status == "entrusted" else None,
                last_assessment_date=date(2026, 10, 15),
                last_assessment_result=AssessmentResult.needs_support,
                risk_flags=list(flags),
                recorded_by_agency="civil-affairs",
                recorded_by_client="demo-civil-affairs",
            )
        )
        ids.append(child.id)
    await session.flush()
    await demo_population.load(session)
    return ids


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
