"""Publishing answered past FastAPI's routing (app.direct): the same answers as the documented
route, and everything the route refuses handed to it with its body intact."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from app.models.event import EventAccepted
from tests.conftest import ServedBy, TokenFactory, bearer
from tests.events.helpers import DROPOUT, cloud_event, scalar


def post(http: httpx.AsyncClient, token: str | None, body: bytes, key: str | None = "k-1") -> Any:
    headers = {"Content-Type": "application/cloudevents+json"}
    if token is not None:
        headers.update(bearer(token))
    if key is not None:
        headers["Idempotency-Key"] = key
    return http.post("/v1/events", content=body, headers=headers)


class TestDirectPublish:
    async def test_a_publish_and_its_replay_are_answered_directly_with_the_documented_receipt(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        education: str,
        child: dict[str, Any],
        database_url: str,
    ) -> None:
        http, recorder = served
        body = orjson.dumps(cloud_event(DROPOUT, child["id"], id="evt-direct"))
        first = await post(http, education, body)
        again = await post(http, education, body)
        assert recorder.handlers == ["direct", "direct"]
        assert first.status_code == again.status_code == 202, first.text
        receipt = EventAccepted.model_validate_json(first.content)
        assert first.json() == again.json()
        assert set(first.json()) == {"id", "sequence", "type", "subject", "time"}
        assert first.headers["location"] == f"/v1/events/{receipt.id}"
        assert first.headers["content-type"] == "application/json"
        assert "idempotent-replayed" not in first.headers
        assert again.headers["idempotent-replayed"] == "true"
        assert first.headers["x-request-id"]
        stored = await scalar(database_url, "SELECT seq FROM outbox_event WHERE id = $1", receipt.id)
        assert stored == receipt.sequence

    @pytest.mark.parametrize(
        ("body", "key", "status", "code"),
        [
            # The route's error names the offset in the very body sent: it got the body intact.
            (b'{"specversion": "1.0", "type": ', "k-1", 400, "malformed_json"),
            (b'["not", "an", "event"]', "k-1", 422, "validation_failed"),
            (None, None, 422, "validation_failed"),  # no Idempotency-Key
            (None, "key with spaces", 422, "validation_failed"),
            (None, "k" * 201, 422, "validation_failed"),
        ],
    )
    async def test_what_the_route_refuses_reaches_the_route_with_its_body(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        education: str,
        child: dict[str, Any],
        database_url: str,
        body: bytes | None,
        key: str | None,
        status: int,
        code: str,
    ) -> None:
        http, recorder = served
        sent = body if body is not None else orjson.dumps(cloud_event(DROPOUT, child["id"]))
        response = await post(http, education, sent, key=key)
        assert recorder.handlers == ["route"]
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        if code == "malformed_json":
            assert response.json()["errors"][0]["loc"] == ["body", str(len(sent))]
        assert await scalar(database_url, "SELECT count(*) FROM outbox_event WHERE type = $1", DROPOUT) == 0

    async def test_an_extra_field_is_refused_by_the_route_naming_it(
        self, served: tuple[httpx.AsyncClient, ServedBy], education: str, child: dict[str, Any]
    ) -> None:
        http, recorder = served
        response = await post(
            http, education, orjson.dumps({**cloud_event(DROPOUT, child["id"]), "extra": 1})
        )
        assert recorder.handlers == ["route"]
        assert response.status_code == 422
        assert "extra" in response.text

    async def test_refusals_on_the_direct_path_are_the_applications_problem_documents(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        token: TokenFactory,
        education: str,
        child: dict[str, Any],
    ) -> None:
        http, recorder = served
        body = orjson.dumps(cloud_event(DROPOUT, child["id"]))
        reader = await token(agency="education", scopes=["events:read"], region="510107")
        unauthenticated = await post(http, None, body)
        unscoped = await post(http, reader, body)
        absent = await post(http, education, orjson.dumps(cloud_event(DROPOUT, str(uuid.uuid4()))), key="k-2")
        assert recorder.handlers == ["direct", "direct", "direct"]
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
        assert unscoped.status_code == 403 and unscoped.json()["code"] == "insufficient_scope"
        assert absent.status_code == 404 and absent.json()["code"] == "child_not_found"
        for answer in (unauthenticated, unscoped, absent):
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["instance"] == "/v1/events"
