"""The dashboard in real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; no browser download): log in, compare the figures with the API and /metrics,
press "refresh now" and see the result, make a reconnect link, log out. Saves the
screenshots the README and docs/dashboard.md show when UPDATE_SCREENSHOTS=1 (otherwise a
run leaves the tracked PNGs alone). `make test-browser` runs it."""

from __future__ import annotations

import asyncio
import importlib
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.support import Fakes, WorkerHandle, connect, make_due, run_refresh_tick, wait_until
from tokenlife.adapters.keys import Keys
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app

pytestmark = pytest.mark.browser
KEY = "dashboard-browser-key-0123456789"
CHROMIUM = Path("/usr/bin/chromium")
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"


def playwright() -> Any:
    """Imported when the test runs, not at collection: `make test` (browser deselected)
    collects this file without Playwright, but `-m browser` without it fails, not skips."""
    try:
        return importlib.import_module("playwright.async_api")
    except ImportError:
        pytest.fail("Playwright is not installed: `make test-browser` installs the browser extra")


async def screenshot(page: Any, name: str, **options: Any) -> None:
    """docs/img/NAME, only when asked: a CI run must not rewrite tracked files."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(IMAGES / name), **options)


@pytest.fixture
async def api(settings: Settings, fakes: Fakes) -> AsyncIterator[TestClient[Any, Any]]:
    runtime = await Runtime.open(
        await load_config(settings.model_copy(update={"api_keys": (KEY,)}))
    )
    async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as client:
        yield client
    await runtime.close()


async def api_json(api: TestClient[Any, Any], path: str) -> Any:
    response = await api.get(path, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status == 200, await response.text()
    return await response.json()


async def metrics(api: TestClient[Any, Any]) -> dict[str, Counter[str]]:
    """tokenlife_refreshes by outcome, tokenlife_connections by status."""
    text = await (await api.get("/metrics")).text()
    found: dict[str, Counter[str]] = {"refreshes": Counter(), "connections": Counter()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tokenlife_refreshes_total":
                found["refreshes"][sample.labels["outcome"]] += int(sample.value)
            elif sample.name == "tokenlife_connections":
                found["connections"][sample.labels["status"]] += int(sample.value)
    return found


async def shown(page: Any, selector: str, attribute: str) -> dict[str, int]:
    """Figures on the page: {data-attribute value: number} of the matching elements."""
    figures: dict[str, int] = {}
    for element in await page.query_selector_all(selector):
        figures[await element.get_attribute(attribute)] = int(await element.inner_text())
    return figures


async def test_an_operator_works_through_the_dashboard(
    api: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings, fakes: Fakes,
) -> None:  # fmt: skip
    driver = playwright()
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: `make test-browser` installs Debian's chromium")
    run = uuid.uuid4().hex[:6]
    steady, overdue, degraded = f"ada-{run}", f"grace-{run}", f"linus-{run}"
    await deliver_alerts(worker)  # the delivery group reads from here on
    for cid in (steady, overdue):
        await connect(tl, worker, "google", cid, login_hint=cid)
    await connect(tl, worker, "generic", degraded, login_hint=degraded)  # no offline access
    for done in (1, 2):  # two scheduled refreshes, one after the other, for the chart
        await make_due(redis, settings, "google", steady)
        await run_refresh_tick(worker)
        await wait_until(partial(_refreshed, api, done), timeout=20, what=f"refresh {done}")
    # The alert webhook is down: the refresh_token_missing notification is dead-lettered.
    fakes.receiver.script("/session-hook", 500)
    try:
        await deliver_alerts(worker)
    finally:
        fakes.receiver.script("/session-hook", 200)
    # The access token lapsed and no refresh ran: refresh_overdue, until "refresh now".
    key = Keys(settings.key_prefix, settings.redis_shards).connection("google", overdue)
    await redis.hset(key, "expires_at", repr(time.time() - 60))

    async with driver.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = await browser.new_context(
            viewport={"width": 1280, "height": 900},
            permissions=["clipboard-read", "clipboard-write"],
        )
        page = await context.new_page()
        await page.goto(str(api.make_url("/dashboard")))
        assert page.url.endswith("/dashboard/login")
        await page.fill("#api_key", KEY)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#statuses")
        cookie = next(c for c in await context.cookies() if c["name"] == "tokenlife_dashboard")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert KEY not in cookie["value"]

        # The figures are the API's.
        listed = (await api_json(api, "/api/connections?limit=500"))["connections"]
        by_status = Counter(c["status"] for c in listed)
        assert await shown(page, "#by-status [data-status]", "data-status") == {
            s: by_status[s] for s in ("active", "degraded", "reauthorization_required")
        }
        for integration in {c["integration"] for c in listed}:
            row = f'#by-integration tr[data-integration="{integration}"] td'
            counts = Counter(c["status"] for c in listed if c["integration"] == integration)
            assert await shown(page, row, "data-status") == {
                s: counts[s] for s in ("active", "degraded", "reauthorization_required")
            }
        fleet = await metrics(api)
        refreshes = await shown(page, "#refresh-totals strong", "data-outcome")
        assert refreshes == {o: n for o, n in fleet["refreshes"].items() if n}
        assert refreshes["refreshed"] >= 2
        assert await page.locator("#refresh-chart rect.bar").count() >= 1

        # The degraded one: its alert, diagnosis and fixes; it lapses within 7 days.
        card = page.locator(f'article.needing[data-connection-id="{degraded}"]')
        text = await card.inner_text()
        assert "Diagnosis (refresh token missing)" in text
        assert "alert raised" in text  # apart from the alert's name, which is no time
        assert "Refresh token is not present and access token lifetime is too short." in text
        assert "Add offline_access to the integration's scopes" in text  # the first fix
        assert await card.locator("button.refresh").count() == 0  # nothing to refresh with
        assert await page.locator(f'#expiring tr[data-connection-id="{degraded}"]').count() == 1
        assert await page.locator("#alerts tbody tr").count() >= 1
        dead = page.locator("#dead-letters tbody tr")
        assert await dead.count() >= 1 and "HTTP 500" in await dead.first.inner_text()
        await screenshot(page, "dashboard.png", full_page=True)

        # "Refresh now" on the overdue one: the worker refreshes it, the page says so.
        stale = page.locator(f'article.needing[data-connection-id="{overdue}"]')
        before = await api_json(api, f"/api/connections/google/{overdue}")
        assert (before["status"], before["status_reason"]) == ("degraded", "refresh_overdue")
        assert "no refresh has run yet" in await stale.inner_text()
        await stale.locator("button.refresh").click()
        await page.wait_for_selector("#notice")
        assert f"Refreshed google/{overdue}: status active." in await page.inner_text("#notice")
        assert await stale.count() == 0
        shown_now = await api_json(api, f"/api/connections/google/{overdue}")
        assert shown_now["status"] == "active"
        fleet = await metrics(api)
        assert await shown(page, "#by-status [data-status]", "data-status") == {
            s: fleet["connections"][s] for s in ("active", "degraded", "reauthorization_required")
        }

        # A reconnect link for the degraded one, copied to the clipboard.
        await card.locator("button.reconnect").click()
        link = await page.input_value("#link")
        assert "/connect/generic?session=" in link
        await page.click("button[data-copy]")
        await page.wait_for_function("document.querySelector('button[data-copy]').textContent"
                                     " === 'Copied'")  # fmt: skip
        assert await page.evaluate("navigator.clipboard.readText()") == link
        await screenshot(page, "dashboard-reconnect-link.png")

        await page.click("text=Back to the dashboard")
        await page.click("#logout")
        await page.wait_for_selector("#api_key")
        await page.goto(str(api.make_url("/dashboard")))
        assert page.url.endswith("/dashboard/login")
        await screenshot(page, "dashboard-login.png")
        await browser.close()


async def _refreshed(api: TestClient[Any, Any], count: int) -> bool:
    return (await metrics(api))["refreshes"]["refreshed"] >= count


async def deliver_alerts(worker: WorkerHandle) -> None:
    """What beat sends every few seconds: one alert delivery run, waited for."""
    result = worker.app.send_task("tokenlife.deliver_alerts", ignore_result=False)
    await asyncio.to_thread(result.get, timeout=60)
