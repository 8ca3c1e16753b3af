"""Counts of mandatory reports in `GET /v1/statistics/services`: by concern, urgency and whether
each receiver acknowledged in time; exact for the receiver's own, controlled for everyone else,
and never a trace of the reporter."""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.case_factories import CASE_SCOPES, CHILD_REGION, as_
from tests.conftest import TokenFactory, bearer
from tests.events.helpers import fetch
from tests.factories import CIVIL_SCOPES, make_child
from tests.routers.test_reports import SECRETS, report_body

STATS = ["statistics:read"]
# (concern, urgency) -> reports filed; police acknowledge the first ACKNOWLEDGED of each in time.
FILED: dict[tuple[str, str], int] = {
    ("physical_abuse", "urgent"): 8,
    ("neglect", "routine"): 6,
    ("sexual_abuse", "immediate_danger"): 2,
}
ACKNOWLEDGED = 5


@pytest.fixture
async def parties(token: TokenFactory) -> dict[str, str]:
    return {
        "registrar": await token(
            agency="civil-affairs", scopes=[*CIVIL_SCOPES, "cases:write", *STATS], region="51"
        ),
        "school": await token(agency="education", scopes=["reports:file", *STATS], region="510107"),
        "police": await token(agency="police", scopes=[*CASE_SCOPES, *STATS], region="510107"),
    }


@pytest.fixture
async def filed(client: httpx.AsyncClient, parties: dict[str, str], database_url: str) -> list[str]:
    """The reports, police's acknowledgements, one of them late, and one receiver overdue."""
    child = await make_child(client, parties["registrar"], region=CHILD_REGION)
    ids: list[str] = []
    for (concern, urgency), n in FILED.items():
        for i in range(n):
            response = await client.post(
                "/v1/reports",
                json=report_body(child["id"], concern=concern, urgency=urgency),
                headers={**as_(parties["school"]), "Idempotency-Key": str(uuid.uuid4())},
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
            if i < ACKNOWLEDGED:
                ack = await client.post(f"/v1/reports/{ids[-1]}/acknowledge", headers=as_(parties["police"]))
                assert ack.status_code == 200, ack.text
    # One police acknowledgement came after its deadline; one civil-affairs deadline has passed.
    await fetch(
        database_url,
        "UPDATE referral SET respond_by = answered_at - interval '1 minute' "
        "WHERE case_id = (SELECT case_id FROM report WHERE id = $1) AND to_agency = 'police'",
        uuid.UUID(ids[0]),
    )
    await fetch(
        database_url,
        "UPDATE referral SET respond_by = now() - interval '1 minute' "
        "WHERE case_id = (SELECT case_id FROM report WHERE id = $1) AND to_agency = 'civil-affairs'",
        uuid.UUID(ids[1]),
    )
    return ids


def _timeliness(row: Any, now: datetime) -> str:
    if row["status"] in ("accepted", "completed"):
        return "in_time" if row["answered_at"] <= row["respond_by"] else "late"
    if row["status"] == "declined":
        return "declined"
    return "overdue" if now > row["respond_by"] else "awaiting"


async def _direct(database_url: str) -> list[Any]:
    """Every receiver's referral of a report, straight from the tables."""
    return await fetch(
        database_url,
        "SELECT r.id AS report_id, r.concern, r.urgency, f.to_agency, f.status, f.answered_at, f.respond_by "
        "FROM report r JOIN referral f ON f.case_id = r.case_id WHERE f.status <> 'withdrawn'",
    )


def _cells(body: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(c["values"][d] for d in body["dimensions"]): c for c in body["cells"]}


async def _count(client: httpx.AsyncClient, who: str, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/statistics/services", params=params, headers=bearer(who))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestReportCountsAgreeWithTheRows:
    async def test_police_see_their_own_acknowledgements_exactly(
        self, client: httpx.AsyncClient, parties: dict[str, str], filed: list[str], database_url: str
    ) -> None:
        body = await _count(
            client,
            parties["police"],
            what="acknowledgements",
            group_by="concern,urgency,acknowledgement",
            exact="true",
        )
        now = datetime.now(UTC)
        direct = Counter(
            (r["concern"], r["urgency"], _timeliness(r, now))
            for r in await _direct(database_url)
            if r["to_agency"] == "police"
        )
        assert body["disclosure"]["method"] == "exact"
        assert {k: c["count"] for k, c in _cells(body).items()} == dict(direct)
        assert direct[("physical_abuse", "urgent", "late")] == 1  # the seeding did what it says
        assert direct[("physical_abuse", "urgent", "in_time")] == ACKNOWLEDGED - 1
        assert body["total"]["count"] == sum(FILED.values())

    async def test_reports_count_each_report_once_with_its_worst_acknowledgement(
        self, client: httpx.AsyncClient, parties: dict[str, str], filed: list[str], database_url: str
    ) -> None:
        body = await _count(
            client, parties["police"], what="reports", group_by="concern,acknowledgement", exact="true"
        )
        rank = ["in_time", "declined", "late", "awaiting", "overdue"]
        worst: dict[str, tuple[str, int]] = {}
        now = datetime.now(UTC)
        for row in await _direct(database_url):
            seen = worst.get(str(row["report_id"]), (row["concern"], -1))
            worst[str(row["report_id"])] = (row["concern"], max(seen[1], rank.index(_timeliness(row, now))))
        direct = Counter((concern, rank[r]) for concern, r in worst.values())
        assert {k: c["count"] for k, c in _cells(body).items()} == dict(direct)
        assert direct[("physical_abuse", "overdue")] == 1  # civil affairs missed its deadline
        assert body["total"]["count"] == len(filed)

    async def test_anyone_else_gets_controlled_counts_and_no_trace_of_the_reporter(
        self, client: httpx.AsyncClient, parties: dict[str, str], filed: list[str]
    ) -> None:
        # The school filed them all, yet keeps none of them: exact counts of its own are none.
        body = await _count(
            client, parties["school"], what="reports", group_by="concern,urgency", exact="true"
        )
        assert body["total"]["count"] == 0 and body["cells"] == []
        body = await _count(client, parties["school"], what="reports", group_by="concern,urgency")
        cells = _cells(body)
        assert body["disclosure"]["method"] == "controlled"
        assert cells[("physical_abuse", "urgent")]["count"] == 10  # 8, rounded to 5
        assert cells[("sexual_abuse", "immediate_danger")]["suppressed"] is True  # 2 < 5
        assert cells[("sexual_abuse", "immediate_danger")]["count"] is None
        for what in ("reports", "acknowledgements"):
            for fmt in ("json", "csv"):
                response = await client.get(
                    "/v1/statistics/services",
                    params={"what": what, "group_by": "concern,urgency,acknowledgement", "format": fmt},
                    headers=bearer(parties["registrar"]),
                )
                assert response.status_code == 200
                assert all(s not in response.text for s in SECRETS)
                assert "education" not in response.text  # nor who filed

    async def test_a_report_is_never_counted_by_its_filer(
        self, client: httpx.AsyncClient, parties: dict[str, str], filed: list[str], database_url: str
    ) -> None:
        before = (await fetch(database_url, "SELECT count(*) AS n FROM access_log"))[0]["n"]
        for group_by in ("publisher", "type"):
            response = await client.get(
                "/v1/statistics/services",
                params={"what": "reports", "group_by": group_by},
                headers=bearer(parties["police"]),
            )
            assert response.status_code == 400 and response.json()["code"] == "unknown_dimension"
        typed = await client.get(
            "/v1/statistics/services",
            params={"what": "reports", "type": "platform.report.received"},
            headers=bearer(parties["police"]),
        )
        assert typed.status_code == 400
        assert (await fetch(database_url, "SELECT count(*) AS n FROM access_log"))[0]["n"] == before

    async def test_counting_events_by_publisher_never_shows_the_filing_school(
        self, client: httpx.AsyncClient, parties: dict[str, str], filed: list[str]
    ) -> None:
        for who in ("police", "registrar"):
            for exact in ("false", "true"):
                body = await _count(
                    client, parties[who], group_by="type,publisher", exact=exact, region="510107"
                )
                publishers = {cell["values"]["publisher"] for cell in body["cells"]}
                types = {cell["values"]["type"] for cell in body["cells"]}
                assert "education" not in publishers, body["cells"]
                assert not any(t.startswith("platform.") for t in types), types

    async def test_a_report_dimension_on_events_is_refused(
        self, client: httpx.AsyncClient, parties: dict[str, str]
    ) -> None:
        response = await client.get(
            "/v1/statistics/services", params={"group_by": "concern"}, headers=bearer(parties["police"])
        )
        assert response.status_code == 400 and response.json()["code"] == "unknown_dimension"


class TestReportCountExports:
    async def test_csv_in_chinese_carries_the_same_numbers(
        self, client: httpx.AsyncClient, parties: dict[str, str], filed: list[str]
    ) -> None:
        params = {"what": "acknowledgements", "group_by": "receiver,acknowledgement", "exact": "true"}
        body = await _count(client, parties["police"], **params)
        response = await client.get(
            "/v1/statistics/services",
            params={**params, "format": "csv", "lang": "zh"},
            headers=bearer(parties["police"]),
        )
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert rows[0] == ["接收部门", "受理情况", "数量"]
        in_time = _cells(body)[("police", "in_time")]["count"]
        assert ["公安", "按时受理", str(in_time)] in rows
        assert ["公安", "逾期受理", "1"] in rows


class TestReportCountsWindow:
    async def test_reports_filed_before_the_window_are_not_counted(
        self, client: httpx.AsyncClient, parties: dict[str, str], filed: list[str]
    ) -> None:
        tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
        body = await _count(
            client, parties["police"], what="reports", exact="true", **{"from": tomorrow, "to": tomorrow}
        )
        assert body["total"]["count"] == 0
