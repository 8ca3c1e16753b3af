"""The guardian's access report (PIPL arts. 44-45): who read the child's data, when and why."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel


class ReportGround(SQLModel):
    category: str = Field(schema_extra={"examples": ["custody"]})
    ground: str = Field(
        description="`statute`, `consent` or `break_glass`.", schema_extra={"examples": ["statute"]}
    )
    ref: str = Field(
        description="The policy rule or consent id.", schema_extra={"examples": ["police-protection"]}
    )
    citation: str | None = None


class AccessReportEntry(SQLModel):
    read_at: datetime
    agency: str = Field(schema_extra={"examples": ["police"]})
    agency_name: str | None = Field(default=None, schema_extra={"examples": ["公安厅 Police"]})
    action: str = Field(schema_extra={"examples": ["custody.read"]})
    purpose: str | None = Field(schema_extra={"examples": ["child_protection"]})
    categories: list[str] = Field(description="The categories that were released.")
    grounds: list[ReportGround]
    break_glass: bool


class AccessReport(SQLModel):
    child_id: uuid.UUID
    generated_at: datetime
    entries: list[AccessReportEntry] = Field(description="Newest first.")
    some_entries_withheld: bool = Field(
        description="True when reads belonging to an open police investigation are withheld until it closes. "
        "The report never says how many or whose."
    )
    next_cursor: str | None
