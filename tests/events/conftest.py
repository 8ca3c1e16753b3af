"""Fixtures for the event-exchange tests: tokens for each agency and a registered child."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import TokenFactory
from tests.events.helpers import CIVIL_SCOPES, PUBLISH_SCOPES
from tests.factories import make_child

REGION = "510107"


@pytest.fixture
async def civil(token: TokenFactory) -> str:
    return await token(agency="civil-affairs", scopes=[*CIVIL_SCOPES, "events:publish"], region=REGION)


@pytest.fixture
async def education(token: TokenFactory) -> str:
    return await token(agency="education", scopes=PUBLISH_SCOPES, region=REGION)


@pytest.fixture
async def police(token: TokenFactory) -> str:
    return await token(agency="police", scopes=PUBLISH_SCOPES, region=REGION)


@pytest.fixture
async def child(client: Any, civil: str) -> dict[str, Any]:
    return await make_child(client, civil, region=REGION + "005003")
