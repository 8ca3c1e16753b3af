"""Joint consultations (会商) on a case, and the actions they decide: each assigned to an agency
with a due date, completed by that agency."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import CheckConstraint, Column, Index, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app.models.common import timestamp_column, utcnow

AGENCY_CODE = r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$"


class ActionStatus(StrEnum):
    open = "open"
    completed = "completed"


class Consultation(SQLModel, table=True):
    __table_args__ = (Index("ix_consultation_case", "case_id", "held_at"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = SQLField(foreign_key="case.id")
    held_at: datetime = SQLField(sa_column=timestamp_column(default_now=False))
    agencies: list[str] = SQLField(sa_column=Column(ARRAY(String), nullable=False))
    summary: str = SQLField(max_length=4000)
    recorded_by_agency: str = SQLField(max_length=64)
    recorded_by_client: str = SQLField(max_length=64)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class Action(SQLModel, table=True):
    __table_args__ = (
        Index("ix_action_case", "case_id", "created_at"),
        Index("ix_action_assigned", "assigned_agency", "created_at", "id"),
        Index("ix_action_open_deadline", "next_deadline_at", postgresql_where="status = 'open'"),
        CheckConstraint("status IN ('open','completed')", name="action_status_valid"),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = SQLField(foreign_key="case.id")
    consultation_id: uuid.UUID = SQLField(foreign_key="consultation.id")
    assigned_agency: str = SQLField(foreign_key="agency.code", max_length=64)
    description: str = SQLField(max_length=2000)
    due_at: datetime = SQLField(sa_column=timestamp_column(default_now=False))
    status: ActionStatus = SQLField(default=ActionStatus.open, sa_type=String(16))
    outcome: str | None = SQLField(default=None, max_length=2000)
    next_deadline_at: datetime | None = SQLField(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    overdue_since: datetime | None = SQLField(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    completed_at: datetime | None = SQLField(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class DecisionIn(BaseModel):
    """One decision of the consultation: an action for one agency, due by a date."""

    model_config = ConfigDict(extra="forbid")

    assigned_agency: str = Field(pattern=AGENCY_CODE, description="The agency that carries it out.")
    description: str = Field(min_length=1, max_length=2000, description="What to do. No names or ID numbers.")
    due_at: datetime | None = Field(
        default=None,
        description="Due by then (RFC 3339 with offset), within the policy's bound (`cases` "
        "`action_due_within_max_days`). Without it, the policy's `default_action_due_within_days` from now.",
    )

    @field_validator("due_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("a due date needs a UTC offset")
        return value


class ConsultationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "held_at": "2026-12-04T09:30:00+08:00",
                    "agencies": ["education", "civil-affairs", "womens-federation"],
                    "summary": "Joint meeting (联席会议): the grandmother cannot take the child to school.",
                    "decisions": [
                        {
                            "assigned_agency": "civil-affairs",
                            "description": "Apply for temporary assistance (临时救助) for school costs.",
                        }
                    ],
                }
            ]
        },
    )

    held_at: datetime = Field(description="When the consultation took place.")
    agencies: list[str] = Field(min_length=1, max_length=20, description="Agencies that took part (codes).")
    summary: str = Field(
        min_length=1, max_length=4000, description="What was discussed. No names or ID numbers."
    )
    decisions: list[DecisionIn] = Field(default_factory=list, max_length=20)

    @field_validator("agencies")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        if any(not re.match(AGENCY_CODE, v) for v in value):
            raise ValueError("agency codes are lower-case letters, digits and dashes")
        return list(dict.fromkeys(value))

    @field_validator("held_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("held_at needs a UTC offset")
        return value


class ActionComplete(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"outcome": "Temporary assistance granted on 9 Dec."}]},
    )

    outcome: str = Field(min_length=3, max_length=2000, description="What was done. No names or ID numbers.")


class ActionPublic(BaseModel):
    id: uuid.UUID
    case_id: uuid.UUID
    consultation_id: uuid.UUID
    assigned_agency: str
    description: str | None = Field(
        description="Left out when the case's category is withheld.",
        examples=["Apply for temporary assistance (临时救助) for school costs."],
    )
    due_at: datetime
    status: ActionStatus
    overdue: bool
    overdue_since: datetime | None = None
    outcome: str | None = None
    completed_at: datetime | None = None
    created_at: datetime


class ConsultationPublic(BaseModel):
    id: uuid.UUID
    case_id: uuid.UUID
    held_at: datetime
    agencies: list[str]
    summary: str | None = Field(
        description="Left out when the case's category is withheld.",
        examples=["Joint meeting (联席会议): the grandmother cannot take the child to school."],
    )
    recorded_by_agency: str
    actions: list[ActionPublic]
    created_at: datetime
