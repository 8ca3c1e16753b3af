"""Named request examples for mandatory reports (强制报告), drawn from the demo reports
(app/services/demo_reports.py); see app/openapi_examples.py for the shape and the test that
posts them."""

from __future__ import annotations

from typing import Any

from app.openapi_case_examples import ExampleMaker
from app.services.demo_reports import (
    DEMO_REPORT_ABOUT_SUBJECT_ID,
    DEMO_REPORT_ACKNOWLEDGED_ID,
    DEMO_REPORT_TO_ACKNOWLEDGE_ID,
)


def report_examples(
    example: ExampleMaker, *, registered_child: str, child_to_link: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """Operation id -> example name -> Example Object, built with app.openapi_examples' maker."""
    return {
        "file_report": {
            "registered_child": example(
                "education",
                "A class teacher reports injuries of a registered demo child",
                {
                    "child_id": registered_child,
                    "concern": "physical_abuse",
                    "urgency": "urgent",
                    "observed": "Bruises on both forearms and the neck, seen in the PE lesson; the child "
                    "says an adult at home hit them.",
                    "observed_at": "2026-11-30T10:20:00+08:00",
                    "reporter": {"role": "班主任 (class teacher)", "name": "王老师", "phone": "13800000000"},
                },
                "Send a new `Idempotency-Key` per report and the same one when you retry. The answer "
                "lists the receivers (police, civil affairs) and their `acknowledge_by`. The reporter's "
                "name and phone are read only by the receiving police and civil affairs.",
            ),
            "unregistered_child": example(
                "health",
                "A township doctor reports a child not in the registry",
                {
                    "subject": {
                        "sex": "male",
                        "approximate_age": 7,
                        "region_code": "510104002",
                        "location_note": "Found alone at the township bus station.",
                    },
                    "concern": "no_guardian",
                    "urgency": "immediate_danger",
                    "observed": "The child cannot say where his parents are; nobody came for him in two "
                    "hours.",
                    "observed_at": "2026-11-30T18:05:00+08:00",
                    "reporter": {
                        "role": "乡镇卫生院医生 (township doctor)",
                        "name": "刘医生",
                        "phone": "13900000000",
                    },
                },
                "`subject` instead of `child_id`: a township (9 digits) or village (12 digits) code of "
                "your region. Civil affairs later links the report to the child it registers.",
            ),
        },
        "record_report_outcome": {
            "case_filed": example(
                "police",
                "Police record the case number of the acknowledged demo report",
                {"result": "case_filed", "case_reference": "川公武立字〔2026〕1234号"},
                "After acknowledging (受理). `case_accepted`, `case_filed` and `not_filed` are police "
                "results; civil affairs records e.g. `temporary_guardianship` or `assistance`.",
            ),
        },
        "link_report": {
            "registered_now": example(
                "civil-affairs",
                "Link the demo report about an unregistered child to the registered child",
                {"child_id": child_to_link},
                "From then on the report, its case and its referrals are about that child.",
            ),
        },
    }


REPORT_PATH_EXAMPLES: dict[str, dict[str, str]] = {
    "get_report": {"report_id": str(DEMO_REPORT_TO_ACKNOWLEDGE_ID)},
    "acknowledge_report": {"report_id": str(DEMO_REPORT_TO_ACKNOWLEDGE_ID)},
    "record_report_outcome": {"report_id": str(DEMO_REPORT_ACKNOWLEDGED_ID)},
    "link_report": {"report_id": str(DEMO_REPORT_ABOUT_SUBJECT_ID)},
}
"""Path parameter values per operation id, merged into PATH_EXAMPLES."""
