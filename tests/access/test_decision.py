"""The decision function, exercised directly against the real policy file."""

from __future__ import annotations

import copy
import inspect
import uuid
from typing import Any, cast

import pytest

from app.access.decision import BreakGlass, ConsentGrant, Ground, Outcome, ReferralGrant, decide
from app.access.door import Door
from app.access.policy import Policy, load_policy
from app.access.reading import Reader, Subject
from app.auth.principal import Principal
from app.models.child import AccessSummary
from app.models.vocabulary import DataCategory as C
from app.models.vocabulary import PurposeOfUse as P


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


ALL = list(C)


class TestGrounds:
    def test_owner_reads_everything_without_a_purpose(self, policy: Policy) -> None:
        d = decide(
            policy,
            reader_agency="civil-affairs",
            reader_kind="civil-affairs",
            owner_agency="civil-affairs",
            categories=ALL,
            purpose=None,
        )
        assert d.outcome is Outcome.allow
        assert not d.cross_agency
        assert {g.ground for g in d.granted.values()} == {Ground.owner}

    def test_cross_agency_without_purpose_is_denied(self, policy: Policy) -> None:
        d = decide(
            policy,
            reader_agency="police",
            reader_kind="police",
            owner_agency="civil-affairs",
            categories=[C.custody],
            purpose=None,
        )
        assert d.outcome is Outcome.deny
        assert d.reason == "purpose_required"

    def test_statute_grants_police_custody_with_its_citation(self, policy: Policy) -> None:
        d = decide(
            policy,
            reader_agency="police",
            reader_kind="police",
            owner_agency="civil-affairs",
            categories=[C.custody, C.contact],
            purpose=P.child_protection,
        )
        assert d.outcome is Outcome.allow
        assert d.granted[C.custody].ground is Ground.statute
        assert d.granted[C.custody].ref == "police-protection"
        assert "未成年人保护法" in (d.granted[C.custody].citation or "")

    @pytest.mark.parametrize(
        ("kind", "purpose", "returned", "withheld"),
        [
            (
                "womens-federation",
                P.child_protection,
                {C.identity, C.contact, C.welfare},
                {C.identifier, C.custody, C.education, C.health, C.disability, C.law_enforcement, C.reporter},
            ),
            (
                "education",
                P.education_support,
                {C.identity, C.education, C.custody, C.welfare},
                {C.identifier, C.contact, C.health, C.disability, C.law_enforcement, C.reporter},
            ),
            (
                "health",
                P.health_care,
                {C.identity, C.identifier, C.health, C.disability, C.welfare},
                {C.contact, C.custody, C.education, C.law_enforcement, C.reporter},
            ),
            (
                "police",
                P.investigation,
                {C.identity, C.identifier, C.contact, C.custody, C.law_enforcement},
                {C.welfare, C.education, C.health, C.disability, C.reporter},
            ),
        ],
    )
    def test_each_agency_gets_what_the_policy_names_and_no_more(
        self, policy: Policy, kind: str, purpose: P, returned: set[C], withheld: set[C]
    ) -> None:
        d = decide(
            policy,
            reader_agency=kind,
            reader_kind=kind,
            owner_agency="civil-affairs",
            categories=ALL,
            purpose=purpose,
        )
        assert set(d.granted) == returned
        assert set(d.withheld) == withheld  # no statute releases `reporter`: only a report's referral
        assert d.outcome is Outcome.allow_redacted

    @pytest.mark.parametrize("kind", ["education", "health", "womens-federation"])
    def test_emergency_opens_custody_but_not_contact_to_any_agency(self, policy: Policy, kind: str) -> None:
        d = decide(
            policy,
            reader_agency=kind,
            reader_kind=kind,
            owner_agency="civil-affairs",
            categories=[C.identity, C.custody, C.contact],
            purpose=P.emergency,
        )
        assert d.outcome is Outcome.allow_redacted
        assert d.granted[C.custody].ref == "any-emergency"
        assert "第十三条第一款第（四）项" in (d.granted[C.custody].citation or "")
        assert d.withheld == {C.contact: "no_legal_basis"}

    @pytest.mark.parametrize("kind", ["police", "civil-affairs"])
    def test_police_and_civil_affairs_keep_contact_in_an_emergency_by_their_own_rules(
        self, policy: Policy, kind: str
    ) -> None:
        d = decide(
            policy,
            reader_agency=f"{kind}-510107",
            reader_kind=kind,
            owner_agency="civil-affairs",
            categories=[C.contact],
            purpose=P.emergency,
        )
        assert d.granted[C.contact].ref != "any-emergency"

    def test_consent_fills_in_after_statute_for_its_purpose_only(self, policy: Policy) -> None:
        consent = ConsentGrant("c-1", frozenset({C.health}), frozenset({P.child_protection}))
        d = decide(
            policy,
            reader_agency="womens-federation",
            reader_kind="womens-federation",
            owner_agency="civil-affairs",
            categories=[C.identity, C.health],
            purpose=P.child_protection,
            consents=[consent],
        )
        assert d.granted[C.identity].ground is Ground.statute
        assert d.granted[C.health].ground is Ground.consent
        other = decide(
            policy,
            reader_agency="womens-federation",
            reader_kind="womens-federation",
            owner_agency="civil-affairs",
            categories=[C.health],
            purpose=P.education_support,
            consents=[consent],
        )
        assert other.outcome is Outcome.deny

    def test_break_glass_comes_last_and_is_flagged(self, policy: Policy) -> None:
        d = decide(
            policy,
            reader_agency="police",
            reader_kind="police",
            owner_agency="civil-affairs",
            categories=[C.custody, C.health],
            purpose=P.emergency,
            break_glass=BreakGlass("imminent_danger", "child reported missing in flood zone"),
        )
        assert d.granted[C.custody].ground is Ground.statute
        assert d.granted[C.health].ground is Ground.break_glass
        assert d.break_glass_used

    def test_nothing_granted_is_a_deny_with_reason(self, policy: Policy) -> None:
        d = decide(
            policy,
            reader_agency="womens-federation",
            reader_kind="womens-federation",
            owner_agency="civil-affairs",
            categories=[C.health],
            purpose=P.child_protection,
        )
        assert d.outcome is Outcome.deny
        assert d.reason == "no_legal_basis"


class TestReferralGround:
    def test_a_referral_releases_its_categories_after_statute_and_before_break_glass(
        self, policy: Policy
    ) -> None:
        d = decide(
            policy,
            reader_agency="womens-federation",
            reader_kind="womens-federation",
            owner_agency="education",
            categories=[C.identity, C.education, C.health],
            purpose=P.child_protection,
            referrals=[ReferralGrant("r-1", frozenset({C.education, C.identity}))],
            break_glass=BreakGlass("imminent_danger", "x" * 30),
        )
        assert d.granted[C.identity].ground is Ground.statute
        assert d.granted[C.education].ground is Ground.referral
        assert d.granted[C.education].ref == "r-1"
        assert d.granted[C.health].ground is Ground.break_glass


class TestPolicyFile:
    def test_version_and_hash_identify_the_file(self, policy: Policy) -> None:
        assert policy.version
        assert len(policy.sha256) == 64

    def test_unknown_category_in_policy_is_refused_at_load(self, tmp_path: object) -> None:
        import json
        from pathlib import Path

        path = Path(str(tmp_path)) / "p.json"
        path.write_text(
            json.dumps(
                {
                    "version": "x",
                    "rules": [
                        {
                            "id": "r",
                            "agency_kind": "police",
                            "categories": ["dna"],
                            "purposes": ["investigation"],
                            "citation": "-",
                        }
                    ],
                }
            )
        )
        with pytest.raises(ValueError):
            load_policy(path)


class TestReusedDecisions:
    """The door decides each statute-only shape of read once and reuses the decision."""

    @staticmethod
    def door(policy: Policy) -> Door:
        return Door(policy, audit=cast(Any, None), consents=cast(Any, None))

    @staticmethod
    def reader(agency: str, kind: str) -> Reader:
        principal = Principal(
            client_id="c", agency=agency, scopes=frozenset(), region="51", token_id="t", issuer="i"
        )
        return Reader(
            principal=principal, agency_kind=kind, purpose_raw=None, break_glass_raw=None, request_id=None
        )

    def test_the_cache_key_covers_every_input_of_the_decision(self) -> None:
        # The key is (reader agency, reader kind, owner agency, categories, purpose); consents,
        # break-glass and referrals bypass it. A new input to decide() must join the key (Door._decide).
        assert list(inspect.signature(decide).parameters) == [
            "policy",
            "reader_agency",
            "reader_kind",
            "owner_agency",
            "categories",
            "purpose",
            "consents",
            "break_glass",
            "referrals",
        ]

    def test_each_shape_gets_its_own_decision_and_repeats_get_the_same(self, policy: Policy) -> None:
        door = self.door(policy)
        child = Subject(uuid.uuid4(), "civil-affairs", "510104")
        wanted = [C.custody, C.contact, C.health]
        shapes = {
            "police, child protection": (self.reader("police", "police"), P.child_protection),
            "police, emergency": (self.reader("police", "police"), P.emergency),
            "education, child protection": (self.reader("education", "education"), P.child_protection),
            "owner": (self.reader("civil-affairs", "civil-affairs"), None),
        }
        decided = {name: door._decide(r, child, wanted, p) for name, (r, p) in shapes.items()}
        for name, (r, p) in shapes.items():
            fresh = decide(
                policy,
                reader_agency=r.principal.agency,
                reader_kind=r.agency_kind,
                owner_agency=child.owner_agency,
                categories=wanted,
                purpose=p,
            )
            assert decided[name] == fresh, name
            assert door._decide(r, Subject(uuid.uuid4(), "civil-affairs", "5101"), wanted, p) is decided[name]
        assert len({id(d) for d in decided.values()}) == len(shapes)
        assert decided["owner"].outcome is Outcome.allow and not decided["owner"].cross_agency
        assert set(decided["police, child protection"].withheld) != set(
            decided["education, child protection"].withheld
        )

    def test_consents_are_never_answered_from_the_cache(self, policy: Policy) -> None:
        door = self.door(policy)
        reader = self.reader("education", "education")
        child = Subject(uuid.uuid4(), "civil-affairs", "510104")
        statute = door._decide(reader, child, [C.health], P.child_protection)
        assert C.health in statute.withheld
        consent = ConsentGrant("c-1", frozenset({C.health}), frozenset({P.child_protection}))
        with_consent = door._decide(reader, child, [C.health], P.child_protection, consents=[consent])
        assert with_consent.granted[C.health].ground is Ground.consent
        assert door._decide(reader, child, [C.health], P.child_protection) is statute

    def test_a_shared_document_is_not_changed_by_serving_it(self, policy: Policy) -> None:
        door = self.door(policy)
        decision = door._decide(
            self.reader("police", "police"),
            Subject(uuid.uuid4(), "civil-affairs", "51"),
            [C.custody],
            P.emergency,
        )
        before = copy.deepcopy(decision.document)
        AccessSummary.model_validate(decision.document).categories_returned.clear()
        assert decision.document == before
