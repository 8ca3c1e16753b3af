"""API clients: the machine identities through which agency systems obtain tokens."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, field_validator
from sqlalchemy import Column, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.auth.scopes import Scope
from app.models.common import timestamp_column, utcnow

REGION_PREFIX_PATTERN = r"^(\d{2}|\d{4}|\d{6}|\d{9}|\d{12})?$"


class ClientStatus(StrEnum):
    active = "active"
    revoked = "revoked"


class ApiClient(SQLModel, table=True):
    __tablename__ = "api_client"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    agency_code: str = Field(foreign_key="agency.code", index=True, max_length=64)
    allowed_scopes: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    region: str = Field(default="", max_length=12)
    status: ClientStatus = Field(default=ClientStatus.active, sa_type=String(16))
    secret_hash: str = Field(max_length=128)
    secret_rotated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    revoked_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )


class ClientCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    agency: str = Field(
        max_length=64,
        description="Code of the agency the client acts for.",
        schema_extra={"examples": ["police"]},
    )
    name: str = Field(
        min_length=1,
        max_length=200,
        description="What system this client is.",
        schema_extra={"examples": ["Wuhou district police duty desk"]},
    )
    scopes: list[Scope] = Field(
        min_length=1,
        description="The scopes this client may request.",
        schema_extra={"examples": [["children:read", "custody:read"]]},
    )
    region: str = Field(
        default="",
        description="Administrative-division prefix (2, 4, 6, 9 or 12 digits) the client is "
        "confined to; empty for the whole country.",
        # SQLModel's `regex=` is silently ignored under Pydantic 2; `pattern` is enforced.
        schema_extra={"pattern": REGION_PREFIX_PATTERN, "examples": ["510107"]},
    )

    @field_validator("scopes")
    @classmethod
    def _unique(cls, value: list[Scope]) -> list[Scope]:
        return sorted(set(value))


class ClientPublic(SQLModel):
    client_id: str = Field(schema_extra={"examples": ["cl_6f1d0c2a9e4b7d31"]})
    name: str
    agency: str
    scopes: list[Scope]
    region: str
    status: ClientStatus
    created_at: datetime
    secret_rotated_at: datetime
    revoked_at: datetime | None = None


class ClientWithSecret(ClientPublic):
    client_secret: str = Field(
        description="Shown once, here. Only its hash is stored; keep it in the client's vault.",
        schema_extra={"examples": ["cs_Jr6bq0Tn3p3v7H0n4hV6mWbXkA2Yf9sL1uD8eQ5cZ0o"]},
    )
