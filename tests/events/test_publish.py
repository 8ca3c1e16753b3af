"""Publishing: the catalog, validation and rights, idempotency, and the commit-ordered sequence."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx

from app.db import asyncpg_dsn
from app.events import catalog
from tests.conftest import TokenFactory, bearer
from tests.events.helpers import DROPOUT, INCIDENT, PREFIX, SAMPLES, cloud_event, fetch, publish, scalar
from tests.factories import make_child, purpose


class TestEventTypes:
    async def test_catalog_lists_every_agencys_types_with_schemas_and_categories(
        self, client: httpx.AsyncClient, education: str
    ) -> None:
        response = await client.get("/v1/event-types", headers=bearer(education))
        assert response.status_code == 200
        items = {item["type"]: item for item in response.json()["items"]}
        assert len([t for t in items if not t.startswith(f"{PREFIX}platform.")]) == 32
        for agency in ("civil-affairs", "education", "health", "police", "womens-federation", "platform"):
            assert any(t.startswith(f"{PREFIX}{agency}.") for t in items), agency
        dropout = items[DROPOUT]
        assert dropout["publishers"] == ["education"]
        assert dropout["categories"] == ["education"]
        assert dropout["data_schema"]["properties"]["risk_level"]["x-data-category"] == "education"
        registered = items[PREFIX + "civil-affairs.child.registered.v1"]
        assert registered["published_by_registry"] is True

    async def test_one_type_and_an_unknown_one(self, client: httpx.AsyncClient, education: str) -> None:
        one = await client.get(f"/v1/event-types/{INCIDENT}", headers=bearer(education))
        assert one.json()["title"].startswith("Incident")
        assert (await client.get(f"/v1/event-types/{INCIDENT}")).status_code == 401
        missing = await client.get(f"/v1/event-types/{PREFIX}nothing.v1", headers=bearer(education))
        assert missing.status_code == 404
        assert missing.json()["code"] == "event_type_not_found"

    async def test_the_openapi_webhooks_section_documents_every_payload(
        self, client: httpx.AsyncClient
    ) -> None:
        spec = (await client.get("/openapi.json")).json()
        webhooks = spec.get("webhooks", {})
        assert DROPOUT in webhooks
        body = webhooks[DROPOUT]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["data"]["properties"]["risk_level"]["x-data-category"] == "education"
        assert len(webhooks) == len(catalog.catalog()) + 1  # every type and the test ping


class TestPublish:
    async def test_education_publishes_a_dropout_risk_and_gets_id_and_sequence(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any], database_url: str
    ) -> None:
        response = await publish(client, education, DROPOUT, child["id"])
        body = response.json()
        assert body["sequence"] >= 1
        assert response.headers["Location"] == f"/v1/events/{body['id']}"
        rows = await fetch(
            database_url,
            "SELECT seq, type, subject, region_code, publisher_agency, data_categories, data "
            "FROM outbox_event WHERE id = $1",
            uuid.UUID(body["id"]),
        )
        assert len(rows) == 1
        row = rows[0]
        assert row["seq"] == body["sequence"]
        assert str(row["subject"]) == child["id"]
        assert row["region_code"] == child["region_code"]
        assert row["publisher_agency"] == "education"
        assert row["data_categories"] == ["education"]

    async def test_the_same_key_and_body_replays_the_first_answer(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any], database_url: str
    ) -> None:
        body = cloud_event(DROPOUT, child["id"])
        headers = {**bearer(education), "Idempotency-Key": "retry-me-1"}
        first = await client.post("/v1/events", json=body, headers=headers)
        again = await client.post("/v1/events", json=dict(reversed(list(body.items()))), headers=headers)
        assert first.status_code == again.status_code == 202
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await scalar(database_url, "SELECT count(*) FROM outbox_event WHERE type = $1", DROPOUT) == 1

    async def test_concurrent_requests_with_one_key_publish_once(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any], database_url: str
    ) -> None:
        body = cloud_event(DROPOUT, child["id"])
        headers = {**bearer(education), "Idempotency-Key": "racing-key"}
        answers = await asyncio.gather(
            *(client.post("/v1/events", json=body, headers=headers) for _ in range(8))
        )
        assert {a.status_code for a in answers} == {202}
        assert len({a.json()["id"] for a in answers}) == 1
        assert await scalar(database_url, "SELECT count(*) FROM outbox_event WHERE type = $1", DROPOUT) == 1

    async def test_a_reused_key_with_another_body_is_422_and_stores_nothing(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any], database_url: str
    ) -> None:
        await publish(client, education, DROPOUT, child["id"], key="k-1")
        changed = {**SAMPLES[DROPOUT], "risk_level": "low"}
        response = await publish(client, education, DROPOUT, child["id"], changed, key="k-1", expect=422)
        assert response.json()["code"] == "idempotency_key_reused"
        assert await scalar(database_url, "SELECT count(*) FROM outbox_event WHERE type = $1", DROPOUT) == 1

    async def test_data_against_the_schema_is_422_naming_fields_not_values(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any], database_url: str
    ) -> None:
        bad = {**SAMPLES[DROPOUT], "risk_level": "扎西·多吉", "flagged_on": "2026-02-30", "note": "x"}
        del bad["school"]
        response = await publish(client, education, DROPOUT, child["id"], bad, expect=422)
        problem = response.json()
        assert problem["code"] == "invalid_event_data"
        locs = {tuple(e["loc"]) for e in problem["errors"]}
        assert locs == {("data", "risk_level"), ("data", "flagged_on"), ("data", "school"), ("data", "note")}
        assert "扎西" not in response.text
        assert await scalar(database_url, "SELECT count(*) FROM outbox_event") == 1  # the registration

    async def test_an_unknown_type_and_a_bad_envelope_are_422(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any]
    ) -> None:
        unknown = await publish(
            client, education, PREFIX + "education.made-up.v1", child["id"], {}, expect=422
        )
        assert unknown.json()["code"] == "unknown_event_type"
        body = cloud_event(DROPOUT, child["id"], specversion="0.3")
        response = await client.post(
            "/v1/events", json=body, headers={**bearer(education), "Idempotency-Key": "env-1"}
        )
        assert response.status_code == 422
        naive = cloud_event(DROPOUT, child["id"], time="2026-11-28T08:00:00")
        response = await client.post(
            "/v1/events", json=naive, headers={**bearer(education), "Idempotency-Key": "env-2"}
        )
        assert response.status_code == 422

    async def test_an_idempotency_key_is_required(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any]
    ) -> None:
        response = await client.post(
            "/v1/events", json=cloud_event(DROPOUT, child["id"]), headers=bearer(education)
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]

    async def test_a_type_the_agency_may_not_publish_is_403_and_stores_nothing(
        self, client: httpx.AsyncClient, education: str, civil: str, child: dict[str, Any], database_url: str
    ) -> None:
        response = await publish(client, education, INCIDENT, child["id"], expect=403)
        assert response.json()["code"] == "event_type_not_allowed"
        registry = await publish(
            client,
            civil,
            PREFIX + "civil-affairs.child.exited.v1",
            child["id"],
            {"child_id": child["id"], "reason": "moved", "exit_date": "2026-11-01"},
            expect=403,
        )
        assert "registry" in registry.json()["detail"]
        assert await scalar(database_url, "SELECT count(*) FROM outbox_event") == 1

    async def test_a_child_outside_the_region_or_absent_is_404_alike(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, education: str, database_url: str
    ) -> None:
        other_civil = await token(
            agency="civil-affairs", scopes=["children:write", "children:read"], region="5101"
        )
        elsewhere = await make_child(client, other_civil, region="510108001001")
        outside = await publish(client, education, DROPOUT, elsewhere["id"], expect=404)
        absent = await publish(client, education, DROPOUT, str(uuid.uuid4()), expect=404)
        assert outside.json()["code"] == absent.json()["code"] == "child_not_found"
        assert outside.json()["detail"] == absent.json()["detail"]
        assert await scalar(database_url, "SELECT count(*) FROM outbox_event WHERE type = $1", DROPOUT) == 0

    async def test_the_same_source_and_id_under_a_new_key_is_409(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any]
    ) -> None:
        await publish(client, education, DROPOUT, child["id"], id="evt-1", source="/sis")
        again = await publish(client, education, DROPOUT, child["id"], id="evt-1", source="/sis", expect=409)
        assert again.json()["code"] == "duplicate_event"

    async def test_a_token_without_events_publish_is_403(
        self, client: httpx.AsyncClient, token: TokenFactory, child: dict[str, Any]
    ) -> None:
        reader = await token(agency="education", scopes=["events:read"], region="510107")
        response = await publish(client, reader, DROPOUT, child["id"], expect=403)
        assert response.json()["code"] == "insufficient_scope"


class TestSequence:
    """Events are numbered by a pass after their commit (migration 0020), so numbers become
    visible in order and without holes while publishers commit side by side."""

    async def _open_publish(self, dsn: str, subject: uuid.UUID) -> asyncpg.Connection:
        conn = await asyncpg.connect(dsn)
        await conn.execute("BEGIN")
        await conn.execute(
            "INSERT INTO outbox_event (id, type, source, subject, data, data_categories, region_code, "
            "publisher_agency, publisher_client) VALUES ($1, $2, '/t', $3, '{}', '{education}', '510107', "
            "'education', 'c')",
            uuid.uuid4(),
            DROPOUT,
            subject,
        )
        return conn

    async def test_a_pass_numbers_only_what_has_committed_and_a_late_commit_gets_the_later_number(
        self, database_url: str, child: dict[str, Any]
    ) -> None:
        dsn, subject = asyncpg_dsn(database_url), uuid.UUID(child["id"])
        head = await scalar(database_url, "SELECT outbox_event_number()")
        first_in, second_in = await self._open_publish(dsn, subject), await self._open_publish(dsn, subject)
        try:
            await second_in.execute("COMMIT")
            assert await scalar(database_url, "SELECT outbox_event_number()") == head + 1
            visible = await fetch(database_url, "SELECT seq FROM outbox_event WHERE seq > $1", head)
            assert [r["seq"] for r in visible] == [head + 1]
            await first_in.execute("COMMIT")
        finally:
            await first_in.close()
            await second_in.close()
        assert await scalar(database_url, "SELECT count(*) FROM outbox_event WHERE seq IS NULL") == 1
        assert await scalar(database_url, "SELECT outbox_event_number()") == head + 2
        seqs = [
            r["seq"]
            for r in await fetch(
                database_url, "SELECT seq FROM outbox_event WHERE seq > $1 ORDER BY seq", head
            )
        ]
        assert seqs == [head + 1, head + 2]

    async def test_a_pass_waits_for_the_pass_before_it_and_continues_its_numbers(
        self, database_url: str, child: dict[str, Any]
    ) -> None:
        dsn, subject = asyncpg_dsn(database_url), uuid.UUID(child["id"])
        head = await scalar(database_url, "SELECT outbox_event_number()")
        for _ in range(2):
            conn = await self._open_publish(dsn, subject)
            await conn.execute("COMMIT")
            await conn.close()
        holding = await asyncpg.connect(dsn)
        try:
            # A pass inside an open transaction holds its lock (and hides its numbers) to the end.
            await holding.execute("BEGIN")
            assert await holding.fetchval("SELECT outbox_event_number()") == head + 2
            late = await self._open_publish(dsn, subject)
            await late.execute("COMMIT")
            await late.close()
            second = asyncio.ensure_future(scalar(database_url, "SELECT outbox_event_number()"))
            await asyncio.sleep(0.3)
            assert not second.done()
            assert await scalar(database_url, "SELECT max(seq) FROM outbox_event") == head
            await holding.execute("COMMIT")
            assert await asyncio.wait_for(second, 10) == head + 3
        finally:
            await holding.close()
        rows = await fetch(database_url, "SELECT seq FROM outbox_event WHERE seq > $1", head)
        assert sorted(r["seq"] for r in rows) == [head + 1, head + 2, head + 3]

    async def test_events_of_one_transaction_are_numbered_in_the_order_written(
        self, database_url: str, child: dict[str, Any]
    ) -> None:
        dsn, subject = asyncpg_dsn(database_url), uuid.UUID(child["id"])
        head = await scalar(database_url, "SELECT outbox_event_number()")
        conn = await asyncpg.connect(dsn)
        ids = [uuid.uuid4() for _ in range(5)]
        try:
            async with conn.transaction():
                for event_id in ids:
                    await conn.execute(
                        "INSERT INTO outbox_event (id, type, source, subject, data, data_categories, "
                        "region_code, publisher_agency, publisher_client) VALUES ($1, $2, '/t', $3, '{}', "
                        "'{education}', '510107', 'education', 'c')",
                        event_id,
                        DROPOUT,
                        subject,
                    )
            assert await conn.fetchval("SELECT outbox_event_number($1)", ids[2]) == head + 3
        finally:
            await conn.close()
        rows = await fetch(database_url, "SELECT id FROM outbox_event WHERE seq > $1 ORDER BY seq", head)
        assert [r["id"] for r in rows] == ids

    async def test_a_rolled_back_publish_leaves_no_hole(
        self, database_url: str, child: dict[str, Any]
    ) -> None:
        dsn, subject = asyncpg_dsn(database_url), uuid.UUID(child["id"])
        head = await scalar(database_url, "SELECT outbox_event_number()")
        aborted = await self._open_publish(dsn, subject)
        await aborted.execute("ROLLBACK")
        await aborted.close()
        committed = await self._open_publish(dsn, subject)
        await committed.execute("COMMIT")
        await committed.close()
        assert await scalar(database_url, "SELECT outbox_event_number()") == head + 1
        assert await scalar(database_url, "SELECT max(seq) FROM outbox_event") == head + 1

    async def test_concurrent_publishes_get_consecutive_numbers(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any], database_url: str
    ) -> None:
        head = await scalar(database_url, "SELECT max(seq) FROM outbox_event")
        answers = await asyncio.gather(*(publish(client, education, DROPOUT, child["id"]) for _ in range(30)))
        assert sorted(a.json()["sequence"] for a in answers) == list(range(head + 1, head + 31))
        assert await scalar(database_url, "SELECT count(*) FROM outbox_event WHERE seq IS NULL") == 0

    async def test_a_replay_of_a_publish_whose_numbering_never_ran_gets_its_number(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any], owner_database_url: str
    ) -> None:
        same = {"key": "k-unnumbered", "id": "evt-unnumbered"}
        first = await publish(client, education, DROPOUT, child["id"], **same)
        owner = await asyncpg.connect(asyncpg_dsn(owner_database_url))
        try:
            # As if the first request's process had died between its commit and its pass.
            await owner.execute("ALTER TABLE outbox_event DISABLE TRIGGER outbox_event_immutable")
            event_id = uuid.UUID(first.json()["id"])
            await owner.execute("UPDATE outbox_event SET seq = NULL WHERE id = $1", event_id)
            await owner.execute("ALTER TABLE outbox_event ENABLE TRIGGER outbox_event_immutable")
        finally:
            await owner.close()
        again = await publish(client, education, DROPOUT, child["id"], **same)
        assert again.json()["id"] == first.json()["id"]
        assert isinstance(again.json()["sequence"], int)
        assert again.json()["sequence"] > first.json()["sequence"]

    async def test_registry_events_are_numbered_after_commit_too(
        self, database_url: str, child: dict[str, Any]
    ) -> None:
        rows = await fetch(database_url, "SELECT seq, data_categories FROM outbox_event")
        assert [r["seq"] for r in rows] == [1]
        assert rows[0]["data_categories"] == ["identity", "welfare"]

    async def test_events_cannot_be_edited(self, database_url: str, child: dict[str, Any]) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            try:
                await conn.execute("UPDATE outbox_event SET data = '{}'")
            except asyncpg.InsufficientPrivilegeError:
                pass
            else:
                raise AssertionError("an outbox event was edited")
        finally:
            await conn.close()


class TestReadEvent:
    async def test_the_publisher_reads_its_own_event_in_full_unlogged(
        self, client: httpx.AsyncClient, police: str, child: dict[str, Any], database_url: str
    ) -> None:
        event_id = (await publish(client, police, INCIDENT, child["id"])).json()["id"]
        response = await client.get(f"/v1/events/{event_id}", headers=bearer(police))
        assert response.status_code == 200
        assert response.json()["data"] == SAMPLES[INCIDENT]
        assert "childlinkwithheld" not in response.json() or response.json()["childlinkwithheld"] is None
        logged = await scalar(database_url, "SELECT count(*) FROM access_log WHERE action = 'event.read'")
        assert logged == 0

    async def test_the_womens_federation_reads_a_police_event_without_law_enforcement_data(
        self,
        client: httpx.AsyncClient,
        token: TokenFactory,
        police: str,
        child: dict[str, Any],
        database_url: str,
    ) -> None:
        event_id = (await publish(client, police, INCIDENT, child["id"])).json()["id"]
        federation = await token(agency="womens-federation", scopes=["events:read"], region="510107")
        response = await client.get(
            f"/v1/events/{event_id}", headers={**bearer(federation), **purpose("child_protection")}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["data"] == {"handling_unit": SAMPLES[INCIDENT]["handling_unit"]}
        assert body["childlinkwithheld"] == "custody,law_enforcement"
        assert body["childlinkagency"] == "police"
        logged = await fetch(
            database_url,
            "SELECT agency, decision, categories_withheld FROM access_log WHERE action = 'event.read'",
        )
        assert [(r["agency"], r["decision"]) for r in logged] == [("womens-federation", "allow_redacted")]
        assert sorted(logged[0]["categories_withheld"]) == ["custody", "law_enforcement"]

    async def test_a_cross_agency_read_needs_a_purpose_and_unknown_events_are_404(
        self, client: httpx.AsyncClient, civil: str, education: str, child: dict[str, Any]
    ) -> None:
        event_id = (await publish(client, education, DROPOUT, child["id"])).json()["id"]
        assert (await client.get(f"/v1/events/{event_id}", headers=bearer(civil))).status_code == 400
        missing = await client.get(f"/v1/events/{uuid.uuid4()}", headers={**bearer(civil), **purpose()})
        assert missing.status_code == 404


class TestUnstorableData:
    """Input JSON allows but the service cannot store or send back: refused at the edge (422),
    not a 500 from the serializer or the database."""

    async def _raw_publish(self, client: httpx.AsyncClient, token: str, raw_data: str, subject: str) -> Any:
        head = json.dumps(
            {"specversion": "1.0", "id": f"hostile-{uuid.uuid4().hex[:8]}", "source": "/tests/sis"}
            | {"type": DROPOUT, "subject": subject}
        )
        envelope = head[:-1] + ', "data": ' + raw_data + "}"
        return await client.post(
            "/v1/events",
            content=envelope.encode(),
            headers={
                **bearer(token),
                "Content-Type": "application/json",
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )

    async def test_an_integer_of_2_to_the_64_in_data_is_refused_not_a_500(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any]
    ) -> None:
        for number in (2**64, 2**63, -(2**63) - 1, 10**40):
            response = await self._raw_publish(client, education, f'{{"risk_level": {number}}}', child["id"])
            assert response.status_code == 422, (number, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "validation_failed"
            assert response.json()["errors"][0]["loc"][:2] == ["body", "data"]

    async def test_a_lone_surrogate_key_in_data_is_refused_not_a_500(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any]
    ) -> None:
        for raw in ('{"\\ud800": 1}', '{"school": "\\udfff"}', '{"a": [{"\\ud83d": true}]}'):
            response = await self._raw_publish(client, education, raw, child["id"])
            assert response.status_code == 422, (raw, response.text)
            assert response.json()["code"] == "validation_failed"

    async def test_nan_nul_and_deep_nesting_in_data_are_refused(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any]
    ) -> None:
        deep = "[" * 40 + "]" * 40
        for raw in ('{"risk_level": NaN}', '{"school": "a\\u0000b"}', f'{{"x": {deep}}}'):
            response = await self._raw_publish(client, education, raw, child["id"])
            assert response.status_code == 422, (raw, response.text)
            assert response.json()["code"] == "validation_failed"

    async def test_a_64_bit_integer_passes_the_edge_to_the_types_schema(
        self, client: httpx.AsyncClient, education: str, child: dict[str, Any]
    ) -> None:
        # The bound refuses only what cannot be kept: 2^63-1 reaches the type's JSON Schema,
        # which refuses it on its own terms (risk_level is one of a few words).
        response = await self._raw_publish(client, education, f'{{"risk_level": {2**63 - 1}}}', child["id"])
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_event_data"
