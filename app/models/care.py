"""Care follow-up (关爱): missing-child reports, home visits (家庭走访) and what falls due.

Missing reports and home visits are written by the events that report them
(``police.missing-child.reported|resolved``, ``civil-affairs.home-visit.recorded``), in the
publishing transaction. An overdue notice is the scheduler's memory that it told the township
once about one child's one due date.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Index, String, text
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow


class DueWhat(StrEnum):
    """What falls due on the care schedule."""

    assessment = "assessment"
    """监护评估: a guardianship assessment."""
    home_visit = "home_visit"
    """定期探访 / 家庭走访: a home visit."""


class MissingReport(SQLModel, table=True):
    __tablename__ = "missing_report"
    __table_args__ = (
        Index(
            "uq_missing_report_open", "child_id", unique=True, postgresql_where=text("resolved_at IS NULL")
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    child_id: uuid.UUID = Field(foreign_key="child.id")
    reported_event_id: uuid.UUID
    reported_at: datetime = Field(sa_column=timestamp_column(default_now=False))
    handling_unit: str | None = Field(default=None, max_length=200)
    handling_unit_duty_phone: str | None = Field(default=None, max_length=24)
    resolved_event_id: uuid.UUID | None = None
    resolved_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )


class HomeVisit(SQLModel, table=True):
    __tablename__ = "home_visit"
    __table_args__ = (Index("ix_home_visit_child", "child_id", "visited_on"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    child_id: uuid.UUID = Field(foreign_key="child.id")
    visited_on: date
    follow_up_due: date | None = None
    event_id: uuid.UUID = Field(unique=True)
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class OverdueNotice(SQLModel, table=True):
    """One row per (child, what, due date) the township was told about: the primary key is what
    makes several schedulers running at once fire each notice exactly once."""

    __tablename__ = "overdue_notice"

    child_id: uuid.UUID = Field(foreign_key="child.id", primary_key=True)
    what: DueWhat = Field(sa_type=String(16), primary_key=True)
    due_on: date = Field(primary_key=True)
    event_id: uuid.UUID | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class DueItem(SQLModel):
    child_id: uuid.UUID
    name: str | None = Field(default=None, description="Null when identity data is withheld.")
    region_code: str
    what: DueWhat
    due_on: date | None = Field(
        default=None,
        description="Null when the category it belongs to is withheld.",
        schema_extra={"examples": ["2026-11-30"]},
    )
    last_done_on: date | None = Field(default=None, description="The last assessment or visit, if any.")
    overdue: bool | None = Field(default=None, description="The due date has passed.")


class DuePage(SQLModel):
    items: list[DueItem] = Field(description="Earliest due first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")
