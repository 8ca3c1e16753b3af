"""Deadlines that enforce themselves: the scheduler's jobs for referrals and actions (协同处置).

An open referral's ``next_deadline_at`` is the next moment the scheduler has something to do for
it: first its deadline (``respond_by`` while requested, ``complete_by`` once accepted), then one
escalation interval after the other until it is answered. Each run fires, per referral due, the
step the clock has reached (0 when the deadline passes, then 1, 2 ...), in one transaction with
its event:

* the ``deadline_step`` row, keyed (referral, deadline, step): a second worker's insert of the
  same step is a no-op, so each step fires once however many workers run;
* ``platform.referral.overdue`` to the referrer and, through ``escalated_to_region``, to the
  receiving agency's level above (a township's referral to its county, a county's to its city);
* the referral's ``overdue_since`` and its ``next_deadline_at`` moved to the next step.

A worker killed mid-run commits nothing of the step, and the next run fires it: nothing is lost
and nothing is sent twice. Steps a stopped scheduler missed are not sent in a burst: only the
step the clock is at. Answering the referral (any transition) clears ``next_deadline_at``, which
ends the escalation.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.case_policy import case_policy, parent_region
from app.access.policy import Policy
from app.access.report_policy import report_policy
from app.auth.principal import Principal
from app.models.case import Case, CaseKind
from app.models.consultation import Action, ActionStatus
from app.models.referral import DeadlineStep, Referral, ReferralStatus
from app.models.report import PRIORITY_URGENCY
from app.services import case as case_service
from app.services import outbox
from app.services.case_view import action_event_data

BATCH = 500
"""Referrals handled per run: keeps each run's transaction short during a catch-up."""

SCHEDULER_CLIENT = "childlink-scheduler"


def _platform(agency: str) -> Principal:
    """The platform emitting on the referrer's behalf: the referrer reads the event as its own."""
    return Principal(
        client_id=SCHEDULER_CLIENT,
        agency=agency,
        scopes=frozenset(),
        region="",
        token_id="scheduler",  # noqa: S106 (an identifier, not a secret)
        issuer="childlink",
    )


async def _step(
    session: AsyncSession,
    *,
    kind: str,
    subject_id: uuid.UUID,
    deadline: str,
    due_at: datetime,
    now: datetime,
    interval: timedelta,
    above: str,
) -> int | None:
    """Record the step the clock has reached for one deadline; its number, or None when another
    worker (or an earlier run) fired it already."""
    step = max(0, int((now - due_at) / interval))
    inserted = (
        await session.execute(
            insert(DeadlineStep)
            .values(
                subject_kind=kind,
                subject_id=subject_id,
                deadline=deadline,
                step=step,
                due_at=due_at,
                escalated_to_region=above,
                fired_at=now,
            )
            .on_conflict_do_nothing()
            .returning(col(DeadlineStep.step))
        )
    ).first()
    return step if inserted is not None else None


async def _emit(session: AsyncSession, agency: str, case: Case, what: str, data: dict[str, Any]) -> None:
    await outbox.emit(
        session,
        _platform(agency),
        type=f"{case_service.PREFIX}{what}.v1",
        subject=case.child_id,
        region_code=case.region_code,
        data={"case_id": str(case.id), "kind": str(case.kind), "lead_agency": case.lead_agency, **data},
        case_id=case.id,
    )


async def fire_overdue(session: AsyncSession, now: datetime, *, policy: Policy) -> int:
    """Fire every referral step due at ``now``; returns how many fired. Safe to run in any number
    of workers at once (rows are claimed with SKIP LOCKED, steps are unique)."""
    default_interval = case_policy(policy).escalation_interval
    report_clocks = report_policy(policy).by_urgency
    rows = (
        await session.execute(
            select(Referral, Case)
            .join(Case, col(Case.id) == col(Referral.case_id))
            .where(
                col(Referral.status).in_([str(ReferralStatus.requested), str(ReferralStatus.accepted)]),
                col(Referral.next_deadline_at) <= now,
            )
            .order_by(col(Referral.next_deadline_at))
            .limit(BATCH)
            .with_for_update(of=Referral, skip_locked=True)
        )
    ).all()
    fired = 0
    for referral, case in rows:
        interval = default_interval
        if case.kind == CaseKind.mandatory_report:
            # A report's urgency sets its own escalation interval (minutes for immediate danger).
            clock = report_clocks.get(str(PRIORITY_URGENCY[case.priority]))
            interval = clock.escalation_interval if clock is not None else default_interval
        deadline = "respond_by" if referral.status == ReferralStatus.requested else "complete_by"
        due_at = referral.respond_by if deadline == "respond_by" else referral.complete_by
        above = parent_region(referral.target_region)
        step = await _step(
            session,
            kind="referral",
            subject_id=referral.id,
            deadline=deadline,
            due_at=due_at,
            now=now,
            interval=interval,
            above=above,
        )
        if referral.overdue_since is None:
            referral.overdue_since = due_at
        referral.next_deadline_at = due_at + interval * (max(0, int((now - due_at) / interval)) + 1)
        session.add(referral)
        if step is None:
            continue  # fired already
        fired += 1
        data = {
            **case_service.referral_event_data(referral),
            "deadline": deadline,
            "due_at": due_at.isoformat(),
            "step": step,
            "escalated_to_region": above,
        }
        await _emit(session, referral.from_agency, case, "referral.overdue", data)
    await session.flush()
    return fired


async def fire_overdue_actions(session: AsyncSession, now: datetime, *, policy: Policy) -> int:
    """The same for actions: overdue once their due date passes, escalated to the level above the
    child's division, emitted on the lead's behalf."""
    interval = case_policy(policy).escalation_interval
    rows = (
        await session.execute(
            select(Action, Case)
            .join(Case, col(Case.id) == col(Action.case_id))
            .where(col(Action.status) == str(ActionStatus.open), col(Action.next_deadline_at) <= now)
            .order_by(col(Action.next_deadline_at))
            .limit(BATCH)
            .with_for_update(of=Action, skip_locked=True)
        )
    ).all()
    fired = 0
    for action, case in rows:
        above = parent_region(case.region_code)
        step = await _step(
            session,
            kind="action",
            subject_id=action.id,
            deadline="due_on",
            due_at=action.due_at,
            now=now,
            interval=interval,
            above=above,
        )
        if action.overdue_since is None:
            action.overdue_since = action.due_at
        action.next_deadline_at = action.due_at + interval * (
            max(0, int((now - action.due_at) / interval)) + 1
        )
        session.add(action)
        if step is None:
            continue
        fired += 1
        data = {**action_event_data(action), "deadline": "due_on", "step": step, "escalated_to_region": above}
        await _emit(session, case.lead_agency, case, "action.overdue", data)
    await session.flush()
    return fired
