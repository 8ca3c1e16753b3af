"""How a case's consultations and actions are shown: released with the case's category by the
door's decision on the case record, or reduced to references when it is withheld."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.decision import Decision
from app.models.case import KIND_CATEGORY, Case, CaseKind
from app.models.consultation import Action, ActionPublic, ActionStatus, Consultation, ConsultationPublic


def action_event_data(action: Action) -> dict[str, Any]:
    return {
        "action_id": str(action.id),
        "assigned_agency": action.assigned_agency,
        "due_at": action.due_at.isoformat(),
        "status": str(action.status),
    }


def render_action(action: Action, decision: Decision | None, kind: CaseKind) -> ActionPublic:
    released = decision is not None and decision.allows(KIND_CATEGORY[kind])
    return ActionPublic(
        id=action.id,
        case_id=action.case_id,
        consultation_id=action.consultation_id,
        assigned_agency=action.assigned_agency,
        description=action.description if released else None,
        due_at=action.due_at,
        status=action.status,
        overdue=action.overdue_since is not None and action.status == ActionStatus.open,
        overdue_since=action.overdue_since,
        outcome=action.outcome if released else None,
        completed_at=action.completed_at,
        created_at=action.created_at,
    )


def render(
    consultation: Consultation, actions: Sequence[Action], decision: Decision | None, kind: CaseKind
) -> ConsultationPublic:
    released = decision is not None and decision.allows(KIND_CATEGORY[kind])
    return ConsultationPublic(
        id=consultation.id,
        case_id=consultation.case_id,
        held_at=consultation.held_at,
        agencies=consultation.agencies,
        summary=consultation.summary if released else None,
        recorded_by_agency=consultation.recorded_by_agency,
        actions=[render_action(a, decision, kind) for a in actions if a.consultation_id == consultation.id],
        created_at=consultation.created_at,
    )


async def for_case(
    session: AsyncSession, case: Case, decision: Decision | None
) -> tuple[list[ConsultationPublic], list[ActionPublic]]:
    """A case's consultations (each with its actions) and all its actions, as released."""
    consultations = (
        await session.execute(
            select(Consultation)
            .where(col(Consultation.case_id) == case.id)
            .order_by(col(Consultation.held_at))
        )
    ).scalars()
    actions = list(
        (
            await session.execute(
                select(Action)
                .where(col(Action.case_id) == case.id)
                .order_by(col(Action.created_at), col(Action.id))
            )
        ).scalars()
    )
    return [render(c, actions, decision, case.kind) for c in consultations], [
        render_action(a, decision, case.kind) for a in actions
    ]
