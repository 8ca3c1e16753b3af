"""Statistics: counts that agree with the rows, suppression that holds, exports, the log."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import openpyxl
import pytest

from app.db import asyncpg_dsn
from app.models.agency import AgencyKind
from app.services.statistics import today as china_today
from tests.conftest import TokenFactory, bearer
from tests.factories import CIVIL_SCOPES, make_child

STATS = ["statistics:read"]
COUNTY_A = "510107"
COUNTY_B = "510108"

# (township, category, sex) -> how many children; small cells on purpose.
SEED: dict[tuple[str, str, str], int] = {
    (COUNTY_A + "005", "left_behind", "female"): 7,
    (COUNTY_A + "005", "left_behind", "male"): 6,
    (COUNTY_A + "005", "orphan", "male"): 2,
    (COUNTY_A + "006", "left_behind", "female"): 3,
    (COUNTY_A + "006", "left_behind", "male"): 9,
    (COUNTY_A + "007", "low_income", "female"): 10,
    (COUNTY_B + "001", "left_behind", "female"): 5,
    (COUNTY_B + "001", "left_behind", "male"): 1,
}


async def _seed(client: httpx.AsyncClient, civil: str) -> list[dict[str, Any]]:
    made = []
    for (township, category, sex), n in SEED.items():
        for i in range(n):
            made.append(
                await make_child(
                    client,
                    civil,
                    region=township + "001",
                    sex=sex,
                    categories=[category],
                    birth=date(2012 + i % 8, 3, 1),
                    with_id=False,
                )
            )
    return made


@pytest.fixture
async def civil(token: TokenFactory) -> str:
    return await token(agency="civil-affairs", scopes=[*CIVIL_SCOPES, *STATS], region="51")


@pytest.fixture
async def seeded(client: httpx.AsyncClient, civil: str) -> list[dict[str, Any]]:
    return await _seed(client, civil)


async def _police(token: TokenFactory, region: str = "51") -> str:
    return await token(agency="police", scopes=STATS, region=region)


def _cells(body: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(c["values"][d] for d in body["dimensions"]): c for c in body["cells"]}


def _margins(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["dimension"], m["value"]): m for m in body["margins"]}


def _round5(n: int) -> int:
    return max(5, 5 * ((n + 2) // 5))


def _direct(level: int) -> tuple[Counter[tuple[str, str, str]], dict[str, Counter[str]], int]:
    cells: Counter[tuple[str, str, str]] = Counter()
    for (township, category, sex), n in SEED.items():
        cells[(township[:level], category, sex)] += n
    margins: dict[str, Counter[str]] = {"region": Counter(), "category": Counter(), "sex": Counter()}
    for (region, category, sex), n in cells.items():
        margins["region"][region] += n
        margins["category"][category] += n
        margins["sex"][sex] += n
    return cells, margins, sum(cells.values())


class TestCountsAgreeWithTheRows:
    @pytest.mark.parametrize(("level", "digits"), [("county", 6), ("township", 9)])
    async def test_the_keeper_sees_every_cell_and_margin_exactly(
        self, client: httpx.AsyncClient, civil: str, seeded: Any, level: str, digits: int
    ) -> None:
        response = await client.get(
            "/v1/statistics/children",
            params={"group_by": "region,category,sex", "level": level, "exact": "true"},
            headers=bearer(civil),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["disclosure"]["method"] == "exact"
        cells, margins, total = _direct(digits)
        assert {k: c["count"] for k, c in _cells(body).items()} == dict(cells)
        for (dimension, value), margin in _margins(body).items():
            assert margin["count"] == margins[dimension][value]
        assert body["total"]["count"] == total == 43

    @pytest.mark.parametrize(("level", "digits"), [("county", 6), ("township", 9)])
    async def test_another_agency_sees_controlled_counts_that_agree_apart_from_suppressed(
        self, client: httpx.AsyncClient, token: TokenFactory, seeded: Any, level: str, digits: int
    ) -> None:
        police = await _police(token)
        response = await client.get(
            "/v1/statistics/children",
            params={"group_by": "region,category,sex", "level": level},
            headers=bearer(police),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["disclosure"]["method"] == "controlled"
        cells, margins, total = _direct(digits)
        released = _cells(body)
        assert set(released) == set(cells)
        for key, cell in released.items():
            if cell["suppressed"]:
                assert cell["count"] is None
            else:
                assert cell["count"] == _round5(cells[key])
            if 0 < cells[key] < 5:
                assert cell["suppressed"], key
        for (dimension, value), margin in _margins(body).items():
            assert margin["suppressed"] or margin["count"] == _round5(margins[dimension][value])
        assert body["total"]["count"] == _round5(total)

    async def test_a_child_in_two_categories_counts_once_in_the_totals(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        for _ in range(6):
            await make_child(client, civil, categories=["left_behind", "low_income"], with_id=False)
        body = (
            await client.get(
                "/v1/statistics/children",
                params={"group_by": "category", "exact": "true"},
                headers=bearer(civil),
            )
        ).json()
        assert {c["values"]["category"]: c["count"] for c in body["cells"]} == {
            "left_behind": 6,
            "low_income": 6,
        }
        assert body["total"]["count"] == 6


class TestSuppressionHolds:
    async def test_a_small_cell_cannot_be_recovered_from_margins_or_overlapping_queries(
        self, client: httpx.AsyncClient, token: TokenFactory, seeded: Any
    ) -> None:
        police = await _police(token)

        async def ask(**params: str) -> dict[str, Any]:
            response = await client.get("/v1/statistics/children", params=params, headers=bearer(police))
            assert response.status_code == 200, response.text
            result: dict[str, Any] = response.json()
            return result

        by_township = await ask(group_by="region", level="township", region=COUNTY_A)
        cells = {c["values"]["region"]: c for c in by_township["cells"]}
        # 510107005: 15 children, 006: 12, 007: 10; and by sex in 006 the 3 girls are suppressed.
        by_sex = await ask(group_by="sex", region=COUNTY_A + "006")
        girls = next(c for c in by_sex["cells"] if c["values"]["sex"] == "female")
        boys = next(c for c in by_sex["cells"] if c["values"]["sex"] == "male")
        assert girls["suppressed"] and girls["count"] is None
        # Secondary suppression: the margin minus the only other cell would give the girls.
        assert boys["suppressed"]
        # Overlapping queries: the township's total and the boys counted another way.
        boys_elsewhere = await ask(
            group_by="region", level="township", region=COUNTY_A, category="left_behind"
        )
        township_total = cells[COUNTY_A + "006"]["count"]
        boys_cell = await ask(group_by="sex,category", region=COUNTY_A + "006")
        candidates = set()
        for girls_value in range(1, 5):
            # Every released figure is a rounding of the truth: keep the girls' values consistent with all.
            for boys_value in range(5, 40):
                total = girls_value + boys_value
                if _round5(total) != township_total:
                    continue
                left = {c["values"]["region"]: c for c in boys_elsewhere["cells"]}[COUNTY_A + "006"]
                if not left["suppressed"] and _round5(total) != left["count"]:
                    continue
                male_cells = [c for c in boys_cell["cells"] if c["values"]["sex"] == "male"]
                if (
                    male_cells
                    and not male_cells[0]["suppressed"]
                    and _round5(boys_value) != male_cells[0]["count"]
                ):
                    continue
                candidates.add(girls_value)
        assert len(candidates) > 1, candidates
        assert by_sex["total"]["count"] == 10  # 12, rounded: the exact difference 12 - 9 is not on offer

    async def test_the_keeper_sees_the_small_cell_exactly(
        self, client: httpx.AsyncClient, civil: str, seeded: Any
    ) -> None:
        body = (
            await client.get(
                "/v1/statistics/children",
                params={"group_by": "sex", "region": COUNTY_A + "006", "exact": "true"},
                headers=bearer(civil),
            )
        ).json()
        assert {c["values"]["sex"]: c["count"] for c in body["cells"]} == {"female": 3, "male": 9}

    async def test_exact_counts_cover_only_the_readers_own_records(
        self, client: httpx.AsyncClient, token: TokenFactory, seeded: Any
    ) -> None:
        police = await _police(token)
        body = (
            await client.get(
                "/v1/statistics/children", params={"group_by": "sex", "exact": "true"}, headers=bearer(police)
            )
        ).json()
        assert body["cells"] == [] and body["total"]["count"] == 0


class TestAccessLog:
    async def test_each_read_is_one_aggregate_record_in_no_guardians_report(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str, owner_database_url: str
    ) -> None:
        child = await make_child(client, civil)
        police = await _police(token)
        response = await client.get(
            "/v1/statistics/children", params={"group_by": "region,sex"}, headers=bearer(police)
        )
        assert response.status_code == 200
        conn = await asyncpg.connect(asyncpg_dsn(owner_database_url))
        try:
            rows = await conn.fetch("SELECT * FROM access_log WHERE action LIKE 'statistics.%'")
        finally:
            await conn.close()
        assert len(rows) == 1
        assert rows[0]["agency"] == "police" and rows[0]["purpose"] == "statistics"
        assert rows[0]["child_id"] is None and rows[0]["child_ids"] is None
        assert '"group_by"' in rows[0]["query"]
        report = await client.get(f"/v1/children/{child['id']}/access-report", headers=bearer(civil))
        assert report.status_code == 200, report.text
        assert all(not e["action"].startswith("statistics") for e in report.json()["entries"])

    async def test_another_purpose_is_refused_on_record(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        police = await _police(token)
        response = await client.get(
            "/v1/statistics/children",
            params={"group_by": "sex"},
            headers={**bearer(police), "X-Purpose-Of-Use": "investigation"},
        )
        assert response.status_code == 400
        assert response.json()["code"] == "statistics_purpose_required"

    async def test_without_the_scope_nothing_is_counted(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        reader = await token(agency="police", scopes=["children:read"], region="51")
        response = await client.get(
            "/v1/statistics/children", params={"group_by": "sex"}, headers=bearer(reader)
        )
        assert response.status_code == 403

    async def test_a_region_outside_the_readers_is_refused(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        police = await _police(token, region="5101")
        response = await client.get(
            "/v1/statistics/children", params={"group_by": "sex", "region": "5201"}, headers=bearer(police)
        )
        assert response.status_code == 403
        assert response.json()["code"] == "outside_region"


class TestAsOf:
    async def test_a_past_date_counts_the_registry_as_it_stood(
        self, client: httpx.AsyncClient, civil: str, owner_database_url: str
    ) -> None:
        children = [await make_child(client, civil, with_id=False) for _ in range(3)]
        conn = await asyncpg.connect(asyncpg_dsn(owner_database_url))
        try:  # registered ten days ago
            await conn.execute("UPDATE child_history SET valid_from = valid_from - interval '10 days'")
        finally:
            await conn.close()
        exited = await client.post(
            f"/v1/children/{children[0]['id']}/exit",
            json={"reason": "moved", "exit_date": date.today().isoformat()},
            headers=bearer(civil),
        )
        assert exited.status_code == 200, exited.text
        params = {"group_by": "status", "status": "any", "exact": "true"}
        now = (await client.get("/v1/statistics/children", params=params, headers=bearer(civil))).json()
        then = (
            await client.get(
                "/v1/statistics/children",
                params={**params, "as_of": (date.today() - timedelta(days=2)).isoformat()},
                headers=bearer(civil),
            )
        ).json()
        before = (
            await client.get(
                "/v1/statistics/children",
                params={**params, "as_of": (date.today() - timedelta(days=20)).isoformat()},
                headers=bearer(civil),
            )
        ).json()
        assert {c["values"]["status"]: c["count"] for c in now["cells"]} == {"active": 2, "exited": 1}
        assert {c["values"]["status"]: c["count"] for c in then["cells"]} == {"active": 3}
        assert before["total"]["count"] == 0

    async def test_a_future_date_is_refused(self, client: httpx.AsyncClient, civil: str) -> None:
        response = await client.get(
            "/v1/statistics/children",
            # Tomorrow in China, whose date every statistics date refers to (not the machine's).
            params={"group_by": "sex", "as_of": (china_today() + timedelta(days=1)).isoformat()},
            headers=bearer(civil),
        )
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_as_of"


class TestOtherDimensions:
    async def test_age_bands_ethnicity_and_custody_come_from_the_history(
        self, client: httpx.AsyncClient, civil: str
    ) -> None:
        today = date.today()
        for years in (1, 4, 4, 13):
            await make_child(
                client, civil, birth=today.replace(year=today.year - years) - timedelta(days=1), with_id=False
            )
        body = (
            await client.get(
                "/v1/statistics/children",
                params={"group_by": "age_band,ethnicity,custody_status", "exact": "true"},
                headers=bearer(civil),
            )
        ).json()
        bands = {m["value"]: m["count"] for m in body["margins"] if m["dimension"] == "age_band"}
        assert bands == {"0-2": 1, "3-5": 2, "12-14": 1}
        assert {m["value"] for m in body["margins"] if m["dimension"] == "custody_status"} == {"none"}


class TestExports:
    async def test_csv_opens_with_chinese_headings_and_the_same_numbers(
        self, client: httpx.AsyncClient, civil: str, seeded: Any
    ) -> None:
        params = {"group_by": "region,sex", "format": "csv", "lang": "zh", "exact": "true"}
        response = await client.get("/v1/statistics/children", params=params, headers=bearer(civil))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert response.content.startswith("\ufeff".encode())
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert rows[0] == ["地区", "性别", "数量"]
        assert [COUNTY_A, "女", "20"] in rows and ["合计", "合计", "43"] in rows

    async def test_xlsx_opens_with_openpyxl_and_matches_the_json(
        self, client: httpx.AsyncClient, token: TokenFactory, seeded: Any
    ) -> None:
        police = await _police(token)
        params = {"group_by": "region,category", "level": "township"}
        body = (await client.get("/v1/statistics/children", params=params, headers=bearer(police))).json()
        response = await client.get(
            "/v1/statistics/children",
            params={**params, "format": "xlsx", "lang": "zh"},
            headers=bearer(police),
        )
        assert response.status_code == 200
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        assert sheet is not None
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
        assert rows[0] == ["地区", "类别", "数量"]
        for cell in body["cells"]:
            expected = "隐藏" if cell["suppressed"] else cell["count"]
            label = {"left_behind": "留守儿童", "orphan": "孤儿", "low_income": "低保/特困家庭儿童"}
            assert [cell["values"]["region"], label[cell["values"]["category"]], expected] in rows


class TestFlowsAndServices:
    async def test_entries_and_exits_per_month(self, client: httpx.AsyncClient, civil: str) -> None:
        children = [await make_child(client, civil, with_id=False) for _ in range(7)]
        for child in children[:5]:
            await client.post(
                f"/v1/children/{child['id']}/exit",
                json={"reason": "parents_returned", "exit_date": date.today().isoformat()},
                headers=bearer(civil),
            )
        body = (
            await client.get(
                "/v1/statistics/flows",
                params={"group_by": "direction,reason", "exact": "true"},
                headers=bearer(civil),
            )
        ).json()
        assert {tuple(c["values"].values()): c["count"] for c in body["cells"]} == {
            ("entry", "new"): 7,
            ("exit", "parents_returned"): 5,
        }

    async def test_services_count_published_events_by_type(
        self, client: httpx.AsyncClient, civil: str, token: TokenFactory
    ) -> None:
        child = await make_child(client, civil)
        health = await token(agency="health", scopes=["events:publish", *STATS], region="51")
        for i in range(6):
            published = await client.post(
                "/v1/events",
                json={
                    "specversion": "1.0",
                    "id": f"hc-{i}",
                    "source": "/health/test",
                    "type": "cn.gov.childlink.health.check.completed.v1",
                    "subject": child["id"],
                    "data": {"checked_on": date.today().isoformat(), "result": "normal"},
                },
                headers={**bearer(health), "Idempotency-Key": f"hc-{i}"},
            )
            assert published.status_code == 202, published.text
        body = (
            await client.get(
                "/v1/statistics/services",
                params={"group_by": "type,publisher", "exact": "true"},
                headers=bearer(health),
            )
        ).json()
        assert {tuple(c["values"].values()): c["count"] for c in body["cells"]} == {
            ("health.check.completed", "health"): 6
        }


class TestPolicy:
    @pytest.mark.parametrize("agency", [k.value for k in AgencyKind if k is not AgencyKind.platform])
    async def test_every_member_agency_may_count(
        self, client: httpx.AsyncClient, token: TokenFactory, agency: str
    ) -> None:
        reader = await token(agency=agency, scopes=STATS, region="51")
        response = await client.get(
            "/v1/statistics/children",
            params={"group_by": "category,custody_status,sex"},
            headers=bearer(reader),
        )
        assert response.status_code == 200, response.text

    async def test_the_womens_federation_may_filter_children_by_category(
        self, client: httpx.AsyncClient, token: TokenFactory, civil: str
    ) -> None:
        await make_child(client, civil, categories=["left_behind"])
        womens = await token(agency="womens-federation", scopes=["children:read"], region="51")
        response = await client.get(
            "/v1/children",
            params={"category": "left_behind"},
            headers={**bearer(womens), "X-Purpose-Of-Use": "child_protection"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["items"][0]["categories"] == ["left_behind"]
        refused = await client.get(
            "/v1/children",
            params={"category": "guardian_harm"},
            headers={**bearer(womens), "X-Purpose-Of-Use": "child_protection"},
        )
        assert refused.status_code == 403
