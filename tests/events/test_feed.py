"""The pull feed: cursor pages, filters, the door on every event, the long poll, and no event
skipped when transactions commit out of order."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.db import asyncpg_dsn
from tests.conftest import TokenFactory, bearer
from tests.events.conftest import REGION
from tests.events.helpers import (
    DROPOUT,
    HOME_VISIT,
    INCIDENT,
    PREFIX,
    SAMPLES,
    SUBSCRIBER_SCOPES,
    fetch,
    publish,
)


async def pull(
    client: httpx.AsyncClient, token: str, types: list[str], purpose: str = "child_protection"
) -> str:
    body = {"mode": "pull", "types": types, "purpose_of_use": purpose}
    response = await client.post("/v1/subscriptions", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def feed(client: httpx.AsyncClient, token: str, expect: int = 200, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/events/feed", params=params, headers=bearer(token))
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


class TestPages:
    async def test_pages_continue_from_the_cursor_and_skip_other_types(
        self, client: httpx.AsyncClient, subscriber: str, civil: str, education: str, child: dict[str, Any]
    ) -> None:
        await pull(client, subscriber, [PREFIX + "education.*"])
        seqs = [(await publish(client, education, DROPOUT, child["id"])).json()["sequence"] for _ in range(3)]
        await publish(client, civil, HOME_VISIT, child["id"])  # not subscribed
        first = await feed(client, subscriber, after=0, limit=2)
        assert [e["childlinkseq"] for e in first["events"]] == seqs[:2]
        assert first["next_after"] == seqs[1]
        second = await feed(client, subscriber, after=first["next_after"], limit=2)
        assert [e["childlinkseq"] for e in second["events"]] == seqs[2:]
        assert second["next_after"] == second["head"] == seqs[2] + 1  # past the home visit
        assert second["events"][0]["data"] == SAMPLES[DROPOUT]
        empty = await feed(client, subscriber, after=second["next_after"])
        assert empty["events"] == [] and empty["next_after"] == second["next_after"]

    async def test_a_late_committing_event_is_not_skipped(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        database_url: str,
    ) -> None:
        await pull(client, subscriber, [PREFIX + "education.*"])
        slow = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await slow.execute("BEGIN")
            slow_id = uuid.uuid4()
            await slow.execute(
                "INSERT INTO outbox_event (id, type, source, subject, data, data_categories, region_code, "
                "publisher_agency, publisher_client) VALUES ($1, $2, '/t', $3, $4::jsonb, '{education}', $5, "
                "'education', 'c')",
                slow_id,
                DROPOUT,
                uuid.UUID(child["id"]),
                '{"school": "x", "risk_level": "low", "indicators": ["working"], "flagged_on": "2026-11-01"}',
                child["region_code"],
            )
            fast = (await publish(client, education, DROPOUT, child["id"])).json()
            page = await feed(client, subscriber, after=0)
            assert [e["id"] for e in page["events"]] == [fast["id"]]
            cursor = page["next_after"]
            await slow.execute("COMMIT")
        finally:
            await slow.close()
        later = await feed(client, subscriber, after=cursor)
        assert [e["id"] for e in later["events"]] == [str(slow_id)]
        assert later["events"][0]["childlinkseq"] > cursor


class TestAccessLayer:
    async def test_every_event_is_decided_and_logged_and_redacted_for_the_reader(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        police: str,
        child: dict[str, Any],
        database_url: str,
    ) -> None:
        federation = await token(agency="womens-federation", scopes=SUBSCRIBER_SCOPES, region=REGION)
        await pull(client, federation, [PREFIX + "police.*"])
        published = (await publish(client, police, INCIDENT, child["id"])).json()
        page = await feed(client, federation, after=0)
        (event,) = page["events"]
        assert event["id"] == published["id"]
        assert event["data"] == {"handling_unit": SAMPLES[INCIDENT]["handling_unit"]}
        assert event["childlinkwithheld"] == "custody,law_enforcement"
        logged = await fetch(
            database_url, "SELECT agency, decision, purpose FROM access_log WHERE action = 'event.feed'"
        )
        assert [(r["agency"], r["decision"], r["purpose"]) for r in logged] == [
            ("womens-federation", "allow_redacted", "child_protection")
        ]

    async def test_events_with_nothing_releasable_are_left_out_and_the_cursor_moves_on(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        police: str,
        child: dict[str, Any],
        database_url: str,
    ) -> None:
        health = await token(agency="health", scopes=SUBSCRIBER_SCOPES, region=REGION)
        await pull(client, health, [PREFIX + "police.*"], purpose="health_care")
        published = (await publish(client, police, INCIDENT, child["id"])).json()
        page = await feed(client, health, after=0)
        assert page["events"] == []
        assert page["next_after"] == published["sequence"]
        logged = await fetch(database_url, "SELECT decision FROM access_log WHERE action = 'event.feed'")
        assert [r["decision"] for r in logged] == ["deny"]

    async def test_a_narrower_client_of_the_agency_sees_only_its_own_region(
        self, client: httpx.AsyncClient, token: TokenFactory, subscriber: str, education: str, civil: str
    ) -> None:
        from tests.factories import make_child

        here = await make_child(client, civil, region=REGION + "005003")
        there = await make_child(client, civil, region=REGION + "006001")
        await pull(client, subscriber, [PREFIX + "education.*"])
        await publish(client, education, DROPOUT, here["id"])
        await publish(client, education, DROPOUT, there["id"])
        township = await token(agency="civil-affairs", scopes=SUBSCRIBER_SCOPES, region=REGION + "006")
        page = await feed(client, township, after=0)
        assert [e["subject"] for e in page["events"]] == [there["id"]]


class TestLongPoll:
    async def test_a_waiting_reader_gets_an_event_as_soon_as_it_commits(
        self, client: httpx.AsyncClient, subscriber: str, education: str, child: dict[str, Any]
    ) -> None:
        await pull(client, subscriber, [PREFIX + "education.*"])
        head = (await feed(client, subscriber, after=0))["head"]
        started = time.monotonic()
        waiting = asyncio.create_task(feed(client, subscriber, after=head, wait=10))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        published = (await publish(client, education, DROPOUT, child["id"])).json()
        page = await asyncio.wait_for(waiting, 5)
        assert [e["id"] for e in page["events"]] == [published["id"]]
        assert time.monotonic() - started < 3

    async def test_with_nothing_new_it_answers_empty_after_the_wait(
        self, client: httpx.AsyncClient, subscriber: str
    ) -> None:
        await pull(client, subscriber, ["*"])
        started = time.monotonic()
        page = await feed(client, subscriber, after=0, wait=0.5)
        assert page["events"] == []
        assert 0.4 < time.monotonic() - started < 3


class TestWhichSubscription:
    async def test_subscription_choice(self, client: httpx.AsyncClient, subscriber: str) -> None:
        none = await feed(client, subscriber, expect=404)
        assert none["code"] == "no_pull_subscription"
        first = await pull(client, subscriber, ["*"])
        assert (await feed(client, subscriber))["subscription_id"] == first
        second = await pull(client, subscriber, [PREFIX + "police.*"])
        several = await feed(client, subscriber, expect=400)
        assert several["code"] == "subscription_required"
        assert (await feed(client, subscriber, subscription=second))["subscription_id"] == second

    async def test_another_agencys_subscription_is_refused(
        self, client: httpx.AsyncClient, subscriber: str, token: TokenFactory
    ) -> None:
        mine = await pull(client, subscriber, ["*"])
        police = await token(agency="police", scopes=SUBSCRIBER_SCOPES, region=REGION)
        other = await feed(client, police, subscription=mine, expect=404)
        assert other["code"] == "subscription_not_found"

    async def test_standing_investigation_or_emergency_purposes_are_refused(
        self, client: httpx.AsyncClient, subscriber: str
    ) -> None:
        for purpose in ("investigation", "emergency"):
            body = {"mode": "pull", "types": ["*"], "purpose_of_use": purpose}
            response = await client.post("/v1/subscriptions", json=body, headers=bearer(subscriber))
            assert response.status_code == 422, purpose


class TestScanWindow:
    async def test_a_rare_filter_moves_the_cursor_by_bounded_windows_without_waiting(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        civil: str,
        education: str,
        child: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from app.services import event_feed

        monkeypatch.setattr(event_feed, "SCAN_WINDOW", 3)
        await pull(client, subscriber, [PREFIX + "education.*"])
        for _ in range(5):
            await publish(client, civil, HOME_VISIT, child["id"])
        wanted = (await publish(client, education, DROPOUT, child["id"])).json()
        started, cursor, seen = time.monotonic(), 0, []
        for _ in range(5):
            page = await feed(client, subscriber, after=cursor, wait=5)
            seen += [e["id"] for e in page["events"]]
            assert page["next_after"] <= cursor + 3
            cursor = page["next_after"]
            if cursor == page["head"]:
                break
        assert seen == [wanted["id"]]
        assert time.monotonic() - started < 3  # no page waited while there was more to scan


class TestFeedRegion:
    async def test_a_subscription_outside_the_callers_region_is_refused(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        # The same agency in two counties: 510108's client may not pull through 510107's
        # subscription, by id or as "the agency's only one" (a township of 510107 may: see
        # test_a_narrower_client_of_the_agency_sees_only_its_own_region).
        county = await token(agency="civil-affairs", scopes=SUBSCRIBER_SCOPES, region=REGION)
        neighbour = await token(agency="civil-affairs", scopes=SUBSCRIBER_SCOPES, region="510108")
        theirs = await pull(client, county, ["*"])
        named = await feed(client, neighbour, subscription=theirs, expect=404)
        assert named["code"] == "subscription_not_found"
        implicit = await feed(client, neighbour, expect=404)
        assert implicit["code"] == "no_pull_subscription"
        assert (await feed(client, county, subscription=theirs))["subscription_id"] == theirs
