"""Emergency break-glass reads and their review, and police investigations whose reads stay out of
the guardian's access report until they close."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict
from sqlalchemy import Column, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow


class BreakGlassReason(StrEnum):
    imminent_danger = "imminent_danger"
    """A child is in immediate danger."""
    missing_child = "missing_child"
    """A child is missing."""
    medical_emergency = "medical_emergency"
    abuse_in_progress = "abuse_in_progress"
    guardian_unreachable = "guardian_unreachable"
    """No guardian can be reached while a decision about the child is urgent."""


class ReviewStatus(StrEnum):
    pending = "pending"
    justified = "justified"
    not_justified = "not_justified"


class BreakGlassReview(SQLModel, table=True):
    __tablename__ = "break_glass_review"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    access_log_id: int | None = None
    request_id: str | None = Field(default=None, max_length=64)
    client_id: str = Field(max_length=64)
    agency: str = Field(max_length=64)
    child_id: uuid.UUID
    action: str = Field(max_length=64)
    reason_code: BreakGlassReason = Field(sa_type=String(40))
    justification: str = Field(max_length=1000)
    categories: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    used_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    status: ReviewStatus = Field(default=ReviewStatus.pending, sa_type=String(16))
    reviewer_client: str | None = Field(default=None, max_length=64)
    reviewer_agency: str | None = Field(default=None, max_length=64)
    review_note: str | None = Field(default=None, max_length=2000)
    reviewed_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )


class BreakGlassReviewPublic(SQLModel):
    id: uuid.UUID
    access_log_id: int | None
    request_id: str | None
    client_id: str
    agency: str
    child_id: uuid.UUID
    action: str
    reason_code: BreakGlassReason
    justification: str = Field(schema_extra={"examples": ["Reported missing at 02:10, guardian unreachable"]})
    categories: list[str] = Field(
        description="The categories released only because of the break-glass.",
        schema_extra={"examples": [["health"]]},
    )
    used_at: datetime
    status: ReviewStatus
    reviewer_agency: str | None
    review_note: str | None
    reviewed_at: datetime | None


class BreakGlassPage(SQLModel):
    items: list[BreakGlassReviewPublic]
    next_cursor: str | None


class ReviewOutcome(StrEnum):
    justified = "justified"
    not_justified = "not_justified"


class BreakGlassReviewCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    outcome: ReviewOutcome
    note: str = Field(
        min_length=1, max_length=2000, schema_extra={"examples": ["Child was missing; access proportionate."]}
    )


class Investigation(SQLModel, table=True):
    """A case of one agency: its references are its own (another agency may use the same string
    for another case), and it is closed by that agency within ``opened_region``."""

    agency: str = Field(primary_key=True, max_length=64)
    ref: str = Field(primary_key=True, max_length=64)
    opened_region: str = Field(default="", max_length=12, sa_column_kwargs={"server_default": ""})
    """The region prefix of the token that first read under this reference."""
    opened_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    closed_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )


class InvestigationPublic(SQLModel):
    ref: str = Field(schema_extra={"examples": ["WH-2026-0117"]})
    agency: str
    opened_region: str = Field(
        description="Region prefix of the token that opened the case; empty for nationwide.",
        schema_extra={"examples": ["510107"]},
    )
    opened_at: datetime
    closed_at: datetime | None
