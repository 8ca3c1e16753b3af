"""Demo data for a newcomer's first run: the five agencies, the platform operator, one API client
each, five children and the records the documentation's examples act on (the cases in
app/services/demo_cases.py). Loading is idempotent;
the demo clients keep their secrets across loads when the caller passes the kept ones."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.scopes import Scope
from app.events import signing
from app.events.vault import SecretBox
from app.models import resident_id
from app.models.agency import Agency, AgencyKind
from app.models.break_glass import BreakGlassReason, BreakGlassReview, Investigation
from app.models.child import Child, Sex
from app.models.client import ApiClient
from app.models.consent import Consent, ConsentGiver
from app.models.guardianship import AssessmentResult, CustodyStatus, Guardianship
from app.models.subscription import Subscription, SubscriptionMode, SubscriptionStatus
from app.services import client as client_service
from app.services import demo_population
from app.services.demo_cases import add_cases
from app.services.demo_reports import add_reports

DEMO_REGION = "51"
"""Sichuan province: the demo children live in Chengdu's districts."""

_COMMON = [
    Scope.cases_write,
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
        "id": uuid.UUID("ada71825-d133-4af8-8c55-343669e0b765"),
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
        "id": uuid.UUID("c2838d01-89b0-448b-8dc2-36af188cd342"),
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
        "id": uuid.UUID("201c8c4f-b52b-43cf-9f02-46b4c8b29834"),
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
        "id": uuid.UUID("bff93b85-d323-4a5c-8b8b-30227da65937"),
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
        "id": uuid.UUID("af8c032b-c45c-4f03-ab41-97cc94f478ae"),
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


DEMO_CHILD_IDS: list[uuid.UUID] = [item["id"] for item in DEMO_CHILDREN]
"""Fixed, so the documentation's examples (app/openapi_examples.py) can name demo children."""

DEMO_RESIDENT_IDS: list[str] = [
    resident_id.make(str(item["region"])[:6], item["birth"], seq, str(item["sex"]))
    for seq, item in enumerate(DEMO_CHILDREN, start=1)
]

DEMO_CONSENT_ID = uuid.UUID("9c98bdf8-578b-4a86-ae07-565f81792832")
"""卓玛 lets the women's federation see 扎西·多吉's health data for child protection."""
DEMO_BREAK_GLASS_ID = uuid.UUID("22ab9d1c-1998-4b89-a53d-a35ef07e2849")
"""A police break-glass read of 阿依古丽·买买提's record, waiting for review."""
DEMO_INVESTIGATION_REF = "WH-2026-0117"
"""An open police investigation: reads made for it stay out of the access report until closed."""
DEMO_PULL_SUBSCRIPTION_ID = uuid.UUID("c6d771ec-832e-438b-9c14-f9186419a7f2")
"""Education's pull subscription to registry and guardianship events."""
DEMO_WEBHOOK_SUBSCRIPTION_ID = uuid.UUID("caa66fdc-cbc2-4b09-aa52-51d97cf5b3c9")
"""Civil affairs' webhook subscription, paused: its receiver (``.invalid``) does not exist, so
nothing is ever sent; it lets the replay and deliveries operations be tried on demo data."""


@dataclass(frozen=True)
class DemoCredential:
    agency: str
    client_id: str
    client_secret: str
    scopes: list[str]
    region: str


async def is_empty(session: AsyncSession) -> bool:
    return (await session.execute(select(col(Agency.code)).limit(1))).first() is None


async def load_children(session: AsyncSession, box: SecretBox) -> list[uuid.UUID]:
    """Register the demo children with a current guardianship each, once, with the records the
    documented examples act on (``box`` seals the demo webhook's signing secret)."""
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
            id=item["id"],
            name=item["name"],
            sex=Sex(item["sex"]),
            birth_date=item["birth"],
            ethnicity=item["ethnicity"],
            resident_id=DEMO_RESIDENT_IDS[seq - 1],
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
    _add_records(session, box)
    await session.flush()
    await add_cases(
        session,
        dropout=(DEMO_CHILD_IDS[0], str(DEMO_CHILDREN[0]["region"])),
        medical_aid=(DEMO_CHILD_IDS[2], str(DEMO_CHILDREN[2]["region"])),
    )
    await add_reports(
        session,
        to_acknowledge=DEMO_CHILD_IDS[1],
        acknowledged=DEMO_CHILD_IDS[4],
        subject_region=str(DEMO_CHILDREN[3]["region"])[:9],
    )
    await demo_population.load(session)
    return ids


def _add_records(session: AsyncSession, box: SecretBox) -> None:
    """A consent, a break-glass use awaiting review, an open investigation and two
    subscriptions, so every documented example has a demo record to act on."""
    session.add(
        Consent(
            id=DEMO_CONSENT_ID,
            child_id=DEMO_CHILD_IDS[0],
            given_by_role=ConsentGiver.guardian,
            given_by_name="卓玛",
            given_by_relationship="grandmother",
            receiving_agency="womens-federation",
            categories=["health"],
            purposes=["child_protection"],
            valid_from=datetime(2026, 9, 1, tzinfo=UTC),
            valid_until=datetime(2027, 8, 31, 15, 59, 59, tzinfo=UTC),
            evidence_ref="TY-DEMO-0001",
            recorded_by_agency="civil-affairs",
            recorded_by_client="demo-civil-affairs",
        )
    )
    session.add(
        BreakGlassReview(
            id=DEMO_BREAK_GLASS_ID,
            client_id="demo-police",
            agency="police",
            child_id=DEMO_CHILD_IDS[2],
            action="child.read",
            reason_code=BreakGlassReason.missing_child,
            justification="Reported missing at 02:10, guardian unreachable (demo)",
            categories=["health"],
        )
    )
    session.add(Investigation(ref=DEMO_INVESTIGATION_REF, agency="police", opened_region=DEMO_REGION))
    session.add(
        Subscription(
            id=DEMO_PULL_SUBSCRIPTION_ID,
            agency="education",
            created_by_client="demo-education",
            reader_region=DEMO_REGION,
            description="Demo: registry and guardianship changes (pull)",
            mode=str(SubscriptionMode.pull),
            type_patterns=["cn.gov.childlink.civil-affairs.*"],
            region_prefix=DEMO_REGION,
            purpose_of_use="education_support",
        )
    )
    session.add(
        Subscription(
            id=DEMO_WEBHOOK_SUBSCRIPTION_ID,
            agency="civil-affairs",
            created_by_client="demo-civil-affairs",
            reader_region=DEMO_REGION,
            description="Demo: school and police events (webhook, paused: fictional receiver)",
            mode=str(SubscriptionMode.webhook),
            url="https://receiver.demo.invalid/childlink/events",
            secret=box.seal(DEMO_WEBHOOK_SUBSCRIPTION_ID, signing.new_secret()),
            type_patterns=["cn.gov.childlink.education.*", "cn.gov.childlink.police.*"],
            region_prefix=DEMO_REGION,
            purpose_of_use="child_protection",
            status=str(SubscriptionStatus.paused),
        )
    )


SECRETS_FILE = "demo-secrets.json"
"""In the data folder (development only): the demo clients' secrets, so that a restart of
``serve`` shows, and accepts, the same ones as yesterday's banner."""


def read_kept_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / SECRETS_FILE
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in kept.items()} if isinstance(kept, dict) else {}


def keep_secrets(data_dir: Path, credentials: list[DemoCredential]) -> None:
    """Write the secrets readable by the owner only (they are the demo's, never real ones)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRETS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({c.client_id: c.client_secret for c in credentials}, out, indent=2)


async def load(session: AsyncSession, *, kept: dict[str, str] | None = None) -> list[DemoCredential]:
    """Create what is missing and return every demo client's secret: the one in ``kept`` when it
    still matches the stored hash, otherwise a fresh one (only hashes are stored, so a secret can
    be shown only when it is made or was kept)."""
    kept = kept or {}
    credentials = []
    for code, name, kind, scopes in DEMO_AGENCIES:
        if await session.get(Agency, code) is None:
            session.add(Agency(code=code, name=name, kind=kind))
            await session.flush()
        client_id = f"demo-{code}"
        region = "" if kind is AgencyKind.platform else DEMO_REGION
        client = await session.get(ApiClient, client_id)
        previous = kept.get(client_id)
        if client is not None and previous and client_service.secret_matches(previous, client.secret_hash):
            credentials.append(DemoCredential(code, client_id, previous, list(client.allowed_scopes), region))
            continue
        secret = client_service.new_secret()
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
