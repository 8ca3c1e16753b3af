"""Every catalog type carries an example `data` payload that its own schema accepts, shown where
integrators look: `GET /v1/event-types` and the spec's `webhooks` section."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.events import catalog
from app.events.examples import DEMO_CHILD_ID
from app.services.demo import DEMO_CHILD_IDS
from tests.conftest import bearer


@pytest.mark.parametrize("type_name", sorted(catalog.catalog()))
def test_each_types_example_is_accepted_by_its_own_schema(type_name: str) -> None:
    event_type = catalog.catalog()[type_name]
    (example,) = event_type.schema["examples"]
    assert event_type.validate(example) == []
    assert set(example) == set(event_type.schema["properties"])


def test_examples_name_a_demo_child() -> None:
    assert DEMO_CHILD_ID == str(DEMO_CHILD_IDS[0])


async def test_catalog_and_spec_show_the_examples(
    app: Any, client: httpx.AsyncClient, education: str
) -> None:
    listed = await client.get("/v1/event-types", headers=bearer(education))
    assert listed.status_code == 200
    for item in listed.json()["items"]:
        assert item["data_schema"]["examples"], item["type"]
    webhooks = app.openapi()["webhooks"]
    for type_name, event_type in catalog.catalog().items():
        body = webhooks[type_name]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["data"]["examples"] == event_type.schema["examples"]
