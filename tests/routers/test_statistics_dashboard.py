"""The joint-meeting dashboard in a real browser (Debian's chromium driven by Playwright): on the
demo data its charts render, it is in Chinese, and it asks nothing of any other host."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.db import asyncpg_dsn
from app.services import demo
from tests.conftest import TokenFactory, bearer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()


@pytest.fixture
async def demo_loaded(app: Any) -> None:
    async with app.state.db.sessionmaker() as session:
        await demo.load(session)
        await demo.load_children(session, app.state.webhook_secret_box)
        await session.commit()


async def test_the_dashboard_renders_its_charts_offline(
    client: httpx.AsyncClient, token: TokenFactory, demo_loaded: None, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    if not HAVE_CHROMIUM:
        pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
    reader = await token(agency="education", scopes=["statistics:read"], region="51")
    response = await client.get("/v1/statistics/dashboard", params={"region": "5101"}, headers=bearer(reader))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page_html = response.text
    assert "联席会议" in page_html and "<script" not in page_html

    requests: list[str] = []
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            await page.set_content(page_html, wait_until="networkidle")
            charts = await page.query_selector_all("svg.chart")
            assert len(charts) == 6
            for chart in charts:
                box = await chart.bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 20
            bars = await page.locator("svg.chart rect").count()
            assert bars > 20  # the demo population fills every chart
            totals: Any = await page.locator(".total b").all_inner_texts()
            assert int(totals[0]) > 100
            shot = tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert len(shot.read_bytes()) > 10_000
            if os.environ.get("CHILDLINK_DASHBOARD_SCREENSHOT"):
                shutil.copy(shot, os.environ["CHILDLINK_DASHBOARD_SCREENSHOT"])
        finally:
            await browser.close()
    assert requests == [], requests  # nothing leaves the page, not even for a font


async def test_a_page_view_is_one_access_log_record_with_every_category_its_charts_reveal(
    client: httpx.AsyncClient, token: TokenFactory, demo_loaded: None, owner_database_url: str
) -> None:
    reader = await token(agency="police", scopes=["statistics:read"], region="51")
    response = await client.get("/v1/statistics/dashboard", params={"region": "5101"}, headers=bearer(reader))
    assert response.status_code == 200, response.text

    conn = await asyncpg.connect(asyncpg_dsn(owner_database_url))
    try:
        rows = await conn.fetch("SELECT * FROM access_log WHERE action LIKE 'statistics.%'")
    finally:
        await conn.close()
    assert [(r["action"], r["agency"], r["purpose"]) for r in rows] == [
        ("statistics.dashboard", "police", "statistics")
    ]
    assert rows[0]["child_id"] is None and rows[0]["child_ids"] is None
    assert {"welfare", "identity", "education", "health"} <= set(rows[0]["categories_returned"])
