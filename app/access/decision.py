"""Deciding a read: (reader, owner, categories, purpose) -> decision with its legal basis.

Pure and synchronous: everything it needs is passed in, so it is cheap on the hot path and easy
to test. Grounds are tried per category in the order the law gives them (DESIGN §4): the owner
reads its own record; then statute (the policy file); then an active guardian consent; then an
emergency break-glass. A category no ground covers is withheld. A referral (转介) on a case
releases its named categories to its receiver, for reads of that case, before break-glass is
needed (ground ``referral``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from app.access.policy import Policy
from app.models.vocabulary import DataCategory, PurposeOfUse


class Outcome(StrEnum):
    allow = "allow"
    allow_redacted = "allow_redacted"
    deny = "deny"


class Ground(StrEnum):
    owner = "owner"
    statute = "statute"
    consent = "consent"
    break_glass = "break_glass"
    referral = "referral"


@dataclass(frozen=True, slots=True)
class Grant:
    ground: Ground
    ref: str
    citation: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    """An active consent as the decision sees it: what it covers, already filtered to this child,
    this reader's agency and the current time."""

    consent_id: str
    categories: frozenset[DataCategory]
    purposes: frozenset[PurposeOfUse]


@dataclass(frozen=True, slots=True)
class ReferralGrant:
    """An open referral as the decision sees it: already filtered to the case being read, this
    reader's agency and region, and the purposes a referral serves."""

    referral_id: str
    categories: frozenset[DataCategory]


@dataclass(frozen=True, slots=True)
class BreakGlass:
    reason_code: str
    justification: str


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    purpose: PurposeOfUse | None
    granted: dict[DataCategory, Grant]
    withheld: dict[DataCategory, str]
    cross_agency: bool
    break_glass_used: bool = False
    investigation: bool = False
    reason: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def allows(self, category: DataCategory) -> bool:
        return category in self.granted

    @cached_property
    def document(self) -> dict[str, Any]:
        """What was released and withheld, and on what grounds, as JSON values (the shape of
        ``AccessSummary``). Built once per decision and shared by every response that carries
        it (the door reuses statute decisions), so it is never changed; its arrays are tuples,
        which JSON encoders write as arrays and nothing can append to."""
        return {
            "purpose": str(self.purpose) if self.purpose else None,
            "categories_returned": tuple(str(c) for c in self.granted),
            "withheld": tuple({"category": str(c), "reason": r} for c, r in self.withheld.items()),
            "basis": {
                str(c): {"ground": str(g.ground), "ref": g.ref, "citation": g.citation}
                for c, g in self.granted.items()
            },
        }


def decide(
    policy: Policy,
    *,
    reader_agency: str,
    reader_kind: str,
    owner_agency: str,
    categories: Iterable[DataCategory],
    purpose: PurposeOfUse | None,
    consents: Sequence[ConsentGrant] = (),
    break_glass: BreakGlass | None = None,
    referrals: Sequence[ReferralGrant] = (),
) -> Decision:
    """Decide one read. ``purpose`` is required for a cross-agency read (the caller has already
    refused a missing or unknown one)."""
    wanted = list(dict.fromkeys(categories))
    if reader_agency == owner_agency:
        own = {c: Grant(Ground.owner, owner_agency) for c in wanted}
        return Decision(Outcome.allow, purpose, own, {}, cross_agency=False)
    if purpose is None:
        return Decision(
            Outcome.deny, None, {}, {c: "purpose_required" for c in wanted}, True, reason="purpose_required"
        )

    granted: dict[DataCategory, Grant] = {}
    withheld: dict[DataCategory, str] = {}
    used_break_glass = False
    for category in wanted:
        rule = policy.statute(reader_kind, category, purpose)
        if rule is not None:
            granted[category] = Grant(Ground.statute, rule.id, rule.citation)
            continue
        consent = next((c for c in consents if category in c.categories and purpose in c.purposes), None)
        if consent is not None:
            granted[category] = Grant(Ground.consent, consent.consent_id)
            continue
        referral = next((r for r in referrals if category in r.categories), None)
        if referral is not None:
            granted[category] = Grant(Ground.referral, referral.referral_id)
            continue
        if break_glass is not None:
            granted[category] = Grant(Ground.break_glass, break_glass.reason_code)
            used_break_glass = True
            continue
        withheld[category] = "no_legal_basis"

    if not granted:
        outcome, reason = Outcome.deny, "no_legal_basis"
    elif withheld:
        outcome, reason = Outcome.allow_redacted, None
    else:
        outcome, reason = Outcome.allow, None
    return Decision(
        outcome,
        purpose,
        granted,
        withheld,
        cross_agency=True,
        break_glass_used=used_break_glass,
        investigation=purpose in policy.investigation_purposes,
        reason=reason,
    )
