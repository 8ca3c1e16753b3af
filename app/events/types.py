"""The versioned event types of DESIGN §2, one per thing an agency tells the others.

Type names are ``cn.gov.childlink.<publishing agency kind>.<what>.v<version>``. A new version of a
type is a new entry (``...v2``) beside the old one, so subscribers move when they are ready.
The four registry types are emitted by the registry itself (``POST /v1/children`` and friends),
never through ``POST /v1/events``: a "registered" event for a child nobody registered would be a
lie the platform vouched for.
"""

from __future__ import annotations

from app.events import schema as s
from app.events.spec import PREFIX, TypeSpec
from app.events.types_partners import PARTNER_SPECS
from app.models.agency import AgencyKind
from app.models.child import CATEGORY_DATA, FIELD_CATEGORIES, ChildCategory, ExitReason
from app.models.guardianship import AssessmentResult, CustodyStatus, RiskFlag
from app.models.vocabulary import DataCategory

C = DataCategory

CIVIL = AgencyKind.civil_affairs
EDUCATION = AgencyKind.education
HEALTH = AgencyKind.health
POLICE = AgencyKind.police
WOMENS = AgencyKind.womens_federation


CHANGED_FIELD_CATEGORIES: dict[str, DataCategory] = {
    **FIELD_CATEGORIES,
    "categories": C.welfare,
    "region_code": C.contact,
}
"""Which category a changed registry field's *name* reveals (that the address changed is contact
data; the new address is not in the event at all)."""

_REGISTRY_IDENTITY = {
    "name": s.text(
        C.identity,
        "The child's name, so that the agencies told of an entry or exit know whom it "
        "concerns (及时将新增和退出的儿童信息通报给相关部门).",
        max_length=100,
    ),
    "sex": s.code(("male", "female"), C.identity, "The child's sex."),
    "birth_date": s.date(C.identity, "The child's birth date."),
}
"""Identity on registry entries and exits (policy `registry_notifications`): released to each
subscriber under its own rules, like every field."""

_URGENCY = ("routine", "soon", "urgent")
_SCHOOL = "The school (学校) concerned."


_OWN_SPECS: tuple[TypeSpec, ...] = (
    # 民政 civil affairs ------------------------------------------------------------------------
    TypeSpec(
        "civil-affairs.child.registered",
        "Child registered (新增)",
        "A child entered the registry of left-behind (留守) or at-risk (困境) children.",
        (CIVIL,),
        {
            "child_id": s.reference("The child."),
            "region_code": s.region(),
            "categories": s.codes(
                s.enum_values(ChildCategory),
                C.welfare,
                "Why the child is in the registry; each category is released with its data category "
                "(guardian harm is law-enforcement data, serious illness health data).",
                item_categories={str(k): v for k, v in CATEGORY_DATA.items()},
                min_items=1,
            ),
            **_REGISTRY_IDENTITY,
        },
        ("child_id", "region_code", "categories"),
        registry_only=True,
    ),
    TypeSpec(
        "civil-affairs.child.updated",
        "Child record updated",
        "A registry record changed. Carries which fields changed, never their values: read the "
        "record through `GET /v1/children/{id}` for those.",
        (CIVIL,),
        {
            "child_id": s.reference("The child."),
            "changed": s.codes(
                CHANGED_FIELD_CATEGORIES,
                C.welfare,
                "Names of the fields that changed; each name is released with the category of its field.",
                item_categories=CHANGED_FIELD_CATEGORIES,
            ),
            "version": {"type": "integer", "minimum": 1, "description": "The record's new version (ETag)."},
        },
        ("child_id", "changed", "version"),
        registry_only=True,
    ),
    TypeSpec(
        "civil-affairs.child.exited",
        "Child exited the registry (退出)",
        "A child left the registry (parents returned, aged out, moved, death, other); the record is kept.",
        (CIVIL,),
        {
            "child_id": s.reference("The child."),
            "reason": s.code(s.enum_values(ExitReason), C.welfare, "Why the child left the registry."),
            "exit_date": s.date(C.welfare, "When."),
            "region_code": s.region(),
            **_REGISTRY_IDENTITY,
        },
        ("child_id", "reason", "exit_date"),
        registry_only=True,
    ),
    TypeSpec(
        "civil-affairs.guardianship.changed",
        "Guardianship changed (监护)",
        "A new guardianship record superseded the current one (civil affairs, or a police "
        "emergency intervention).",
        (CIVIL, POLICE),
        {
            "child_id": s.reference("The child."),
            "guardianship_id": s.reference("The new guardianship record."),
            "custody_status": s.code(s.enum_values(CustodyStatus), C.custody, "The new custody status."),
            "effective_from": s.date(C.custody, "From when it applies."),
            "emergency_intervention": s.flag(C.custody, "Whether this was an emergency intervention."),
        },
        ("child_id", "guardianship_id", "custody_status", "effective_from"),
        registry_only=True,
    ),
    TypeSpec(
        "civil-affairs.guardianship.assessed",
        "Guardianship assessed (监护评估)",
        "Civil affairs assessed how well the child's guardian provides care.",
        (CIVIL,),
        {
            "assessed_on": s.date(C.custody, "Date of the assessment."),
            "result": s.code(s.enum_values(AssessmentResult), C.custody, "The assessment's result."),
            "risk_flags": s.codes(s.enum_values(RiskFlag), C.custody, "Risks found."),
            "next_assessment_due": s.date(C.custody, "When the next assessment is due."),
            "assessing_unit": s.unit("Who assessed, and their duty phone."),
        },
        ("assessed_on", "result"),
        example={"assessed_on": "2026-12-03", "result": "needs_support", "risk_flags": ["unsafe_home"]},
    ),
    TypeSpec(
        "civil-affairs.home-visit.recorded",
        "Home visit recorded (家庭走访)",
        "A village child director (儿童主任) or town supervisor (儿童督导员) visited the child's home.",
        (CIVIL,),
        {
            "visited_on": s.date(C.welfare, "Date of the visit."),
            "visitor_role": s.code(
                ("child_director", "child_supervisor", "social_worker", "other"),
                C.welfare,
                "Who visited: child_director 儿童主任, child_supervisor 儿童督导员.",
            ),
            "child_seen": s.flag(C.welfare, "Whether the child was seen in person."),
            "living_conditions": s.code(
                ("adequate", "needs_support", "unsafe"), C.welfare, "What the visitor found."
            ),
            "needs": s.codes(
                ("material", "schooling", "health", "psychological", "guardianship", "safety"),
                C.welfare,
                "Needs identified.",
            ),
            "follow_up_due": s.date(C.welfare, "When the next visit is due."),
        },
        ("visited_on", "visitor_role", "child_seen"),
    ),
    TypeSpec(
        "civil-affairs.assistance.granted",
        "Assistance granted (救助)",
        "Civil affairs granted assistance: 低保 minimum living, 特困 extreme poverty support, 临时救助 "
        "temporary, 医疗救助 medical aid, 孤儿/事实无人抚养 allowances.",
        (CIVIL,),
        {
            "assistance_type": s.code(
                (
                    "minimum_living",
                    "extreme_poverty",
                    "temporary",
                    "medical_aid",
                    "orphan_allowance",
                    "de_facto_unsupported_allowance",
                    "education_aid",
                ),
                C.welfare,
                "The kind of assistance.",
            ),
            "amount_cny": s.amount(C.welfare, "Amount per month (or once, for temporary aid), in yuan."),
            "period_from": s.date(C.welfare, "First day covered."),
            "period_to": s.date(C.welfare, "Last day covered, when known."),
        },
        ("assistance_type", "period_from"),
    ),
    TypeSpec(
        "civil-affairs.temporary-guardianship.started",
        "Temporary state guardianship started (临时监护)",
        "The minors' rescue and protection centre (未成年人救助保护中心) took the child into temporary "
        "state guardianship.",
        (CIVIL,),
        {
            "started_on": s.date(C.custody, "First day of temporary guardianship."),
            "reason": s.code(
                (
                    "guardian_unreachable",
                    "guardian_incapacitated",
                    "guardian_detained",
                    "guardian_harm",
                    "abandoned",
                    "other",
                ),
                C.custody,
                "Why the state stepped in.",
            ),
            "placement": s.code(
                ("rescue_centre", "foster_family", "kinship_family", "institution"),
                C.custody,
                "Where the child lives now.",
            ),
            "responsible_unit": s.unit("The rescue centre answerable for the child, and its duty phone."),
        },
        ("started_on", "reason", "placement"),
        example={
            "started_on": "2026-12-02",
            "reason": "guardian_incapacitated",
            "placement": "rescue_centre",
            "responsible_unit": {"name": "武侯区未成年人救助保护中心", "duty_phone": "028-85111111"},
        },
    ),
    TypeSpec(
        "civil-affairs.temporary-guardianship.ended",
        "Temporary state guardianship ended",
        "Temporary state guardianship ended, and how.",
        (CIVIL,),
        {
            "ended_on": s.date(C.custody, "Last day of temporary guardianship."),
            "outcome": s.code(
                (
                    "returned_to_parents",
                    "entrusted_to_relatives",
                    "long_term_state_guardianship",
                    "adopted",
                    "other",
                ),
                C.custody,
                "What happened next.",
            ),
            "custody_status": s.code(
                s.enum_values(CustodyStatus),
                C.custody,
                "The custody status from now on, when the outcome does not say it (required for `other`).",
            ),
            "guardian": s.person("The guardian the child is handed to, and their phone."),
            "responsible_unit": s.unit("The organisation answerable for the child from now on."),
        },
        ("ended_on", "outcome"),
        example={
            "ended_on": "2026-12-20",
            "outcome": "entrusted_to_relatives",
            "guardian": {"name": "王芳", "relationship": "aunt", "phone": "13900139000"},
            "responsible_unit": {"name": "簇桥街道办事处", "duty_phone": "028-85000000"},
        },
    ),
    # 教育 education ------------------------------------------------------------------------------
    TypeSpec(
        "education.student.enrolled",
        "Enrolled at school",
        "The child enrolled at a school.",
        (EDUCATION,),
        {
            "school": s.text(C.education, _SCHOOL),
            "grade": s.text(C.education, "Grade or class, as the school names it.", max_length=40),
            "enrolled_on": s.date(C.education, "Date of enrolment."),
            "boarding": s.flag(C.education, "Whether the child boards at school (寄宿)."),
        },
        ("school", "enrolled_on"),
    ),
    TypeSpec(
        "education.student.transferred",
        "Transferred to another school",
        "The child moved to another school.",
        (EDUCATION,),
        {
            "from_school": s.text(C.education, "The school left."),
            "to_school": s.text(C.education, "The school joined."),
            "transferred_on": s.date(C.education, "Date of the transfer."),
        },
        ("from_school", "to_school", "transferred_on"),
    ),
    TypeSpec(
        "education.attendance.absence-alert",
        "Absence alert",
        "The child has been absent without leave long enough for the school to raise an alert.",
        (EDUCATION,),
        {
            "school": s.text(C.education, _SCHOOL),
            "absent_since": s.date(C.education, "First day of the absence."),
            "consecutive_days": s.integer(C.education, "School days absent so far.", minimum=1, maximum=400),
            "reason_known": s.code(
                ("illness", "family", "refuses_school", "unknown"), C.education, "What the school knows."
            ),
        },
        ("school", "absent_since", "consecutive_days"),
    ),
    TypeSpec(
        "education.dropout-risk.flagged",
        "Dropout risk flagged (控辍保学)",
        "The school judges that the child risks dropping out.",
        (EDUCATION,),
        {
            "school": s.text(C.education, _SCHOOL),
            "risk_level": s.code(
                ("low", "medium", "high"), C.education, "How likely the school thinks it is."
            ),
            "indicators": s.codes(
                (
                    "chronic_absence",
                    "academic_decline",
                    "family_relocation",
                    "financial_hardship",
                    "guardian_absent",
                    "disengagement",
                    "working",
                ),
                C.education,
                "What the school has seen.",
                min_items=1,
            ),
            "flagged_on": s.date(C.education, "Date of the assessment."),
            "home_visit_requested": s.flag(
                C.education, "Whether the school asks civil affairs for a home visit."
            ),
        },
        ("school", "risk_level", "indicators", "flagged_on"),
    ),
    TypeSpec(
        "education.student.dropped-out",
        "Dropped out (辍学)",
        "The child has left compulsory education.",
        (EDUCATION,),
        {
            "school": s.text(C.education, _SCHOOL),
            "left_on": s.date(C.education, "Last day at school."),
            "reason": s.code(
                ("working", "family", "illness", "disengagement", "relocation", "unknown"),
                C.education,
                "Why, as far as the school knows.",
            ),
        },
        ("school", "left_on"),
    ),
    TypeSpec(
        "education.student.returned-to-school",
        "Returned to school (复学)",
        "A child who had dropped out is back at school.",
        (EDUCATION,),
        {
            "school": s.text(C.education, _SCHOOL),
            "returned_on": s.date(C.education, "First day back."),
            "support_plan": s.flag(C.education, "Whether a support plan (一人一案) is in place."),
        },
        ("school", "returned_on"),
    ),
    TypeSpec(
        "education.psychological-concern.reported",
        "Psychological concern seen at school",
        "School staff saw signs that the child needs psychological support.",
        (EDUCATION,),
        {
            "observed_on": s.date(C.health, "When it was observed."),
            "concerns": s.codes(
                ("anxiety", "low_mood", "self_harm_risk", "withdrawal", "aggression", "trauma_signs"),
                C.health,
                "What was seen.",
                min_items=1,
            ),
            "severity": s.code(("mild", "moderate", "severe"), C.health, "How serious it looks."),
            "referred_to_health": s.flag(
                C.health, "Whether the school referred the child to health services."
            ),
            "school": s.text(C.education, _SCHOOL),
        },
        ("observed_on", "concerns", "severity"),
    ),
    # 卫健 health ---------------------------------------------------------------------------------
    TypeSpec(
        "health.check.completed",
        "Health check completed",
        "A health check of the child was completed.",
        (HEALTH,),
        {
            "checked_on": s.date(C.health, "Date of the check."),
            "result": s.code(("normal", "follow_up_needed", "urgent"), C.health, "Overall result."),
            "follow_up_areas": s.codes(
                ("nutrition", "vision", "hearing", "dental", "growth", "chronic_condition", "mental_health"),
                C.health,
                "Where follow-up is needed.",
            ),
        },
        ("checked_on", "result"),
    ),
    TypeSpec(
        "health.medical-aid.needed",
        "Medical aid needed (医疗救助)",
        "The child needs treatment the family cannot afford: a cue for civil affairs' medical aid.",
        (HEALTH,),
        {
            "condition_group": s.code(
                ("serious_illness", "chronic", "injury", "surgery", "other"),
                C.health,
                "The kind of condition.",
            ),
            "urgency": s.code(_URGENCY, C.health, "How soon treatment is needed."),
            "hospital": s.text(C.health, "Where the child is or will be treated."),
            "estimated_cost_cny": s.amount(C.welfare, "Estimated cost to the family, in yuan."),
        },
        ("condition_group", "urgency"),
    ),
    TypeSpec(
        "health.mental-health.referral",
        "Mental-health referral",
        "The child was referred to mental-health services.",
        (HEALTH,),
        {
            "referred_on": s.date(C.health, "Date of the referral."),
            "urgency": s.code(_URGENCY, C.health, "How soon the child should be seen."),
            "reason": s.code(
                ("anxiety", "low_mood", "self_harm_risk", "trauma", "behaviour", "other"),
                C.health,
                "Why.",
            ),
            "service": s.text(C.health, "The service referred to."),
        },
        ("referred_on", "urgency"),
    ),
    TypeSpec(
        "health.disability.assessed",
        "Disability assessed (残疾评定)",
        "The child's disability was assessed.",
        (HEALTH,),
        {
            "assessed_on": s.date(C.disability, "Date of the assessment."),
            "disability_type": s.code(
                ("visual", "hearing", "speech", "physical", "intellectual", "mental", "multiple"),
                C.disability,
                "Kind of disability.",
            ),
            "grade": s.integer(C.disability, "Grade 1 (most severe) to 4.", minimum=1, maximum=4),
            "certificate_issued": s.flag(
                C.disability, "Whether a disability certificate (残疾证) was issued."
            ),
        },
        ("assessed_on", "disability_type"),
    ),
    TypeSpec(
        "health.rehabilitation.referral",
        "Rehabilitation referral (康复转介)",
        "The child was referred to rehabilitation services.",
        (HEALTH,),
        {
            "referred_on": s.date(C.disability, "Date of the referral."),
            "service_type": s.code(
                ("physical_therapy", "speech_therapy", "special_education", "assistive_devices", "other"),
                C.disability,
                "Kind of rehabilitation.",
            ),
            "provider": s.text(C.disability, "The rehabilitation provider."),
        },
        ("referred_on", "service_type"),
    ),
)

SPECS: tuple[TypeSpec, ...] = (*_OWN_SPECS, *PARTNER_SPECS)

__all__ = ["PREFIX", "SPECS", "TypeSpec"]
