from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from app.config import Settings
from app.db import asyncpg_dsn
from app.errors import NotFound
from app.main import create_app
from app.models.guardianship import CustodyPublic
from tests.conftest import ServedBy, TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, guardianship_body, make_child, purpose


@pytest.fixture
async def civil(token: TokenFactory) -> str:
    return await token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="51")


async def child_in_care(client: httpx.AsyncClient, civil: str) -> dict[str, Any]:
    """A registered child with a current guardianship record (kinship care, a grandmother to call)."""
    child = await make_child(client, civil)
    recorded = await client.post(
        f"/v1/children/{child['id']}/guardianship", json=guardianship_body(), headers=bearer(civil)
    )
    assert recorded.status_code == 201, recorded.text
    return child


async def fetch(database_url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def access_log(database_url: str) -> list[asyncpg.Record]:
    return await fetch(database_url, "SELECT * FROM access_log ORDER BY id")


@contextlib.asynccontextmanager
async def audit_unreachable(app: Any) -> AsyncIterator[None]:
    """A real access-log writer whose database cannot be reached, for the duration."""
    from app.audit.writer import AuditWriter

    door = app.state.door
    working = door.audit
    door.audit = AuditWriter("postgresql://postgres@127.0.0.1:1/none", timeout=1.0)
    try:
        yield
    finally:
        await door.audit.aclose()
        door.audit = working


class TestCustodyCheck:
    async def test_police_gets_status_and_whom_to_call_and_the_read_is_logged(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await child_in_care(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="5101")

        response = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()}
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["custody_status"] == "kinship_care"
        assert body["guardian"] == {"name": "卓玛", "relationship": "grandmother", "phone": "13800138000"}
        assert body["responsible_organisation"]["duty_phone"] == "028-85000000"
        assert body["risk_flags"] == ["guardian_unreachable"]
        assert body["access"]["basis"]["custody"]["ground"] == "statute"
        log = await access_log(database_url)
        reads = [r for r in log if r["action"] == "custody.read"]
        assert len(reads) == 1
        assert str(reads[0]["child_id"]) == child["id"]
        assert reads[0]["agency"] == "police"
        assert reads[0]["purpose"] == "child_protection"
        assert reads[0]["decision"] == "allow"

    async def test_police_without_purpose_is_refused_and_audited(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        response = await client.get(f"/v1/children/{child['id']}/custody", headers=bearer(police))
        assert response.status_code == 400
        assert response.json()["code"] == "purpose_required"
        log = await access_log(database_url)
        assert [(r["decision"], r["reason"]) for r in log] == [("deny", "purpose_required")]

    async def test_unknown_purpose_is_refused_and_audited(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        response = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose("curiosity")}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "unknown_purpose"
        log = await access_log(database_url)
        assert [r["reason"] for r in log] == ["unknown_purpose"]
        assert log[0]["purpose"] is None  # free text from a header is never written to the log

    async def test_child_outside_region_is_404_like_absent_and_audited(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil, region="510107005003")
        police = await token(agency="police", scopes=["custody:read"], region="510104")
        outside = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()}
        )
        absent = await client.get(
            "/v1/children/00000000-0000-4000-8000-000000000000/custody",
            headers={**bearer(police), **purpose()},
        )
        assert outside.status_code == absent.status_code == 404
        strip = ("instance", "request_id")
        assert {k: v for k, v in outside.json().items() if k not in strip} == {
            k: v for k, v in absent.json().items() if k not in strip
        }
        log = await access_log(database_url)
        assert [r["decision"] for r in log] == ["deny", "deny"]

    async def test_education_sees_status_but_not_whom_to_call(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await child_in_care(client, civil)
        school = await token(agency="education", scopes=["custody:read"], region="51")
        response = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(school), **purpose("education_support")}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["custody_status"] == "kinship_care"
        assert body["guardian"] is None
        assert body["responsible_organisation"]["duty_phone"] is None
        assert {w["category"] for w in body["access"]["withheld"]} == {"contact"}

    async def test_metrics_show_concurrent_checks_sharing_their_database_work(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        children = [await make_child(client, civil) for _ in range(3)]
        police = await token(agency="police", scopes=["custody:read"], region="51")
        headers = {**bearer(police), **purpose()}
        # One check first, so that the token, the client's status and the agency's kind are known
        # and the concurrent checks below meet no database round trip before their lookup.
        assert (
            await client.get(f"/v1/children/{children[0]['id']}/custody", headers=headers)
        ).status_code == 200
        before = (await client.get("/metrics")).text

        answers = await asyncio.gather(
            *(client.get(f"/v1/children/{child['id']}/custody", headers=headers) for child in children * 4)
        )

        assert [a.status_code for a in answers] == [200] * 12
        after = (await client.get("/metrics")).text

        def grew(series: str) -> int:
            return _counter(after, series) - _counter(before, series)

        assert grew("childlink_access_log_records_total") == 12
        assert 1 <= grew("childlink_access_log_flushes_total") < 12  # records shared INSERTs
        assert grew("childlink_access_log_failed_flushes_total") == 0
        # Checks of the same child in flight together read it once.
        assert 3 <= grew('childlink_lookup_keys_total{lookup="custody"}') < 12
        assert 1 <= grew('childlink_lookup_queries_total{lookup="custody"}') < 12


class TestGuardianshipHistory:
    async def test_new_record_supersedes_and_history_is_kept(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        child = await make_child(client, civil)
        url = f"/v1/children/{child['id']}/guardianship"
        first = await client.post(url, json=guardianship_body(), headers=bearer(civil))
        second = await client.post(
            url,
            json=guardianship_body(
                custody_status="entrusted",
                entrustment_confirmation_ref="WT-2026-0012",
                entrustment_confirmed_on="2026-11-01",
                effective_from="2026-11-01",
            ),
            headers=bearer(civil),
        )
        assert first.status_code == second.status_code == 201
        history = (await client.get(url, headers=bearer(civil))).json()
        assert [(h["custody_status"], h["current"]) for h in history["items"]] == [
            ("entrusted", True),
            ("kinship_care", False),
        ]
        custody = (await client.get(f"/v1/children/{child['id']}/custody", headers=bearer(civil))).json()
        assert custody["custody_status"] == "entrusted"

    async def test_entrusted_without_confirmation_is_422_and_nothing_changes(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        child = await make_child(client, civil)
        url = f"/v1/children/{child['id']}/guardianship"
        response = await client.post(
            url, json=guardianship_body(custody_status="entrusted"), headers=bearer(civil)
        )
        assert response.status_code == 422
        assert (await client.get(url, headers=bearer(civil))).json()["items"] == []


class TestAuditIsAPrecondition:
    async def test_read_whose_record_cannot_be_written_is_not_served(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, app: object
    ) -> None:
        child = await child_in_care(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        # The record cannot be made durable.
        async with audit_unreachable(app):
            response = await client.get(
                f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()}
            )
        assert response.status_code == 503
        assert response.json()["code"] == "audit_unavailable"
        assert "卓玛" not in response.text and "13800138000" not in response.text


def routed(child_id: str) -> str:
    """The same child id spelled as the route parses it but the direct path does not take it."""
    return child_id.replace("-", "").upper()


def without_request(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k not in ("instance", "request_id")}


class TestDirectPath:
    """Well-formed custody checks are answered past FastAPI's routing (app.direct); whichever way
    a check goes, its answer and its access-log record are the same."""

    async def test_direct_and_routed_checks_answer_alike_and_are_both_logged(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        database_url: str,
    ) -> None:
        http, recorder = served
        child = await child_in_care(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        headers = {**bearer(police), **purpose()}

        direct = await http.get(f"/v1/children/{child['id']}/custody", headers=headers)
        route = await http.get(f"/v1/children/{routed(child['id'])}/custody", headers=headers)

        assert recorder.handlers == ["direct", "route"]
        assert direct.status_code == route.status_code == 200, direct.text
        assert direct.json() == route.json()
        assert direct.json()["guardian"]["phone"] == "13800138000"
        assert direct.headers["content-type"] == route.headers["content-type"] == "application/json"
        assert direct.headers["x-request-id"] != route.headers["x-request-id"]
        log = await access_log(database_url)
        assert [(r["action"], r["decision"], str(r["child_id"])) for r in log] == [
            ("custody.read", "allow", child["id"]),
            ("custody.read", "allow", child["id"]),
        ]
        assert [r["request_id"] for r in log] == [
            direct.headers["x-request-id"],
            route.headers["x-request-id"],
        ]

    async def test_document_matches_the_published_model_in_every_branch(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        with_guardian = await make_child(client, civil)
        await client.post(
            f"/v1/children/{with_guardian['id']}/guardianship",
            json=guardianship_body(last_assessment_date="2026-10-01", last_assessment_result="adequate"),
            headers=bearer(civil),
        )
        without_guardian = await make_child(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        school = await token(agency="education", scopes=["custody:read"], region="51")
        wf = await token(agency="womens-federation", scopes=["custody:read"], region="51")
        answers = [
            await client.get(f"/v1/children/{child['id']}/custody", headers={**bearer(tok), **purpose(why)})
            for child in (with_guardian, without_guardian)
            for tok, why in (
                (police, "child_protection"),
                (school, "education_support"),
                (wf, "child_protection"),
            )
        ]
        assert [a.status_code for a in answers] == [200] * 6
        for answer in answers:
            assert CustodyPublic.model_validate(answer.json()).model_dump(mode="json") == answer.json()
        full, no_contact, no_custody = (a.json() for a in answers[:3])
        assert full["last_assessment"] == {"date": "2026-10-01", "result": "adequate", "event_id": None}
        assert full["since"] is not None and full["guardianship_id"] is not None
        assert no_contact["guardian"] is None and no_contact["custody_status"] == "kinship_care"
        assert no_custody["custody_status"] is None and no_custody["guardian"] is not None
        assert no_custody["last_assessment"] is None and no_custody["risk_flags"] == []
        absent = answers[3].json()
        assert absent["custody_status"] is None and absent["responsible_organisation"] is None
        assert absent["guardianship_id"] is None and absent["child_status"] == "active"

    @pytest.mark.parametrize(
        ("scopes", "headers", "status", "code"),
        [
            (None, {}, 401, "unauthorized"),
            (["children:read"], {"X-Purpose-Of-Use": "child_protection"}, 403, "insufficient_scope"),
            (["custody:read"], {"X-Purpose-Of-Use": "curiosity"}, 400, "unknown_purpose"),
        ],
    )
    async def test_errors_answer_alike(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        scopes: list[str] | None,
        headers: dict[str, str],
        status: int,
        code: str,
    ) -> None:
        http, recorder = served
        child = await make_child(client, civil)
        if scopes is not None:
            headers = {**headers, **bearer(await token(agency="police", scopes=scopes, region="51"))}

        direct = await http.get(f"/v1/children/{child['id']}/custody", headers=headers)
        route = await http.get(f"/v1/children/{routed(child['id'])}/custody", headers=headers)

        assert recorder.handlers == ["direct", "route"]
        assert direct.status_code == route.status_code == status
        assert direct.json()["code"] == code
        assert without_request(direct.json()) == without_request(route.json())
        assert direct.headers["content-type"] == route.headers["content-type"] == "application/problem+json"
        assert direct.headers.get("www-authenticate") == route.headers.get("www-authenticate")

    async def test_header_over_its_length_or_repeated_is_left_to_the_route(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        database_url: str,
    ) -> None:
        http, recorder = served
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        url = f"/v1/children/{child['id']}/custody"

        too_long = await http.get(url, headers={**bearer(police), "X-Purpose-Of-Use": "x" * 65})
        repeated = await http.get(
            url,
            headers=[
                ("Authorization", f"Bearer {police}"),
                ("X-Purpose-Of-Use", "child_protection"),
                ("X-Purpose-Of-Use", "child_protection"),
            ],
        )

        assert recorder.handlers == ["route", "route"]
        assert too_long.status_code == 422
        assert too_long.headers["content-type"] == "application/problem+json"
        assert repeated.status_code == 200, repeated.text
        assert [r["decision"] for r in await access_log(database_url)] == ["allow"]

    @pytest.mark.parametrize("way", ["direct", "route"])
    async def test_investigation_read_opens_the_case_in_the_same_request(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        database_url: str,
        way: str,
    ) -> None:
        http, recorder = served
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        child_id = child["id"] if way == "direct" else routed(child["id"])
        response = await http.get(
            f"/v1/children/{child_id}/custody",
            headers={**bearer(police), **purpose("investigation"), "X-Investigation-Ref": "WH-2026-0117"},
        )
        assert recorder.handlers == [way]
        assert response.status_code == 200, response.text
        cases = await fetch(database_url, "SELECT ref, agency, closed_at FROM investigation")
        assert [(c["ref"], c["agency"], c["closed_at"]) for c in cases] == [("WH-2026-0117", "police", None)]
        log = await access_log(database_url)
        assert [(r["purpose"], r["investigation_ref"]) for r in log] == [("investigation", "WH-2026-0117")]

    async def test_investigation_read_whose_record_cannot_be_written_opens_no_case(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        database_url: str,
        app: Any,
    ) -> None:
        http, recorder = served
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        async with audit_unreachable(app):
            response = await http.get(
                f"/v1/children/{child['id']}/custody",
                headers={**bearer(police), **purpose("investigation"), "X-Investigation-Ref": "WH-2026-0118"},
            )
        assert recorder.handlers == ["direct"]
        assert response.status_code == 503
        assert response.json()["code"] == "audit_unavailable"
        assert await fetch(database_url, "SELECT ref FROM investigation") == []

    async def test_break_glass_read_is_flagged_and_queued_in_the_same_request(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        client: httpx.AsyncClient,
        token: TokenFactory,
        civil: str,
        database_url: str,
    ) -> None:
        http, recorder = served
        child = await child_in_care(client, civil)
        police = await token(agency="police", scopes=["custody:read", "break-glass"], region="51")
        glass = "guardian_unreachable; Found alone at the station at 02:10, no adult answers"
        # No statute lets police read custody for statistics: only break-glass releases it.
        response = await http.get(
            f"/v1/children/{child['id']}/custody",
            headers={**bearer(police), **purpose("statistics"), "X-Break-Glass": glass},
        )
        assert recorder.handlers == ["direct"]
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["guardian"]["phone"] == "13800138000"
        assert {c: b["ground"] for c, b in body["access"]["basis"].items()} == {
            "custody": "break_glass",
            "contact": "break_glass",
        }
        reviews = await fetch(
            database_url, "SELECT access_log_id, action, reason_code FROM break_glass_review"
        )
        log = await access_log(database_url)
        assert [r["break_glass"] for r in log] == [True]
        assert [(r["access_log_id"], r["action"], r["reason_code"]) for r in reviews] == [
            (log[0]["id"], "custody.read", "guardian_unreachable")
        ]

    async def test_an_exception_handler_is_used_as_the_route_would_use_it(
        self, settings: Settings, token: TokenFactory
    ) -> None:
        """A plain (non-async) handler, as an application may register one, answers for both ways."""
        other = create_app(settings)

        def not_found(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"handled": "sync"}, status_code=404)

        other.add_exception_handler(NotFound, not_found)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        absent = "00000000-0000-4000-8000-000000000000"
        async with other.router.lifespan_context(other):
            recorder = ServedBy(other)
            transport = httpx.ASGITransport(app=recorder)
            async with httpx.AsyncClient(transport=transport, base_url="http://other") as http:
                answers = [
                    await http.get(
                        f"/v1/children/{child_id}/custody", headers={**bearer(police), **purpose()}
                    )
                    for child_id in (absent, routed(absent))
                ]
        assert recorder.handlers == ["direct", "route"]
        assert [(a.status_code, a.json()) for a in answers] == [(404, {"handled": "sync"})] * 2

    async def test_metrics_count_both_ways_under_the_route_template(
        self, served: tuple[httpx.AsyncClient, ServedBy], token: TokenFactory
    ) -> None:
        http, _ = served
        police = await token(agency="police", scopes=["custody:read"], region="51")
        absent = "00000000-0000-4000-8000-000000000000"
        before = await http.get("/metrics")
        for child_id in (absent, routed(absent)):
            response = await http.get(
                f"/v1/children/{child_id}/custody", headers={**bearer(police), **purpose()}
            )
            assert response.status_code == 404
        after = await http.get("/metrics")
        series = (
            'childlink_http_requests_total{method="GET",route="/v1/children/{child_id}/custody",status="404"}'
        )
        assert _counter(after.text, series) - _counter(before.text, series) == 2


def _counter(metrics: str, series: str) -> int:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return int(line.rsplit(" ", 1)[1])
    return 0


class TestEmergencyIsNotAKeyToContact:
    """`X-Purpose-Of-Use: emergency` tells an agency who holds custody, not how to reach them."""

    @pytest.mark.parametrize("spelling", ["canonical", "unhyphenated"])  # the direct path and the route
    async def test_education_custody_check_in_an_emergency_gives_no_guardian_phone(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str, spelling: str
    ) -> None:
        child = await child_in_care(client, civil)
        school = await token(agency="education", scopes=["custody:read"], region="51")
        child_id = child["id"] if spelling == "canonical" else child["id"].replace("-", "")
        response = await client.get(
            f"/v1/children/{child_id}/custody", headers={**bearer(school), **purpose("emergency")}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["custody_status"] == "kinship_care"
        assert "13800138000" not in response.text
        assert body["access"]["withheld"] == [{"category": "contact", "reason": "no_legal_basis"}]
        assert body["access"]["basis"]["custody"]["ref"] == "any-emergency"
        (row,) = await access_log(database_url)
        assert row["purpose"] == "emergency" and row["categories_withheld"] == ["contact"]

    async def test_police_custody_check_in_an_emergency_still_gives_whom_to_call(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await child_in_care(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="51")
        response = await client.get(
            f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose("emergency")}
        )
        assert response.status_code == 200
        assert response.json()["guardian"]["phone"] == "13800138000"


class TestCustodyQueryParameters:
    async def test_an_unknown_parameter_on_the_custody_check_is_refused_on_the_direct_path_too(
        self,
        served: tuple[httpx.AsyncClient, ServedBy],
        token: TokenFactory,
        civil: str,
        client: httpx.AsyncClient,
    ) -> None:
        http, recorder = served
        child = await child_in_care(client, civil)
        police = await token(agency="police", scopes=["custody:read"], region="5101")
        for child_id in (child["id"], routed(child["id"])):
            response = await http.get(
                f"/v1/children/{child_id}/custody",
                params={"resident_id": "510107201605120249"},
                headers={**bearer(police), **purpose()},
            )
            assert response.status_code == 400, response.text
            assert response.json()["code"] == "unknown_parameter"
        assert recorder.handlers == ["route", "route"]
        plain = await http.get(f"/v1/children/{child['id']}/custody", headers={**bearer(police), **purpose()})
        assert plain.status_code == 200
        assert recorder.handlers[-1] == "direct"
