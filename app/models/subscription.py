"""Subscriptions to the event exchange, their deliveries and every delivery attempt."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, field_validator, model_validator
from sqlalchemy import BigInteger, Column, Identity, SmallInteger, String
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from app.models.common import BIGINT_MAX, IsoDateTime, timestamp_column, utcnow
from app.models.vocabulary import DataCategory, PurposeOfUse

REGION_PREFIX_PATTERN = r"^(\d{2}|\d{4}|\d{6}|\d{9}|\d{12})?$"
TYPE_FILTER_PATTERN = r"^[a-z0-9.*-]{1,120}$"


class SubscriptionMode(StrEnum):
    webhook = "webhook"
    """We POST each event to your URL, signed."""
    pull = "pull"
    """You read `GET /v1/events/feed`."""


class SubscriptionStatus(StrEnum):
    active = "active"
    paused = "paused"
    """Nothing is sent; events keep queueing and follow when you resume."""
    disabled = "disabled"
    """Stopped by the platform (your endpoint answered 410, kept failing for the configured period,
    or your client was revoked); set `status: active` with `resume` to start again."""


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"
    """Every attempt on the retry schedule failed, or the receiver answered
    `webhook-delivery: abort-message` (dead letter); `/retry` or the redrive sends it again."""
    denied = "denied"
    """The access layer found no legal basis to release any of the event's data to you."""
    gone = "gone"
    """Your endpoint answered 410, which disabled the subscription; re-enabling it
    `where_stopped` sends this delivery again, from `now` skips it."""
    skipped = "skipped"
    """An operator skipped it (a dead letter that holds back nothing): not sent again unless redriven."""


class ResumeFrom(StrEnum):
    where_stopped = "where_stopped"
    """Send what queued while the subscription was disabled (and what its endpoint answered
    410), then carry on."""
    now = "now"
    """Skip what queued meanwhile (it stays listed, `skipped`) and start with the next event."""


class Subscription(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    agency: str = Field(foreign_key="agency.code", max_length=64)
    created_by_client: str = Field(max_length=64)
    reader_region: str = Field(default="", max_length=12)
    """The creating client's region: deliveries are read as that client would read them."""
    description: str = Field(default="", max_length=200)
    mode: str = Field(sa_type=String(8))
    url: str | None = Field(default=None, max_length=2000)
    secret: str | None = Field(default=None, max_length=100)
    retired_secrets: list[dict[str, str]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    """Secrets replaced by rotation, each ``{"secret": sealed, "expires_at": ISO time}``: every one
    keeps signing until its own overlap ends."""
    blocking: bool = False
    """A dead letter holds back the child's later events until an operator retries or skips it."""
    consecutive_failures: int = 0
    failing_since: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    backoff_until: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    type_patterns: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    region_prefix: str = Field(default="", max_length=12)
    categories: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String), nullable=False))
    purpose_of_use: str = Field(max_length=32)
    status: str = Field(default=SubscriptionStatus.active, sa_type=String(16))
    disabled_reason: str | None = Field(default=None, max_length=64)
    dispatched_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class EventDelivery(SQLModel, table=True):
    __tablename__ = "event_delivery"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    subscription_id: uuid.UUID = Field(foreign_key="subscription.id")
    kind: str = Field(default="event", sa_type=String(8))
    event_id: uuid.UUID | None = None
    event_seq: int | None = Field(default=None, sa_column=Column(BigInteger))
    child_id: uuid.UUID | None = None
    webhook_id: str = Field(max_length=64)
    status: str = Field(default=DeliveryStatus.pending, sa_type=String(16))
    attempts: int = 0
    retry_base: int = 0
    """The attempt count at which the retry schedule last started again (an operator's retry)."""
    priority: int = Field(default=0, sa_column=Column(SmallInteger, nullable=False, server_default="0"))
    """The event's priority (``outbox_event.priority``), copied at fan-out; claimed higher first."""
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    lease_token: uuid.UUID | None = None
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    finished_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "delivery_attempt"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    delivery_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    attempt: int
    outcome: str = Field(max_length=16)
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=200)
    duration_ms: int | None = None
    categories_withheld: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String), nullable=False)
    )
    worker: str | None = Field(default=None, max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    """When the attempt finished (or, while ``sending``, began)."""
    sent_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    """When the attempt was put on record, never changed: the table's monthly partition key
    (migration 0018). The table's key is ``(id, sent_at)``; ``id`` alone is unique too."""


_TYPES_DESCRIPTION = (
    "Event types to receive; `*` matches any run of characters, e.g. `cn.gov.childlink.police.*`. "
    "Each pattern must match at least one type in the catalog."
)


NOT_STANDING_PURPOSES = (PurposeOfUse.investigation, PurposeOfUse.emergency)
"""Purposes that justify one read, not a standing stream: an investigation names its case and
an emergency is reviewed case by case, so neither can be declared once for every future event."""


class _SubscriptionFields(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    @field_validator("purpose_of_use", check_fields=False)
    @classmethod
    def _standing_purpose(cls, value: PurposeOfUse | None) -> PurposeOfUse | None:
        if value in NOT_STANDING_PURPOSES:
            raise ValueError("investigation and emergency reads are made one at a time, not subscribed to")
        return value

    @field_validator("types", "categories", check_fields=False)
    @classmethod
    def _unique(cls, value: list[Any] | None) -> list[Any] | None:
        return None if value is None else list(dict.fromkeys(value))


class SubscriptionCreate(_SubscriptionFields):
    description: str = Field(default="", max_length=200, schema_extra={"examples": ["Case system inbox"]})
    mode: SubscriptionMode
    url: str | None = Field(
        default=None,
        max_length=2000,
        description="For `webhook`: where to POST. https only (except in development); it must not "
        "point at a private, loopback or link-local address unless the operator allows it.",
        schema_extra={"examples": ["https://cases.mz.example.gov.cn/childlink/events"]},
    )
    types: list[str] = Field(
        min_length=1,
        max_length=50,
        description=_TYPES_DESCRIPTION,
        schema_extra={"examples": [["cn.gov.childlink.education.*", "cn.gov.childlink.police.*"]]},
    )
    region_prefix: str | None = Field(
        default=None,
        description="Only children in this division (a prefix inside your own region); default: your region.",
        schema_extra={"pattern": REGION_PREFIX_PATTERN, "examples": ["510107"]},
    )
    categories: list[DataCategory] = Field(
        default_factory=list,
        max_length=len(DataCategory),
        description="Only events carrying at least one of these data categories; empty: any.",
    )
    purpose_of_use: PurposeOfUse = Field(
        description="Why you receive these events: every delivery is decided for this purpose and logged."
    )
    from_sequence: int | None = Field(
        default=None,
        ge=0,
        le=BIGINT_MAX,
        description="Start after this sequence number (0: from the first event); default: from now.",
    )
    blocking: bool = Field(
        default=False,
        description="Whether a dead letter holds back the child's later events until you retry or skip "
        "it (strict per-child order). Default: it does not; later events go ahead, since a stuck child "
        "is worse than an out-of-order one. Events still arrive in order while they are retried.",
    )

    @field_validator("types")
    @classmethod
    def _type_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not re.fullmatch(TYPE_FILTER_PATTERN, pattern):
                raise ValueError("a type filter uses lower-case letters, digits, '.', '-' and '*'")
        return value

    @model_validator(mode="after")
    def _mode_fields(self) -> SubscriptionCreate:
        if self.mode is SubscriptionMode.webhook and not self.url:
            raise ValueError("a webhook subscription needs a url")
        if self.mode is SubscriptionMode.pull and self.url:
            raise ValueError("a pull subscription has no url")
        return self


class SubscriptionUpdate(_SubscriptionFields):
    """Every field optional; only the fields sent change."""

    description: str | None = Field(default=None, max_length=200)
    url: str | None = Field(default=None, max_length=2000)
    types: list[str] | None = Field(default=None, min_length=1, max_length=50, description=_TYPES_DESCRIPTION)
    region_prefix: str | None = Field(default=None, schema_extra={"pattern": REGION_PREFIX_PATTERN})
    categories: list[DataCategory] | None = Field(default=None, max_length=len(DataCategory))
    purpose_of_use: PurposeOfUse | None = None
    status: SubscriptionStatus | None = Field(
        default=None,
        description="`active` or `paused` (a disabled subscription is resumed with `active`).",
        schema_extra={"examples": ["paused"]},
    )
    resume: ResumeFrom | None = Field(
        default=None,
        description="Required when a disabled subscription is set `active`: `where_stopped` sends "
        "its pending deliveries, `now` skips them and starts with the next event.",
    )


class SubscriptionPublic(SQLModel):
    id: uuid.UUID = Field(schema_extra={"examples": ["7c9e6679-7425-40de-944b-e07fc1f90ae7"]})
    agency: str
    description: str
    mode: SubscriptionMode
    url: str | None
    types: list[str]
    region_prefix: str
    categories: list[DataCategory]
    purpose_of_use: PurposeOfUse
    status: SubscriptionStatus
    disabled_reason: str | None = Field(
        description="Why the platform disabled it: `gone` (410), `failing` (failed for the whole "
        "configured period) or `client_revoked`."
    )
    blocking: bool = Field(description="Whether a dead letter holds back the child's later events.")
    failing_since: datetime | None = Field(
        description="Since when every attempt has failed (unset while the endpoint is healthy)."
    )
    position: int = Field(description="The last sequence number queued for delivery (webhook mode).")
    secret_rotation_ends_at: datetime | None = Field(
        description="Until when the previous secret still signs deliveries alongside the new one."
    )
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str | None = Field(
        description="For webhooks: the `whsec_...` signing secret. Shown only now; store it safely.",
        schema_extra={"examples": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]},
    )


class SubscriptionList(SQLModel):
    items: list[SubscriptionPublic]


class SecretRotated(SQLModel):
    secret: str = Field(
        description="The new `whsec_...` secret. Shown only now.",
        schema_extra={"examples": ["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]},
    )
    previous_secret_valid_until: datetime = Field(
        description="Until then deliveries are signed with both secrets, so you can switch without loss."
    )


class AttemptPublic(SQLModel):
    attempt: int
    outcome: str = Field(
        description="`sending` (on record before it is sent; still in flight), `delivered`, `failed`, "
        "`gone`, `denied`, `refused`, `aborted` (the receiver answered `webhook-delivery: "
        "abort-message`) or `abandoned` (the worker stopped before it knew the answer)."
    )
    status_code: int | None
    error: str | None
    duration_ms: int | None
    categories_withheld: list[DataCategory]
    at: datetime


class DeliveryPublic(SQLModel):
    id: int
    kind: str = Field(description="`event`, `replay` or `ping`.")
    webhook_id: str = Field(
        description="The `webhook-id` header: the same on every retry.",
        schema_extra={"examples": ["msg_2f1c7e0a9b5d4c1e8a7b6c5d4e3f2a1b"]},
    )
    event_id: uuid.UUID | None
    sequence: int | None
    child_id: uuid.UUID | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="When the next attempt is due (pending only).")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[AttemptPublic]


class DeliveryPage(SQLModel):
    items: list[DeliveryPublic]
    next_cursor: str | None = Field(description="Pass as `before` for older deliveries.")


class ReplayRequest(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    from_sequence: int | None = Field(
        default=None,
        ge=1,
        le=BIGINT_MAX,
        description="Re-send events from this sequence on.",
        schema_extra={"examples": [1200]},
    )
    from_time: IsoDateTime | None = Field(
        default=None, description="Or: events published at or after this time."
    )
    to_sequence: int | None = Field(
        default=None, ge=1, le=BIGINT_MAX, description="Up to this sequence (default: the newest)."
    )

    @model_validator(mode="after")
    def _one_start(self) -> ReplayRequest:
        if (self.from_sequence is None) == (self.from_time is None):
            raise ValueError("give exactly one of from_sequence and from_time")
        if self.from_time is not None and self.from_time.tzinfo is None:
            raise ValueError("from_time needs a UTC offset")
        return self


class ReplayAccepted(SQLModel):
    queued: int = Field(
        description="Deliveries queued, each with a new `webhook-id`.", schema_extra={"examples": [12]}
    )
    from_sequence: int
    to_sequence: int


class RedriveAccepted(SQLModel):
    queued: int = Field(
        description="Dead letters queued again (same `webhook-id`, a fresh retry schedule).",
        schema_extra={"examples": [3]},
    )


class PingResult(SQLModel):
    delivered: bool = Field(schema_extra={"examples": [True]})
    webhook_id: str = Field(schema_extra={"examples": ["msg_2f1c7e0a9b5d4c1e8a7b6c5d4e3f2a1b"]})
    status_code: int | None
    error: str | None
    duration_ms: int
