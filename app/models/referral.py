"""Referrals (转介): a case's request to another agency, with deadlines, and its lifecycle.

The lifecycle is one table, :data:`TRANSITIONS`: (state, action) -> next state. Every transition
is checked against it (``app.services.referral``) and the README's state diagram is rendered from
it (:func:`mermaid`), so the code and the docs cannot disagree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import CheckConstraint, Column, Index, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app.models.common import timestamp_column, utcnow
from app.models.vocabulary import DataCategory

DIVISION_PREFIX_PATTERN = r"^(\d{6}|\d{9}|\d{12})$"


class ReferralStatus(StrEnum):
    requested = "requested"
    """Sent; the receiver decides whether to take it up."""
    accepted = "accepted"
    """受理: the receiver is working on it."""
    declined = "declined"
    """The receiver declined, with a reason."""
    completed = "completed"
    """Done, with an outcome."""
    withdrawn = "withdrawn"
    """The referrer took it back."""


class ReferralAction(StrEnum):
    accept = "accept"
    decline = "decline"
    complete = "complete"
    withdraw = "withdraw"


TRANSITIONS: dict[tuple[ReferralStatus, ReferralAction], ReferralStatus] = {
    (ReferralStatus.requested, ReferralAction.accept): ReferralStatus.accepted,
    (ReferralStatus.requested, ReferralAction.decline): ReferralStatus.declined,
    (ReferralStatus.requested, ReferralAction.withdraw): ReferralStatus.withdrawn,
    (ReferralStatus.accepted, ReferralAction.complete): ReferralStatus.completed,
    (ReferralStatus.accepted, ReferralAction.withdraw): ReferralStatus.withdrawn,
}
"""The whole referral lifecycle. A pair not in the table is refused (409)."""

OPEN_STATUSES: frozenset[ReferralStatus] = frozenset({ReferralStatus.requested, ReferralStatus.accepted})
"""A referral releases its categories to the receiver only in these states."""

BY_RECEIVER: frozenset[ReferralAction] = frozenset(
    {ReferralAction.accept, ReferralAction.decline, ReferralAction.complete}
)
"""Actions the receiving agency takes; the referring agency takes the rest (withdraw)."""


def mermaid() -> str:
    """The lifecycle as a Mermaid state diagram (the README embeds exactly this text)."""
    lines = ["stateDiagram-v2", f"    [*] --> {ReferralStatus.requested}"]
    for (state, action), target in TRANSITIONS.items():
        lines.append(f"    {state} --> {target}: {action}")
    for state in ReferralStatus:
        if not any(s == state for s, _ in TRANSITIONS):
            lines.append(f"    {state} --> [*]")
    return "\n".join(lines)


class Referral(SQLModel, table=True):
    __table_args__ = (
        Index("ix_referral_incoming", "to_agency", "created_at", "id"),
        Index("ix_referral_outgoing", "from_agency", "created_at", "id"),
        Index("ix_referral_case", "case_id", "created_at"),
        # The scheduler's scan: open referrals by their next deadline.
        Index(
            "ix_referral_open_deadline",
            "next_deadline_at",
            postgresql_where="status IN ('requested', 'accepted')",
        ),
        CheckConstraint(
            "status IN ('requested','accepted','declined','completed','withdrawn')",
            name="referral_status_valid",
        ),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = SQLField(foreign_key="case.id")
    child_id: uuid.UUID
    """A child, or a report subject until its report is linked (a trigger checks either)."""
    from_agency: str = SQLField(foreign_key="agency.code", max_length=64)
    to_agency: str = SQLField(foreign_key="agency.code", max_length=64)
    to_region: str | None = SQLField(default=None, max_length=12)
    target_region: str = SQLField(max_length=12)
    """``to_region`` or, without it, the child's division: the receiver's client must cover it."""
    request: str = SQLField(max_length=2000)
    categories: list[str] = SQLField(sa_column=Column(ARRAY(String), nullable=False))
    respond_by: datetime = SQLField(sa_column=timestamp_column(default_now=False))
    complete_by: datetime = SQLField(sa_column=timestamp_column(default_now=False))
    status: ReferralStatus = SQLField(default=ReferralStatus.requested, sa_type=String(16))
    next_deadline_at: datetime | None = SQLField(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    """``respond_by`` while requested, ``complete_by`` while accepted, NULL once answered."""
    overdue_since: datetime | None = SQLField(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    decline_reason: str | None = SQLField(default=None, max_length=1000)
    outcome: str | None = SQLField(default=None, max_length=2000)
    withdraw_reason: str | None = SQLField(default=None, max_length=1000)
    created_by_client: str = SQLField(max_length=64)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    answered_at: datetime | None = SQLField(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )


class ReferralCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to_agency": "civil-affairs",
                    "to_region": "510107005",
                    "request": "Home visit by the village child director (儿童主任): who looks after the "
                    "child, and why the child is not at school.",
                    "categories": ["identity", "contact", "education"],
                    "respond_by": "2026-12-03T18:00:00+08:00",
                    "complete_by": "2026-12-15T18:00:00+08:00",
                }
            ]
        },
    )

    to_agency: str = Field(min_length=3, max_length=64, description="The receiving agency's code.")
    to_region: str | None = Field(
        default=None,
        pattern=DIVISION_PREFIX_PATTERN,
        description="Narrow the referral to a division containing the child (a county refers to the "
        "township's child supervisor 儿童督导员): only the receiver's clients covering it see it.",
    )
    request: str = Field(min_length=1, max_length=2000, description="What is asked. No names or ID numbers.")
    categories: list[DataCategory] = Field(
        min_length=1,
        max_length=10,
        description="The child's data categories released to the receiver for this case while the "
        "referral is open (ground `referral`). The case's own category is always added.",
    )
    respond_by: datetime | None = Field(
        default=None,
        description="Accept or decline by then (RFC 3339 with offset), within the policy's "
        "`respond_within_max_hours`; left out, the policy's `default_respond_within_hours` from now.",
    )
    complete_by: datetime | None = Field(
        default=None,
        description="Complete by then; not before `respond_by`, within `complete_within_max_days`; "
        "left out, the policy's `default_complete_within_days` from now.",
    )

    @field_validator("respond_by", "complete_by")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("a deadline needs a UTC offset")
        return value


class ReferralDecline(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "No volunteer in this township until January."}]},
    )

    reason: str = Field(min_length=3, max_length=1000)


class ReferralComplete(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"outcome": "Home visit done on 2 Dec; see the linked event."}]},
    )

    outcome: str = Field(min_length=3, max_length=2000, description="What was done. No names or ID numbers.")


class ReferralWithdraw(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "The family moved out of the county."}]}
    )

    reason: str | None = Field(default=None, max_length=1000)


class ReferralPublic(BaseModel):
    id: uuid.UUID
    case_id: uuid.UUID
    child_id: uuid.UUID
    from_agency: str
    to_agency: str
    to_region: str | None
    request: str | None = Field(
        description="Left out when the case's category is withheld.",
        examples=["Home visit by the village child director (儿童主任)."],
    )
    categories: list[DataCategory]
    respond_by: datetime
    complete_by: datetime
    status: ReferralStatus
    overdue: bool
    overdue_since: datetime | None
    decline_reason: str | None = None
    outcome: str | None = None
    withdraw_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    answered_at: datetime | None = None


class ReferralPage(BaseModel):
    items: list[ReferralPublic]
    next_cursor: str | None = None


class DeadlineStep(SQLModel, table=True):
    """A deadline step the scheduler fired: step 0 marks the subject overdue, step n is the n-th
    escalation. The primary key is what makes each step fire once across workers and restarts."""

    __tablename__ = "deadline_step"

    subject_kind: str = SQLField(primary_key=True, max_length=16)
    subject_id: uuid.UUID = SQLField(primary_key=True)
    deadline: str = SQLField(primary_key=True, max_length=16)
    step: int = SQLField(primary_key=True)
    due_at: datetime = SQLField(sa_column=timestamp_column(default_now=False))
    escalated_to_region: str | None = SQLField(default=None, max_length=12)
    fired_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
