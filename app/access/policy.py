"""The access policy: a versioned JSON file mapping (reader agency kind, data category, purpose)
to a statutory basis with its citation. Loaded once at start; its version and hash are served at
``GET /v1/policy`` so a reader can tell exactly which rules decided a read."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from app.models.agency import AgencyKind
from app.models.vocabulary import DataCategory, PurposeOfUse

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "policy" / "access-policy.json"
ANY_AGENCY = "*"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    agency_kind: str
    categories: frozenset[DataCategory]
    purposes: frozenset[PurposeOfUse]
    citation: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class BreakGlassPolicy:
    agency_kinds: frozenset[str]
    reason_codes: frozenset[str]
    min_justification_length: int
    note: str


@dataclass(frozen=True, slots=True)
class CustodyChangeRule:
    event_type: str
    agency_kinds: frozenset[str]
    citation: str


@dataclass(frozen=True, slots=True)
class CareInterval:
    """How often one kind of follow-up falls due (``care_schedule`` in the policy file)."""

    default_days: int
    first_within_days: int
    by_category: dict[str, int]
    by_custody_status: dict[str, int]


@dataclass(frozen=True, slots=True)
class AgeBand:
    label: str
    label_zh: str
    start: int
    end: int
    """Inclusive, in whole years."""


@dataclass(frozen=True, slots=True)
class StatisticsPolicy:
    """Disclosure control for aggregate counts (``statistics`` in the policy file)."""

    threshold: int
    rounding_base: int
    age_bands: tuple[AgeBand, ...]
    rules: dict[str, Rule]
    """By agency kind: the categories it may count by. Kept apart from the record rules so that a
    read of a child's record stating purpose ``statistics`` is never granted anything by them."""

    def grant(self, agency_kind: str, category: DataCategory) -> Rule | None:
        rule = self.rules.get(agency_kind)
        return rule if rule is not None and category in rule.categories else None


@dataclass(frozen=True)
class Policy:
    version: str
    sha256: str
    description: str
    rules: tuple[Rule, ...]
    investigation_purposes: frozenset[PurposeOfUse]
    break_glass: BreakGlassPolicy
    oversight_agency_kinds: frozenset[str]
    """Agency kinds whose ``audit:read`` readers see every agency's records in their region (the
    platform always does); others see their own agency's reads and reads of the records it keeps."""
    oversight_note: str
    document: dict[str, Any]
    _index: dict[tuple[str, DataCategory, PurposeOfUse], Rule]
    custody_changes: dict[str, CustodyChangeRule]
    """Event types that change custody, by type: who may publish each."""
    care_schedule: dict[str, CareInterval]
    """By what falls due (``assessment``, ``home_visit``)."""
    statistics: StatisticsPolicy

    @cached_property
    def investigating_kinds(self) -> frozenset[str]:
        """Agency kinds a rule lets read for an investigation purpose."""
        return frozenset(
            r.agency_kind
            for r in self.rules
            if r.purposes & self.investigation_purposes and r.agency_kind != ANY_AGENCY
        )

    def statute(self, agency_kind: str, category: DataCategory, purpose: PurposeOfUse) -> Rule | None:
        """The first rule granting this category to this kind of agency for this purpose."""
        return self._index.get((agency_kind, category, purpose)) or self._index.get(
            (ANY_AGENCY, category, purpose)
        )


def load_policy(path: Path = DEFAULT_POLICY_PATH) -> Policy:
    """Parse and check the policy file; an unknown category, purpose or agency kind is an error
    at start-up, not a silent gap at read time."""
    raw = path.read_bytes()
    document = json.loads(raw)
    kinds = {k.value for k in AgencyKind} | {ANY_AGENCY}
    rules = []
    index: dict[tuple[str, DataCategory, PurposeOfUse], Rule] = {}
    seen_ids = set()
    for item in document["rules"]:
        if item["agency_kind"] not in kinds:
            raise ValueError(f"policy rule {item['id']}: unknown agency kind")
        if item["id"] in seen_ids:
            raise ValueError(f"policy rule {item['id']}: duplicate id")
        seen_ids.add(item["id"])
        rule = Rule(
            id=item["id"],
            agency_kind=item["agency_kind"],
            categories=frozenset(DataCategory(c) for c in item["categories"]),
            purposes=frozenset(PurposeOfUse(p) for p in item["purposes"]),
            citation=item["citation"],
            note=item.get("note"),
        )
        rules.append(rule)
        for category in rule.categories:
            for purpose in rule.purposes:
                index.setdefault((rule.agency_kind, category, purpose), rule)
    glass = document.get("break_glass", {})
    glass_kinds = frozenset(glass.get("agency_kinds", []))
    if not glass_kinds <= kinds:
        raise ValueError("policy break_glass: unknown agency kind")
    oversight_kinds = frozenset(document.get("oversight_agency_kinds", []))
    if not oversight_kinds <= kinds - {ANY_AGENCY}:
        raise ValueError("policy oversight_agency_kinds: unknown agency kind")
    return Policy(
        version=str(document["version"]),
        sha256=hashlib.sha256(raw).hexdigest(),
        description=str(document.get("description", "")),
        rules=tuple(rules),
        investigation_purposes=frozenset(PurposeOfUse(p) for p in document.get("investigation_purposes", [])),
        break_glass=BreakGlassPolicy(
            agency_kinds=glass_kinds,
            reason_codes=frozenset(glass.get("reason_codes", [])),
            min_justification_length=int(glass.get("min_justification_length", 20)),
            note=str(glass.get("note", "")),
        ),
        oversight_agency_kinds=oversight_kinds,
        oversight_note=str(document.get("oversight_note", "")),
        document=document,
        _index=index,
        custody_changes=_custody_changes(document.get("custody_changes", {}), kinds),
        care_schedule={
            what: CareInterval(
                default_days=int(item["default_days"]),
                first_within_days=int(item["first_within_days"]),
                by_category={str(k): int(v) for k, v in item.get("by_category", {}).items()},
                by_custody_status={str(k): int(v) for k, v in item.get("by_custody_status", {}).items()},
            )
            for what, item in document.get("care_schedule", {}).items()
            if isinstance(item, dict)
        },
        statistics=_statistics(document.get("statistics", {}), kinds),
    )


def _statistics(section: dict[str, Any], kinds: set[str]) -> StatisticsPolicy:
    bands = tuple(
        AgeBand(str(b["label"]), str(b.get("label_zh", b["label"])), int(b["from"]), int(b["to"]))
        for b in section.get("age_bands", [])
    )
    for band in bands:
        if not 0 <= band.start <= band.end:
            raise ValueError(f"policy statistics age band {band.label}: bad bounds")
    threshold = int(section.get("threshold", 5))
    rounding_base = int(section.get("rounding_base", 5))
    if threshold < 1 or rounding_base < 1:
        raise ValueError("policy statistics: threshold and rounding_base must be at least 1")
    rules: dict[str, Rule] = {}
    for item in section.get("rules", []):
        if item["agency_kind"] not in kinds - {ANY_AGENCY} or item["agency_kind"] in rules:
            raise ValueError(f"policy statistics rule {item['id']}: unknown or repeated agency kind")
        rules[item["agency_kind"]] = Rule(
            id=item["id"],
            agency_kind=item["agency_kind"],
            categories=frozenset(DataCategory(c) for c in item["categories"]),
            purposes=frozenset(PurposeOfUse(p) for p in item["purposes"]),
            citation=item["citation"],
            note=item.get("note"),
        )
    return StatisticsPolicy(threshold=threshold, rounding_base=rounding_base, age_bands=bands, rules=rules)


def _custody_changes(section: dict[str, Any], kinds: set[str]) -> dict[str, CustodyChangeRule]:
    rules: dict[str, CustodyChangeRule] = {}
    for item in section.get("rules", []):
        agency_kinds = frozenset(item["agency_kinds"])
        if not agency_kinds <= kinds - {ANY_AGENCY}:
            raise ValueError(f"policy custody_changes {item['event_type']}: unknown agency kind")
        rules[item["event_type"]] = CustodyChangeRule(item["event_type"], agency_kinds, item["citation"])
    return rules
