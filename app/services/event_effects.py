"""What a published event changes in the records, in the publishing transaction.

Custody-changing events are the one way to record an emergency intervention, temporary state
guardianship and a guardianship assessment: ``police.custody.intervention`` and
``civil-affairs.temporary-guardianship.started|ended`` write a new guardianship record that
supersedes the current one (through :func:`app.services.guardianship.supersede`, the same writer
``POST /v1/children/{id}/guardianship`` uses), ``civil-affairs.guardianship.assessed`` puts the
assessment on the record in force. Who may publish them is the policy's ``custody_changes``.
Missing-child reports and home visits are kept for the custody check and the care schedule.
Each record names the event that made it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.policy import Policy
from app.auth.principal import Principal
from app.errors import Conflict, Forbidden, Unprocessable
from app.models.care import HomeVisit, MissingReport
from app.models.child import Child, ChildStatus
from app.models.guardianship import CustodyStatus, Guardianship
from app.services import guardianship as guardianship_service

CHINA = ZoneInfo("Asia/Shanghai")
_T = "cn.gov.childlink."
INTERVENTION = f"{_T}police.custody.intervention.v1"
TEMPORARY_STARTED = f"{_T}civil-affairs.temporary-guardianship.started.v1"
TEMPORARY_ENDED = f"{_T}civil-affairs.temporary-guardianship.ended.v1"
ASSESSED = f"{_T}civil-affairs.guardianship.assessed.v1"
MISSING_REPORTED = f"{_T}police.missing-child.reported.v1"
MISSING_RESOLVED = f"{_T}police.missing-child.resolved.v1"
HOME_VISIT = f"{_T}civil-affairs.home-visit.recorded.v1"


class CustodyChangeNotAllowed(Forbidden):
    code, title = "custody_change_not_allowed", "Your agency may not change custody this way"


class CustodyContactRequired(Unprocessable):
    code, title = "custody_contact_required", "Say whom to call about the child from now on"


@dataclass(frozen=True, slots=True)
class Published:
    """One event being published, as the effects need it."""

    principal: Principal
    event_id: uuid.UUID
    type: str
    child_id: uuid.UUID
    region_code: str
    data: dict[str, Any]


def check_allowed(policy: Policy, *, event_type: str, agency_kind: str) -> None:
    """Refuse (403, before anything is written) a custody-changing type the policy does not let
    this kind of agency publish."""
    rule = policy.custody_changes.get(event_type)
    if rule is not None and agency_kind not in rule.agency_kinds:
        raise CustodyChangeNotAllowed(
            "Only " + ", ".join(sorted(rule.agency_kinds)) + " may publish this custody change "
            f"({rule.citation}); see `GET /v1/policy`, `custody_changes`."
        )


def changes_records(event_type: str) -> bool:
    return event_type in _EFFECTS


async def apply(session: AsyncSession, event: Published) -> None:
    """Make the event's change to the records; raises (and the caller's transaction rolls back,
    event and all) when the change cannot be made."""
    effect = _EFFECTS.get(event.type)
    if effect is not None:
        await effect(session, event)


def _china_date(value: str) -> date:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(CHINA).date()


async def _locked_current(session: AsyncSession, event: Published) -> Guardianship | None:
    # Lock the child row: concurrent custody changes for one child supersede in a defined order.
    locked = (
        await session.execute(
            select(col(Child.status)).where(col(Child.id) == event.child_id).with_for_update()
        )
    ).scalar_one()
    if locked == ChildStatus.exited:
        raise Conflict("An exited record is read-only.", code="child_exited")
    return await guardianship_service.current(session, event.child_id)


def _successor(event: Published, previous: Guardianship | None, **fields: Any) -> Guardianship:
    """A new record carrying over what the change does not touch (the last assessment, when the
    next one is due, risk flags)."""
    carried: dict[str, Any] = {}
    if previous is not None:
        carried = {
            "last_assessment_date": previous.last_assessment_date,
            "last_assessment_result": previous.last_assessment_result,
            "last_assessment_event_id": previous.last_assessment_event_id,
            "next_assessment_due": previous.next_assessment_due,
            "risk_flags": list(previous.risk_flags),
        }
    else:
        carried = {"risk_flags": []}
    return Guardianship(
        child_id=event.child_id,
        changed_by_event_id=event.event_id,
        recorded_by_agency=event.principal.agency,
        recorded_by_client=event.principal.client_id,
        **carried,
        **fields,
    )


def _unit(data: dict[str, Any], key: str) -> tuple[str | None, str | None]:
    unit = data.get(key) or {}
    return unit.get("name"), unit.get("duty_phone")


async def _supersede(session: AsyncSession, event: Published, entry: Guardianship) -> None:
    await guardianship_service.supersede(session, event.principal, entry, region_code=event.region_code)


async def _intervention(session: AsyncSession, event: Published) -> None:
    data = event.data
    unit, unit_phone = _unit(data, "handling_unit")
    if not unit_phone:
        raise CustodyContactRequired(
            "`handling_unit.duty_phone` is required: whom to call about the child now."
        )
    previous = await _locked_current(session, event)
    since = _china_date(data["intervened_at"])
    action = data["action"]
    if action == "returned_to_guardian":
        back = await _last_ordinary(session, event.child_id)
        if back is None:
            raise Conflict("No guardian on record to return the child to.", code="no_guardian_on_record")
        entry = _successor(
            event,
            previous,
            custody_status=back.custody_status,
            guardian_name=back.guardian_name,
            guardian_relationship=back.guardian_relationship,
            guardian_phone=back.guardian_phone,
            responsible_org=back.responsible_org,
            responsible_org_duty_phone=back.responsible_org_duty_phone,
            entrustment_confirmation_ref=back.entrustment_confirmation_ref,
            entrustment_confirmed_on=back.entrustment_confirmed_on,
            effective_from=since,
        )
    else:
        placed = data.get("placed_with") or {}
        relatives = action == "placed_with_relatives"
        entry = _successor(
            event,
            previous,
            custody_status=CustodyStatus.kinship_care if relatives else CustodyStatus.emergency_protection,
            guardian_name=placed.get("name") if relatives else None,
            guardian_relationship=placed.get("relationship") if relatives else None,
            guardian_phone=placed.get("phone") if relatives else None,
            responsible_org=unit,
            responsible_org_duty_phone=unit_phone,
            emergency_intervention=True,
            effective_from=since,
        )
    await _supersede(session, event, entry)


async def _last_ordinary(session: AsyncSession, child_id: uuid.UUID) -> Guardianship | None:
    """The latest record that no emergency or temporary state guardianship made."""
    return (
        await session.execute(
            select(Guardianship)
            .where(
                col(Guardianship.child_id) == child_id,
                col(Guardianship.emergency_intervention).is_(False),
                col(Guardianship.custody_status).not_in(
                    [CustodyStatus.temporary_state, CustodyStatus.emergency_protection]
                ),
            )
            .order_by(col(Guardianship.recorded_at).desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def _temporary_started(session: AsyncSession, event: Published) -> None:
    unit, unit_phone = _unit(event.data, "responsible_unit")
    if not (unit and unit_phone):
        raise CustodyContactRequired(
            "`responsible_unit` with its `duty_phone` is required: the centre to call."
        )
    previous = await _locked_current(session, event)
    entry = _successor(
        event,
        previous,
        custody_status=CustodyStatus.temporary_state,
        responsible_org=unit,
        responsible_org_duty_phone=unit_phone,
        effective_from=date.fromisoformat(event.data["started_on"]),
    )
    await _supersede(session, event, entry)


_AFTER_TEMPORARY = {
    "returned_to_parents": CustodyStatus.with_parents,
    "entrusted_to_relatives": CustodyStatus.kinship_care,
    "long_term_state_guardianship": CustodyStatus.long_term_state,
    "adopted": CustodyStatus.with_parents,
}


async def _temporary_ended(session: AsyncSession, event: Published) -> None:
    data = event.data
    stated = data.get("custody_status")
    status = CustodyStatus(stated) if stated else _AFTER_TEMPORARY.get(data["outcome"])
    if status is None:
        raise Unprocessable(
            "Give `custody_status` when the outcome is `other`.", code="custody_status_required"
        )
    if status in (CustodyStatus.temporary_state, CustodyStatus.emergency_protection, CustodyStatus.entrusted):
        raise Unprocessable(
            "Entrusted care is recorded by civil affairs through the guardianship endpoint, with its "
            "signed confirmation; temporary guardianship cannot end in itself.",
            code="custody_status_not_allowed",
        )
    guardian = data.get("guardian") or {}
    unit, unit_phone = _unit(data, "responsible_unit")
    if not (guardian.get("phone") or unit_phone):
        raise CustodyContactRequired("Give `guardian.phone` or `responsible_unit.duty_phone`.")
    previous = await _locked_current(session, event)
    if previous is None or previous.custody_status != CustodyStatus.temporary_state:
        raise Conflict(
            "The child is not in temporary state guardianship.", code="not_in_temporary_guardianship"
        )
    entry = _successor(
        event,
        previous,
        custody_status=status,
        guardian_name=guardian.get("name"),
        guardian_relationship=guardian.get("relationship"),
        guardian_phone=guardian.get("phone"),
        responsible_org=unit,
        responsible_org_duty_phone=unit_phone,
        effective_from=date.fromisoformat(data["ended_on"]),
    )
    await _supersede(session, event, entry)


async def _assessed(session: AsyncSession, event: Published) -> None:
    data = event.data
    record = await _locked_current(session, event)
    if record is None:
        raise Conflict(
            "No guardianship is on record to assess; civil affairs records it first.", code="no_guardianship"
        )
    assessed_on = date.fromisoformat(data["assessed_on"])
    if record.last_assessment_date is not None and assessed_on < record.last_assessment_date:
        return  # a late report of an older assessment: the event stands, the record keeps the newer one
    values: dict[str, Any] = {
        "last_assessment_date": assessed_on,
        "last_assessment_result": data["result"],
        "last_assessment_event_id": event.event_id,
        "next_assessment_due": date.fromisoformat(data["next_assessment_due"])
        if data.get("next_assessment_due")
        else None,
    }
    if "risk_flags" in data:
        values["risk_flags"] = list(data["risk_flags"])
    await session.execute(update(Guardianship).where(col(Guardianship.id) == record.id).values(**values))


# One open report per child: a second report while one is open adds nothing to "missing".
_MISSING_REPORTED = text(
    "INSERT INTO missing_report (id, child_id, reported_event_id, reported_at, handling_unit, "
    "handling_unit_duty_phone) VALUES (:effect_id, :effect_child_id, :effect_event_id, "
    ":effect_reported_at, :effect_unit, :effect_phone) "
    "ON CONFLICT (child_id) WHERE resolved_at IS NULL DO NOTHING"
)


def _missing_values(event_id: uuid.UUID, child_id: uuid.UUID, data: dict[str, Any]) -> dict[str, Any]:
    unit, unit_phone = _unit(data, "handling_unit")
    return {
        "effect_id": uuid.uuid4(),
        "effect_child_id": child_id,
        "effect_event_id": event_id,
        "effect_reported_at": datetime.fromisoformat(data["reported_at"].replace("Z", "+00:00")),
        "effect_unit": unit,
        "effect_phone": unit_phone,
    }


async def _missing_reported(session: AsyncSession, event: Published) -> None:
    await session.execute(_MISSING_REPORTED, _missing_values(event.event_id, event.child_id, event.data))


@dataclass(frozen=True, slots=True)
class StatementEffect:
    """An effect that is one data-modifying statement, so that a publish can make it in the same
    statement that stores its event (app/services/event.py publishes in one statement when it
    can). ``sql`` selects from the CTE ``stored`` (one row when the event was stored, none
    otherwise: then it changes nothing); its parameters, all named ``effect_*``, come from
    ``values(event_id, child_id, data)``. The same change as the effect's own function makes."""

    sql: str
    values: Callable[[uuid.UUID, uuid.UUID, dict[str, Any]], dict[str, Any]]


_STATEMENT_EFFECTS: dict[str, StatementEffect] = {
    MISSING_REPORTED: StatementEffect(
        sql=(  # _MISSING_REPORTED, made only when ``stored`` has its row
            "INSERT INTO missing_report (id, child_id, reported_event_id, reported_at, handling_unit, "
            "handling_unit_duty_phone) SELECT :effect_id, :effect_child_id, :effect_event_id, "
            ":effect_reported_at, :effect_unit, :effect_phone FROM stored "
            "ON CONFLICT (child_id) WHERE resolved_at IS NULL DO NOTHING"
        ),
        values=_missing_values,
    ),
}


def statement_effect(event_type: str) -> StatementEffect | None:
    """The type's effect as one statement, or None (no effect, or one that needs a transaction)."""
    return _STATEMENT_EFFECTS.get(event_type)


async def _missing_resolved(session: AsyncSession, event: Published) -> None:
    await session.execute(
        update(MissingReport)
        .where(col(MissingReport.child_id) == event.child_id, col(MissingReport.resolved_at).is_(None))
        .values(
            resolved_event_id=event.event_id,
            resolved_at=datetime.fromisoformat(event.data["resolved_at"].replace("Z", "+00:00")),
        )
    )


async def _home_visit(session: AsyncSession, event: Published) -> None:
    follow_up = event.data.get("follow_up_due")
    session.add(
        HomeVisit(
            child_id=event.child_id,
            visited_on=date.fromisoformat(event.data["visited_on"]),
            follow_up_due=date.fromisoformat(follow_up) if follow_up else None,
            event_id=event.event_id,
        )
    )
    await session.flush()


_EFFECTS: dict[str, Callable[[AsyncSession, Published], Awaitable[None]]] = {
    INTERVENTION: _intervention,
    TEMPORARY_STARTED: _temporary_started,
    TEMPORARY_ENDED: _temporary_ended,
    ASSESSED: _assessed,
    MISSING_REPORTED: _missing_reported,
    MISSING_RESOLVED: _missing_resolved,
    HOME_VISIT: _home_visit,
}
