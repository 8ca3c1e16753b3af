"""Guardianship (监护) records: who has custody of a child and whom to call. History is kept;
a new record supersedes the current one."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from pydantic import ConfigDict, field_validator, model_validator
from sqlalchemy import Column, Index, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.models.child import AccessSummary
from app.models.common import IsoDate, timestamp_column, utcnow

PHONE_PATTERN = r"^\+?[0-9][0-9 -]{4,19}$"


class CustodyStatus(StrEnum):
    with_parents = "with_parents"
    """With one or both parents."""
    entrusted = "entrusted"
    """委托监护: entrusted to another adult, with the signed 委托监护责任确认书."""
    kinship_care = "kinship_care"
    """Cared for by relatives."""
    institution = "institution"
    """In an institution."""
    temporary_state = "temporary_state"
    """临时监护 by the minors' rescue and protection centre."""
    long_term_state = "long_term_state"
    """长期监护 by the state."""
    no_effective_guardian = "no_effective_guardian"
    """无人监护: nobody is in effect caring for the child."""
    emergency_protection = "emergency_protection"
    """应急保护: police removed the child from danger (a custody intervention); the police unit
    answers for the child until civil affairs records what follows."""


class AssessmentResult(StrEnum):
    """Result of the last guardianship assessment (监护评估)."""

    adequate = "adequate"
    needs_support = "needs_support"
    inadequate = "inadequate"


class RiskFlag(StrEnum):
    guardian_unreachable = "guardian_unreachable"
    guardian_duty_failure = "guardian_duty_failure"
    """监护人不履行监护职责"""
    harm_reported = "harm_reported"
    missing = "missing"
    dropout_risk = "dropout_risk"
    unsafe_home = "unsafe_home"


class Guardianship(SQLModel, table=True):
    __table_args__ = (
        Index("ix_guardianship_child", "child_id", "recorded_at"),
        Index(
            "uq_guardianship_current", "child_id", unique=True, postgresql_where=text("superseded_at IS NULL")
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    child_id: uuid.UUID = Field(foreign_key="child.id")
    custody_status: CustodyStatus = Field(sa_type=String(32))
    guardian_name: str | None = Field(default=None, max_length=100)
    guardian_relationship: str | None = Field(default=None, max_length=40)
    guardian_phone: str | None = Field(default=None, max_length=24)
    responsible_org: str | None = Field(default=None, max_length=200)
    responsible_org_duty_phone: str | None = Field(default=None, max_length=24)
    effective_from: date
    effective_to: date | None = None
    entrustment_confirmation_ref: str | None = Field(default=None, max_length=100)
    entrustment_confirmed_on: date | None = None
    last_assessment_date: date | None = None
    last_assessment_result: AssessmentResult | None = Field(default=None, sa_type=String(24))
    risk_flags: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False, server_default="{}"))
    emergency_intervention: bool = False
    changed_by_event_id: uuid.UUID | None = None
    """The custody-changing event (``POST /v1/events``) that made this record; NULL when it was
    recorded through ``POST /v1/children/{id}/guardianship``."""
    last_assessment_event_id: uuid.UUID | None = None
    """The ``guardianship.assessed`` event that recorded the last assessment, when one did."""
    next_assessment_due: date | None = None
    """As the last assessment set it; otherwise the care schedule's interval applies."""
    recorded_by_agency: str = Field(max_length=64)
    recorded_by_client: str = Field(max_length=64)
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    superseded_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )


class GuardianshipCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    custody_status: CustodyStatus
    guardian_name: str | None = Field(
        default=None, min_length=1, max_length=100, schema_extra={"examples": ["卓玛"]}
    )
    guardian_relationship: str | None = Field(
        default=None, max_length=40, schema_extra={"examples": ["grandmother"]}
    )
    guardian_phone: str | None = Field(
        default=None, schema_extra={"pattern": PHONE_PATTERN, "examples": ["13800138000"]}
    )
    responsible_org: str | None = Field(
        default=None,
        max_length=200,
        description="The organisation answerable for the child (e.g. the township).",
        schema_extra={"examples": ["簇桥街道办事处"]},
    )
    responsible_org_duty_phone: str | None = Field(
        default=None, schema_extra={"pattern": PHONE_PATTERN, "examples": ["028-85000000"]}
    )
    effective_from: IsoDate = Field(schema_extra={"examples": ["2026-09-01"]})
    effective_to: IsoDate | None = None
    entrustment_confirmation_ref: str | None = Field(
        default=None,
        max_length=100,
        description="Reference of the signed 委托监护责任确认书 (required when entrusted).",
    )
    entrustment_confirmed_on: IsoDate | None = None
    last_assessment_date: IsoDate | None = None
    last_assessment_result: AssessmentResult | None = None
    risk_flags: list[RiskFlag] = Field(default_factory=list, max_length=len(RiskFlag))
    emergency_intervention: bool = Field(
        default=False, description="A police or rescue-centre emergency custody intervention."
    )

    @field_validator("risk_flags")
    @classmethod
    def _unique(cls, value: list[RiskFlag]) -> list[RiskFlag]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> GuardianshipCreate:
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        if self.custody_status == CustodyStatus.entrusted and not (
            self.entrustment_confirmation_ref and self.entrustment_confirmed_on
        ):
            raise ValueError(
                "an entrusted guardianship needs entrustment_confirmation_ref and entrustment_confirmed_on"
            )
        if (self.last_assessment_date is None) != (self.last_assessment_result is None):
            raise ValueError("last_assessment_date and last_assessment_result go together")
        if self.custody_status != CustodyStatus.no_effective_guardian and not (
            self.guardian_phone or self.responsible_org_duty_phone
        ):
            raise ValueError(
                "give a guardian phone or the responsible organisation's duty phone: "
                "someone must be reachable"
            )
        return self


class GuardianContact(SQLModel):
    name: str | None = None
    relationship: str | None = None
    phone: str | None = None


class ResponsibleOrganisation(SQLModel):
    name: str | None = None
    duty_phone: str | None = None


class Assessment(SQLModel):
    date: date
    result: AssessmentResult
    event_id: uuid.UUID | None = Field(
        default=None, description="The `guardianship.assessed` event that recorded it, if one did."
    )


class MissingNotice(SQLModel):
    """An open missing-child report (`police.missing-child.reported`, not yet resolved)."""

    since: datetime | None = Field(default=None, description="When the report was made (custody data).")
    handling_unit: ResponsibleOrganisation | None = Field(
        default=None, description="The police unit searching; its duty phone is contact data."
    )
    event_id: uuid.UUID


class GuardianshipPublic(SQLModel):
    id: uuid.UUID
    child_id: uuid.UUID
    custody_status: CustodyStatus | None = Field(
        default=None,
        description="Null when custody data is withheld.",
        schema_extra={"examples": ["kinship_care"]},
    )
    guardian: GuardianContact | None = None
    responsible_organisation: ResponsibleOrganisation | None = None
    effective_from: date | None = None
    effective_to: date | None = None
    entrustment_confirmation_ref: str | None = None
    entrustment_confirmed_on: date | None = None
    last_assessment: Assessment | None = None
    risk_flags: list[RiskFlag] = Field(default_factory=list)
    emergency_intervention: bool
    event_id: uuid.UUID | None = Field(
        default=None, description="The custody-changing event that made this record, if an event did."
    )
    recorded_by_agency: str
    recorded_at: datetime
    superseded_at: datetime | None = None
    current: bool


class CustodyPublic(SQLModel):
    """What a custody check needs, and nothing more."""

    child_id: uuid.UUID
    child_status: str = Field(description="`active` or `exited` (退出).")
    custody_status: CustodyStatus | None = Field(
        default=None, description="Null when no guardianship is on record or custody data is withheld."
    )
    since: date | None = None
    guardian: GuardianContact | None = Field(default=None, description="Whom to call (contact data).")
    responsible_organisation: ResponsibleOrganisation | None = None
    last_assessment: Assessment | None = None
    risk_flags: list[RiskFlag] = Field(default_factory=list, description="Open risk flags.")
    emergency_intervention: bool = Field(
        default=False, description="The record in force was made by a police emergency intervention."
    )
    missing: MissingNotice | None = Field(
        default=None, description="Set while the child is reported missing and not yet found."
    )
    guardianship_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = Field(
        default=None, description="The custody-changing event that made the record in force, if any."
    )
    access: AccessSummary


class GuardianshipHistory(SQLModel):
    items: list[GuardianshipPublic] = Field(description="Newest first; `current` marks the record in force.")
    access: AccessSummary
