"""Agencies: the five child-protection agencies of DESIGN §2 and the platform operator."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict
from sqlalchemy import String
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow

AGENCY_CODE_PATTERN = r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$"


class AgencyKind(StrEnum):
    civil_affairs = "civil-affairs"
    """民政: the child registry and guardianship."""
    education = "education"
    """教育"""
    health = "health"
    """卫健"""
    police = "police"
    """公安"""
    womens_federation = "womens-federation"
    """妇联"""
    platform = "platform"
    """The platform operator (admin)."""


class AgencyBase(SQLModel):
    code: str = Field(
        primary_key=True,
        max_length=64,
        description="Stable lower-case code, e.g. `police` or `police-510108`.",
        # SQLModel's `regex=` is silently ignored under Pydantic 2; `pattern` is enforced.
        schema_extra={"pattern": AGENCY_CODE_PATTERN, "examples": ["police-510108"]},
    )
    name: str = Field(
        min_length=1,
        max_length=200,
        description="Display name.",
        schema_extra={"examples": ["成都市武侯区公安分局"]},
    )
    kind: AgencyKind = Field(description="Which of the sharing agencies this is.", sa_type=String(32))


class Agency(AgencyBase, table=True):
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class AgencyCreate(AgencyBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


class AgencyPublic(AgencyBase):
    created_at: datetime
