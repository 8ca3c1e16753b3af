"""A newcomer's first hour, in a real browser: `serve --demo`, Chromium on `/docs`, Authorize with
a demo client, then "Try it out" and "Execute" on every operation with what Swagger UI pre-fills
(the named example, the demo ids, the documented headers). Each must answer its documented
success status, and no request may leave the host; ReDoc too.

Chromium is Debian's (`/usr/bin/chromium`, installed by `.ci/run`), driven by Playwright; the
test is skipped, saying why, on a machine without it.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.live_demo import LiveServer, serve_demo

CHROMIUM = "/usr/bin/chromium"
ACTION_TIMEOUT_MS = 90_000
"""Playwright's wait for each action in Swagger UI (a click, a fill, a selector, a page load;
its default is 30 s)."""

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)

AGENCY_OF: dict[str, str] = {
    "get_jwks": "police",
    "get_me": "police",
    "get_policy": "police",
    "get_health": "police",
    "get_readiness": "police",
    "get_metrics": "police",
    "get_child": "police",
    "get_custody": "police",
    "list_guardianships": "police",
    "close_investigation": "police",
    "list_reports": "police",
    "get_report": "police",
    "acknowledge_report": "police",
    "list_cases": "education",
    "get_case": "education",
    "list_children": "civil-affairs",
    "list_due": "civil-affairs",
    "get_timeline": "civil-affairs",
    "list_referrals": "civil-affairs",
    "accept_referral": "civil-affairs",
    "list_consents": "civil-affairs",
    "get_access_report": "civil-affairs",
    "list_deliveries": "civil-affairs",
    "rotate_subscription_secret": "civil-affairs",
    "ping_subscription": "civil-affairs",
    "count_children": "education",
    "count_flows": "education",
    "count_services": "education",
    "get_statistics_dashboard": "education",
    "list_dead_letters": "education",
    "redrive_dead_letters": "education",
    "list_event_types": "education",
    "get_event_type": "education",
    "read_feed": "education",
    "list_subscriptions": "education",
    "get_subscription": "education",
    "delete_subscription": "education",
    "list_agencies": "platform",
    "list_clients": "platform",
    "get_client": "platform",
    "list_access_log": "platform",
    "list_checkpoints": "platform",
    "list_break_glass": "platform",
    "rotate_client_secret": "platform",
    "revoke_client": "platform",
}
"""The demo client each operation without a body example is tried with."""

NOT_TRIED = {
    "issue_token": "the Authorize dialog calls it for every agency",
    "get_event": "an event's id is known only once it is published",
    "retry_delivery": "a delivery's id is known only once an event is delivered",
    "skip_delivery": "a delivery's id is known only once an event is delivered",
}

LAST = ["delete_subscription", "rotate_client_secret", "revoke_client"]
"""These change demo records other operations use (the pull subscription, the education client)."""

PHASES = ["civil-affairs", "police", "education", "health", "platform"]


def plan(spec: dict[str, Any]) -> dict[str, list[tuple[str, str | None, int]]]:
    """Per demo agency, in order: (operation id, example name, expected status)."""
    phases: dict[str, list[tuple[str, str | None, int]]] = {agency: [] for agency in PHASES}
    for item in spec["paths"].values():
        for operation in item.values():
            op_id = operation["operationId"]
            if op_id in NOT_TRIED:
                continue
            status = min(int(s) for s in operation["responses"] if s.startswith("2"))
            content = operation.get("requestBody", {}).get("content", {})
            examples = next(iter(content.values()), {}).get("examples", {})
            if examples:
                for name, example in examples.items():
                    phases[example["x-agency"]].append((op_id, name, status))
            else:
                assert op_id in AGENCY_OF, f"{op_id}: say which demo client tries it"
                phases[AGENCY_OF[op_id]].append((op_id, None, status))
    for steps in phases.values():
        steps.sort(key=lambda step: LAST.index(step[0]) if step[0] in LAST else -1)
    return phases


async def authorize(page: Any, client_id: str, secret: str) -> None:
    await page.click(".btn.authorize")
    modal = page.locator(".modal-ux")
    logout = modal.locator(".auth-btn-wrapper button:has-text('Logout')")
    if await logout.count():
        await logout.click()
    await modal.locator("#client_id_clientCredentials").fill(client_id)
    await modal.locator("#client_secret_clientCredentials").fill(secret)
    await modal.locator(".auth-btn-wrapper .btn.modal-btn.auth.authorize").click()
    await logout.wait_for()
    await modal.locator(".btn-done").click()


async def execute(page: Any, op_id: str, example: str | None) -> tuple[int, str]:
    """Open the operation, press Try it out, choose the example, Execute; returns the status
    and body of the request Swagger UI sent (what it then shows under "Server response")."""
    block = page.locator(f'[id^="operations-"][id$="-{op_id}"]')
    await block.locator(".opblock-summary").first.click()
    try_out = block.locator(".try-out__btn")
    if (await try_out.inner_text()).strip() == "Try it out":  # it stays on for the next example
        await try_out.click()
    if example is not None:
        chooser = block.locator(".opblock-section-request-body .examples-select select")
        if await chooser.count():
            await chooser.select_option(example)
    async with page.expect_response(lambda r: r.request.resource_type in ("fetch", "xhr")) as answer:
        await block.locator(".execute").click()
    response = await answer.value
    body = await response.text()
    await block.locator(".opblock-summary").first.click()  # collapse: keeps the page light
    return response.status, body


async def test_every_prefilled_example_succeeds_in_swagger_ui_and_nothing_leaves_the_host(
    database_url: str, tmp_path: Path
) -> None:
    async with serve_demo(database_url, tmp_path / "data") as server:
        async with httpx.AsyncClient(base_url=server.base) as http:
            spec = (await http.get("/openapi.json")).json()
        outcomes = await _run_swagger(server, plan(spec))
    for step, (ok, detail) in outcomes.items():
        print(f"{'ok ' if ok else 'FAIL'} {step}: {detail[:3] if ok else detail}")  # shown with -s
    failures = {step: outcome for step, outcome in outcomes.items() if not outcome[0]}
    assert failures == {}, failures


async def _run_phase(
    browser: Any, server: LiveServer, agency: str, steps: list[tuple[str, str | None, int]]
) -> tuple[dict[str, tuple[bool, str]], list[str]]:
    """One demo agency's operations in a page of its own: Authorize, then each Execute."""
    context = await browser.new_context()
    # Several pages run side by side on a 2-core machine that also serves them: on a slow one a
    # click in a page of hundreds of operations came close to Playwright's 30 s default.
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    outcomes: dict[str, tuple[bool, str]] = {}
    try:
        await page.goto(server.base + "/docs")
        await page.wait_for_selector(".opblock")
        await authorize(page, f"demo-{agency}", server.secret(agency))
        for op_id, example, expected in steps:
            code, body = await execute(page, op_id, example)
            outcomes[f"{agency} {op_id}:{example or '-'}"] = (code == expected, f"{code} {body[:300]}")
    finally:
        await context.close()
    return outcomes, requested


async def _run_swagger(
    server: LiveServer, phases: dict[str, list[tuple[str, str | None, int]]]
) -> dict[str, tuple[bool, str]]:
    outcomes: dict[str, tuple[bool, str]] = {}
    requested: list[str] = []
    async with playwright_api.async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            # The agencies' pages run side by side (their examples touch different demo
            # records); the platform operator's last, as it rotates and revokes a demo client.
            together = [a for a in phases if a != "platform"]
            for group in (together, ["platform"]):
                results = await asyncio.gather(*(_run_phase(browser, server, a, phases[a]) for a in group))
                for phase_outcomes, phase_requests in results:
                    outcomes.update(phase_outcomes)
                    requested += phase_requests
            page = await browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(server.base + "/redoc")
            await page.wait_for_selector("h1", timeout=15000)
            await page.wait_for_load_state("networkidle")
        finally:
            await browser.close()
    outside = sorted(
        {url for url in requested if urlsplit(url).scheme not in ("data", "blob")}
        - {url for url in requested if urlsplit(url).hostname == "127.0.0.1"}
    )
    outcomes["no request left the host"] = (outside == [], " ".join(outside))
    outcomes["redoc logo served locally"] = (
        any(url.endswith("/docs/assets/redoc-logo-mini.svg") for url in requested),
        "the logo was not requested",
    )
    return outcomes
