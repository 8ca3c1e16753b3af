"""Children in the registry (civil affairs' 留守/困境 children)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, field_validator, model_validator
from sqlalchemy import Column, Index, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.models import resident_id
from app.models.common import IsoDate, timestamp_column, utcnow
from app.models.vocabulary import DataCategory

REGION_CODE_PATTERN = r"^(\d{6}|\d{9}|\d{12})$"


class Sex(StrEnum):
    male = "male"
    female = "female"


class ChildCategory(StrEnum):
    """Why the child is in the registry (留守 / 困境 categories)."""

    left_behind = "left_behind"
    """留守: both parents work away, or one away and the other unable to act as guardian; under 16."""
    orphan = "orphan"
    """孤儿"""
    de_facto_unsupported = "de_facto_unsupported"
    """事实无人抚养"""
    disability = "disability"
    """残疾"""
    serious_illness = "serious_illness"
    """重病"""
    low_income = "low_income"
    """低保/特困 family"""
    guardian_harm = "guardian_harm"
    """监护侵害: harmed by the guardian."""
    other = "other"


CATEGORY_DATA: dict[ChildCategory, DataCategory] = {
    ChildCategory.left_behind: DataCategory.welfare,
    ChildCategory.orphan: DataCategory.welfare,
    ChildCategory.de_facto_unsupported: DataCategory.welfare,
    ChildCategory.low_income: DataCategory.welfare,
    ChildCategory.other: DataCategory.welfare,
    ChildCategory.disability: DataCategory.disability,
    ChildCategory.serious_illness: DataCategory.health,
    ChildCategory.guardian_harm: DataCategory.law_enforcement,
}
"""A registry category reveals data of this kind (a serious illness is health data, guardian
harm is law-enforcement data), so each is released only with its data category."""


class CareArrangement(StrEnum):
    """Who looks after a left-behind child."""

    grandparents = "grandparents"
    """隔代照料"""
    relatives_or_friends = "relatives_or_friends"
    """亲友代养"""
    institution_or_boarding = "institution_or_boarding"
    """机构/寄宿"""
    one_parent_unable = "one_parent_unable"
    """One parent at home but unable to act as guardian."""


class ChildStatus(StrEnum):
    active = "active"
    """在册"""
    exited = "exited"
    """退出: the record is kept, read-only."""


class ExitReason(StrEnum):
    parents_returned = "parents_returned"
    aged_out = "aged_out"
    moved = "moved"
    death = "death"
    other = "other"


FIELD_CATEGORIES: dict[str, DataCategory] = {
    "name": DataCategory.identity,
    "sex": DataCategory.identity,
    "birth_date": DataCategory.identity,
    "ethnicity": DataCategory.identity,
    "resident_id": DataCategory.identifier,
    "address": DataCategory.contact,
    "school": DataCategory.education,
    "care_arrangement": DataCategory.welfare,
    "exit_reason": DataCategory.welfare,
    "exit_date": DataCategory.welfare,
}
"""Which data category each personal field of a child record belongs to."""

CHILD_CATEGORIES: tuple[DataCategory, ...] = (
    DataCategory.identity,
    DataCategory.identifier,
    DataCategory.contact,
    DataCategory.welfare,
    DataCategory.education,
    DataCategory.health,
    DataCategory.disability,
    DataCategory.law_enforcement,
)
"""The categories a full child record can carry."""


class Child(SQLModel, table=True):
    __table_args__ = (
        Index("ix_child_region_code", "region_code", postgresql_ops={"region_code": "text_pattern_ops"}),
        Index("ix_child_updated", "updated_at", "id"),
        # A county's or a township's list page (migration 0019): the prefix as an equality.
        Index("ix_child_county_updated", text("left(region_code, 6)"), "updated_at", "id"),
        Index("ix_child_township_updated", text("left(region_code, 9)"), "updated_at", "id"),
        Index(
            "uq_child_resident_id",
            "resident_id",
            unique=True,
            postgresql_where=text("resident_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=100)
    sex: Sex = Field(sa_type=String(8))
    birth_date: date
    ethnicity: str | None = Field(default=None, max_length=40)
    resident_id: str | None = Field(default=None, max_length=18)
    region_code: str = Field(max_length=12)
    address: str | None = Field(default=None, max_length=300)
    school: str | None = Field(default=None, max_length=200)
    categories: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    care_arrangement: str | None = Field(default=None, sa_type=String(40))
    status: ChildStatus = Field(default=ChildStatus.active, sa_type=String(16))
    exit_reason: str | None = Field(default=None, sa_type=String(32))
    exit_date: date | None = None
    exit_note: str | None = Field(default=None, max_length=500)
    owner_agency: str = Field(foreign_key="agency.code", max_length=64)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


_NAME_DESCRIPTION = "Full name in any script (e.g. 扎西·多吉); 1 to 100 characters."


def _clean_name(value: str) -> str:
    value = value.strip()
    if not value or any(ord(ch) < 32 for ch in value):
        raise ValueError("a name must be non-empty and contain no control characters")
    return value


MAX_AGE_YEARS = 25
"""The oldest record the registry holds: a child's, kept some years past 18 (the age filters
go as far). A birth date further back is a typing error (0001-01-01, 1850), not a child."""


def earliest_birth_date(today: date) -> date:
    try:
        return today.replace(year=today.year - MAX_AGE_YEARS)
    except ValueError:  # 29 February
        return today.replace(year=today.year - MAX_AGE_YEARS, day=28)


def _plausible_birth_date(value: date | None) -> date | None:
    if value is None:
        return value
    today = date.today()
    if value > today:
        raise ValueError("birth_date lies in the future")
    if value < earliest_birth_date(today):
        raise ValueError(f"birth_date lies more than {MAX_AGE_YEARS} years back")
    return value


_BIRTH_DATE_DESCRIPTION = f"Not in the future and at most {MAX_AGE_YEARS} years back."


class _ChildFields(SQLModel):
    """The writable fields, shared by create and update."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    ethnicity: str | None = Field(default=None, max_length=40, schema_extra={"examples": ["藏族"]})
    address: str | None = Field(
        default=None, max_length=300, schema_extra={"examples": ["武侯区簇桥街道 3 组"]}
    )
    school: str | None = Field(default=None, max_length=200, schema_extra={"examples": ["簇桥小学"]})
    care_arrangement: CareArrangement | None = Field(
        default=None, description="For left-behind children: who looks after the child."
    )


class ChildCreate(_ChildFields):
    name: str = Field(
        min_length=1, max_length=100, description=_NAME_DESCRIPTION, schema_extra={"examples": ["扎西·多吉"]}
    )
    sex: Sex
    birth_date: IsoDate = Field(
        description=_BIRTH_DATE_DESCRIPTION, schema_extra={"examples": ["2016-05-12"]}
    )
    resident_id: str | None = Field(
        default=None,
        min_length=18,
        max_length=18,
        description="18-character resident ID number; optional for a child not yet registered. "
        "Must agree with `birth_date` and `sex`.",
        schema_extra={"examples": ["510107201605120249"]},
    )
    region_code: str = Field(
        description="Administrative division (GB/T 2260): county 6, township 9 or village 12 digits.",
        schema_extra={"pattern": REGION_CODE_PATTERN, "examples": ["510107005003"]},
    )
    categories: list[ChildCategory] = Field(
        min_length=1, max_length=8, schema_extra={"examples": [["left_behind"]]}
    )

    _name = field_validator("name")(_clean_name)
    _birth_date = field_validator("birth_date")(_plausible_birth_date)

    @field_validator("categories")
    @classmethod
    def _unique(cls, value: list[ChildCategory]) -> list[ChildCategory]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> ChildCreate:
        if self.resident_id is not None:
            self.resident_id = resident_id.normalize(self.resident_id)
            birth, sex = resident_id.parse(self.resident_id)
            if birth != self.birth_date:
                raise ValueError("the resident ID number does not agree with birth_date")
            if sex != self.sex:
                raise ValueError("the resident ID number does not agree with sex")
        if self.care_arrangement is not None and ChildCategory.left_behind not in self.categories:
            raise ValueError("care_arrangement applies to left-behind children only")
        return self


class ChildUpdate(_ChildFields):
    """Every field optional; only the fields sent are changed. Identity fields (name, sex, birth
    date, resident ID number) are corrected through the same call."""

    name: str | None = Field(default=None, min_length=1, max_length=100, description=_NAME_DESCRIPTION)
    sex: Sex | None = None
    birth_date: IsoDate | None = Field(default=None, description=_BIRTH_DATE_DESCRIPTION)
    resident_id: str | None = Field(default=None, min_length=18, max_length=18)
    region_code: str | None = Field(default=None, schema_extra={"pattern": REGION_CODE_PATTERN})
    categories: list[ChildCategory] | None = Field(default=None, min_length=1, max_length=8)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _clean_name(value)

    _birth_date = field_validator("birth_date")(_plausible_birth_date)


class ChildExit(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    reason: ExitReason = Field(description="Why the child leaves the registry (退出).")
    exit_date: IsoDate = Field(schema_extra={"examples": ["2026-11-01"]})
    note: str | None = Field(default=None, max_length=500, description="No personal data of third parties.")


class ChildLookup(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    resident_id: str = Field(
        min_length=18,
        max_length=18,
        description="The number to look up. Sent in the body so it never appears in a URL or log.",
        schema_extra={"examples": ["510107201605120249"]},
    )

    @field_validator("resident_id")
    @classmethod
    def _valid(cls, value: str) -> str:
        value = resident_id.normalize(value)
        resident_id.parse(value)
        return value


class WithheldCategory(SQLModel):
    category: DataCategory
    reason: str = Field(
        description="`no_legal_basis`: no statute, consent or emergency covers this read.",
        schema_extra={"examples": ["no_legal_basis"]},
    )


class CategoryBasis(SQLModel):
    ground: str = Field(
        description="`owner`, `statute`, `consent` or `break_glass`.", schema_extra={"examples": ["statute"]}
    )
    ref: str = Field(
        description="The policy rule or consent id.", schema_extra={"examples": ["police-custody"]}
    )
    citation: str | None = Field(default=None, schema_extra={"examples": ["《未成年人保护法》第十一条"]})


class AccessSummary(SQLModel):
    """What the access layer released and withheld, and on what grounds."""

    purpose: str | None = Field(default=None, schema_extra={"examples": ["child_protection"]})
    categories_returned: list[DataCategory]
    withheld: list[WithheldCategory]
    basis: dict[str, CategoryBasis]


class ChildPublic(SQLModel):
    """A child record as released to this reader: fields of withheld categories are absent."""

    id: uuid.UUID
    region_code: str
    status: ChildStatus
    owner_agency: str
    version: int
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    sex: Sex | None = None
    birth_date: date | None = None
    ethnicity: str | None = None
    resident_id: str | None = None
    address: str | None = None
    school: str | None = None
    categories: list[ChildCategory] | None = Field(
        default=None, description="Only the categories whose data category the reader may see."
    )
    care_arrangement: CareArrangement | None = None
    exit_reason: ExitReason | None = None
    exit_date: date | None = None
    access: AccessSummary


class ChildPage(SQLModel):
    items: list[ChildPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


def child_base_fields(child: Child) -> dict[str, Any]:
    """The non-personal fields every reader who may see the child gets."""
    return {
        "id": child.id,
        "region_code": child.region_code,
        "status": child.status,
        "owner_agency": child.owner_agency,
        "version": child.version,
        "created_at": child.created_at,
        "updated_at": child.updated_at,
    }
