"""Custody-changing events change custody: what the next custody check (both its paths) shows
after police intervene, the rescue centre takes the child in and lets it go, an assessment is
recorded, a child goes missing and is found; and who may not change custody."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.db import asyncpg_dsn
from app.models.agency import AgencyKind
from app.models.guardianship import CustodyPublic
from tests.conftest import TokenFactory, bearer
from tests.events.helpers import PREFIX, PUBLISH_SCOPES, fetch, publish
from tests.factories import guardianship_body, purpose

INTERVENTION = PREFIX + "police.custody.intervention.v1"
STARTED = PREFIX + "civil-affairs.temporary-guardianship.started.v1"
ENDED = PREFIX + "civil-affairs.temporary-guardianship.ended.v1"
ASSESSED = PREFIX + "civil-affairs.guardianship.assessed.v1"
MISSING = PREFIX + "police.missing-child.reported.v1"
FOUND = PREFIX + "police.missing-child.resolved.v1"

STATION = {"name": "簇桥派出所", "duty_phone": "028-85222222"}
CENTRE = {"name": "武侯区未成年人救助保护中心", "duty_phone": "028-85111111"}


@pytest.fixture
async def in_grandmothers_care(
    client: httpx.AsyncClient, civil: str, child: dict[str, Any]
) -> dict[str, Any]:
    recorded = await client.post(
        f"/v1/children/{child['id']}/guardianship", json=guardianship_body(), headers=bearer(civil)
    )
    assert recorded.status_code == 201, recorded.text
    return child


@pytest.fixture
async def rescue_centre(token: TokenFactory) -> str:
    return await token(
        agency="wuhou-rescue-centre", kind=AgencyKind.civil_affairs, scopes=PUBLISH_SCOPES, region="510107"
    )


async def custody(client: httpx.AsyncClient, reader: str, child_id: str) -> dict[str, Any]:
    """The custody check through the direct path, checked against the documented route's answer."""
    response = await client.get(f"/v1/children/{child_id}/custody", headers={**bearer(reader), **purpose()})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    CustodyPublic.model_validate(body)
    return body


@pytest.fixture
async def health(token: TokenFactory) -> str:
    return await token(agency="health", scopes=["custody:read"], region="5101")


class TestCustodyFollowsTheEvents:
    async def test_intervention_then_temporary_guardianship_then_a_new_guardian(
        self,
        client: httpx.AsyncClient,
        civil: str,
        police: str,
        rescue_centre: str,
        health: str,
        in_grandmothers_care: dict[str, Any],
    ) -> None:
        child_id = in_grandmothers_care["id"]
        assert (await custody(client, health, child_id))["guardian"]["name"] == "卓玛"

        intervened = await publish(
            client,
            police,
            INTERVENTION,
            child_id,
            {
                "intervened_at": "2026-12-01T22:40:00+08:00",
                "action": "removed_from_home",
                "handling_unit": STATION,
            },
        )
        check = await custody(client, health, child_id)
        assert check["custody_status"] == "emergency_protection"
        assert check["emergency_intervention"] is True
        assert check["guardian"] == {"name": None, "relationship": None, "phone": None}
        assert check["responsible_organisation"] == STATION
        assert check["event_id"] == intervened.json()["id"]
        assert check["since"] == "2026-12-01"
        assert check["last_assessment"]["date"] == "2026-10-15"  # carried over

        started = await publish(
            client,
            rescue_centre,
            STARTED,
            child_id,
            {
                "started_on": "2026-12-02",
                "reason": "guardian_incapacitated",
                "placement": "rescue_centre",
                "responsible_unit": CENTRE,
            },
        )
        check = await custody(client, health, child_id)
        assert check["custody_status"] == "temporary_state"
        assert check["responsible_organisation"] == CENTRE
        assert check["event_id"] == started.json()["id"]

        aunt = {"name": "王芳", "relationship": "aunt", "phone": "13900139000"}
        ended = await publish(
            client,
            rescue_centre,
            ENDED,
            child_id,
            {"ended_on": "2026-12-20", "outcome": "entrusted_to_relatives", "guardian": aunt},
        )
        check = await custody(client, health, child_id)
        assert check["custody_status"] == "kinship_care"
        assert check["guardian"] == aunt
        assert check["emergency_intervention"] is False

        history = (await client.get(f"/v1/children/{child_id}/guardianship", headers=bearer(civil))).json()
        assert [(h["custody_status"], h["event_id"], h["current"]) for h in history["items"]] == [
            ("kinship_care", ended.json()["id"], True),
            ("temporary_state", started.json()["id"], False),
            ("emergency_protection", intervened.json()["id"], False),
            ("kinship_care", None, False),
        ]

    async def test_assessment_by_event_is_the_checks_last_assessment(
        self, client: httpx.AsyncClient, civil: str, health: str, in_grandmothers_care: dict[str, Any]
    ) -> None:
        child_id = in_grandmothers_care["id"]
        assessed = await publish(
            client,
            civil,
            ASSESSED,
            child_id,
            {"assessed_on": "2026-12-03", "result": "inadequate", "risk_flags": ["unsafe_home"]},
        )
        check = await custody(client, health, child_id)
        assert check["last_assessment"] == {
            "date": "2026-12-03",
            "result": "inadequate",
            "event_id": assessed.json()["id"],
        }
        assert check["risk_flags"] == ["unsafe_home"]

    async def test_missing_child_is_shown_until_found(
        self, client: httpx.AsyncClient, police: str, health: str, in_grandmothers_care: dict[str, Any]
    ) -> None:
        child_id = in_grandmothers_care["id"]
        reported = await publish(
            client,
            police,
            MISSING,
            child_id,
            {"reported_at": "2026-12-01T09:00:00+08:00", "handling_unit": STATION},
        )
        check = await custody(client, health, child_id)
        assert check["missing"]["event_id"] == reported.json()["id"]
        assert check["missing"]["handling_unit"] == STATION
        assert "missing" in check["risk_flags"]
        await publish(
            client,
            police,
            FOUND,
            child_id,
            {"resolved_at": "2026-12-02T08:15:00+08:00", "outcome": "found_safe"},
        )
        check = await custody(client, health, child_id)
        assert check["missing"] is None
        assert "missing" not in check["risk_flags"]

    async def test_a_second_report_keeps_the_first_and_a_refused_one_writes_nothing(
        self,
        client: httpx.AsyncClient,
        police: str,
        health: str,
        in_grandmothers_care: dict[str, Any],
        database_url: str,
    ) -> None:
        # A report is stored with its event in one statement (app/services/event.py): a second
        # report while one is open is accepted and changes nothing; a report refused (the same
        # source and id again) stores neither its key nor its event nor a report.
        child_id = in_grandmothers_care["id"]
        data = {"reported_at": "2026-12-01T09:00:00+08:00", "handling_unit": STATION}
        first = await publish(client, police, MISSING, child_id, data, id="case-1", source="/110")
        again = await publish(client, police, MISSING, child_id, {**data, "handling_unit": CENTRE})
        assert again.json()["sequence"] > first.json()["sequence"]
        check = await custody(client, health, child_id)
        assert check["missing"]["event_id"] == first.json()["id"]
        assert check["missing"]["handling_unit"] == STATION

        await publish(
            client,
            police,
            FOUND,
            child_id,
            {"resolved_at": "2026-12-02T08:15:00+08:00", "outcome": "found_safe"},
        )
        refused = await publish(
            client, police, MISSING, child_id, data, id="case-1", source="/110", key="k-dup", expect=409
        )
        assert refused.json()["code"] == "duplicate_event"
        assert (await custody(client, health, child_id))["missing"] is None
        rows = await fetch(
            database_url, "SELECT count(*) AS n FROM missing_report WHERE child_id = $1", uuid.UUID(child_id)
        )
        assert rows[0]["n"] == 1
        # Its key was not kept: the corrected report publishes under it.
        fixed = await publish(
            client, police, MISSING, child_id, data, id="case-2", source="/110", key="k-dup"
        )
        assert (await custody(client, health, child_id))["missing"]["event_id"] == fixed.json()["id"]

    async def test_a_report_of_a_child_outside_the_region_writes_nothing(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        in_grandmothers_care: dict[str, Any],
        database_url: str,
    ) -> None:
        elsewhere = await token(agency="police", scopes=PUBLISH_SCOPES, region="510108")
        data = {"reported_at": "2026-12-01T09:00:00+08:00", "handling_unit": STATION}
        refused = await publish(
            client, elsewhere, MISSING, in_grandmothers_care["id"], data, key="k-far", expect=404
        )
        assert refused.json()["code"] == "child_not_found"
        assert await fetch(database_url, "SELECT 1 FROM missing_report") == []
        assert await fetch(database_url, "SELECT 1 FROM outbox_event WHERE type = $1", MISSING) == []
        assert await fetch(database_url, "SELECT 1 FROM event_idempotency WHERE key = 'k-far'") == []


class TestOrderOfChanges:
    async def test_a_change_takes_the_childs_lock_before_its_event_draws_its_place(
        self,
        client: httpx.AsyncClient,
        police: str,
        in_grandmothers_care: dict[str, Any],
        database_url: str,
    ) -> None:
        # Two changes of one child are numbered in the order their events were written
        # (migration 0020). Written before the lock, a change that waited for another would be
        # numbered ahead of the change it then superseded.
        child_id = in_grandmothers_care["id"]
        holder = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await holder.execute("BEGIN")
            await holder.execute("SELECT 1 FROM child WHERE id = $1 FOR UPDATE", uuid.UUID(child_id))
            drawn = await holder.fetchval("SELECT last_value FROM outbox_event_ordinal_seq")
            waiting = asyncio.ensure_future(
                publish(
                    client,
                    police,
                    MISSING,
                    child_id,
                    {"reported_at": "2026-12-01T09:00:00+08:00", "handling_unit": STATION},
                )
            )
            for _ in range(100):  # until the publish waits on the child's row
                blocked = await holder.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
                if blocked:
                    break
                await asyncio.sleep(0.05)
            assert blocked
            assert await holder.fetchval("SELECT last_value FROM outbox_event_ordinal_seq") == drawn
            await holder.execute("COMMIT")
            assert (await asyncio.wait_for(waiting, 10)).status_code == 202
        finally:
            await holder.close()
        assert await holder_value(database_url) > drawn


async def holder_value(database_url: str) -> int:
    rows = await fetch(database_url, "SELECT last_value FROM outbox_event_ordinal_seq")
    return int(rows[0]["last_value"])


class TestWhoMayChangeCustody:
    async def test_education_publishing_an_intervention_is_refused_and_nothing_is_written(
        self,
        client: httpx.AsyncClient,
        education: str,
        health: str,
        database_url: str,
        in_grandmothers_care: dict[str, Any],
    ) -> None:
        child_id = in_grandmothers_care["id"]
        before = await fetch(database_url, "SELECT count(*) AS n FROM outbox_event")
        response = await publish(
            client,
            education,
            INTERVENTION,
            child_id,
            {
                "intervened_at": "2026-12-01T22:40:00+08:00",
                "action": "removed_from_home",
                "handling_unit": STATION,
            },
            expect=403,
        )
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "custody_change_not_allowed"
        after = await fetch(database_url, "SELECT count(*) AS n FROM outbox_event")
        assert after[0]["n"] == before[0]["n"]
        records = await fetch(database_url, "SELECT count(*) AS n FROM guardianship")
        assert records[0]["n"] == 1
        assert (await custody(client, health, child_id))["custody_status"] == "kinship_care"

    async def test_police_starting_temporary_guardianship_is_refused_and_nothing_is_written(
        self, client: httpx.AsyncClient, police: str, database_url: str, in_grandmothers_care: dict[str, Any]
    ) -> None:
        before = await fetch(database_url, "SELECT count(*) AS n FROM outbox_event")
        response = await publish(
            client,
            police,
            STARTED,
            in_grandmothers_care["id"],
            {
                "started_on": "2026-12-02",
                "reason": "other",
                "placement": "rescue_centre",
                "responsible_unit": CENTRE,
            },
            expect=403,
        )
        assert response.json()["code"] == "custody_change_not_allowed"
        assert (await fetch(database_url, "SELECT count(*) AS n FROM outbox_event"))[0]["n"] == before[0]["n"]
        assert (await fetch(database_url, "SELECT count(*) AS n FROM guardianship"))[0]["n"] == 1

    async def test_ending_temporary_guardianship_that_never_started_writes_nothing(
        self,
        client: httpx.AsyncClient,
        rescue_centre: str,
        database_url: str,
        in_grandmothers_care: dict[str, Any],
    ) -> None:
        response = await publish(
            client,
            rescue_centre,
            ENDED,
            in_grandmothers_care["id"],
            {"ended_on": "2026-12-20", "outcome": "returned_to_parents", "responsible_unit": CENTRE},
            expect=409,
        )
        assert response.json()["code"] == "not_in_temporary_guardianship"
        rows = await fetch(database_url, "SELECT count(*) AS n FROM outbox_event WHERE type = $1", ENDED)
        assert rows[0]["n"] == 0

    async def test_the_guardianship_endpoint_does_not_record_interventions(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, child: dict[str, Any]
    ) -> None:
        police = await token(agency="police", scopes=["custody:write", "custody:read"], region="51")
        url = f"/v1/children/{child['id']}/guardianship"
        by_police = await client.post(
            url, json=guardianship_body(emergency_intervention=True), headers={**bearer(police), **purpose()}
        )
        assert by_police.status_code == 403
        assert by_police.json()["code"] == "custody_write_not_allowed"
        temporary = await client.post(
            url, json=guardianship_body(custody_status="temporary_state"), headers=bearer(civil)
        )
        assert temporary.status_code == 422
        assert temporary.json()["code"] == "custody_change_by_event"
