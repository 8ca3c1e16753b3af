"""The transactional outbox: events written in the same transaction as the change they report,
for the event exchange to deliver."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Identity, String
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_event"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), unique=True, nullable=False)
    )
    type: str = Field(max_length=120, index=True)
    source: str = Field(max_length=200)
    subject: uuid.UUID | None = Field(default=None, index=True)
    time: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    data: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    data_categories: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    region_code: str | None = Field(default=None, max_length=12)
    publisher_agency: str = Field(max_length=64)
    publisher_client: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
