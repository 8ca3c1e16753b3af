"""Factories for case and referral tests: agencies' tokens, a case, a referral body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, make_child, purpose

CASE_SCOPES = ["children:read", "cases:write", "events:read", "events:publish"]
CHILD_REGION = "510107005003"
TOWNSHIP = "510107005"


def protect() -> dict[str, str]:
    return purpose("child_protection")


def as_(token: str) -> dict[str, str]:
    """Headers of a case reader: the token and purpose ``child_protection``."""
    return {**bearer(token), **protect()}


async def tokens(token: TokenFactory) -> dict[str, str]:
    """One token per party of the dropout story."""
    return {
        "registrar": await token(agency="civil-affairs", scopes=[*CIVIL_SCOPES, "cases:write"], region="51"),
        "education": await token(agency="education", scopes=CASE_SCOPES, region="510107"),
        "supervisor": await token(agency="civil-affairs", scopes=CASE_SCOPES, region=TOWNSHIP),
        "other_township": await token(agency="civil-affairs", scopes=CASE_SCOPES, region="510107004"),
        "womens": await token(agency="womens-federation", scopes=CASE_SCOPES, region="5101"),
        "police": await token(agency="police", scopes=CASE_SCOPES, region="51"),
    }


def deadlines(respond_days: float = 2, complete_days: float = 10) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "respond_by": (now + timedelta(days=respond_days)).isoformat(),
        "complete_by": (now + timedelta(days=complete_days)).isoformat(),
    }


def referral_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "to_agency": "civil-affairs",
        "to_region": TOWNSHIP,
        "request": "Home visit by the child director: who looks after the child, why not at school.",
        "categories": ["identity", "contact"],
        **deadlines(),
    }
    body.update(overrides)
    return body


async def open_case(
    client: httpx.AsyncClient, lead: str, child_id: str, *, kind: str = "dropout", **overrides: Any
) -> dict[str, Any]:
    body = {
        "child_id": child_id,
        "kind": kind,
        "priority": "soon",
        "summary": "Absent 12 school days.",
        **overrides,
    }
    response = await client.post("/v1/cases", json=body, headers=as_(lead))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def refer(client: httpx.AsyncClient, lead: str, case_id: str, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        f"/v1/cases/{case_id}/referrals", json=referral_body(**overrides), headers=as_(lead)
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def story_child(client: httpx.AsyncClient, registrar: str) -> dict[str, Any]:
    return await make_child(client, registrar, region=CHILD_REGION)


ROOT_README = Path(__file__).resolve().parent.parent / "README.md"
