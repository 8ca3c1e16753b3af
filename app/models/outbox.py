"""The transactional outbox: events written in the same transaction as the change they report,
for the event exchange to deliver.

``seq`` is NULL until a numbering pass after the writing transaction's commit gives it one
(migration 0020, app/events/numbering.py), so sequence numbers become visible in order and
without holes: a feed reader at ``after=N`` never misses a late-committing N-1. The table's
``ordinal`` column (a sequence's value, drawn at INSERT; the order a pass numbers in) is left out
of this model on purpose: the ORM would insert NULL for it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, SmallInteger, String
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_event"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, unique=True, nullable=True))
    type: str = Field(max_length=120)
    source: str = Field(max_length=200)
    subject: uuid.UUID | None = Field(default=None, index=True)
    time: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    data: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    data_categories: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    region_code: str | None = Field(default=None, max_length=12)
    publisher_agency: str = Field(max_length=64)
    publisher_client: str = Field(max_length=64)
    publisher_event_id: str | None = Field(default=None, max_length=128)
    """The CloudEvents ``id`` the publisher gave (``POST /v1/events``); NULL for registry events."""
    case_id: uuid.UUID | None = Field(default=None)
    """The case the event belongs to (CloudEvents extension ``childlinkcase``)."""
    priority: int = Field(default=0, sa_column=Column(SmallInteger, nullable=False, server_default="0"))
    """Delivery priority, copied to each delivery at fan-out: the claim takes higher first
    (a report of a child in immediate danger: policy ``report_routing.by_urgency``), 0 for the rest."""
    audience: str | None = Field(default=None, max_length=64)
    """The one agency the event is addressed to (``childlinkaudience``); NULL for an event every
    matching subscription may receive. See app/events/audience.py."""
    about_subscription: uuid.UUID | None = Field(default=None)
    """The subscription an operational event is about; it is never delivered there."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
