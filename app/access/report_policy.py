"""The mandatory-report part of the access policy (``report_routing`` in the policy file): who
receives a report of each concern, how soon each urgency must be acknowledged and handled, and
who reads the reporter's identity. Policy as data: a change is a new policy version, served at
``GET /v1/policy``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.access.policy import Policy
from app.models.vocabulary import DataCategory


@dataclass(frozen=True, slots=True)
class UrgencyClock:
    acknowledge_within: timedelta
    handle_within: timedelta
    escalation_interval: timedelta
    delivery_priority: int = 0
    """Above 0, the ``platform.report.received`` events go ahead of every receiver's backlog."""


@dataclass(frozen=True, slots=True)
class Route:
    agency_kinds: tuple[str, ...]
    citation: str


@dataclass(frozen=True, slots=True)
class ReportPolicy:
    by_concern: dict[str, Route]
    by_urgency: dict[str, UrgencyClock]
    receiver_categories: tuple[DataCategory, ...]
    reporter_readers: frozenset[str]


def report_policy(policy: Policy) -> ReportPolicy:
    doc: dict[str, Any] = dict(policy.document.get("report_routing", {}))
    return ReportPolicy(
        by_concern={
            str(concern): Route(tuple(item["agency_kinds"]), str(item.get("citation", "")))
            for concern, item in doc.get("by_concern", {}).items()
        },
        by_urgency={
            str(urgency): UrgencyClock(
                acknowledge_within=timedelta(minutes=float(item["acknowledge_within_minutes"])),
                handle_within=timedelta(hours=float(item["handle_within_hours"])),
                escalation_interval=timedelta(minutes=float(item["escalation_interval_minutes"])),
                delivery_priority=int(item.get("delivery_priority", 0)),
            )
            for urgency, item in doc.get("by_urgency", {}).items()
        },
        receiver_categories=tuple(DataCategory(c) for c in doc.get("receiver_categories", [])),
        reporter_readers=frozenset(doc.get("reporter_readers", [])),
    )
