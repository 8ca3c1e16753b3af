"""Guardian consents (PIPL art. 31: for a child under 14 the guardian consents; from 14 the child
may consent too). A consent names the receiving agency (or any), the data categories, the
purposes and its period; revoked or outside its period it grants nothing."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, field_validator, model_validator
from sqlalchemy import Column, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.models.common import IsoAwareDateTime, timestamp_column, utcnow
from app.models.vocabulary import DataCategory, PurposeOfUse


class ConsentGiver(StrEnum):
    guardian = "guardian"
    """The guardian (监护人): always may consent."""
    child = "child"
    """The child, from age 14 (PIPL art. 31)."""


class Consent(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    child_id: uuid.UUID = Field(foreign_key="child.id", index=True)
    given_by_role: ConsentGiver = Field(sa_type=String(16))
    given_by_name: str = Field(max_length=100)
    given_by_relationship: str | None = Field(default=None, max_length=40)
    receiving_agency: str | None = Field(default=None, foreign_key="agency.code", max_length=64)
    categories: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    purposes: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    valid_from: datetime = Field(sa_column=timestamp_column(default_now=False))
    valid_until: datetime = Field(sa_column=timestamp_column(default_now=False))
    evidence_ref: str = Field(max_length=200)
    recorded_by_agency: str = Field(max_length=64)
    recorded_by_client: str = Field(max_length=64)
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    revoked_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    revoked_reason: str | None = Field(default=None, max_length=500)
    revoked_by_client: str | None = Field(default=None, max_length=64)


class ConsentCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    given_by_role: ConsentGiver = Field(description="`guardian`, or `child` for a child aged 14 or over.")
    given_by_name: str = Field(min_length=1, max_length=100, schema_extra={"examples": ["卓玛"]})
    given_by_relationship: str | None = Field(
        default=None, max_length=40, schema_extra={"examples": ["grandmother"]}
    )
    receiving_agency: str | None = Field(
        default=None,
        max_length=64,
        description="Code of the agency the consent lets read; null for any agency.",
        schema_extra={"examples": ["womens-federation"]},
    )
    categories: list[DataCategory] = Field(
        min_length=1, max_length=len(DataCategory), schema_extra={"examples": [["health"]]}
    )
    purposes: list[PurposeOfUse] = Field(
        min_length=1, max_length=len(PurposeOfUse), schema_extra={"examples": [["child_protection"]]}
    )
    valid_from: IsoAwareDateTime = Field(schema_extra={"examples": ["2026-11-01T00:00:00+08:00"]})
    valid_until: IsoAwareDateTime = Field(schema_extra={"examples": ["2027-10-31T23:59:59+08:00"]})
    evidence_ref: str = Field(
        min_length=1,
        max_length=200,
        description="Reference of the signed consent document on file.",
        schema_extra={"examples": ["TY-2026-0042"]},
    )

    @field_validator("given_by_name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value or any(ord(ch) < 32 for ch in value):
            raise ValueError("a name must be non-empty and contain no control characters")
        return value

    @field_validator("categories", "purposes")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _period(self) -> ConsentCreate:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if not (2000 <= self.valid_from.year and self.valid_until.year <= 2200):
            raise ValueError("the consent period must lie between the years 2000 and 2200")
        return self


class ConsentRevoke(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    reason: str = Field(
        min_length=1, max_length=500, schema_extra={"examples": ["Guardian withdrew consent in writing"]}
    )


class ConsentPublic(SQLModel):
    id: uuid.UUID
    child_id: uuid.UUID
    given_by_role: ConsentGiver
    given_by_name: str = Field(schema_extra={"examples": ["卓玛"]})
    given_by_relationship: str | None
    receiving_agency: str | None = Field(
        description="Null: any agency.", schema_extra={"examples": ["womens-federation"]}
    )
    categories: list[DataCategory]
    purposes: list[PurposeOfUse]
    valid_from: datetime
    valid_until: datetime
    evidence_ref: str
    recorded_by_agency: str
    recorded_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    active: bool = Field(description="Inside its period and not revoked: it grants access now.")


class ConsentPage(SQLModel):
    items: list[ConsentPublic]
    next_cursor: str | None
