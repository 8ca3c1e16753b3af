"""Named request examples for every operation that takes a body, and the path parameters they
act on, all drawn from the demo data (app/services/demo.py) so that Swagger UI's pre-filled
"Try it out" succeeds against `./scripts/serve` as it is.

Each example is an OpenAPI Example Object with one extension, ``x-agency``: the demo agency whose
client the example is written for (its token has the scopes and the region the call needs).
``tests/test_openapi_examples.py`` posts every example, as that agency, to an app seeded with the
demo data and expects the documented success status; an example that stops working fails there.

The examples are ordered so that executing them one after another on one demo database works
too: the record an example exits, revokes or reviews is one no other example needs.
"""

from __future__ import annotations

from typing import Any

from app.openapi_case_examples import CASE_PATH_EXAMPLES, case_examples
from app.openapi_report_examples import REPORT_PATH_EXAMPLES, report_examples
from app.services.demo import (
    DEMO_BREAK_GLASS_ID,
    DEMO_CHILD_IDS,
    DEMO_CONSENT_ID,
    DEMO_INVESTIGATION_REF,
    DEMO_PULL_SUBSCRIPTION_ID,
    DEMO_RESIDENT_IDS,
    DEMO_WEBHOOK_SUBSCRIPTION_ID,
)

ZHAXI, LI_XIAOHUA, AYGUL, ZHANG_WEI, CHEN_CHEN = (str(i) for i in DEMO_CHILD_IDS)

NEW_CHILD_RESIDENT_ID = "510107201605120269"
"""Valid (MOD 11-2) for a girl born on 2016-05-12 in Wuhou district; no demo child has it."""


def _example(agency: str, summary: str, value: dict[str, Any], description: str = "") -> dict[str, Any]:
    # The summary names the demo client to Authorize with: Swagger UI shows it, not x-agency.
    example: dict[str, Any] = {"summary": f"[demo-{agency}] {summary}", "value": value, "x-agency": agency}
    if description:
        example["description"] = description
    return example


REQUEST_EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "issue_token": {
        "custody_check": _example(
            "police",
            "Only the scopes the custody check needs",
            {"grant_type": "client_credentials", "scope": "custody:read children:read"},
            "Send the client id and secret as HTTP Basic. Leave `scope` out to get every scope the "
            "client holds.",
        ),
    },
    "create_agency": {
        "district_office": _example(
            "platform",
            "A district civil affairs bureau",
            {"code": "civil-affairs-510107", "name": "成都市武侯区民政局", "kind": "civil-affairs"},
        ),
    },
    "create_client": {
        "school_system": _example(
            "platform",
            "A district's student information system",
            {
                "agency": "education",
                "name": "武侯区学籍管理系统",
                "scopes": ["children:read", "events:publish", "events:read"],
                "region": "510107",
            },
        ),
    },
    "register_child": {
        "left_behind_with_id": _example(
            "civil-affairs",
            "A left-behind girl with her resident ID number",
            {
                "name": "李思琪",
                "sex": "female",
                "birth_date": "2016-05-12",
                "resident_id": NEW_CHILD_RESIDENT_ID,
                "ethnicity": "汉族",
                "region_code": "510107005003",
                "address": "武侯区簇桥街道 3 组",
                "school": "簇桥小学",
                "categories": ["left_behind"],
                "care_arrangement": "grandparents",
            },
            "The ID number's birth date (20160512) and sex digit (even: female) agree with the body.",
        ),
        "without_id": _example(
            "civil-affairs",
            "A child not yet issued an ID number",
            {
                "name": "扎西·次仁",
                "sex": "male",
                "birth_date": "2020-02-18",
                "ethnicity": "藏族",
                "region_code": "513401001002",
                "categories": ["de_facto_unsupported"],
            },
        ),
    },
    "lookup_child": {
        "by_resident_id": _example(
            "police",
            "Find a demo child by ID number",
            {"resident_id": DEMO_RESIDENT_IDS[0]},
            "The number travels in the body, never in the URL.",
        ),
    },
    "update_child": {
        "new_school": _example(
            "civil-affairs",
            "The child changed school and address",
            {"school": "簇桥中学", "address": "武侯区簇桥街道 5 组"},
            "Send the `ETag` of your last read as `If-Match`.",
        ),
    },
    "exit_child": {
        "moved_away": _example(
            "civil-affairs",
            "The family moved out of the province",
            {"reason": "moved", "exit_date": "2026-11-01", "note": "随父母迁居外省"},
        ),
    },
    "record_guardianship": {
        "entrusted": _example(
            "civil-affairs",
            "Entrusted guardianship (委托监护) after an assessment",
            {
                "custody_status": "entrusted",
                "guardian_name": "王芳",
                "guardian_relationship": "aunt",
                "guardian_phone": "13900139000",
                "responsible_org": "簇桥街道办事处",
                "responsible_org_duty_phone": "028-85000000",
                "effective_from": "2026-11-21",
                "entrustment_confirmation_ref": "WT-2026-0107",
                "entrustment_confirmed_on": "2026-11-20",
                "last_assessment_date": "2026-11-20",
                "last_assessment_result": "adequate",
                "risk_flags": [],
            },
            "An entrusted guardianship needs the signed confirmation's reference and date; an "
            "assessment result goes with its date.",
        ),
    },
    "record_consent": {
        "health_to_womens_federation": _example(
            "civil-affairs",
            "The guardian lets the women's federation see health data",
            {
                "given_by_role": "guardian",
                "given_by_name": "李建国",
                "given_by_relationship": "father",
                "receiving_agency": "womens-federation",
                "categories": ["health"],
                "purposes": ["child_protection"],
                "valid_from": "2026-12-01T00:00:00+08:00",
                "valid_until": "2027-11-30T23:59:59+08:00",
                "evidence_ref": "TY-2026-0107",
            },
            "A caring mother (爱心妈妈) then knows of the child's serious illness.",
        ),
    },
    "revoke_consent": {
        "withdrawn": _example(
            "civil-affairs", "The guardian withdrew consent in writing", {"reason": "监护人书面撤回同意"}
        ),
    },
    "review_break_glass": {
        "justified": _example(
            "platform",
            "The emergency read was proportionate",
            {"outcome": "justified", "note": "Child reported missing; health data needed for the search."},
        ),
    },
    "publish_event": {
        "dropout_risk": _example(
            "education",
            "A demo child is at risk of dropping out",
            {
                "specversion": "1.0",
                "id": "edu-510107-2026-000123",
                "source": "/education/510107/sis",
                "type": "cn.gov.childlink.education.dropout-risk.flagged.v1",
                "subject": ZHAXI,
                "time": "2026-11-28T08:30:00+08:00",
                "datacontenttype": "application/json",
                "data": {
                    "school": "簇桥小学",
                    "risk_level": "high",
                    "indicators": ["chronic_absence"],
                    "flagged_on": "2026-11-27",
                },
            },
            "Send a fresh `Idempotency-Key` (e.g. a UUID) with every new event.",
        ),
        "police_intervention": _example(
            "police",
            "Emergency custody intervention: a demo child handed to the rescue centre",
            {
                "specversion": "1.0",
                "id": "gaj-510107-2026-004711",
                "source": "/police/513401/jingwu",
                "type": "cn.gov.childlink.police.custody.intervention.v1",
                "subject": CHEN_CHEN,
                "time": "2026-11-30T23:05:00+08:00",
                "datacontenttype": "application/json",
                "data": {
                    "intervened_at": "2026-11-30T22:40:00+08:00",
                    "action": "handed_to_rescue_centre",
                    "handling_unit": {"name": "成都市未成年人救助保护中心", "duty_phone": "028-12349"},
                },
            },
            "How the police record an emergency intervention: the event supersedes the child's "
            "guardianship (`emergency_protection`, with the unit to call). `handling_unit.duty_phone` "
            "is required.",
        ),
    },
    "create_subscription": {
        "pull": _example(
            "civil-affairs",
            "Pull: read school and police events from the feed",
            {
                "description": "Case system (pull)",
                "mode": "pull",
                "types": ["cn.gov.childlink.education.*", "cn.gov.childlink.police.*"],
                "region_prefix": "5101",
                "purpose_of_use": "child_protection",
            },
            "Then read `GET /v1/events/feed?after=0&wait=30`. A `webhook` subscription instead "
            "gives a `url` (https, resolving to a public address) and gets a signing secret once.",
        ),
    },
    "update_subscription": {
        "more_types": _example(
            "education",
            "Also receive health events",
            {
                "description": "Demo: registry, guardianship and health events (pull)",
                "types": ["cn.gov.childlink.civil-affairs.*", "cn.gov.childlink.health.*"],
            },
        ),
    },
    "replay_subscription": {
        "from_sequence": _example(
            "civil-affairs", "Re-send everything from sequence 1", {"from_sequence": 1}
        ),
        "from_time": _example(
            "civil-affairs",
            "Re-send what was published since a time",
            {"from_time": "2026-11-27T00:00:00+08:00"},
        ),
    },
    **case_examples(_example),
    **report_examples(_example, registered_child=ZHAXI, child_to_link=ZHANG_WEI),
}
"""Operation id -> example name -> Example Object."""

PATH_EXAMPLES: dict[str, dict[str, str]] = {
    **CASE_PATH_EXAMPLES,
    **REPORT_PATH_EXAMPLES,
    "": {
        **CASE_PATH_EXAMPLES[""],
        "child_id": ZHAXI,
        "consent_id": str(DEMO_CONSENT_ID),
        "review_id": str(DEMO_BREAK_GLASS_ID),
        "subscription_id": str(DEMO_PULL_SUBSCRIPTION_ID),
        "client_id": "demo-education",
        "type_name": "cn.gov.childlink.education.dropout-risk.flagged.v1",
        "ref": DEMO_INVESTIGATION_REF,
    },
    "exit_child": {"child_id": ZHANG_WEI},
    "record_guardianship": {"child_id": LI_XIAOHUA},
    "record_consent": {"child_id": LI_XIAOHUA},
    "replay_subscription": {"subscription_id": str(DEMO_WEBHOOK_SUBSCRIPTION_ID)},
    "list_deliveries": {"subscription_id": str(DEMO_WEBHOOK_SUBSCRIPTION_ID)},
    "ping_subscription": {"subscription_id": str(DEMO_WEBHOOK_SUBSCRIPTION_ID)},
    "rotate_subscription_secret": {"subscription_id": str(DEMO_WEBHOOK_SUBSCRIPTION_ID)},
}
"""Path parameter values per operation id (``""``: every operation)."""


QUERY_EXAMPLES: dict[str, dict[str, Any]] = {
    "list_due": {"what": "assessment", "region": "510107"},
    # An array: Swagger UI fills one box per item and repeats the parameter (also accepted).
    "count_children": {"group_by": ["region", "category", "sex"]},
}
"""Required query parameter values per operation id, so "Try it out" has something to send."""


def query_value(operation_id: str, name: str) -> Any:
    return QUERY_EXAMPLES.get(operation_id, {}).get(name)


def path_value(operation_id: str, name: str) -> str | None:
    return PATH_EXAMPLES.get(operation_id, {}).get(name) or PATH_EXAMPLES[""].get(name)
