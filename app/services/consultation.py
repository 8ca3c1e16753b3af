"""Joint consultations (会商) and their actions.

The lead records a consultation on an open case; each decision becomes an action assigned to an
agency with a due date (``platform.action.assigned``), which that agency completes
(``platform.action.completed``). An assigned agency is involved in the case: it sees it, and
reads of it pass the door like any other.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.case_policy import case_policy
from app.access.decision import Decision
from app.access.door import Door
from app.access.reading import AccessDenied, Reader
from app.errors import BadRequest, Conflict, Forbidden, NotFound
from app.models.agency import Agency
from app.models.case import Case, CaseStatus
from app.models.common import utcnow
from app.models.consultation import (
    Action,
    ActionPublic,
    ActionStatus,
    Consultation,
    ConsultationCreate,
    ConsultationPublic,
)
from app.services import case as case_service
from app.services.case_view import action_event_data, render, render_action


class ActionNotFound(NotFound):
    code, title = "action_not_found", "No such action"


class NotAssigned(Forbidden):
    code, title = "not_assigned", "Only the assigned agency completes an action"


class ActionCompleted(Conflict):
    code, title = "action_completed", "The action is already completed"


async def record(
    session: AsyncSession, door: Door, reader: Reader, case_id: uuid.UUID, *, data: ConsultationCreate
) -> ConsultationPublic:
    """Record a consultation on an open case (lead only) and assign its decisions; emits
    ``platform.action.assigned`` for each. Nothing is written if any agency is unknown or any
    due date lies in the past or beyond the policy's bound."""
    case = await case_service.load_visible(
        session, door, reader, case_id, "consultation.create", for_update=True
    )
    if case.lead_agency != reader.principal.agency:
        raise case_service.NotCaseLead("Only the lead agency records a consultation.")
    if case.status != CaseStatus.open:
        raise case_service.CaseClosed("A closed case takes no consultations.")
    now = utcnow()
    bounds = case_policy(door.policy)
    bound = bounds.action_due_within_max
    if data.held_at > now:
        raise BadRequest("`held_at` lies in the future.", code="invalid_held_at")
    codes = set(data.agencies) | {d.assigned_agency for d in data.decisions}
    known = set(
        (await session.execute(select(col(Agency.code)).where(col(Agency.code).in_(codes)))).scalars()
    )
    if codes - known:
        raise BadRequest("Some agency codes are not registered.", code="unknown_agency")
    due = [item.due_at or now + bounds.action_due_default for item in data.decisions]
    for index, due_at in enumerate(due):
        if due_at <= now or due_at > now + bound:
            raise BadRequest(
                f"decisions[{index}].due_at must lie in the future and within {bound.days} days.",
                code="invalid_deadline",
            )
    consultation = Consultation(
        case_id=case.id,
        held_at=data.held_at,
        agencies=data.agencies,
        summary=data.summary,
        recorded_by_agency=reader.principal.agency,
        recorded_by_client=reader.principal.client_id,
    )
    session.add(consultation)
    await session.flush()
    await case_service.emit(
        session,
        reader,
        case,
        "consultation.recorded",
        {
            "consultation_id": str(consultation.id),
            "held_at": consultation.held_at.isoformat(),
            "agencies": consultation.agencies,
        },
    )
    actions = []
    for item, due_at in zip(data.decisions, due, strict=True):
        action = Action(
            case_id=case.id,
            consultation_id=consultation.id,
            assigned_agency=item.assigned_agency,
            description=item.description,
            due_at=due_at,
            next_deadline_at=due_at,
        )
        session.add(action)
        await session.flush()
        actions.append(action)
        await case_service.emit(session, reader, case, "action.assigned", action_event_data(action))
    await case_service.touch(session, case.id)
    decision = await case_service.decide(session, door, reader, case, "consultation.create")
    return render(consultation, actions, decision, case.kind)


async def complete(
    session: AsyncSession, door: Door, reader: Reader, action_id: uuid.UUID, *, outcome: str
) -> ActionPublic:
    """Complete an action (its assigned agency, within the case's region); a repeat with the same
    outcome answers the same, another outcome is a 409. Emits ``platform.action.completed``."""
    row = (
        await session.execute(
            select(Action, Case)
            .join(Case, col(Case.id) == col(Action.case_id))
            .where(col(Action.id) == action_id)
            .with_for_update(of=Action)
        )
    ).first()
    involved = row is not None and (
        row[0].assigned_agency == reader.principal.agency or row[1].lead_agency == reader.principal.agency
    )
    if row is None or not involved or not reader.principal.covers_region(row[1].region_code):
        await door.record_refusal(reader, action="action.complete", reason="not_found")
        raise ActionNotFound("No action with this id.")
    action, case = row[0], row[1]
    if action.assigned_agency != reader.principal.agency:
        raise NotAssigned("Only the assigned agency completes this action.")
    try:
        decision: Decision | None = await case_service.decide(session, door, reader, case, "action.complete")
    except AccessDenied:
        decision = None
    if action.status == ActionStatus.completed:
        if action.outcome == outcome:
            return render_action(action, decision, case.kind)
        raise ActionCompleted(
            "The action was completed with another outcome.", extra={"current_status": "completed"}
        )
    now = utcnow()
    action.status = ActionStatus.completed
    action.outcome = outcome
    action.completed_at = now
    action.next_deadline_at = None
    action.updated_at = now
    session.add(action)
    await session.flush()
    await case_service.emit(session, reader, case, "action.completed", action_event_data(action))
    await case_service.touch(session, case.id)
    return render_action(action, decision, case.kind)
