"""Events as the API shows them: CloudEvents 1.0 structured JSON in and out, the catalog, the feed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app.models.common import IsoDateTime, storable_json, timestamp_column, utcnow
from app.models.vocabulary import DataCategory

EVENT_TYPE_PATTERN = r"^[a-z0-9][a-z0-9.-]{2,118}[a-z0-9]$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"


class EventIdempotency(SQLModel, table=True):
    """An ``Idempotency-Key`` a publisher used, the hash of the body it came with, and the event it
    created: a replay answers with that event, another body under the same key is a 422."""

    __tablename__ = "event_idempotency"

    client_id: str = SQLField(primary_key=True, max_length=64)
    key: str = SQLField(primary_key=True, max_length=200)
    request_hash: str = SQLField(max_length=64)
    event_id: uuid.UUID
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class CloudEventIn(BaseModel):
    """A CloudEvents 1.0 event in structured JSON mode, as a publisher sends it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "specversion": "1.0",
                    "id": "edu-510107-2026-000123",
                    "source": "/education/510107/sis",
                    "type": "cn.gov.childlink.education.dropout-risk.flagged.v1",
                    "subject": "0f8fad5b-d9cb-469f-a165-70867728950e",
                    "time": "2026-11-28T08:30:00+08:00",
                    "datacontenttype": "application/json",
                    "data": {
                        "school": "簇桥小学",
                        "risk_level": "high",
                        "indicators": ["chronic_absence", "guardian_absent"],
                        "flagged_on": "2026-11-27",
                        "home_visit_requested": True,
                    },
                }
            ]
        },
    )

    specversion: Literal["1.0"] = Field(description="CloudEvents version; always `1.0`.")
    id: str = Field(
        min_length=1,
        max_length=128,
        description="Your own id for the event; (`source`, `id`) must be unique among your events.",
    )
    source: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="A URI-reference naming your system. Receivers learn the publishing agency from "
        "`childlinkagency`, which the platform sets from your token.",
    )
    type: str = Field(
        max_length=120, pattern=EVENT_TYPE_PATTERN, description="A type from `GET /v1/event-types`."
    )
    subject: uuid.UUID = Field(description="The child the event is about (registry id).")
    time: IsoDateTime | None = Field(
        default=None, description="When it happened (RFC 3339 with offset); defaults to receipt time."
    )
    datacontenttype: Literal["application/json"] | None = None
    dataschema: str | None = Field(
        default=None, max_length=500, description="Accepted and ignored: the catalog's schema applies."
    )
    data: dict[str, Any] = Field(
        description="The payload; validated against the type's JSON Schema. Integers lie between "
        "-2^63 and 2^63-1; text holds no NUL characters or lone surrogates."
    )
    childlinkcase: uuid.UUID | None = Field(
        default=None,
        description="The case (协同处置) this event belongs to, one your agency leads or has a referral "
        "on, about the same child: it appears on the case, and the case's open referrals release it to "
        "their receivers.",
    )

    _storable = field_validator("data")(storable_json)

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("time needs a UTC offset")
        return value


class EventAccepted(BaseModel):
    """The platform's receipt for a published event."""

    id: uuid.UUID = Field(description="The platform's event id (`GET /v1/events/{id}`; `id` when delivered).")
    sequence: int = Field(description="Position in the global event order; the feed's cursor.", examples=[42])
    type: str
    subject: uuid.UUID
    time: datetime


class CloudEventOut(BaseModel):
    """An event as a subscriber receives it (webhook body, feed item or `GET /v1/events/{id}`):
    CloudEvents 1.0 structured JSON with ChildLink extension attributes. Fields of data categories
    the receiver may not see are left out of `data` and named in `childlinkwithheld`."""

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(description="The platform's event id; the same on every retry and replay.")
    source: str
    type: str
    subject: uuid.UUID | None = Field(description="The child.")
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]
    childlinkseq: int = Field(description="Position in the global event order.")
    childlinkagency: str = Field(description="The publishing agency, as authenticated by the platform.")
    childlinkregion: str | None = Field(default=None, description="The child's administrative division.")
    childlinkwithheld: str | None = Field(
        default=None,
        description="Comma-separated data categories removed from `data` because the receiver may "
        "not see them for its purpose of use.",
        examples=["health,law_enforcement"],
    )
    childlinkpublisherid: str | None = Field(default=None, description="The publisher's own `id`.")
    childlinkcase: uuid.UUID | None = Field(default=None, description="The case the event belongs to.")
    childlinkaudience: str | None = Field(
        default=None,
        description="The one agency this event is addressed to (an operational notice about your own "
        "subscriptions, or a notice that another agency read one of your children); no other agency "
        "receives or can read it.",
    )


class EventTypePublic(BaseModel):
    type: str = Field(examples=["cn.gov.childlink.education.dropout-risk.flagged.v1"])
    version: int
    title: str
    description: str
    publishers: list[str] = Field(description="Agency kinds that publish this type.")
    published_by_registry: bool = Field(
        description="Emitted by the registry itself; not accepted at `POST /v1/events`."
    )
    categories: list[DataCategory] = Field(description="Data categories the payload may carry.")
    data_schema: dict[str, Any] = Field(
        description="JSON Schema (2020-12) of `data`. Each property's `x-data-category` names its "
        "data category; properties without one are references, always delivered."
    )


class EventTypeList(BaseModel):
    items: list[EventTypePublic]


class FeedPage(BaseModel):
    subscription_id: uuid.UUID
    events: list[CloudEventOut]
    next_after: int = Field(description="Pass as `after` to continue; everything up to it has been read.")
    head: int = Field(description="The newest sequence number committed when this page was read.")
