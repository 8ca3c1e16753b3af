"""Cases (协同处置): one agency's coordinated handling of one child's situation, with the
referrals it sends to other agencies (``app.models.referral``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Index, String
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app.models.child import AccessSummary
from app.models.common import timestamp_column, utcnow
from app.models.consultation import ActionPublic, ConsultationPublic
from app.models.referral import ReferralPublic
from app.models.vocabulary import DataCategory


class CaseKind(StrEnum):
    protection = "protection"
    """儿童保护: a child at risk of harm."""
    dropout = "dropout"
    """控辍保学: dropout prevention and return to school."""
    medical_aid = "medical_aid"
    """医疗救助"""
    guardianship = "guardianship"
    """监护: guardianship failing or to be arranged."""
    mental_health = "mental_health"
    """心理健康"""
    mandatory_report = "mandatory_report"
    """强制报告: a mandatory report of harm."""
    other = "other"


KIND_CATEGORY: dict[CaseKind, DataCategory] = {
    CaseKind.protection: DataCategory.custody,
    CaseKind.dropout: DataCategory.education,
    CaseKind.medical_aid: DataCategory.health,
    CaseKind.guardianship: DataCategory.custody,
    CaseKind.mental_health: DataCategory.health,
    CaseKind.mandatory_report: DataCategory.law_enforcement,
    CaseKind.other: DataCategory.welfare,
}
"""What a case's own record (its kind, summary, requests and outcome) reveals about the child:
a dropout case is education data, a medical-aid case health data. The access layer releases a
case to a reader only with this category."""


class CasePriority(StrEnum):
    routine = "routine"
    soon = "soon"
    urgent = "urgent"


class CaseStatus(StrEnum):
    open = "open"
    closed = "closed"


class CaseOutcome(StrEnum):
    returned_to_school = "returned-to-school"
    """复学: the child is back at school."""
    needs_met = "needs-met"
    """The needs that opened the case are met (assistance granted, treatment arranged)."""
    guardianship_arranged = "guardianship-arranged"
    child_safe = "child-safe"
    transferred = "transferred"
    """Handed to another region or body outside ChildLink."""
    no_concern = "no-concern"
    """On examination, nothing to act on."""
    child_exited = "child-exited"
    other = "other"


class Case(SQLModel, table=True):
    __table_args__ = (
        Index("ix_case_lead", "lead_agency", "created_at", "id"),
        Index("ix_case_child", "child_id", "created_at"),
        Index("ix_case_created", "created_at", "id"),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    child_id: uuid.UUID
    """A child, or a report subject until its report is linked (a trigger checks either)."""
    region_code: str = SQLField(max_length=12)
    """The child's division when the case opened (region scope of the case's readers)."""
    kind: CaseKind = SQLField(sa_type=String(24))
    priority: CasePriority = SQLField(sa_type=String(16))
    summary: str = SQLField(max_length=2000)
    status: CaseStatus = SQLField(default=CaseStatus.open, sa_type=String(16))
    lead_agency: str = SQLField(foreign_key="agency.code", max_length=64)
    opened_by_client: str = SQLField(max_length=64)
    outcome: str | None = SQLField(default=None, sa_type=String(32))
    outcome_note: str | None = SQLField(default=None, max_length=2000)
    close_reason: str | None = SQLField(default=None, max_length=1000)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    closed_at: datetime | None = SQLField(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )


_SUMMARY = (
    "What the case is about, in free text. Do not write names or ID numbers here: the case is "
    "about `child_id`, and the registry holds who the child is."
)


class CaseCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "child_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
                    "kind": "dropout",
                    "priority": "soon",
                    "summary": "Absent 12 school days since 3 November; grandmother reports the child "
                    "wants to join the parents in Guangdong.",
                }
            ]
        },
    )

    child_id: uuid.UUID
    kind: CaseKind
    priority: CasePriority = CasePriority.routine
    summary: str = Field(min_length=1, max_length=2000, description=_SUMMARY)


class CaseClose(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"outcome": "returned-to-school", "note": "Back at school on 1 Dec."}]
        },
    )

    outcome: CaseOutcome
    note: str | None = Field(default=None, max_length=2000, description="No names or ID numbers.")
    reason: str | None = Field(
        default=None,
        min_length=3,
        max_length=1000,
        description="Required to close while referrals are still open (requested or accepted); "
        "closing then withdraws them.",
    )


class LinkedEvent(BaseModel):
    """An event published with this case's id (`childlinkcase`); read it at `GET /v1/events/{id}`."""

    id: uuid.UUID
    type: str
    time: datetime
    publisher_agency: str


class CasePublic(BaseModel):
    id: uuid.UUID
    child_id: uuid.UUID
    region_code: str
    kind: CaseKind | None = Field(description="Left out when the case's category is withheld.")
    priority: CasePriority
    summary: str | None = Field(
        description="Left out when the case's category is withheld.",
        examples=["Absent 12 school days since 3 November."],
    )
    status: CaseStatus
    lead_agency: str
    outcome: str | None = None
    outcome_note: str | None = None
    overdue: bool = Field(description="Some open referral or action of the case is past its deadline.")
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    referrals: list[ReferralPublic] = Field(default_factory=list)
    consultations: list[ConsultationPublic] = Field(
        default_factory=list, description="Joint consultations (会商)."
    )
    actions: list[ActionPublic] = Field(
        default_factory=list, description="Every action the consultations decided."
    )
    linked_events: list[LinkedEvent] = Field(default_factory=list)
    access: AccessSummary


class CasePage(BaseModel):
    items: list[CasePublic]
    next_cursor: str | None = None
