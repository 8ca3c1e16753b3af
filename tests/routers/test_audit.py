"""GET /v1/audit/access-log: oversight reads the log with filters and cursor pagination."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.audit import AccessRecord, AuditWriter
from tests.audit.conftest import make_record
from tests.conftest import TokenFactory, bearer

PATH = "/v1/audit/access-log"


async def auditor(token: TokenFactory) -> dict[str, str]:
    return bearer(await token(agency="platform", scopes=["audit:read"]))


async def write(app: Any, *records: AccessRecord) -> list[int]:
    writer: AuditWriter = app.state.audit
    return await writer.record_many(records)


class TestAccess:
    async def test_needs_a_token(self, client: httpx.AsyncClient) -> None:
        response = await client.get(PATH)
        assert response.status_code == 401

    async def test_needs_audit_read(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        police = await token(agency="police", scopes=["children:read", "custody:read"])
        response = await client.get(PATH, headers=bearer(police))
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"


class TestFilters:
    async def test_each_filter_narrows_the_log(
        self, app: Any, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        child, listed = uuid.uuid4(), uuid.uuid4()
        ids = await write(
            app,
            make_record(agency="police", client_id="cl_police", child_id=child, action="custody.read"),
            make_record(
                agency="womens-federation",
                client_id="cl_wf",
                child_id=child,
                action="child.read",
                decision="allow_redacted",
            ),
            make_record(
                agency="education",
                client_id="cl_edu",
                child_id=None,
                child_ids=[listed, child],
                action="child.list",
                query={"region": "510107", "limit": 50},
            ),
            make_record(agency="police", client_id="cl_police", child_id=listed, decision="deny", reason="x"),
        )
        headers = await auditor(token)

        async def found(**params: Any) -> list[int]:
            response = await client.get(PATH, params=params, headers=headers)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert await found() == ids[::-1]  # newest first
        assert await found(child_id=str(child)) == [ids[2], ids[1], ids[0]]  # lists that returned it too
        assert await found(agency="police") == [ids[3], ids[0]]
        assert await found(client_id="cl_wf") == [ids[1]]
        assert await found(decision="deny") == [ids[3]]
        assert await found(action="child.list") == [ids[2]]
        assert await found(agency="police", decision="allow") == [ids[0]]
        now = datetime.now(UTC)
        assert await found(since=(now - timedelta(minutes=5)).isoformat()) == ids[::-1]
        assert await found(since=(now + timedelta(minutes=5)).isoformat()) == []
        assert await found(until=(now - timedelta(minutes=5)).isoformat()) == []

    async def test_an_entry_carries_everything_but_the_row_hash(
        self, app: Any, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        listed = uuid.uuid4()
        record = make_record(
            action="child.list", child_id=None, child_ids=[listed], query={"category": "left_behind"}
        )
        (row_id,) = await write(app, record)
        response = await client.get(PATH, headers=await auditor(token))
        (entry,) = response.json()["items"]
        assert "row_hash" not in entry
        assert entry["id"] == row_id
        assert entry["client_id"] == record.client_id
        assert entry["child_id"] is None
        assert entry["child_ids"] == [str(listed)]
        assert entry["query"] == {"category": "left_behind"}
        assert entry["basis"]["custody"]["citation"] == "未成年人保护法 第十一条"
        assert entry["categories_withheld"] == ["health"]
        assert entry["decision"] == "allow"
        assert entry["break_glass"] is False
        assert entry["logged_at"].endswith(("Z", "+00:00"))


class TestPagination:
    async def test_pages_follow_the_cursor_to_the_end(
        self, app: Any, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        ids = await write(app, *(make_record() for _ in range(7)))
        headers = await auditor(token)
        seen: list[int] = []
        sizes = []
        params: dict[str, Any] = {"limit": 3}
        while True:
            body = (await client.get(PATH, params=params, headers=headers)).json()
            sizes.append(len(body["items"]))
            seen += [item["id"] for item in body["items"]]
            if body["next_cursor"] is None:
                break
            params["after"] = body["next_cursor"]
        assert sizes == [3, 3, 1]
        assert seen == sorted(ids, reverse=True)

    async def test_a_bad_cursor_is_a_400(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        response = await client.get(PATH, params={"after": "not-a-cursor"}, headers=await auditor(token))
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_cursor"

    async def test_limit_is_bounded(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        headers = await auditor(token)
        for limit in (0, 201, 100000):
            response = await client.get(PATH, params={"limit": limit}, headers=headers)
            assert response.status_code == 422, limit
            assert response.headers["content-type"].startswith("application/problem+json")
