"""The police's and the women's federation's event types (see
:mod:`app.events.types` for the naming rules)."""

from __future__ import annotations

from app.events import schema as s
from app.events.spec import TypeSpec
from app.models.agency import AgencyKind
from app.models.vocabulary import DataCategory

C = DataCategory
POLICE = AgencyKind.police
WOMENS = AgencyKind.womens_federation

_WISH_CATEGORIES = ("study_supplies", "clothing", "books", "toys", "visit_parents", "other")
_WISH_REF = s.text(
    C.welfare,
    "The federation's reference for the wish, the same in posted, claimed and fulfilled.",
    max_length=64,
)


PARTNER_SPECS: tuple[TypeSpec, ...] = (
    # 公安 police ---------------------------------------------------------------------------------
    TypeSpec(
        "police.incident.reported",
        "Incident against a child reported (强制报告)",
        "Police received or opened a report of harm to the child. Other agencies see the "
        "handling unit to coordinate with; the case itself is law-enforcement data.",
        (POLICE,),
        {
            "occurred_on": s.date(C.law_enforcement, "When it happened, as far as known."),
            "incident_type": s.code(
                ("abuse", "neglect", "sexual_abuse", "bullying", "trafficking", "injury", "other"),
                C.law_enforcement,
                "What was reported.",
            ),
            "child_role": s.code(("victim", "witness", "involved"), C.law_enforcement, "The child's role."),
            "case_ref": s.text(C.law_enforcement, "The police case reference.", max_length=64),
            "child_safe_now": s.flag(C.custody, "Whether the child is now in a safe place."),
            "handling_unit": s.unit("The police unit handling it, and its duty phone."),
        },
        ("occurred_on", "incident_type", "child_role", "handling_unit"),
    ),
    TypeSpec(
        "police.missing-child.reported",
        "Missing child reported",
        "The child has been reported missing.",
        (POLICE,),
        {
            "reported_at": s.date_time(C.law_enforcement, "When the report was made."),
            "last_seen_at": s.date_time(C.law_enforcement, "When the child was last seen."),
            "last_seen_region_code": {**s.region(), "x-data-category": str(C.law_enforcement)},
            "description": s.text(
                C.identity, "What the child looks like and wore, for anyone who may see them.", max_length=500
            ),
            "case_ref": s.text(C.law_enforcement, "The police case reference.", max_length=64),
            "handling_unit": s.unit("The police unit searching, and its duty phone."),
        },
        ("reported_at", "handling_unit"),
    ),
    TypeSpec(
        "police.missing-child.resolved",
        "Missing child found",
        "A child reported missing has been found, or the report was withdrawn; the custody check "
        "stops saying the child is missing.",
        (POLICE,),
        {
            "resolved_at": s.date_time(
                C.law_enforcement, "When the child was found or the report withdrawn."
            ),
            "outcome": s.code(
                ("found_safe", "found_harmed", "returned_on_own", "report_withdrawn", "other"),
                C.law_enforcement,
                "How it ended.",
            ),
            "case_ref": s.text(C.law_enforcement, "The police case reference.", max_length=64),
            "handling_unit": s.unit("The police unit that handled it, and its duty phone."),
        },
        ("resolved_at", "outcome"),
        example={"resolved_at": "2026-12-02T08:15:00+08:00", "outcome": "found_safe"},
    ),
    TypeSpec(
        "police.custody.intervention",
        "Custody intervention",
        "Police removed the child from danger or placed them in someone's care.",
        (POLICE,),
        {
            "intervened_at": s.date_time(C.custody, "When."),
            "action": s.code(
                (
                    "removed_from_home",
                    "placed_with_relatives",
                    "handed_to_rescue_centre",
                    "returned_to_guardian",
                ),
                C.custody,
                "What the police did.",
            ),
            "case_ref": s.text(C.law_enforcement, "The police case reference.", max_length=64),
            "handling_unit": s.unit("The police unit, and its duty phone (required: whom to call now)."),
            "placed_with": s.person("The relative the child was placed with (`placed_with_relatives`)."),
        },
        ("intervened_at", "action", "handling_unit"),
        example={
            "intervened_at": "2026-12-01T22:40:00+08:00",
            "action": "removed_from_home",
            "handling_unit": {"name": "簇桥派出所", "duty_phone": "028-85222222"},
        },
    ),
    TypeSpec(
        "police.guardian-duty-failure.reported",
        "Guardian failing their duty (监护人不履行监护职责)",
        "Police found that a guardian fails their duty of care.",
        (POLICE,),
        {
            "reported_on": s.date(C.law_enforcement, "Date of the finding."),
            "failure_type": s.code(
                ("abandonment", "neglect", "abuse", "left_without_care", "other"),
                C.law_enforcement,
                "How the guardian fails.",
            ),
            "measures": s.codes(
                ("warning", "education_order", "family_education_guidance_order", "revocation_referral"),
                C.law_enforcement,
                "Measures taken (训诫, 家庭教育指导令, referral for revocation of guardianship).",
            ),
            "case_ref": s.text(C.law_enforcement, "The police case reference.", max_length=64),
            "handling_unit": s.unit("The police unit, and its duty phone."),
        },
        ("reported_on", "failure_type", "handling_unit"),
    ),
    # 妇联 women's federation ---------------------------------------------------------------------
    TypeSpec(
        "womens-federation.caring-mother.paired",
        "Caring mother paired (爱心妈妈结对)",
        "A volunteer 'caring mother' was paired with the child.",
        (WOMENS,),
        {
            "paired_on": s.date(C.welfare, "Date of the pairing."),
            "volunteer_ref": s.text(
                C.welfare, "The federation's reference for the volunteer.", max_length=64
            ),
            "volunteer_contact": s.unit("How to reach the volunteer (name and phone)."),
            "visit_frequency": s.code(
                ("weekly", "fortnightly", "monthly"), C.welfare, "How often she visits."
            ),
        },
        ("paired_on", "volunteer_ref"),
    ),
    TypeSpec(
        "womens-federation.caring-mother.pairing-ended",
        "Caring-mother pairing ended",
        "A caring-mother pairing (爱心妈妈结对) ended.",
        (WOMENS,),
        {
            "ended_on": s.date(C.welfare, "Last day of the pairing."),
            "volunteer_ref": s.text(
                C.welfare, "The federation's reference for the volunteer.", max_length=64
            ),
            "reason": s.code(
                ("child_exited_registry", "volunteer_withdrew", "family_request", "child_moved", "other"),
                C.welfare,
                "Why it ended.",
            ),
            "re_pairing_planned": s.flag(C.welfare, "Whether another caring mother will be paired."),
        },
        ("ended_on", "volunteer_ref", "reason"),
        example={"ended_on": "2026-12-31", "volunteer_ref": "WF-2026-0117", "reason": "volunteer_withdrew"},
    ),
    TypeSpec(
        "womens-federation.family-education.guidance-given",
        "Family-education guidance given (家庭教育指导)",
        "The family received family-education guidance.",
        (WOMENS,),
        {
            "given_on": s.date(C.welfare, "Date."),
            "format": s.code(("home_visit", "class", "online", "hotline"), C.welfare, "How it was given."),
            "topics": s.codes(
                ("parenting", "safety", "mental_health", "study", "guardian_duty"),
                C.welfare,
                "What it covered.",
            ),
        },
        ("given_on", "format"),
    ),
    TypeSpec(
        "womens-federation.small-wish.fulfilled",
        "Small wish fulfilled (微心愿)",
        "A child's small wish was fulfilled.",
        (WOMENS,),
        {
            "fulfilled_on": s.date(C.welfare, "Date."),
            "wish_category": s.code(_WISH_CATEGORIES, C.welfare, "What kind of wish."),
            "wish_ref": _WISH_REF,
        },
        ("fulfilled_on", "wish_category"),
    ),
    TypeSpec(
        "womens-federation.small-wish.posted",
        "Small wish posted (微心愿)",
        "A child's small wish was posted for a donor to claim.",
        (WOMENS,),
        {
            "posted_on": s.date(C.welfare, "Date."),
            "wish_ref": _WISH_REF,
            "wish_category": s.code(_WISH_CATEGORIES, C.welfare, "What kind of wish."),
            "wish": s.text(
                C.welfare, "The wish in the child's words, without names or places.", max_length=200
            ),
        },
        ("posted_on", "wish_ref", "wish_category"),
        example={
            "posted_on": "2026-12-01",
            "wish_ref": "W-510107-0042",
            "wish_category": "books",
            "wish": "一套科普书",
        },
    ),
    TypeSpec(
        "womens-federation.small-wish.claimed",
        "Small wish claimed",
        "A donor claimed a posted small wish; it is fulfilled when the gift reaches the child.",
        (WOMENS,),
        {
            "claimed_on": s.date(C.welfare, "Date."),
            "wish_ref": _WISH_REF,
            "donor": s.unit("The donor (a person or an organisation) and how to reach them."),
        },
        ("claimed_on", "wish_ref"),
        example={"claimed_on": "2026-12-05", "wish_ref": "W-510107-0042"},
    ),
)
