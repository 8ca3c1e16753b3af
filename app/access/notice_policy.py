"""The access-notice part of the policy (``access_notifications`` in the policy file): which
children's owners are told when another agency reads them, in windows of what length. Policy as
data: a change is a new policy version, served at ``GET /v1/policy``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.access.policy import Policy
from app.models.case import CaseKind
from app.models.child import ChildCategory


@dataclass(frozen=True, slots=True)
class NoticePolicy:
    child_categories: tuple[str, ...]
    open_case_kinds: tuple[str, ...]
    window: timedelta
    settle: timedelta
    """How long after a window ends its reads are taken to be on the log (the writer's group commit)."""
    lookback: timedelta

    @property
    def enabled(self) -> bool:
        return bool(self.child_categories or self.open_case_kinds)


def notice_policy(policy: Policy) -> NoticePolicy:
    """Parsed and checked: an unknown category or case kind is an error, not a silent gap."""
    doc: dict[str, Any] = dict(policy.document.get("access_notifications", {}))
    categories = tuple(str(ChildCategory(c)) for c in doc.get("child_categories", []))
    kinds = tuple(str(CaseKind(k)) for k in doc.get("open_case_kinds", []))
    window = timedelta(minutes=float(doc.get("window_minutes", 60)))
    if window <= timedelta(0) or timedelta(hours=24) % window:
        raise ValueError("policy access_notifications: window_minutes must divide a day")
    return NoticePolicy(
        child_categories=categories,
        open_case_kinds=kinds,
        window=window,
        settle=timedelta(seconds=float(doc.get("settle_seconds", 60))),
        lookback=timedelta(hours=float(doc.get("lookback_hours", 72))),
    )
