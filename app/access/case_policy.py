"""The coordinated-handling part of the access policy (``cases`` in the policy file): the purposes a
referral serves, the bounds on deadlines and the escalation interval. Policy as data: changing a
bound is a new policy version, served at ``GET /v1/policy``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.access.policy import Policy


@dataclass(frozen=True, slots=True)
class CasePolicy:
    respond_within_max: timedelta
    complete_within_max: timedelta
    action_due_within_max: timedelta
    escalation_interval: timedelta
    respond_within_default: timedelta
    """A referral's ``respond_by`` when the referrer gives none."""
    complete_within_default: timedelta
    """A referral's ``complete_by`` when the referrer gives none."""
    action_due_default: timedelta
    """A consultation decision's ``due_at`` when it gives none."""
    document: dict[str, Any]


def case_policy(policy: Policy) -> CasePolicy:
    doc = dict(policy.document.get("cases", {}))
    return CasePolicy(
        respond_within_max=timedelta(hours=float(doc.get("respond_within_max_hours", 168))),
        complete_within_max=timedelta(days=float(doc.get("complete_within_max_days", 90))),
        action_due_within_max=timedelta(days=float(doc.get("action_due_within_max_days", 90))),
        escalation_interval=timedelta(hours=float(doc.get("escalation_interval_hours", 24))),
        respond_within_default=timedelta(hours=float(doc.get("default_respond_within_hours", 72))),
        complete_within_default=timedelta(days=float(doc.get("default_complete_within_days", 30))),
        action_due_default=timedelta(days=float(doc.get("default_action_due_within_days", 14))),
        document=doc,
    )


def parent_region(region: str) -> str:
    """The division one level up, as a code prefix: a village's township (9 digits), a
    township's county (6), a county's city (4), a city's province (2); the province itself has
    none above it in ChildLink (empty)."""
    if len(region) > 9:
        return region[:9]
    if len(region) > 6:
        return region[:6]
    if len(region) > 4:
        return region[:4]
    if len(region) > 2:
        return region[:2]
    return ""
