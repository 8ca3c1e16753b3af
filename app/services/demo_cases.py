"""The demo's coordinated handling: cases, referrals in each state a documented step starts from,
and an open action, with fixed ids so the documentation's examples (app/openapi_case_examples.py)
can name them. Deadlines are set from the time of loading, so a fresh demo is never overdue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.models.case import Case, CaseKind, CasePriority
from app.models.consultation import Action, Consultation
from app.models.referral import Referral, ReferralStatus

DEMO_CASE_ID = uuid.UUID("5f0c2a7e-3b1d-4e8a-9c6f-2d4b8e1a7c30")
"""Education leads a dropout case (控辍保学) about 扎西·多吉; its referrals and action below."""
DEMO_CLOSABLE_CASE_ID = uuid.UUID("8e4d1b6a-7c2f-4a9e-b3d5-6f1a0c9e2b47")
"""Civil affairs leads a medical-aid case about 阿依古丽·买买提, with nothing left open."""
DEMO_REFERRAL_TO_ACCEPT_ID = uuid.UUID("1a6e9c3f-4d2b-4f7a-8e5c-0b3d7f9a2c61")
"""Requested of civil affairs: a home visit."""
DEMO_REFERRAL_TO_DECLINE_ID = uuid.UUID("2b7fad40-5e3c-4a8b-9f6d-1c4e8a0b3d72")
"""Requested of the police: a safety check of the home."""
DEMO_REFERRAL_TO_COMPLETE_ID = uuid.UUID("3c80be51-6f4d-4b9c-a07e-2d5f9b1c4e83")
"""Accepted by civil affairs: temporary assistance for school costs."""
DEMO_REFERRAL_TO_WITHDRAW_ID = uuid.UUID("4d91cf62-7a5e-4cad-b18f-3e6a0c2d5f94")
"""Requested of health: a check-up, no longer needed."""
DEMO_CONSULTATION_ID = uuid.UUID("6fb3e184-9c7a-4ecf-d3a1-5a8c2e4f7b16")
DEMO_ACTION_ID = uuid.UUID("5ea2d073-8b6f-4dbe-c29a-4f7b1d3e6a05")
"""Open, assigned to civil affairs by the joint consultation: arrange school transport."""


async def add_cases(
    session: AsyncSession, *, dropout: tuple[uuid.UUID, str], medical_aid: tuple[uuid.UUID, str]
) -> None:
    """Add the demo cases about the given (child id, division) pairs; called once, with the demo
    children."""
    now = datetime.now(UTC)
    (_CHILD_ZHAXI, _ZHAXI_REGION), (_CHILD_AYGUL, _AYGUL_REGION) = dropout, medical_aid
    session.add(
        Case(
            id=DEMO_CASE_ID,
            child_id=_CHILD_ZHAXI,
            region_code=_ZHAXI_REGION,
            kind=CaseKind.dropout,
            priority=CasePriority.soon,
            summary="Absent 12 school days since 3 November; the grandmother cannot take the child "
            "to school (demo).",
            lead_agency="education",
            opened_by_client="demo-education",
        )
    )
    session.add(
        Case(
            id=DEMO_CLOSABLE_CASE_ID,
            child_id=_CHILD_AYGUL,
            region_code=_AYGUL_REGION,
            kind=CaseKind.medical_aid,
            priority=CasePriority.routine,
            summary="Medical aid (医疗救助) for dental treatment; the rescue centre applied (demo).",
            lead_agency="civil-affairs",
            opened_by_client="demo-civil-affairs",
        )
    )
    await session.flush()
    referrals = [
        (
            DEMO_REFERRAL_TO_ACCEPT_ID,
            "civil-affairs",
            ReferralStatus.requested,
            "Home visit by the village child director (儿童主任): who looks after the child, and "
            "why the child is not at school.",
        ),
        (DEMO_REFERRAL_TO_DECLINE_ID, "police", ReferralStatus.requested, "Safety check of the home."),
        (
            DEMO_REFERRAL_TO_COMPLETE_ID,
            "civil-affairs",
            ReferralStatus.accepted,
            "Temporary assistance (临时救助) for school costs.",
        ),
        (
            DEMO_REFERRAL_TO_WITHDRAW_ID,
            "health",
            ReferralStatus.requested,
            "Health check-up before the child returns to school.",
        ),
    ]
    for ident, to_agency, status, request in referrals:
        respond_by, complete_by = now + timedelta(days=3), now + timedelta(days=30)
        session.add(
            Referral(
                id=ident,
                case_id=DEMO_CASE_ID,
                child_id=_CHILD_ZHAXI,
                from_agency="education",
                to_agency=to_agency,
                target_region=_ZHAXI_REGION,
                request=request,
                categories=["contact", "education", "identity"],
                respond_by=respond_by,
                complete_by=complete_by,
                status=status,
                next_deadline_at=complete_by if status is ReferralStatus.accepted else respond_by,
                answered_at=now if status is ReferralStatus.accepted else None,
                created_by_client="demo-education",
            )
        )
    session.add(
        Consultation(
            id=DEMO_CONSULTATION_ID,
            case_id=DEMO_CASE_ID,
            held_at=now - timedelta(days=1),
            agencies=["education", "civil-affairs"],
            summary="Joint meeting (联席会议): the school is 6 km away and the grandmother does not drive.",
            recorded_by_agency="education",
            recorded_by_client="demo-education",
        )
    )
    await session.flush()
    due = now + timedelta(days=14)
    session.add(
        Action(
            id=DEMO_ACTION_ID,
            case_id=DEMO_CASE_ID,
            consultation_id=DEMO_CONSULTATION_ID,
            assigned_agency="civil-affairs",
            description="Arrange school transport with the township.",
            due_at=due,
            next_deadline_at=due,
        )
    )
    await session.flush()
