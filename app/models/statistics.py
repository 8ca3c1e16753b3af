"""Statistics for joint meetings (摸底排查): counts of children, flows and services.

``ChildHistory`` and ``ChildTally`` are kept by a trigger on ``child`` (migration 0010) in the
transaction that changes the child; nothing else writes them. The rest are the query vocabulary
and the answer's shape, shared by JSON, CSV, XLSX and the dashboard.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import BigInteger, Column, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column


class ChildHistory(SQLModel, table=True):
    """One state of a child's countable fields and the interval it held (``valid_to`` NULL: now)."""

    __tablename__ = "child_history"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    child_id: uuid.UUID = Field(foreign_key="child.id")
    valid_from: datetime = Field(sa_column=timestamp_column(default_now=False))
    valid_to: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    region_code: str = Field(max_length=12)
    sex: str = Field(sa_type=String(8))
    birth_date: date
    ethnicity: str | None = Field(default=None, max_length=40)
    categories: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    care_arrangement: str | None = Field(default=None, sa_type=String(40))
    status: str = Field(sa_type=String(16))
    owner_agency: str = Field(max_length=64)
    exit_reason: str | None = Field(default=None, sa_type=String(32))
    exit_date: date | None = None


class ChildTally(SQLModel, table=True):
    """Children per level (6, 9, 12 digits), region code cut to it, category (``*``: each child
    once), sex, status and keeper."""

    __tablename__ = "child_tally"

    level: int = Field(primary_key=True)
    region_code: str = Field(primary_key=True, max_length=12)
    category: str = Field(primary_key=True, max_length=32)
    sex: str = Field(primary_key=True, max_length=8)
    status: str = Field(primary_key=True, max_length=16)
    owner_agency: str = Field(primary_key=True, max_length=64)
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


class ChildDimension(StrEnum):
    """What children are counted by."""

    region = "region"
    """地区, at the `level` asked for."""
    category = "category"
    """类别: a child in two categories counts in each (cells may overlap; totals count it once)."""
    sex = "sex"
    age_band = "age_band"
    """年龄段, as the policy's `statistics.age_bands` define them."""
    age = "age"
    """Single years of age."""
    ethnicity = "ethnicity"
    care_arrangement = "care_arrangement"
    custody_status = "custody_status"
    status = "status"


class FlowDimension(StrEnum):
    period = "period"
    direction = "direction"
    """`entry` (新增) or `exit` (退出)."""
    reason = "reason"
    """The exit reason; `new` for entries."""
    region = "region"


class FlowDirection(StrEnum):
    entry = "entry"
    """新增"""
    exit = "exit"
    """退出"""


class ServiceDimension(StrEnum):
    type = "type"
    """The event type, without `cn.gov.childlink.` and its version (`what=events`)."""
    publisher = "publisher"
    """The publishing agency (`what=events`)."""
    region = "region"
    period = "period"
    concern = "concern"
    """The report's concern (`what=reports|acknowledgements`)."""
    urgency = "urgency"
    """The report's urgency (`what=reports|acknowledgements`)."""
    acknowledgement = "acknowledgement"
    """受理: `in_time`, `late`, `overdue` (not yet, past its deadline), `awaiting` (not yet, in
    time) or `declined`; for a report, the worst of its receivers' (`what=reports|acknowledgements`)."""
    receiver = "receiver"
    """The receiving agency's kind (`what=acknowledgements`)."""


class ServiceMeasure(StrEnum):
    """What `GET /v1/statistics/services` counts."""

    events = "events"
    """Events published (home visits, health checks, aid granted ...)."""
    reports = "reports"
    """Mandatory reports (强制报告) filed, each once."""
    acknowledgements = "acknowledgements"
    """Each receiver's acknowledgement (受理) of a mandatory report, in time or not."""


class RegionLevel(StrEnum):
    province = "province"
    city = "city"
    county = "county"
    township = "township"
    village = "village"


REGION_DIGITS: dict[RegionLevel, int] = {
    RegionLevel.province: 2,
    RegionLevel.city: 4,
    RegionLevel.county: 6,
    RegionLevel.township: 9,
    RegionLevel.village: 12,
}


class Period(StrEnum):
    week = "week"
    month = "month"
    quarter = "quarter"
    year = "year"


class StatusFilter(StrEnum):
    active = "active"
    """在册 (the default)."""
    exited = "exited"
    any = "any"


class ExportFormat(StrEnum):
    json = "json"
    csv = "csv"
    xlsx = "xlsx"


class Lang(StrEnum):
    en = "en"
    zh = "zh"


class Count(BaseModel):
    count: int | None = PydanticField(description="Null when suppressed.")
    suppressed: bool = PydanticField(
        description="True when the count is withheld by disclosure control (shown as <5)."
    )


class Cell(Count):
    values: dict[str, str] = PydanticField(
        description="The cell's value in each dimension.",
        examples=[{"region": "510107", "category": "left_behind", "sex": "female"}],
    )


class Margin(Count):
    dimension: str = PydanticField(examples=["sex"])
    value: str = PydanticField(examples=["female"])


class Disclosure(BaseModel):
    method: str = PydanticField(
        description="`controlled` (suppression below the threshold, secondary suppression, every count "
        "rounded to `rounding_base`) or `exact` (the reader's own records).",
        examples=["controlled"],
    )
    threshold: int = PydanticField(examples=[5])
    rounding_base: int = PydanticField(examples=[5])


class StatisticsTable(BaseModel):
    """A table of counts: its cells (zero cells left out), one-way margins and the total."""

    measure: str = PydanticField(description="`children`, `flows` or `services`.", examples=["children"])
    dimensions: list[str]
    query: dict[str, Any] = PydanticField(description="The query as understood, filters included.")
    reference_date: date = PydanticField(description="The date counts and ages refer to.")
    policy_version: str
    disclosure: Disclosure
    headings: dict[str, str] = PydanticField(
        description="Column headings in the language asked for (`lang`)."
    )
    cells: list[Cell]
    margins: list[Margin] = PydanticField(
        description="Totals per value of each dimension; for `category` a child in two categories "
        "counts in both."
    )
    total: Count = PydanticField(description="All children (or events) the query covers, each once.")
