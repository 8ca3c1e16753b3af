"""Named request examples for coordinated handling (cases, referrals, consultations, actions),
drawn from the demo cases (app/services/demo_cases.py); see app/openapi_examples.py for the shape
and the test that posts them.

Deadlines are bounded relative to now by the access policy (`respond_by` within 168 hours,
`complete_by` and an action's `due_at` within 90 days), so the dates below are fixed ones that
integrators adapt; the examples' descriptions say so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.services.demo import DEMO_CHILD_IDS
from app.services.demo_cases import (
    DEMO_ACTION_ID,
    DEMO_CASE_ID,
    DEMO_CLOSABLE_CASE_ID,
    DEMO_REFERRAL_TO_ACCEPT_ID,
    DEMO_REFERRAL_TO_COMPLETE_ID,
    DEMO_REFERRAL_TO_DECLINE_ID,
    DEMO_REFERRAL_TO_WITHDRAW_ID,
)

ExampleMaker = Callable[..., dict[str, Any]]
"""``app.openapi_examples._example``: (agency, summary, value, description) -> Example Object."""

_DEADLINES = (
    "`respond_by` must lie within 168 hours from now and `complete_by` within 90 days (the "
    "access policy's bounds, `GET /v1/policy`): move the dates to your own week."
)


def case_examples(example: ExampleMaker) -> dict[str, dict[str, dict[str, Any]]]:
    """Operation id -> example name -> Example Object, built with app.openapi_examples' maker."""
    return {
        "open_case": {
            "guardianship": example(
                "civil-affairs",
                "Open a guardianship case about a demo child",
                {
                    "child_id": str(DEMO_CHILD_IDS[1]),
                    "kind": "guardianship",
                    "priority": "urgent",
                    "summary": "The entrusted guardian has been unreachable for two weeks; the parents "
                    "work in Guangdong.",
                },
                "Your agency leads the case. Keep names and ID numbers out of `summary`.",
            ),
        },
        "close_case": {
            "needs_met": example(
                "civil-affairs",
                "Close the demo medical-aid case",
                {"outcome": "needs-met", "note": "Medical aid granted; treatment arranged for 10 Dec."},
                "With referrals still open, add a `reason`: closing then withdraws them.",
            ),
        },
        "refer_case": {
            "caring_mother": example(
                "education",
                "Refer the demo dropout case to the women's federation",
                {
                    "to_agency": "womens-federation",
                    "to_region": "510107005",
                    "request": "A caring mother (爱心妈妈) to visit weekly and help with homework.",
                    "categories": ["contact", "education"],
                },
                "Left out, `respond_by` and `complete_by` are the policy's defaults from now "
                "(`GET /v1/policy`, `cases`); a date given must lie within the policy's bounds.",
            ),
        },
        "decline_referral": {
            "not_police_matter": example(
                "police",
                "Decline the demo safety-check referral",
                {"reason": "No offence or danger reported; the township's child director visits first."},
            ),
        },
        "complete_referral": {
            "assistance_granted": example(
                "civil-affairs",
                "Complete the demo assistance referral",
                {"outcome": "Temporary assistance (临时救助) of 1,500 yuan granted for school costs."},
            ),
        },
        "withdraw_referral": {
            "no_longer_needed": example(
                "education",
                "Withdraw the demo health check-up referral",
                {"reason": "The school nurse did the check-up."},
            ),
        },
        "record_consultation": {
            "joint_meeting": example(
                "education",
                "A joint consultation (会商) on the demo dropout case",
                {
                    "held_at": "2026-11-30T09:30:00+08:00",
                    "agencies": ["education", "civil-affairs", "womens-federation"],
                    "summary": "Joint meeting (联席会议): the child wants to return to school if transport "
                    "is arranged.",
                    "decisions": [
                        {
                            "assigned_agency": "civil-affairs",
                            "description": "Apply for temporary assistance (临时救助) for school costs.",
                        }
                    ],
                },
                "`held_at` lies in the past. The decision gives no `due_at`, so it is due the policy's "
                "`default_action_due_within_days` (14) from now; a `due_at` must lie within 90 days.",
            ),
        },
        "complete_action": {
            "transport_arranged": example(
                "civil-affairs",
                "Complete the demo action assigned to civil affairs",
                {"outcome": "The township's school bus stops at the village from 7 Dec."},
            ),
        },
    }


CASE_PATH_EXAMPLES: dict[str, dict[str, str]] = {
    "": {"case_id": str(DEMO_CASE_ID), "action_id": str(DEMO_ACTION_ID)},
    "close_case": {"case_id": str(DEMO_CLOSABLE_CASE_ID)},
    "accept_referral": {"referral_id": str(DEMO_REFERRAL_TO_ACCEPT_ID)},
    "decline_referral": {"referral_id": str(DEMO_REFERRAL_TO_DECLINE_ID)},
    "complete_referral": {"referral_id": str(DEMO_REFERRAL_TO_COMPLETE_ID)},
    "withdraw_referral": {"referral_id": str(DEMO_REFERRAL_TO_WITHDRAW_ID)},
}
"""Path parameter values per operation id (``""``: every operation), merged into PATH_EXAMPLES."""
