"""The scope vocabulary (DESIGN §3). Tokens carry a space-separated subset of it."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    children_read = "children:read"
    children_write = "children:write"
    custody_read = "custody:read"
    custody_write = "custody:write"
    consents_read = "consents:read"
    consents_write = "consents:write"
    events_publish = "events:publish"
    events_read = "events:read"
    subscriptions_manage = "subscriptions:manage"
    audit_read = "audit:read"
    statistics_read = "statistics:read"
    break_glass = "break-glass"
    admin = "admin"
    cases_write = "cases:write"
    reports_file = "reports:file"


SCOPE_DESCRIPTIONS: dict[str, str] = {
    Scope.children_read: "Read child registry records (through the access layer).",
    Scope.children_write: "Register, update and exit children (civil affairs).",
    Scope.custody_read: "Ask who has custody of a child and whom to call.",
    Scope.custody_write: "Record guardianship and custody interventions.",
    Scope.consents_read: "Read guardian consents on record.",
    Scope.consents_write: "Record and revoke guardian consents.",
    Scope.events_publish: "Publish child-status events.",
    Scope.events_read: "Read events and the pull feed.",
    Scope.subscriptions_manage: "Manage the agency's event subscriptions.",
    Scope.audit_read: "Review the access log and break-glass uses.",
    Scope.statistics_read: "Read aggregate counts for joint meetings (摸底排查), under disclosure control.",
    Scope.break_glass: "Read in an emergency with a stated justification.",
    Scope.admin: "Register agencies and API clients (platform operator).",
    Scope.cases_write: "Open and close cases, refer them and answer referrals (协同处置).",
    Scope.reports_file: "File mandatory reports (强制报告) and follow their status; any agency kind.",
}


def parse_scopes(value: str | None) -> list[Scope]:
    """Parse a space-separated scope string; unknown scopes raise ``ValueError``."""
    if not value:
        return []
    out: list[Scope] = []
    for item in value.split():
        scope = Scope(item)  # raises ValueError for an unknown scope
        if scope not in out:
            out.append(scope)
    return out


def format_scopes(scopes: list[Scope] | frozenset[Scope] | tuple[Scope, ...]) -> str:
    return " ".join(sorted(str(s) for s in scopes))


PRIVILEGED_SCOPES: frozenset[Scope] = frozenset({Scope.admin, Scope.audit_read})
"""Scopes an external issuer grants only when its trust configuration opts in explicitly."""
