"""A child's timeline: every agency's record of the child, newest first, as one list."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.models.vocabulary import DataCategory


class TimelineItem(BaseModel):
    """One entry: a registry change, a guardianship record, an agency's event, or a step of a case
    (opened, referred, answered, consulted, closed). A withheld entry shows only when it happened."""

    sequence: int = Field(description="Position in the platform's event order.")
    time: datetime
    released: bool = Field(description="False when the access layer releases nothing of it to you.")
    event_id: uuid.UUID | None = None
    type: str | None = Field(default=None, examples=["cn.gov.childlink.education.dropout-risk.flagged.v1"])
    publisher_agency: str | None = None
    case_id: uuid.UUID | None = None
    data: dict[str, Any] | None = Field(default=None, description="The payload, without withheld fields.")
    withheld: list[DataCategory] = Field(default_factory=list)


class TimelinePage(BaseModel):
    child_id: uuid.UUID
    items: list[TimelineItem]
    next_cursor: str | None = None
