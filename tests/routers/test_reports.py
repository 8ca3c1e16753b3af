"""Mandatory reports (强制报告): filing, routing, acknowledgement on the clock, the reporter kept
confidential, the outcome back to the filer as a status."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.access.report_policy import report_policy
from app.db import Database
from app.events.scheduler import Scheduler, TimedJob, registered_jobs
from app.models.agency import AgencyKind
from tests.case_factories import CASE_SCOPES, CHILD_REGION, as_
from tests.conftest import TokenFactory
from tests.events.helpers import fetch as fetch_rows
from tests.factories import CIVIL_SCOPES, make_child
from tests.routers.test_custody import fetch

REPORTER = {"role": "班主任", "name": "王晓梅老师", "phone": "13812345678"}
SECRETS = ("王晓梅", "13812345678")


def report_body(child_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "child_id": child_id,
        "concern": "physical_abuse",
        "urgency": "urgent",
        "observed": "Bruises on both forearms seen in the PE lesson; the child says an adult hit them.",
        "observed_at": datetime.now(UTC).isoformat(),
        "reporter": dict(REPORTER),
    }
    body.update(overrides)
    return body


@pytest.fixture
async def parties(token: TokenFactory) -> dict[str, str]:
    return {
        "registrar": await token(agency="civil-affairs", scopes=[*CIVIL_SCOPES, "cases:write"], region="51"),
        "school": await token(agency="education", scopes=["reports:file", "children:read"], region="510107"),
        "police": await token(agency="police", scopes=CASE_SCOPES, region="510107"),
        "womens": await token(agency="womens-federation", scopes=CASE_SCOPES, region="5101"),
    }


@pytest.fixture
async def child(client: httpx.AsyncClient, parties: dict[str, str]) -> dict[str, Any]:
    return await make_child(client, parties["registrar"], region=CHILD_REGION)


async def file(
    client: httpx.AsyncClient, who: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {**as_(who), "Idempotency-Key": key or str(uuid.uuid4())}
    return await client.post("/v1/reports", json=body, headers=headers)


@pytest.fixture
async def report(client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]) -> dict[str, Any]:
    response = await file(client, parties["school"], report_body(child["id"]))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def report_job(app: Any) -> TimedJob:
    (found,) = [j for j in registered_jobs(app.state.door.policy) if j.name == "referral.overdue"]
    return found


async def rows(database_url: str, table: str) -> int:
    return int((await fetch(database_url, f'SELECT count(*) AS n FROM "{table}"'))[0]["n"])  # noqa: S608


class TestFiling:
    async def test_a_teachers_report_reaches_police_and_civil_affairs_with_deadlines(
        self, app: Any, client: httpx.AsyncClient, report: dict[str, Any], database_url: str
    ) -> None:
        clock = report_policy(app.state.door.policy).by_urgency["urgent"]
        assert report["status"] == "received"
        assert sorted(r["agency"] for r in report["receivers"]) == ["civil-affairs", "police"]
        for receiver in report["receivers"]:
            due = datetime.fromisoformat(receiver["acknowledge_by"]) - datetime.fromisoformat(
                report["created_at"]
            )
            assert abs(due - clock.acknowledge_within) < timedelta(seconds=5)
            assert receiver["status"] == "received"
        assert report["reporter"] is None and report["observed"] is None  # the filer's status view
        events = await fetch(
            database_url,
            "SELECT data FROM outbox_event WHERE type = 'cn.gov.childlink.platform.report.received.v1'",
        )
        assert len(events) == 1
        data = json.loads(events[0]["data"])
        assert data["report_id"] == report["id"] and sorted(data["receivers"]) == ["civil-affairs", "police"]

    async def test_the_same_key_and_body_answers_the_first_report_and_files_nothing_more(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any], database_url: str
    ) -> None:
        body = report_body(child["id"])
        first = await file(client, parties["school"], body, key="report-1")
        again = await file(client, parties["school"], body, key="report-1")
        other = await file(client, parties["school"], {**body, "urgency": "routine"}, key="report-1")

        assert first.status_code == 201 and again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
        assert await rows(database_url, "report") == 1

    async def test_a_replay_names_the_kinds_no_agency_of_the_county_covers_as_the_first_answer_did(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        # Sexual abuse also goes to health, and no health agency serves this county.
        body = report_body(child["id"], concern="sexual_abuse")
        first = await file(client, parties["school"], body, key="report-health")
        again = await file(client, parties["school"], body, key="report-health")
        read = await client.get(f"/v1/reports/{first.json()['id']}", headers=as_(parties["school"]))

        assert first.json()["unrouted_agency_kinds"] == ["health"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert read.json()["unrouted_agency_kinds"] == ["health"]

    async def test_an_unknown_concern_is_refused_and_nothing_is_written(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any], database_url: str
    ) -> None:
        response = await file(client, parties["school"], report_body(child["id"], concern="bad_grades"))

        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert all(s not in response.text for s in SECRETS)
        assert await rows(database_url, "report") == 0 and await rows(database_url, "case") == 0

    async def test_a_malformed_reporter_is_refused_without_echoing_it(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        reporter = {**REPORTER, "phone": "王晓梅 at 13812345678 ext"}
        response = await file(client, parties["school"], report_body(child["id"], reporter=reporter))

        assert response.status_code == 422
        assert all(s not in response.text for s in SECRETS)

    async def test_a_child_outside_the_filers_region_is_404_and_nothing_is_written(
        self, client: httpx.AsyncClient, token: TokenFactory, child: dict[str, Any], database_url: str
    ) -> None:
        elsewhere = await token(agency="education", scopes=["reports:file"], region="510104")
        response = await file(client, elsewhere, report_body(child["id"]))

        assert response.status_code == 404 and response.json()["code"] == "child_not_found"
        assert await rows(database_url, "report") == 0

    async def test_filing_needs_the_reports_file_scope(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        response = await file(client, parties["womens"], report_body(child["id"]))
        assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"

    async def test_domestic_violence_also_reaches_the_womens_federation_without_the_reporter(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        filed = await file(client, parties["school"], report_body(child["id"], concern="domestic_violence"))
        assert sorted(r["agency"] for r in filed.json()["receivers"]) == [
            "civil-affairs",
            "police",
            "womens-federation",
        ]
        read = await client.get(f"/v1/reports/{filed.json()['id']}", headers=as_(parties["womens"]))

        assert read.status_code == 200, read.text
        assert read.json()["observed"] is not None
        assert read.json()["reporter"] is None
        assert all(s not in read.text for s in SECRETS)


class TestAcknowledge:
    async def test_police_acknowledge_once_and_a_second_time_changes_nothing(
        self, client: httpx.AsyncClient, parties: dict[str, str], report: dict[str, Any], database_url: str
    ) -> None:
        url = f"/v1/reports/{report['id']}/acknowledge"
        first = await client.post(url, headers=as_(parties["police"]))
        events_after_first = await rows(database_url, "outbox_event")
        second = await client.post(url, headers=as_(parties["police"]))

        assert first.status_code == 200, first.text
        police = next(r for r in first.json()["receivers"] if r["agency"] == "police")
        assert police["status"] == "acknowledged" and first.json()["status"] == "acknowledged"
        assert second.status_code == 200
        assert second.json()["receivers"] == first.json()["receivers"]  # the first acknowledged_at
        assert await rows(database_url, "outbox_event") == events_after_first

    async def test_acknowledging_a_report_not_routed_to_you_is_refused(
        self,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        report: dict[str, Any],
        token: TokenFactory,
        database_url: str,
    ) -> None:
        health = await token(agency="health", scopes=CASE_SCOPES, region="510107")
        events = await rows(database_url, "outbox_event")
        response = await client.post(f"/v1/reports/{report['id']}/acknowledge", headers=as_(health))

        assert response.status_code == 404 and response.json()["code"] == "report_not_found"
        assert response.headers["content-type"].startswith("application/problem+json")
        assert await rows(database_url, "outbox_event") == events
        referrals = await fetch(database_url, "SELECT status FROM referral")
        assert [r["status"] for r in referrals] == ["requested", "requested"]

    async def test_an_outcome_before_acknowledgement_is_409_and_nothing_is_written(
        self, client: httpx.AsyncClient, parties: dict[str, str], report: dict[str, Any], database_url: str
    ) -> None:
        response = await client.post(
            f"/v1/reports/{report['id']}/outcome",
            json={"result": "case_filed", "case_reference": "WH-2026-0100"},
            headers=as_(parties["police"]),
        )

        assert response.status_code == 409 and response.json()["code"] == "not_acknowledged"
        assert response.headers["content-type"].startswith("application/problem+json")
        assert await rows(database_url, "report_outcome") == 0
        referrals = await fetch(database_url, "SELECT status FROM referral")
        assert [r["status"] for r in referrals] == ["requested", "requested"]
        events = await fetch(database_url, "SELECT type FROM outbox_event WHERE type LIKE '%platform%'")
        assert [e["type"] for e in events] == ["cn.gov.childlink.platform.report.received.v1"]

    async def test_the_filer_cannot_withdraw_the_report_from_its_receivers(
        self, client: httpx.AsyncClient, parties: dict[str, str], report: dict[str, Any], token: TokenFactory
    ) -> None:
        teacher = await token(agency="education", scopes=["cases:write", "children:read"], region="510107")
        response = await client.post(
            f"/v1/referrals/{report['receivers'][0]['referral_id']}/withdraw", json={}, headers=as_(teacher)
        )
        assert response.status_code == 403 and response.json()["code"] == "not_referral_party"


class TestOutcomeToTheReporter:
    async def test_the_filer_sees_acknowledged_by_whom_and_when_then_handled(
        self, client: httpx.AsyncClient, parties: dict[str, str], report: dict[str, Any]
    ) -> None:
        url = f"/v1/reports/{report['id']}"
        await client.post(f"{url}/acknowledge", headers=as_(parties["police"]))
        outcome = await client.post(
            f"{url}/outcome",
            json={"result": "case_filed", "case_reference": "WH-2026-0100"},
            headers=as_(parties["police"]),
        )
        await client.post(f"{url}/acknowledge", headers=as_(parties["registrar"]))
        civil = await client.post(
            f"{url}/outcome", json={"result": "family_follow_up"}, headers=as_(parties["registrar"])
        )

        assert outcome.status_code == 200, outcome.text
        assert civil.status_code == 200, civil.text
        seen = (await client.get(url, headers=as_(parties["school"]))).json()
        assert seen["status"] == "handled"
        assert {r["agency"]: r["status"] for r in seen["receivers"]} == {
            "civil-affairs": "handled",
            "police": "handled",
        }
        assert all(r["acknowledged_at"] and r["handled_at"] for r in seen["receivers"])
        assert all(r["result"] is None and r["case_reference"] is None for r in seen["receivers"])
        assert seen["case_id"] is None and seen["observed"] is None

    async def test_civil_affairs_may_not_record_a_police_result(
        self, client: httpx.AsyncClient, parties: dict[str, str], report: dict[str, Any]
    ) -> None:
        url = f"/v1/reports/{report['id']}"
        await client.post(f"{url}/acknowledge", headers=as_(parties["registrar"]))
        response = await client.post(
            f"{url}/outcome", json={"result": "case_filed"}, headers=as_(parties["registrar"])
        )
        assert response.status_code == 422 and response.json()["code"] == "result_not_for_agency"


class TestReporterConfidentiality:
    async def test_only_the_receiving_police_and_civil_affairs_read_the_reporter(
        self,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        report: dict[str, Any],
        child: dict[str, Any],
        database_url: str,
    ) -> None:
        url = f"/v1/reports/{report['id']}"
        police = await client.get(url, headers=as_(parties["police"]))
        civil = await client.get(url, headers=as_(parties["registrar"]))
        school = await client.get(url, headers=as_(parties["school"]))
        womens = await client.get(url, headers=as_(parties["womens"]))

        assert police.json()["reporter"] == REPORTER
        assert civil.json()["reporter"] == REPORTER
        assert womens.status_code == 404
        for response in (school, womens):
            assert all(s not in response.text for s in SECRETS)
        case = await client.get(f"/v1/cases/{police.json()['case_id']}", headers=as_(parties["police"]))
        timeline = await client.get(f"/v1/children/{child['id']}/timeline", headers=as_(parties["police"]))
        assert case.status_code == 200 and timeline.status_code == 200
        for response in (case, timeline):
            assert all(s not in response.text for s in SECRETS)
        for table in ("outbox_event", "access_log", "case", "referral"):
            stored = await fetch(database_url, f'SELECT * FROM "{table}"')  # noqa: S608
            dump = json.dumps([dict(r) for r in stored], default=str, ensure_ascii=False)
            assert all(s not in dump for s in SECRETS), table

    async def test_the_guardians_access_report_shows_no_report_while_its_case_is_open(
        self,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        report: dict[str, Any],
        child: dict[str, Any],
    ) -> None:
        url = f"/v1/reports/{report['id']}"
        police = await client.get(url, headers=as_(parties["police"]))
        await client.post(f"{url}/acknowledge", headers=as_(parties["police"]))
        read = await client.get(f"/v1/children/{child['id']}", headers=as_(parties["police"]))
        assert read.status_code == 200, read.text  # a cross-agency read while the report is open
        access = f"/v1/children/{child['id']}/access-report"

        as_json = await client.get(access, headers=as_(parties["registrar"]))
        as_html = await client.get(access, params={"format": "html"}, headers=as_(parties["registrar"]))

        assert as_json.status_code == 200 and as_html.status_code == 200
        assert [e for e in as_json.json()["entries"] if e["agency"] == "police"] == []
        for response in (as_json, as_html):
            assert "report" not in response.text and all(s not in response.text for s in SECRETS)

        closed = await client.post(
            f"/v1/cases/{police.json()['case_id']}/close",
            json={"outcome": "child-safe", "reason": "Handled by the police station."},
            headers=as_(parties["police"]),
        )
        assert closed.status_code == 200, closed.text
        after = (await client.get(access, headers=as_(parties["registrar"]))).json()
        assert any(e["agency"] == "police" for e in after["entries"])
        assert all(s not in json.dumps(after, ensure_ascii=False) for s in SECRETS)


class TestDeadlines:
    async def test_an_unacknowledged_receiver_escalates_once_per_interval_across_a_restart(
        self,
        app: Any,
        db: Database,
        client: httpx.AsyncClient,
        parties: dict[str, str],
        report: dict[str, Any],
        database_url: str,
    ) -> None:
        await client.post(f"/v1/reports/{report['id']}/acknowledge", headers=as_(parties["police"]))
        civil = next(r for r in report["receivers"] if r["agency"] == "civil-affairs")
        due = datetime.fromisoformat(civil["acknowledge_by"])
        interval = report_policy(app.state.door.policy).by_urgency["urgent"].escalation_interval
        first = Scheduler(db, registered_jobs(app.state.door.policy))

        assert await first.run_job(report_job(app), due - timedelta(minutes=1)) == 0
        assert await first.run_job(report_job(app), due + timedelta(minutes=1)) == 1
        assert await first.run_job(report_job(app), due + timedelta(minutes=2)) == 0
        restarted = Scheduler(db, registered_jobs(app.state.door.policy))
        assert await restarted.run_job(report_job(app), due + interval + timedelta(minutes=1)) == 1

        overdue = await fetch(
            database_url,
            "SELECT data FROM outbox_event WHERE type = 'cn.gov.childlink.platform.referral.overdue.v1' "
            "ORDER BY seq",
        )
        steps = [json.loads(r["data"]) for r in overdue]
        assert [(s["to_agency"], s["step"], s["escalated_to_region"]) for s in steps] == [
            ("civil-affairs", 0, "5101"),
            ("civil-affairs", 1, "5101"),
        ]
        seen = (await client.get(f"/v1/reports/{report['id']}", headers=as_(parties["school"]))).json()
        assert {r["agency"]: r["overdue"] for r in seen["receivers"]} == {
            "civil-affairs": True,
            "police": False,
        }


SUBJECT = {
    "name": "小明",
    "sex": "male",
    "approximate_age": 8,
    "region_code": "510107005",
    "location_note": "Bus station, north gate",
}


class TestUnregisteredChild:
    async def test_a_report_about_a_subject_is_routed_then_linked_to_a_newly_registered_child(
        self, client: httpx.AsyncClient, parties: dict[str, str]
    ) -> None:
        body = report_body(None, subject=dict(SUBJECT), concern="no_guardian")
        del body["child_id"]
        filed = await file(client, parties["school"], body)
        assert filed.status_code == 201, filed.text
        assert filed.json()["linked"] is False and filed.json()["subject"] is None  # receivers only
        assert sorted(r["agency"] for r in filed.json()["receivers"]) == ["civil-affairs", "police"]
        url = f"/v1/reports/{filed.json()['id']}"
        ack = await client.post(f"{url}/acknowledge", headers=as_(parties["registrar"]))
        assert ack.status_code == 200, ack.text
        assert ack.json()["subject"]["location_note"] == "Bus station, north gate"

        child = await make_child(client, parties["registrar"], region=CHILD_REGION)
        linked = await client.post(
            f"{url}/link", json={"child_id": child["id"]}, headers=as_(parties["registrar"])
        )
        again = await client.post(
            f"{url}/link", json={"child_id": child["id"]}, headers=as_(parties["registrar"])
        )
        other = await make_child(client, parties["registrar"], region=CHILD_REGION)
        clash = await client.post(
            f"{url}/link", json={"child_id": other["id"]}, headers=as_(parties["registrar"])
        )

        assert linked.status_code == 200, linked.text
        assert linked.json()["child_id"] == child["id"] and linked.json()["linked"] is True
        assert again.json()["child_id"] == child["id"]
        assert clash.status_code == 409 and clash.json()["code"] == "already_linked"
        case = await client.get(f"/v1/cases/{linked.json()['case_id']}", headers=as_(parties["police"]))
        assert case.json()["child_id"] == child["id"]
        assert all(r["child_id"] == child["id"] for r in case.json()["referrals"])

    async def test_a_child_registered_in_another_county_takes_the_report_to_that_countys_receivers(
        self, client: httpx.AsyncClient, token: TokenFactory, parties: dict[str, str], database_url: str
    ) -> None:
        # Jinniu's own police; the registrar (civil affairs of the province) serves both counties.
        jinniu = await token(
            agency="police-jinniu", kind=AgencyKind.police, scopes=CASE_SCOPES, region="510106"
        )
        body = report_body(None, subject=dict(SUBJECT), urgency="immediate_danger")
        del body["child_id"]
        filed = (await file(client, parties["school"], body)).json()
        url = f"/v1/reports/{filed['id']}"
        assert sorted(r["agency"] for r in filed["receivers"]) == ["civil-affairs", "police"]
        assert (await client.post(f"{url}/acknowledge", headers=as_(parties["registrar"]))).status_code == 200
        before = datetime.now(UTC)

        child = await make_child(client, parties["registrar"], region="510106004001")
        linked = await client.post(
            f"{url}/link", json={"child_id": child["id"]}, headers=as_(parties["registrar"])
        )

        assert linked.status_code == 200, linked.text
        receivers = {r["agency"]: r for r in linked.json()["receivers"]}
        assert {a: r["status"] for a, r in receivers.items()} == {
            "civil-affairs": "acknowledged",  # serves both counties: keeps its referral
            "police": "withdrawn",  # Wuhou's police: the report left its county
            "police-jinniu": "received",
        }
        assert datetime.fromisoformat(receivers["police-jinniu"]["acknowledge_by"]) > before
        assert linked.json()["region_code"] == "510106004001"
        # Jinniu's police now lead and acknowledge it; to Wuhou's police it is gone.
        assert (await client.post(f"{url}/acknowledge", headers=as_(jinniu))).status_code == 200
        stale = await client.post(f"{url}/acknowledge", headers=as_(parties["police"]))
        assert stale.status_code == 404, stale.text
        assert (await client.get(url, headers=as_(parties["police"]))).status_code == 404
        case = await client.get(f"/v1/cases/{linked.json()['case_id']}", headers=as_(jinniu))
        assert case.json()["lead_agency"] == "police-jinniu"
        # Each county is told: the withdrawal in Wuhou, the report in Jinniu, ahead of any backlog.
        events = await fetch_rows(
            database_url,
            "SELECT type, region_code, priority, data FROM outbox_event WHERE case_id = $1 ORDER BY seq",
            uuid.UUID(linked.json()["case_id"]),
        )
        told = [(e["type"].split(".")[-3:-1], e["region_code"][:6]) for e in events]
        assert (["referral", "withdrawn"], "510107") in told
        received = [e for e in events if e["type"].endswith("report.received.v1")]
        assert [e["region_code"][:6] for e in received] == ["510107", "510106"]
        assert all(e["priority"] == 1 for e in received)
        assert json.loads(received[-1]["data"])["receivers"] == ["civil-affairs", "police-jinniu"]

    async def test_a_six_digit_region_for_a_subject_is_refused_and_nothing_is_written(
        self, client: httpx.AsyncClient, parties: dict[str, str], database_url: str
    ) -> None:
        body = report_body(None, subject={**SUBJECT, "region_code": "510107"})
        del body["child_id"]
        response = await file(client, parties["school"], body)

        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert await rows(database_url, "report_subject") == 0 and await rows(database_url, "report") == 0

    async def test_only_a_receiving_civil_affairs_agency_links(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        body = report_body(None, subject=dict(SUBJECT))
        del body["child_id"]
        filed = (await file(client, parties["school"], body)).json()
        response = await client.post(
            f"/v1/reports/{filed['id']}/link", json={"child_id": child["id"]}, headers=as_(parties["police"])
        )
        assert response.status_code == 403 and response.json()["code"] == "not_linkable"


class TestLists:
    async def test_receivers_filter_their_inbox_and_the_filer_sees_its_own_without_the_reporter(
        self, client: httpx.AsyncClient, parties: dict[str, str], child: dict[str, Any]
    ) -> None:
        urgent = (await file(client, parties["school"], report_body(child["id"]))).json()
        danger = (
            await file(client, parties["school"], report_body(child["id"], urgency="immediate_danger"))
        ).json()
        await client.post(f"/v1/reports/{urgent['id']}/acknowledge", headers=as_(parties["police"]))

        inbox = await client.get("/v1/reports", headers=as_(parties["police"]))
        pending = await client.get("/v1/reports?status=received", headers=as_(parties["police"]))
        in_danger = await client.get("/v1/reports?urgency=immediate_danger", headers=as_(parties["police"]))
        filed = await client.get("/v1/reports?role=filed", headers=as_(parties["school"]))
        womens = await client.get("/v1/reports", headers=as_(parties["womens"]))

        assert [r["id"] for r in inbox.json()["items"]] == [danger["id"], urgent["id"]]
        assert [r["id"] for r in pending.json()["items"]] == [danger["id"]]
        assert [r["id"] for r in in_danger.json()["items"]] == [danger["id"]]
        assert [r["id"] for r in filed.json()["items"]] == [danger["id"], urgent["id"]]
        assert womens.json()["items"] == []
        for response in (inbox, filed):
            assert all(s not in response.text for s in SECRETS)
            assert all(r["reporter"] is None for r in response.json()["items"])
