"""Mandatory reports (强制报告, Minors Protection Law art. 11): anyone who meets a child in danger
reports it; the receiving police and civil affairs acknowledge (受理) and handle it on the clock.

A report is a case of kind ``mandatory_report`` (``app.models.case``) with one referral per
receiver (``app.models.referral``): acknowledging is accepting that referral, recording the
outcome completes it, and the referral deadline machinery escalates what is left unanswered.
The report's own row adds what a case does not have: the concern, the urgency, what was seen,
and the reporter, whose identity is the data category ``reporter``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Column, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app.models.case import CasePriority
from app.models.child import AccessSummary
from app.models.common import timestamp_column, utcnow


class ReportConcern(StrEnum):
    physical_abuse = "physical_abuse"
    """身体伤害"""
    sexual_abuse = "sexual_abuse"
    """性侵害"""
    neglect = "neglect"
    """疏于照料"""
    abandonment = "abandonment"
    """遗弃"""
    no_guardian = "no_guardian"
    """无人监护"""
    domestic_violence = "domestic_violence"
    """家庭暴力"""
    trafficking_or_missing = "trafficking_or_missing"
    """拐卖、走失"""
    self_harm = "self_harm"
    """自伤、自杀风险"""
    other = "other"


class ReportUrgency(StrEnum):
    immediate_danger = "immediate_danger"
    """The child is in danger now (现实危险)."""
    urgent = "urgent"
    routine = "routine"


URGENCY_PRIORITY: dict[ReportUrgency, CasePriority] = {
    ReportUrgency.immediate_danger: CasePriority.urgent,
    ReportUrgency.urgent: CasePriority.soon,
    ReportUrgency.routine: CasePriority.routine,
}
"""The report's case carries its urgency as its priority (and the deadline job reads it back)."""
PRIORITY_URGENCY: dict[CasePriority, ReportUrgency] = {v: k for k, v in URGENCY_PRIORITY.items()}


class ReportResult(StrEnum):
    """A receiver's result (处置结果)."""

    case_accepted = "case_accepted"
    """公安: 受案"""
    case_filed = "case_filed"
    """公安: 立案"""
    not_filed = "not_filed"
    """公安: 不予立案"""
    transferred = "transferred"
    """移送: handed to the competent body."""
    temporary_guardianship = "temporary_guardianship"
    """民政: 临时监护"""
    assistance = "assistance"
    """民政: 救助"""
    family_follow_up = "family_follow_up"
    """Family follow-up, guardian duty supervision (督促监护)."""
    no_concern = "no_concern"
    """On examination, nothing to act on."""
    other = "other"


POLICE_RESULTS: frozenset[ReportResult] = frozenset(
    {ReportResult.case_accepted, ReportResult.case_filed, ReportResult.not_filed}
)
"""Results only police record (受案/立案/不予立案)."""


class ReportSubject(SQLModel, table=True):
    """A child not (yet) in the registry, as the reporter described them. Its id stands in for
    the child's on the report's case and referrals (region-scoped like a child) until civil
    affairs links the report to a registered child (``POST /v1/reports/{id}/link``)."""

    __tablename__ = "report_subject"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    region_code: str = SQLField(max_length=12)
    name: str | None = SQLField(default=None, max_length=100)
    sex: str | None = SQLField(default=None, max_length=8)
    birth_date: date | None = None
    approximate_age: int | None = None
    location_note: str | None = SQLField(default=None, max_length=500)
    linked_child_id: uuid.UUID | None = SQLField(default=None, foreign_key="child.id")
    linked_at: datetime | None = SQLField(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class Report(SQLModel, table=True):
    __table_args__ = (
        Index("ix_report_filer", "filed_by_agency", "created_at", "id"),
        Index("ix_report_created", "created_at", "id"),
        UniqueConstraint("case_id", name="report_case_unique"),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = SQLField(foreign_key="case.id")
    child_id: uuid.UUID
    """The registered child, or the subject's id until the report is linked."""
    subject_id: uuid.UUID | None = SQLField(default=None, foreign_key="report_subject.id")
    region_code: str = SQLField(max_length=12)
    concern: ReportConcern = SQLField(sa_type=String(32))
    urgency: ReportUrgency = SQLField(sa_type=String(24))
    observed: str = SQLField(max_length=4000)
    observed_at: datetime = SQLField(sa_column=timestamp_column(default_now=False))
    reporter_role: str = SQLField(max_length=100)
    reporter_name: str = SQLField(max_length=100)
    reporter_phone: str = SQLField(max_length=32)
    filed_by_agency: str = SQLField(foreign_key="agency.code", max_length=64)
    filed_by_client: str = SQLField(max_length=64)
    policy_version: str = SQLField(max_length=64)
    unrouted_agency_kinds: list[str] = SQLField(
        default_factory=list,
        sa_column=Column(ARRAY(String), nullable=False, server_default=text("'{}'::varchar[]")),
    )
    """Kinds the routing named but no agency of the child's county covered, as at filing."""
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class ReportIdempotency(SQLModel, table=True):
    """An ``Idempotency-Key`` a filer used and the report it created (the events' pattern)."""

    __tablename__ = "report_idempotency"

    client_id: str = SQLField(primary_key=True, max_length=64)
    key: str = SQLField(primary_key=True, max_length=200)
    request_hash: str = SQLField(max_length=64)
    report_id: uuid.UUID
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class ReportOutcome(SQLModel, table=True):
    """One receiver's result, recorded with its referral's completion."""

    __tablename__ = "report_outcome"

    referral_id: uuid.UUID = SQLField(foreign_key="referral.id", primary_key=True)
    report_id: uuid.UUID = SQLField(foreign_key="report.id", index=True)
    agency: str = SQLField(foreign_key="agency.code", max_length=64)
    result: ReportResult = SQLField(sa_type=String(32))
    case_reference: str | None = SQLField(default=None, max_length=64)
    note: str | None = SQLField(default=None, max_length=2000)
    recorded_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class ReporterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1, max_length=100, examples=["班主任 (class teacher)"])
    name: str = Field(min_length=1, max_length=100, description="Confidential (category `reporter`).")
    phone: str = Field(pattern=r"^\+?[0-9][0-9 -]{4,30}$", description="Confidential (category `reporter`).")


class ReportSubjectIn(BaseModel):
    """A child not in the registry: what the reporter knows."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    sex: str | None = Field(default=None, pattern=r"^(male|female)$")
    birth_date: date | None = None
    approximate_age: int | None = Field(default=None, ge=0, le=17)
    region_code: str = Field(
        pattern=r"^(\d{9}|\d{12})$",
        description="Where the child was met: a township (9 digits) or village (12 digits) code.",
    )
    location_note: str | None = Field(
        default=None, max_length=500, description="Where exactly (e.g. 'bus station, north gate')."
    )


class ReportLink(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"child_id": "0f8fad5b-d9cb-469f-a165-70867728950e"}]}
    )

    child_id: uuid.UUID = Field(description="The registered child the report is about.")


class ReportCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "child_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
                    "concern": "physical_abuse",
                    "urgency": "urgent",
                    "observed": "Bruises on both forearms and the neck, seen in the PE lesson; the child "
                    "says an adult at home hit them.",
                    "observed_at": "2026-12-01T10:20:00+08:00",
                    "reporter": {"role": "班主任", "name": "王老师", "phone": "13800000000"},
                }
            ]
        },
    )

    child_id: uuid.UUID | None = Field(default=None, description="The child, registered and in your region.")
    subject: ReportSubjectIn | None = Field(
        default=None, description="Instead of `child_id`, for a child not in the registry."
    )
    concern: ReportConcern
    urgency: ReportUrgency
    observed: str = Field(min_length=1, max_length=4000, description="What was seen or heard. No ID numbers.")
    observed_at: datetime = Field(description="When (RFC 3339 with offset).")
    reporter: ReporterIn

    @field_validator("observed_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("a time needs a UTC offset")
        return value

    @model_validator(mode="after")
    def _one_child(self) -> ReportCreate:
        if (self.child_id is None) == (self.subject is None):
            raise ValueError("give either `child_id` or `subject`")
        return self


class ReportAcknowledge(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"note": "派出所民警已出警"}]})

    note: str | None = Field(default=None, max_length=1000, description="No names or ID numbers.")


class ReportOutcomeCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"result": "case_filed", "case_reference": "川公武立字〔2026〕1234号"}]
        },
    )

    result: ReportResult
    case_reference: str | None = Field(
        default=None, max_length=64, description="Police: the case number (受案/立案 number)."
    )
    note: str | None = Field(default=None, max_length=2000, description="No names or ID numbers.")


class ReceiverStatus(StrEnum):
    received = "received"
    acknowledged = "acknowledged"
    """受理"""
    handled = "handled"
    declined = "declined"
    withdrawn = "withdrawn"


class ReportStatus(StrEnum):
    received = "received"
    """No receiver has acknowledged yet."""
    acknowledged = "acknowledged"
    """At least one receiver acknowledged; not every one has handled it."""
    handled = "handled"
    """Every receiver that acknowledged recorded its outcome."""
    closed = "closed"
    """The report's case is closed."""


class SubjectPublic(BaseModel):
    id: uuid.UUID
    region_code: str
    name: str | None = None
    sex: str | None = None
    birth_date: date | None = None
    approximate_age: int | None = None
    location_note: str | None = None
    linked_child_id: uuid.UUID | None = None
    linked_at: datetime | None = None


class ReporterPublic(BaseModel):
    role: str
    name: str
    phone: str


class ReportReceiver(BaseModel):
    agency: str
    referral_id: uuid.UUID
    status: ReceiverStatus
    acknowledge_by: datetime
    handle_by: datetime
    acknowledged_at: datetime | None = None
    handled_at: datetime | None = None
    overdue: bool
    result: ReportResult | None = Field(
        default=None, description="Shown to receivers only; the reporter sees `status`."
    )
    case_reference: str | None = Field(default=None, description="Shown to receivers only.")


class ReportPublic(BaseModel):
    """A report as its reader may see it. Its filer sees the status (who received it, who
    acknowledged when, who handled it) and nothing else new; a receiver sees the report, and
    the reporter's identity when the access layer releases category `reporter` to it."""

    id: uuid.UUID
    case_id: uuid.UUID | None = Field(description="The report's case; receivers only.")
    child_id: uuid.UUID = Field(description="The registered child, or the subject's id until linked.")
    subject: SubjectPublic | None = Field(
        default=None, description="The unregistered child as reported; receivers only."
    )
    linked: bool = Field(default=True, description="Whether the report is about a registered child.")
    region_code: str
    concern: ReportConcern
    urgency: ReportUrgency
    status: ReportStatus
    observed: str | None = Field(default=None, description="Receivers only.")
    observed_at: datetime
    filed_by_agency: str
    reporter: ReporterPublic | None = Field(
        default=None, description="Only for the receiving police and civil affairs (category `reporter`)."
    )
    receivers: list[ReportReceiver]
    unrouted_agency_kinds: list[str] = Field(
        default_factory=list,
        description="Agency kinds the routing names but no agency of which covers the child's county.",
    )
    created_at: datetime
    access: AccessSummary | None = Field(default=None, description="Receivers only.")


class ReportPage(BaseModel):
    items: list[ReportPublic]
    next_cursor: str | None = None
