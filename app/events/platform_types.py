"""Event types the platform itself emits (``cn.gov.childlink.platform.*``): for coordinated
handling (cases, referrals and actions) and for the care schedule (overdue assessments and
visits). Each carries references (ids, agencies, deadlines, dates) and, for a case, its kind,
which is the only personal data in them: a dropout case's kind is education data, a medical-aid
case's health data (``KIND_CATEGORY``), so the door releases these events like the case itself,
and a referral's receiver gets them on the ground ``referral``.

They are emitted by the case and referral services and the scheduler's jobs, never accepted at
``POST /v1/events``.
"""

from __future__ import annotations

from typing import Any

from app.events import schema as s
from app.events.types import CIVIL, EDUCATION, HEALTH, POLICE, WOMENS, TypeSpec
from app.models.agency import AgencyKind
from app.models.case import KIND_CATEGORY, CaseKind
from app.models.referral import ReferralStatus
from app.models.report import ReportConcern, ReportUrgency
from app.models.vocabulary import DataCategory

_ANY = (CIVIL, EDUCATION, HEALTH, POLICE, WOMENS)


def _overdue(what: str, title: str, category: DataCategory) -> TypeSpec:
    return TypeSpec(
        f"platform.{what}.overdue",
        title,
        f"The care schedule's next {what.replace('-', ' ')} for the child is overdue (see the policy's "
        "`care_schedule`). Emitted once per child and due date by the platform's scheduler, to "
        "the child's township; never published through `POST /v1/events`.",
        (AgencyKind.platform,),
        {
            "child_id": s.reference("The child."),
            "township_code": {
                **s.region(),
                "description": "The township (9-digit division code) answerable for the follow-up.",
            },
            "due_on": s.date(category, "The date it fell due."),
            "last_done_on": s.date(category, "The last one on record, if any."),
        },
        ("child_id", "township_code", "due_on"),
        registry_only=True,
        example={
            "child_id": "0b6f7c8e-2d7a-4f43-9a59-8f0a3c1f5e21",
            "township_code": "510107005",
            "due_on": "2026-11-30",
        },
    )


def _agency(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": 64, "description": description}


def _when(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "description": description}


_CASE = {
    "case_id": s.reference("The case."),
    "kind": s.code(
        s.enum_values(CaseKind),
        DataCategory.welfare,
        "The case's kind; released with its category (dropout: education, medical_aid: health ...).",
        item_categories={str(k): v for k, v in KIND_CATEGORY.items()},
    ),
    "lead_agency": _agency("The agency leading the case."),
}

_REFERRAL = {
    **_CASE,
    "referral_id": s.reference("The referral."),
    "from_agency": _agency("The referring agency."),
    "to_agency": _agency("The receiving agency."),
    "to_region": {
        "type": "string",
        "pattern": s.REGION_PATTERN,
        "description": "The division it is addressed to.",
    },
    "status": {"type": "string", "enum": s.enum_values(ReferralStatus), "description": "Its state now."},
    "respond_by": _when("Accept or decline by then."),
    "complete_by": _when("Complete by then."),
}
_REFERRAL_REQUIRED = ("case_id", "kind", "referral_id", "from_agency", "to_agency", "status")

_OVERDUE = {
    "deadline": {
        "type": "string",
        "enum": ["respond_by", "complete_by", "due_on"],
        "description": "Which deadline passed.",
    },
    "due_at": _when("When it was due."),
    "step": {
        "type": "integer",
        "minimum": 0,
        "description": "0 when it first became overdue, then 1, 2 ... for each escalation interval since.",
    },
    "escalated_to_region": {
        "type": "string",
        "pattern": r"^\d{0,12}$",
        "description": "The division one level above the receiver's, told of the overdue step.",
    },
}


def _referral_spec(what: str, title: str, description: str) -> TypeSpec:
    return TypeSpec(
        f"platform.referral.{what}",
        title,
        description,
        _ANY,
        dict(_REFERRAL),
        _REFERRAL_REQUIRED,
        registry_only=True,
    )


_ACTION = {
    **_CASE,
    "action_id": s.reference("The action."),
    "assigned_agency": _agency("The agency the action is assigned to."),
    "due_at": _when("When it is due."),
    "status": {"type": "string", "enum": ["open", "completed"], "description": "Its state now."},
}
_ACTION_REQUIRED = ("case_id", "kind", "action_id", "assigned_agency", "due_at", "status")


PLATFORM_SPECS: tuple[TypeSpec, ...] = (
    TypeSpec(
        "platform.case.opened",
        "Case opened (协同处置)",
        "An agency opened a case about the child and leads it.",
        _ANY,
        {
            **_CASE,
            "priority": {"type": "string", "enum": ["routine", "soon", "urgent"], "description": "How soon."},
        },
        ("case_id", "kind", "lead_agency"),
        registry_only=True,
    ),
    TypeSpec(
        "platform.case.closed",
        "Case closed",
        "The lead agency closed the case; read it for the outcome.",
        _ANY,
        dict(_CASE),
        ("case_id", "kind", "lead_agency"),
        registry_only=True,
    ),
    _referral_spec(
        "requested", "Referral requested (转介)", "A case was referred to an agency, with deadlines."
    ),
    _referral_spec("accepted", "Referral accepted (受理)", "The receiving agency took the referral up."),
    _referral_spec(
        "declined", "Referral declined", "The receiving agency declined; the reason is on the referral."
    ),
    _referral_spec(
        "completed",
        "Referral completed",
        "The receiving agency completed it; the outcome is on the referral.",
    ),
    _referral_spec("withdrawn", "Referral withdrawn", "The referring agency withdrew it."),
    TypeSpec(
        "platform.referral.overdue",
        "Referral overdue",
        "An open referral passed a deadline (step 0), or is still unanswered one more escalation "
        "interval later (step 1, 2 ...). Sent to the referrer and to the receiver's level above.",
        _ANY,
        {**_REFERRAL, **_OVERDUE},
        (*_REFERRAL_REQUIRED, "deadline", "due_at", "step"),
        registry_only=True,
    ),
    TypeSpec(
        "platform.consultation.recorded",
        "Joint consultation recorded (会商)",
        "The lead recorded a joint consultation on the case; read the case for its summary.",
        _ANY,
        {
            **_CASE,
            "consultation_id": s.reference("The consultation."),
            "held_at": _when("When it took place."),
            "agencies": {
                "type": "array",
                "items": {"type": "string", "maxLength": 64},
                "maxItems": 20,
                "description": "Agencies that took part.",
            },
        },
        ("case_id", "kind", "consultation_id", "held_at"),
        registry_only=True,
    ),
    TypeSpec(
        "platform.action.assigned",
        "Action assigned (会商决定)",
        "A joint consultation on the case assigned an action to an agency, with a due date.",
        _ANY,
        dict(_ACTION),
        _ACTION_REQUIRED,
        registry_only=True,
    ),
    TypeSpec(
        "platform.action.completed",
        "Action completed",
        "The assigned agency completed the action; the outcome is on the case.",
        _ANY,
        dict(_ACTION),
        _ACTION_REQUIRED,
        registry_only=True,
    ),
    TypeSpec(
        "platform.action.overdue",
        "Action overdue",
        "An open action passed its due date (step 0), or is still open one more escalation interval "
        "later (step 1, 2 ...). Sent to the lead and to the level above the child's division.",
        _ANY,
        {**_ACTION, **{k: v for k, v in _OVERDUE.items() if k != "due_at"}},
        (*_ACTION_REQUIRED, "deadline", "step"),
        registry_only=True,
    ),
    TypeSpec(
        "platform.report.received",
        "Mandatory report received (强制报告)",
        "A mandatory report about the child was filed and routed to its receivers (the policy's "
        "`report_routing`); each must acknowledge (受理) by `acknowledge_by` at "
        "`POST /v1/reports/{report_id}/acknowledge`. The reporter's identity is never in it.",
        _ANY,
        {
            **_CASE,
            "report_id": s.reference("The report."),
            "concern": s.code(
                s.enum_values(ReportConcern), DataCategory.law_enforcement, "What was reported."
            ),
            "urgency": s.code(s.enum_values(ReportUrgency), DataCategory.law_enforcement, "How urgent."),
            "receivers": {
                "type": "array",
                "items": {"type": "string", "maxLength": 64},
                "maxItems": 20,
                "description": "The receiving agencies.",
            },
            "acknowledge_by": _when("Acknowledge by then."),
        },
        ("case_id", "kind", "report_id", "concern", "urgency", "receivers", "acknowledge_by"),
        registry_only=True,
    ),
    # the care schedule
    _overdue("assessment", "Guardianship assessment overdue (监护评估)", DataCategory.custody),
    _overdue("home-visit", "Home visit overdue (定期探访)", DataCategory.welfare),
)
