from __future__ import annotations

from datetime import date

import asyncpg
import httpx
import pytest

from app.db import asyncpg_dsn
from app.models import resident_id
from tests.conftest import TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, child_body, make_child, purpose


@pytest.fixture
async def civil(token: TokenFactory) -> str:
    return await token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="51")


async def count(database_url: str, table: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 (fixed names)
    finally:
        await conn.close()


async def rows(database_url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


class TestRegister:
    async def test_civil_affairs_registers_unicode_name_and_event_is_in_outbox(
        self, client: httpx.AsyncClient, civil: str, database_url: str
    ) -> None:
        response = await client.post("/v1/children", json=child_body(name="扎西·多吉"), headers=bearer(civil))
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == "扎西·多吉"
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"/v1/children/{body['id']}"
        events = await rows(database_url, "SELECT type, subject FROM outbox_event")
        assert [(e["type"], str(e["subject"])) for e in events] == [
            ("cn.gov.childlink.civil-affairs.child.registered.v1", body["id"])
        ]

    async def test_child_without_resident_id_is_accepted(self, client: httpx.AsyncClient, civil: str) -> None:
        response = await client.post("/v1/children", json=child_body(with_id=False), headers=bearer(civil))
        assert response.status_code == 201
        assert response.json()["resident_id"] is None

    @pytest.mark.parametrize(
        ("label", "change"),
        [
            (
                "wrong check digit",
                lambda b: {
                    **b,
                    "resident_id": b["resident_id"][:17] + ("1" if b["resident_id"][17] != "1" else "2"),
                },
            ),
            ("impossible date", lambda b: {**b, "resident_id": _with_check("51010720160231" + "024")}),
            ("mismatched sex", lambda b: {**b, "sex": "male"}),
            ("mismatched birth date", lambda b: {**b, "birth_date": "2016-05-13"}),
            ("13-digit region", lambda b: {**b, "region_code": "5101070050031"}),
            ("unknown category", lambda b: {**b, "categories": ["runaway"]}),
            ("empty name", lambda b: {**b, "name": "  "}),
            ("unknown field", lambda b: {**b, "nickname": "x"}),
            ("future birth", lambda b: {**b, "birth_date": "2999-01-01", "resident_id": None}),
        ],
    )
    async def test_bad_input_is_a_clear_problem_and_writes_nothing(
        self, client: httpx.AsyncClient, civil: str, database_url: str, label: str, change: object
    ) -> None:
        body = change(child_body())  # type: ignore[operator]
        response = await client.post("/v1/children", json=body, headers=bearer(civil))
        assert response.status_code == 422, (label, response.text)
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["code"] == "validation_failed"
        assert problem["errors"]
        if body.get("resident_id"):
            assert body["resident_id"] not in response.text
        assert await count(database_url, "child") == 0
        assert await count(database_url, "outbox_event") == 0

    async def test_duplicate_resident_id_is_409_naming_the_visible_record(
        self, client: httpx.AsyncClient, civil: str, database_url: str
    ) -> None:
        body = child_body()
        first = await client.post("/v1/children", json=body, headers=bearer(civil))
        second = await client.post("/v1/children", json=body, headers=bearer(civil))
        assert second.status_code == 409
        assert second.json()["code"] == "duplicate_resident_id"
        assert second.json()["existing_id"] == first.json()["id"]
        assert await count(database_url, "child") == 1

    async def test_other_agencies_cannot_register(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        police = await token(agency="police", scopes=["children:write"], region="51")
        response = await client.post("/v1/children", json=child_body(), headers=bearer(police))
        assert response.status_code == 403

    async def test_registering_outside_own_region_is_refused(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        county = await token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="510104")
        response = await client.post(
            "/v1/children", json=child_body(region="510107005003"), headers=bearer(county)
        )
        assert response.status_code == 403
        assert response.json()["code"] == "outside_region"


def _with_check(first17: str) -> str:
    return first17 + resident_id.check_character(first17)


class TestReadThroughTheDoor:
    async def test_owner_reads_its_own_record_in_full_without_purpose(
        self, client: httpx.AsyncClient, civil: str, database_url: str
    ) -> None:
        child = await make_child(
            client, civil, categories=["left_behind", "serious_illness", "guardian_harm"]
        )
        response = await client.get(f"/v1/children/{child['id']}", headers=bearer(civil))
        assert response.status_code == 200
        body = response.json()
        assert body["resident_id"] == child["resident_id"]
        assert body["categories"] == ["left_behind", "serious_illness", "guardian_harm"]
        assert body["access"]["withheld"] == []
        assert {b["ground"] for b in body["access"]["basis"].values()} == {"owner"}
        # The owner's own read is not a cross-agency read: nothing to log.
        assert await count(database_url, "access_log") == 0

    async def test_womens_federation_gets_no_health_or_law_enforcement_data_and_is_told_why(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(
            client, civil, categories=["left_behind", "serious_illness", "guardian_harm"]
        )
        wf = await token(agency="womens-federation", scopes=["children:read"], region="51")
        response = await client.get(f"/v1/children/{child['id']}", headers={**bearer(wf), **purpose()})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["name"] == "扎西·多吉"
        assert body["address"] is not None
        assert body["resident_id"] is None
        # Welfare (to find children to pair with caring mothers), never the health or
        # law-enforcement flags.
        assert body["categories"] == ["left_behind"]
        withheld = {w["category"]: w["reason"] for w in body["access"]["withheld"]}
        assert {"health", "law_enforcement", "identifier"} <= set(withheld)
        assert set(withheld.values()) == {"no_legal_basis"}
        log = await rows(database_url, "SELECT * FROM access_log")
        assert len(log) == 1
        assert log[0]["decision"] == "allow_redacted"
        assert set(log[0]["categories_returned"]) == {"identity", "contact", "welfare"}
        assert {"health", "law_enforcement"} <= set(log[0]["categories_withheld"])

    async def test_police_sees_guardian_harm_flag_but_not_illness(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        child = await make_child(
            client, civil, categories=["left_behind", "serious_illness", "guardian_harm"]
        )
        police = await token(agency="police", scopes=["children:read"], region="51")
        body = (
            await client.get(
                f"/v1/children/{child['id']}",
                headers={**bearer(police), **purpose("investigation"), "X-Investigation-Ref": "WH-2026-0117"},
            )
        ).json()
        assert body.get("categories") == ["guardian_harm"], body
        assert body["resident_id"] == child["resident_id"]

    async def test_no_legal_basis_for_anything_is_403_and_audited(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil)
        wf = await token(agency="womens-federation", scopes=["children:read"], region="51")
        response = await client.get(
            f"/v1/children/{child['id']}", headers={**bearer(wf), **purpose("statistics")}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "access_denied"
        log = await rows(database_url, "SELECT decision, reason FROM access_log")
        assert [(r["decision"], r["reason"]) for r in log] == [("deny", "no_legal_basis")]


class TestRegionIsolation:
    async def test_county_client_cannot_see_list_look_up_or_infer_child_outside_county(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil, region="510107005003")
        other = await token(agency="police", scopes=["children:read", "custody:read"], region="510104")
        headers = {**bearer(other), **purpose()}

        read = await client.get(f"/v1/children/{child['id']}", headers=headers)
        custody = await client.get(f"/v1/children/{child['id']}/custody", headers=headers)
        history = await client.get(f"/v1/children/{child['id']}/guardianship", headers=headers)
        lookup = await client.post(
            "/v1/children/lookup", json={"resident_id": child["resident_id"]}, headers=headers
        )
        listed = await client.get("/v1/children", headers=headers)
        listed_region = await client.get("/v1/children", params={"region": "510107"}, headers=headers)

        assert read.status_code == custody.status_code == history.status_code == lookup.status_code == 404
        assert listed.status_code == listed_region.status_code == 200
        assert listed.json()["items"] == [] and listed_region.json()["items"] == []
        denials = await rows(database_url, "SELECT action, decision FROM access_log WHERE decision = 'deny'")
        assert {r["action"] for r in denials} == {
            "child.read",
            "custody.read",
            "guardianship.read",
            "child.lookup",
        }

    async def test_duplicate_outside_region_does_not_reveal_the_existing_id(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        body = child_body(region="510107005003")
        await client.post("/v1/children", json=body, headers=bearer(civil))
        county = await token(agency="civil-affairs", scopes=CIVIL_SCOPES, region="510104")
        response = await client.post(
            "/v1/children", json={**body, "region_code": "510104001001"}, headers=bearer(county)
        )
        assert response.status_code == 409
        assert "existing_id" not in response.json()


class TestLookup:
    async def test_lookup_by_resident_id_in_body_never_logs_the_number(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil)
        police = await token(agency="police", scopes=["children:read"], region="51")
        response = await client.post(
            "/v1/children/lookup",
            json={"resident_id": child["resident_id"]},
            headers={**bearer(police), **purpose()},
        )
        assert response.status_code == 200
        assert response.json()["id"] == child["id"]
        log = await rows(database_url, "SELECT * FROM access_log")
        assert log[0]["action"] == "child.lookup"
        assert child["resident_id"] not in str(dict(log[0]))

    async def test_lookup_with_invalid_number_is_422(self, client: httpx.AsyncClient, civil: str) -> None:
        response = await client.post(
            "/v1/children/lookup", json={"resident_id": "510107201605120240"}, headers=bearer(civil)
        )
        assert response.status_code == 422
        assert "510107201605120240" not in response.text


class TestUpdate:
    async def test_patch_with_current_etag_updates_and_bumps_version(
        self, client: httpx.AsyncClient, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil)
        response = await client.patch(
            f"/v1/children/{child['id']}",
            json={"school": "武侯实验小学"},
            headers={**bearer(civil), "If-Match": '"1"'},
        )
        assert response.status_code == 200, response.text
        assert response.json()["school"] == "武侯实验小学"
        assert response.headers["etag"] == '"2"'
        events = await rows(database_url, "SELECT type, data FROM outbox_event ORDER BY seq")
        assert events[-1]["type"].endswith("child.updated.v1")
        assert "武侯实验小学" not in events[-1]["data"]

    async def test_stale_etag_is_412_and_nothing_changes(self, client: httpx.AsyncClient, civil: str) -> None:
        child = await make_child(client, civil)
        url = f"/v1/children/{child['id']}"
        await client.patch(url, json={"school": "A"}, headers={**bearer(civil), "If-Match": '"1"'})
        stale = await client.patch(url, json={"school": "B"}, headers={**bearer(civil), "If-Match": '"1"'})
        assert stale.status_code == 412
        assert stale.json()["code"] == "precondition_failed"
        assert (await client.get(url, headers=bearer(civil))).json()["school"] == "A"

    async def test_missing_if_match_is_428(self, client: httpx.AsyncClient, civil: str) -> None:
        child = await make_child(client, civil)
        response = await client.patch(
            f"/v1/children/{child['id']}", json={"school": "A"}, headers=bearer(civil)
        )
        assert response.status_code == 428

    async def test_changing_sex_to_disagree_with_resident_id_is_refused(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        child = await make_child(client, civil)
        response = await client.patch(
            f"/v1/children/{child['id']}", json={"sex": "male"}, headers={**bearer(civil), "If-Match": '"1"'}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_resident_id"


class TestExit:
    async def test_exit_keeps_record_read_only_and_emits_event(
        self, client: httpx.AsyncClient, civil: str, database_url: str
    ) -> None:
        child = await make_child(client, civil)
        url = f"/v1/children/{child['id']}"
        response = await client.post(
            f"{url}/exit",
            json={"reason": "parents_returned", "exit_date": "2026-11-01"},
            headers=bearer(civil),
        )
        assert response.status_code == 200
        assert response.json()["status"] == "exited"
        patch = await client.patch(url, json={"school": "x"}, headers={**bearer(civil), "If-Match": '"2"'})
        assert patch.status_code == 409
        again = await client.post(
            f"{url}/exit", json={"reason": "moved", "exit_date": "2026-11-02"}, headers=bearer(civil)
        )
        assert again.status_code == 409
        types = [r["type"] for r in await rows(database_url, "SELECT type FROM outbox_event ORDER BY seq")]
        assert types[-1].endswith("child.exited.v1")
        assert (await client.get(url, headers=bearer(civil))).json()["exit_reason"] == "parents_returned"


class TestList:
    async def test_filters_and_cursor_pagination_cover_every_child_once(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        ids = set()
        for i in range(5):
            ids.add(
                (await make_child(client, civil, categories=["left_behind"] if i % 2 else ["orphan"]))["id"]
            )
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/children", params=params, headers=bearer(civil))).json()
            seen += [c["id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids)
        orphans = (
            await client.get("/v1/children", params={"category": "orphan"}, headers=bearer(civil))
        ).json()
        assert len(orphans["items"]) == 3

    async def test_a_county_or_township_filter_pages_exactly_its_children_in_change_order(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        # Codes of all three widths: a county-level child belongs to its county but to no township.
        regions = ["510107", "510107005", "510107005003", "510107005003", "510107006001", "510108005003"]
        made = [(await make_child(client, civil, region=r, with_id=False))["id"] for r in regions]

        async def listed(region: str) -> list[str]:
            seen: list[str] = []
            cursor = None
            while True:
                params = {"region": region, "limit": 1, **({"cursor": cursor} if cursor else {})}
                response = await client.get("/v1/children", params=params, headers=bearer(civil))
                assert response.status_code == 200, response.text
                seen += [c["id"] for c in response.json()["items"]]
                cursor = response.json()["next_cursor"]
                if cursor is None:
                    return seen

        assert await listed("510107") == made[:5]  # oldest change first, as registered
        assert await listed("510107005") == made[1:4]
        assert await listed("510107005003") == made[2:4]
        assert await listed("5101070050") == made[2:4]  # a prefix between the widths
        assert await listed("5101") == made
        assert await listed("510107007") == []

    async def test_age_filter(self, client: httpx.AsyncClient, civil: str) -> None:
        today = date.today()
        young = await make_child(client, civil, birth=date(today.year - 3, 1, 1))
        await make_child(client, civil, birth=date(today.year - 12, 1, 1))
        page = (await client.get("/v1/children", params={"max_age": 5}, headers=bearer(civil))).json()
        assert [c["id"] for c in page["items"]] == [young["id"]]

    @pytest.mark.parametrize(
        "params", [{"limit": 100000}, {"limit": 0}, {"region": "51x"}, {"category": "runaway"}]
    )
    async def test_bad_query_is_422(
        self, client: httpx.AsyncClient, civil: str, params: dict[str, object]
    ) -> None:
        response = await client.get("/v1/children", params=params, headers=bearer(civil))
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"

    async def test_bad_cursor_is_400(self, client: httpx.AsyncClient, civil: str) -> None:
        response = await client.get("/v1/children", params={"cursor": "not-a-cursor"}, headers=bearer(civil))
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_cursor"

    async def test_cross_agency_list_is_one_log_record_naming_the_children(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, database_url: str
    ) -> None:
        a = await make_child(client, civil)
        b = await make_child(client, civil)
        police = await token(agency="police", scopes=["children:read"], region="51")
        page = await client.get("/v1/children", headers={**bearer(police), **purpose()})
        assert page.status_code == 200
        log = await rows(database_url, "SELECT action, child_ids, query FROM access_log")
        assert len(log) == 1
        assert log[0]["action"] == "child.list"
        assert {str(i) for i in log[0]["child_ids"]} == {a["id"], b["id"]}

    async def test_filtering_by_a_category_the_reader_may_not_see_is_refused(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        await make_child(client, civil, categories=["serious_illness"])
        wf = await token(agency="womens-federation", scopes=["children:read"], region="51")
        response = await client.get(
            "/v1/children", params={"category": "serious_illness"}, headers={**bearer(wf), **purpose()}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "filter_not_allowed"


class TestImplausibleBirthDates:
    @pytest.mark.parametrize("birth", ["0001-01-01", "1850-01-01", "26-years-back", "tomorrow"])
    async def test_a_birth_date_far_back_or_in_the_future_is_refused_on_create(
        self, client: httpx.AsyncClient, civil: str, database_url: str, birth: str
    ) -> None:
        body = child_body(with_id=False, birth_date=_birth(birth))
        response = await client.post("/v1/children", json=body, headers=bearer(civil))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_failed"
        assert response.json()["errors"][0]["loc"] == ["body", "birth_date"]
        assert await count(database_url, "child") == 0

    @pytest.mark.parametrize("birth", ["0001-01-01", "1850-01-01", "tomorrow"])
    async def test_a_birth_date_far_back_or_in_the_future_is_refused_on_patch(
        self, client: httpx.AsyncClient, civil: str, birth: str
    ) -> None:
        child = await make_child(client, civil, with_id=False)
        url = f"/v1/children/{child['id']}"
        response = await client.patch(
            url, json={"birth_date": _birth(birth)}, headers={**bearer(civil), "If-Match": '"1"'}
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_failed"
        assert (await client.get(url, headers=bearer(civil))).json()["birth_date"] == child["birth_date"]

    async def test_a_birth_date_25_years_back_is_still_accepted(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        body = child_body(with_id=False, birth_date=_birth("25-years-back"))
        response = await client.post("/v1/children", json=body, headers=bearer(civil))
        assert response.status_code == 201, response.text


def _birth(label: str) -> str:
    today = date.today()
    back = {"25-years-back": 25, "26-years-back": 26}.get(label)
    if back is not None:
        return today.replace(year=today.year - back, day=min(today.day, 28)).isoformat()
    if label == "tomorrow":
        return date.fromordinal(today.toordinal() + 1).isoformat()
    return label


class TestUnknownQueryParameters:
    async def test_a_resident_id_filter_on_the_list_is_refused_not_ignored(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        await make_child(client, civil)
        response = await client.get(
            "/v1/children", params={"resident_id": "510107201605120249"}, headers=bearer(civil)
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "unknown_parameter"
        assert problem["parameters"] == ["resident_id"]
        assert "510107201605120249" not in response.text

    async def test_known_filters_and_aliases_still_work(self, client: httpx.AsyncClient, civil: str) -> None:
        await make_child(client, civil)
        response = await client.get(
            "/v1/children", params={"status": "active", "region": "510107", "limit": 5}, headers=bearer(civil)
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == 1

    async def test_unknown_parameters_on_every_child_route_are_refused(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        child = await make_child(client, civil)
        base = f"/v1/children/{child['id']}"
        for method, path in [
            ("GET", base),
            ("GET", f"{base}/guardianship"),
            ("GET", f"{base}/consents"),
            ("GET", f"{base}/access-report"),
            ("POST", "/v1/children/lookup"),
        ]:
            response = await client.request(
                method, path, params={"name": "x"}, headers={**bearer(civil), **purpose()}, json={}
            )
            assert response.status_code == 400, (path, response.text)
            assert response.json()["code"] == "unknown_parameter", path

    async def test_a_parameter_name_that_is_not_a_plain_name_is_counted_not_echoed(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        response = await client.get("/v1/children", params={"扎西 多吉": "1"}, headers=bearer(civil))
        assert response.status_code == 400
        assert response.json()["parameters"] == []
        assert "扎西" not in response.text


class TestDatesAreText:
    async def test_a_number_for_a_date_is_refused_not_read_as_seconds_since_1970(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        child = await make_child(client, civil)
        for exit_date in (0, 1_700_000_000, "1700000000"):
            response = await client.post(
                f"/v1/children/{child['id']}/exit",
                json={"reason": "moved", "exit_date": exit_date},
                headers=bearer(civil),
            )
            assert response.status_code == 422, (exit_date, response.text)
            assert response.json()["code"] == "validation_failed"
        listed = await client.get("/v1/children", params={"updated_since": "0.5"}, headers=bearer(civil))
        assert listed.status_code == 422
        assert listed.json()["code"] == "validation_failed"

    async def test_other_methods_on_lookup_are_405_not_a_child_id(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        for method in ("GET", "PATCH"):
            response = await client.request(method, "/v1/children/lookup", headers=bearer(civil))
            assert response.status_code == 405, method
            assert response.headers["allow"] == "POST"
            assert response.json()["code"] == "method_not_allowed"
