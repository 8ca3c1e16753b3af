"""A demo population that tells the statistics story: a few hundred children across two
counties of Chengdu and six townships, a year of entries and exits, guardianship for each and a
year of services (home visits, health checks, aid granted, caring-mother pairings ...).

Deterministic (a fixed seed), synthetic (made-up names, no resident ID numbers), and written in
a handful of statements so ``serve --demo`` stays quick. Registry changes go through the
``child`` table, so its trigger keeps the history and the tally as for any write.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import numbering
from app.models.child import Child, ChildStatus, Sex
from app.models.guardianship import AssessmentResult, CustodyStatus, Guardianship
from app.models.outbox import OutboxEvent

POPULATION = 320
TOWNSHIPS = ("510107005", "510107006", "510107007", "510104002", "510104003", "510104004")
_WEIGHTS = (30, 22, 14, 18, 10, 6)
_CATEGORIES = (
    ("left_behind", 60),
    ("low_income", 12),
    ("orphan", 5),
    ("de_facto_unsupported", 6),
    ("disability", 7),
    ("serious_illness", 5),
    ("guardian_harm", 2),
    ("other", 3),
)
_ETHNICITIES = (("汉族", 80), ("藏族", 10), ("彝族", 7), ("回族", 3))
_CARE = ("grandparents", "relatives_or_friends", "institution_or_boarding", "one_parent_unable")
_EXITS = (("parents_returned", 50), ("aged_out", 25), ("moved", 20), ("other", 5))
_CUSTODY = {
    "left_behind": CustodyStatus.kinship_care,
    "orphan": CustodyStatus.long_term_state,
    "de_facto_unsupported": CustodyStatus.entrusted,
    "guardian_harm": CustodyStatus.temporary_state,
}
_SERVICES = (
    ("civil-affairs.home-visit.recorded", "civil-affairs", {"visited_on": None, "visit_kind": "routine"}),
    ("civil-affairs.assistance.granted", "civil-affairs", {"assistance_type": "temporary_assistance"}),
    ("health.check.completed", "health", {"checked_on": None, "result": "normal"}),
    ("education.dropout-risk.flagged", "education", {"risk_level": "medium", "flagged_on": None}),
    ("education.student.returned-to-school", "education", {"returned_on": None}),
    ("womens-federation.caring-mother.paired", "womens-federation", {"paired_on": None}),
)
_SERVICE_WEIGHTS = (40, 12, 25, 6, 3, 14)
_NAMES = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


async def load(session: AsyncSession, *, today: date | None = None) -> int:
    """Add the population; returns how many children it added. Call once, on an empty registry."""
    today = today or date.today()
    rng = random.Random(20261201)  # noqa: S311 - demo data, not secrets
    children: list[Child] = []
    exits: list[tuple[Child, date, str]] = []
    for i in range(POPULATION):
        township = rng.choices(TOWNSHIPS, _WEIGHTS)[0]
        category = _pick(rng, _CATEGORIES)
        categories = [category] + (["low_income"] if category != "low_income" and rng.random() < 0.1 else [])
        birth = today - timedelta(days=rng.randint(365, 17 * 365))
        registered = today - timedelta(days=rng.randint(0, 900))
        created = datetime.combine(registered, time(9), UTC)
        child = Child(
            name=rng.choice(_SURNAMES) + rng.choice(_NAMES) + rng.choice(_NAMES),
            sex=Sex.male if rng.random() < 0.52 else Sex.female,
            birth_date=birth,
            ethnicity=_pick(rng, _ETHNICITIES),
            region_code=f"{township}{rng.randint(1, 4):03d}",
            address="示例地址（演示数据）",
            categories=categories,
            care_arrangement=rng.choice(_CARE) if category == "left_behind" else None,
            owner_agency="civil-affairs",
            created_at=created,
            updated_at=created,
        )
        children.append(child)
        days_in = (today - registered).days
        if days_in > 30 and rng.random() < 0.18:
            exits.append((child, registered + timedelta(days=rng.randint(15, days_in)), _pick(rng, _EXITS)))
        del i
    session.add_all(children)
    await session.flush()
    for child, exit_date, reason in exits:
        child.status = ChildStatus.exited
        child.exit_reason = reason
        child.exit_date = exit_date
        child.updated_at = datetime.combine(exit_date, time(10), UTC)
        child.version += 1
    await session.flush()
    session.add_all(_guardianship(rng, child) for child in children)
    session.add_all(_services(rng, children, today))
    numbering.mark_emitted(session)  # numbered after the caller's commit (app.db.commit)
    await session.flush()
    return len(children)


def _guardianship(rng: random.Random, child: Child) -> Guardianship:
    status = _CUSTODY.get(child.categories[0], CustodyStatus.with_parents)
    state = status in (CustodyStatus.long_term_state, CustodyStatus.temporary_state)
    return Guardianship(
        child_id=child.id,
        custody_status=status,
        guardian_name=None if state else "示例监护人",
        guardian_relationship=None if state else "grandparent",
        responsible_org="成都市未成年人救助保护中心" if state else "街道办事处（演示）",
        responsible_org_duty_phone="028-12349" if state else "028-85000000",
        effective_from=child.created_at.date(),
        entrustment_confirmation_ref="WT-DEMO-0002" if status is CustodyStatus.entrusted else None,
        entrustment_confirmed_on=child.created_at.date() if status is CustodyStatus.entrusted else None,
        last_assessment_date=child.created_at.date(),
        last_assessment_result=rng.choice(list(AssessmentResult)),
        risk_flags=[],
        recorded_by_agency="civil-affairs",
        recorded_by_client="demo-civil-affairs",
        recorded_at=child.created_at,
    )


def _services(rng: random.Random, children: list[Child], today: date) -> list[OutboxEvent]:
    events = []
    for _ in range(POPULATION * 2):
        child = rng.choice(children)
        kind, agency, template = rng.choices(_SERVICES, _SERVICE_WEIGHTS)[0]
        day = today - timedelta(days=rng.randint(0, 364))
        data = {k: (day.isoformat() if v is None else v) for k, v in template.items()}
        events.append(
            OutboxEvent(
                id=uuid.uuid4(),
                type=f"cn.gov.childlink.{kind}.v1",
                source=f"/{agency}/demo",
                subject=child.id,
                time=datetime.combine(day, time(11), UTC),
                data={"child_id": str(child.id), **data} if agency == "civil-affairs" else data,
                data_categories=["welfare"],
                region_code=child.region_code,
                publisher_agency=agency,
                publisher_client=f"demo-{agency}",
            )
        )
    return events
