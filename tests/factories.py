"""Small factories for registry tests: each takes explicit overrides."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

import httpx

from app.models import resident_id
from tests.conftest import bearer

_sequence = itertools.count(1)

CIVIL_SCOPES = ["children:read", "children:write", "custody:read", "custody:write"]


def child_body(
    *,
    region: str = "510107005003",
    sex: str = "female",
    birth: date = date(2016, 5, 12),
    with_id: bool = True,
    categories: list[str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "扎西·多吉",
        "sex": sex,
        "birth_date": birth.isoformat(),
        "ethnicity": "藏族",
        "region_code": region,
        "address": "簇桥街道 3 组",
        "school": "簇桥小学",
        "categories": categories or ["left_behind"],
    }
    if with_id:
        body["resident_id"] = resident_id.make(region[:6], birth, next(_sequence), sex)
    body.update(overrides)
    return body


async def make_child(client: httpx.AsyncClient, civil_token: str, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/v1/children", json=child_body(**overrides), headers=bearer(civil_token))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def guardianship_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "custody_status": "kinship_care",
        "guardian_name": "卓玛",
        "guardian_relationship": "grandmother",
        "guardian_phone": "13800138000",
        "responsible_org": "簇桥街道办事处",
        "responsible_org_duty_phone": "028-85000000",
        "effective_from": "2026-09-01",
        "last_assessment_date": "2026-10-15",
        "last_assessment_result": "needs_support",
        "risk_flags": ["guardian_unreachable"],
    }
    body.update(overrides)
    return body


def purpose(value: str = "child_protection") -> dict[str, str]:
    return {"X-Purpose-Of-Use": value}
