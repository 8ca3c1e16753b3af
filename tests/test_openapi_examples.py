"""Every request example the spec documents works: posted to an app seeded with the demo data,
as the demo agency it is written for, with the headers the operation requires, it gets the
documented success status. What Swagger UI pre-fills is what this test sends."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from app.services import demo as demo_service
from app.services.demo import DemoCredential
from tests.conftest import bearer

SPEC = create_app(Settings()).openapi()


def _examples() -> list[Any]:
    cases = []
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                for name, example in media.get("examples", {}).items():
                    cases.append(
                        pytest.param(
                            path,
                            method,
                            operation,
                            media_type,
                            example,
                            id=f"{operation['operationId']}:{name}",
                        )
                    )
    return cases


def test_every_operation_with_a_body_has_named_examples() -> None:
    missing = [
        operation["operationId"]
        for item in SPEC["paths"].values()
        for operation in item.values()
        if "requestBody" in operation
        and not any(m.get("examples") for m in operation["requestBody"]["content"].values())
    ]
    assert missing == []


def _success_status(operation: dict[str, Any]) -> int:
    return min(int(s) for s in operation["responses"] if s.isdigit() and s.startswith("2"))


def _parameter(operation: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in operation.get("parameters", []) if p["name"] == name), None)


@pytest.mark.parametrize(("path", "method", "operation", "media_type", "example"), _examples())
async def test_documented_example_succeeds_on_the_demo_data(
    client: httpx.AsyncClient,
    demo: dict[str, DemoCredential],
    path: str,
    method: str,
    operation: dict[str, Any],
    media_type: str,
    example: dict[str, Any],
) -> None:
    credential = demo[example["x-agency"]]
    url = path
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            url = url.replace("{" + parameter["name"] + "}", parameter["example"])
    headers: dict[str, str] = {}
    if operation["operationId"] == "issue_token":
        response = await client.post(
            url, data=example["value"], auth=(credential.client_id, credential.client_secret)
        )
        assert response.status_code == _success_status(operation), response.text
        return
    token = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(credential.client_id, credential.client_secret),
    )
    headers.update(bearer(token.json()["access_token"]))
    purpose = _parameter(operation, "X-Purpose-Of-Use")
    if purpose:
        headers["X-Purpose-Of-Use"] = purpose["example"]
    if _parameter(operation, "Idempotency-Key"):
        headers["Idempotency-Key"] = str(uuid.uuid4())
    if_match = _parameter(operation, "If-Match")
    if if_match:
        record = "/".join(url.split("/")[:4])  # /v1/children/{id}
        read = await client.get(record, headers=headers)
        assert read.status_code == 200, read.text
        headers["If-Match"] = read.headers["ETag"]
    response = await client.request(
        method.upper(), url, json=example["value"], headers={**headers, "Content-Type": media_type}
    )
    assert response.status_code == _success_status(operation), response.text


@pytest.fixture
async def demo(app: Any) -> dict[str, DemoCredential]:
    async with app.state.db.sessionmaker() as session:
        credentials = await demo_service.load(session)
        await demo_service.load_children(session, app.state.webhook_secret_box)
        await session.commit()
    return {c.agency: c for c in credentials}
