"""Event types addressed to one agency (app/events/audience.py): what the platform tells a
subscriber about its own deliveries, and an owner about reads of its children.

Each carries references and codes only (ids the agency already holds, reasons, times), never a
child's data, and is read by its audience as its own. Emitted by the platform (the delivery
worker, the operators' endpoints, the scheduler), never accepted at ``POST /v1/events``.
"""

from __future__ import annotations

from typing import Any

from app.events import schema as s
from app.events.spec import TypeSpec
from app.models.agency import AgencyKind

_PLATFORM = (AgencyKind.platform,)


def _when(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "description": description}


def _code(values: tuple[str, ...], description: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values), "description": description}


def _count(description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "description": description}


DEAD_LETTER_REASONS = ("exhausted", "aborted", "skipped")
DISABLED_REASONS = ("gone", "failing")

_SUBSCRIPTION = s.reference("Your subscription the notice is about (`GET /v1/subscriptions/{id}`).")

_GROUND = {
    "type": "object",
    "additionalProperties": False,
    "required": ["category", "ground"],
    "properties": {
        "category": {"type": "string", "maxLength": 32, "description": "A data category released."},
        "ground": {
            "type": "string",
            "maxLength": 32,
            "description": "Its legal ground: `statute`, `consent`, `referral` or `break_glass`.",
        },
        "citation": {"type": "string", "maxLength": 500, "description": "The provision cited, if any."},
    },
}

_READ = {
    "type": "object",
    "additionalProperties": False,
    "required": ["agency", "read_at", "action", "purpose", "grounds", "break_glass"],
    "properties": {
        "agency": {
            "type": "string",
            "maxLength": 64,
            "description": "The agency that read (never a person).",
        },
        "read_at": _when("When the read was logged."),
        "action": {"type": "string", "maxLength": 64, "description": "What was read (`child.read` ...)."},
        "purpose": {"type": "string", "maxLength": 64, "description": "The purpose of use it stated."},
        "grounds": {"type": "array", "maxItems": 20, "items": _GROUND, "description": "What released it."},
        "break_glass": {"type": "boolean", "description": "Read under emergency access (break-glass)."},
    },
}

MAX_READS = 200
"""Reads listed in one notice; ``read_count`` tells how many there were in all."""

NOTICE_SPECS: tuple[TypeSpec, ...] = (
    TypeSpec(
        "platform.delivery.dead-lettered",
        "Delivery dead-lettered",
        "A delivery to one of your webhook subscriptions was dead-lettered: its retries ran out "
        "(`exhausted`), your endpoint answered `webhook-delivery: abort-message` (`aborted`), or an "
        "operator skipped it (`skipped`). Find it in `GET /v1/subscriptions/{id}/dead-letters`; "
        "`/retry` or the redrive sends it again. Sent to your agency alone, on its feed and its other "
        "subscriptions to this type (never to the one that failed). A dead-lettered delivery of a "
        "notice like this one produces none.",
        _PLATFORM,
        {
            "subscription_id": _SUBSCRIPTION,
            "delivery_id": {"type": "integer", "minimum": 1, "description": "The delivery."},
            "event_id": s.reference("The event it carried."),
            "event_type": {"type": "string", "maxLength": 120, "description": "The event's type."},
            "reason": _code(DEAD_LETTER_REASONS, "Why it was dead-lettered."),
            "attempts": _count("Attempts made."),
            "dead_lettered_at": _when("When."),
        },
        ("subscription_id", "delivery_id", "event_id", "event_type", "reason", "dead_lettered_at"),
        registry_only=True,
        addressed=True,
        example={
            "subscription_id": "3b241101-e2bb-4255-8caf-4136c566a962",
            "delivery_id": 4711,
            "event_id": "0b6f7c8e-2d7a-4f43-9a59-8f0a3c1f5e21",
            "event_type": "cn.gov.childlink.education.dropout-risk.flagged.v1",
            "reason": "exhausted",
            "attempts": 9,
            "dead_lettered_at": "2026-11-27T08:30:00+08:00",
        },
    ),
    TypeSpec(
        "platform.subscription.disabled",
        "Subscription disabled",
        "The platform disabled one of your webhook subscriptions: its endpoint answered 410 "
        "(`gone`), or it failed without a success for the whole period the platform allows "
        "(`failing`). Nothing more is sent to it; what keeps queueing is listed at "
        "`GET /v1/subscriptions/{id}/deliveries?status=pending`, and what the endpoint answered "
        "410 at `?status=gone`. Re-enable it with `PATCH` "
        '`{"status": "active", "resume": "where_stopped" | "now"}`: `where_stopped` sends both. '
        "Sent to your agency alone, on its feed and its other subscriptions to this type.",
        _PLATFORM,
        {
            "subscription_id": _SUBSCRIPTION,
            "reason": _code(DISABLED_REASONS, "Why it was disabled."),
            "disabled_at": _when("When."),
            "failing_since": _when("Since when it had been failing, if it was."),
            "pending_deliveries": _count(
                "Deliveries waiting when it was disabled, those answered 410 among them."
            ),
        },
        ("subscription_id", "reason", "disabled_at", "pending_deliveries"),
        registry_only=True,
        addressed=True,
        example={
            "subscription_id": "3b241101-e2bb-4255-8caf-4136c566a962",
            "reason": "failing",
            "disabled_at": "2026-11-27T08:30:00+08:00",
            "failing_since": "2026-11-22T08:30:00+08:00",
            "pending_deliveries": 12,
        },
    ),
    TypeSpec(
        "platform.access.recorded",
        "Your child was read by another agency",
        "Another agency read a child whose record you keep and whom the policy marks for notice "
        "(`access_notifications`: e.g. a child in the `guardian_harm` category, or with an open "
        "protection case). One notice per child per hour, listing that hour's reads from the access "
        "log: who (the agency), when, the purpose stated and the legal ground; no data. Reads under "
        "an open police investigation are held back and sent once it closes (`held_until_closed`); "
        "reads by the receivers of an open mandatory report about the child are never sent (they "
        "would reveal that a report was made). Sent to your agency alone.",
        _PLATFORM,
        {
            "child_id": s.reference("The child (your record)."),
            "window_start": _when("The hour the reads fall in: its start."),
            "window_end": _when("Its end."),
            "read_count": _count("How many reads; at most the first 200 are listed."),
            "reads": {
                "type": "array",
                "maxItems": MAX_READS,
                "items": _READ,
                "description": "The reads, oldest first.",
            },
            "held_until_closed": {
                "type": "boolean",
                "description": "These reads were held back under an investigation that has since closed.",
            },
        },
        ("child_id", "window_start", "window_end", "read_count", "reads"),
        registry_only=True,
        addressed=True,
        example={
            "child_id": "ada71825-d133-4af8-8c55-343669e0b765",
            "window_start": "2026-11-27T08:00:00+08:00",
            "window_end": "2026-11-27T09:00:00+08:00",
            "read_count": 1,
            "reads": [
                {
                    "agency": "police",
                    "read_at": "2026-11-27T08:30:00+08:00",
                    "action": "child.read",
                    "purpose": "child_protection",
                    "grounds": [{"category": "identity", "ground": "statute"}],
                    "break_glass": False,
                }
            ],
            "held_until_closed": False,
        },
    ),
)
