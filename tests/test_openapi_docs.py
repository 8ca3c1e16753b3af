"""The spec says what the API requires: headers that are required are documented so, each
error status has an example of its own, and operation ids read well in a generated client."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.conftest import TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, make_child

SPEC = create_app(Settings()).openapi()


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in SPEC["paths"].items() for method, op in item.items()]


def _parameter(operation: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in operation.get("parameters", []) if p["name"] == name), None)


class TestHeaders:
    def test_if_match_is_required_on_patch_of_a_child(self) -> None:
        parameter = _parameter(SPEC["paths"]["/v1/children/{child_id}"]["patch"], "If-Match")
        assert parameter is not None and parameter["required"] is True

    async def test_and_the_api_does_require_it(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        civil = await token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="51")
        child = await make_child(client, civil)
        response = await client.patch(
            f"/v1/children/{child['id']}", json={"school": "簇桥中学"}, headers=bearer(civil)
        )
        assert response.status_code == 428
        assert response.json()["code"] == "precondition_required"

    def test_purpose_of_use_says_it_is_required_for_a_cross_agency_read(self) -> None:
        custody = SPEC["paths"]["/v1/children/{child_id}/custody"]["get"]
        parameter = _parameter(custody, "X-Purpose-Of-Use")
        assert parameter is not None
        assert parameter["example"] == "child_protection"
        assert "Required for a cross-agency read" in parameter["description"]

    def test_idempotency_key_is_required_with_an_example(self) -> None:
        parameter = _parameter(SPEC["paths"]["/v1/events"]["post"], "Idempotency-Key")
        assert parameter is not None and parameter["required"] is True
        assert re.fullmatch(parameter["schema"]["pattern"], parameter["example"])


class TestErrorExamples:
    @pytest.mark.parametrize(("path", "method", "operation"), _operations())
    def test_each_error_status_has_its_own_example(
        self, path: str, method: str, operation: dict[str, Any]
    ) -> None:
        for status, response in operation["responses"].items():
            problem = response.get("content", {}).get("application/problem+json")
            if problem is None:
                continue
            (example,) = problem["examples"].values()
            assert example["value"]["status"] == int(status), (path, method, status)

    def test_a_404_names_what_was_not_found(self) -> None:
        consents = SPEC["paths"]["/v1/consents/{consent_id}/revoke"]["post"]["responses"]["404"]
        (example,) = consents["content"]["application/problem+json"]["examples"].values()
        assert example["value"]["code"] == "consent_not_found"
        custody = SPEC["paths"]["/v1/children/{child_id}/custody"]["get"]["responses"]["400"]
        (example,) = custody["content"]["application/problem+json"]["examples"].values()
        assert example["value"]["code"] == "purpose_required"


class TestOperationIds:
    def test_operation_ids_are_unique_readable_names(self) -> None:
        ids = [op["operationId"] for _, _, op in _operations()]
        assert len(ids) == len(set(ids))
        for operation_id in ids:
            assert re.fullmatch(r"[a-z]+(_[a-z]+)*", operation_id), operation_id
            assert "_v1_" not in operation_id
        assert {"register_child", "get_custody", "publish_event", "issue_token"} <= set(ids)

    def test_every_tag_is_described(self) -> None:
        described = {tag["name"] for tag in SPEC["tags"] if tag.get("description")}
        used = {tag for _, _, op in _operations() for tag in op.get("tags", [])}
        used |= {
            tag for item in SPEC["webhooks"].values() for op in item.values() for tag in op.get("tags", [])
        }
        assert used <= described
