"""The duty console in a real headless browser (Debian's chromium driven by Playwright): an
alert appears without a reload, acknowledge and resolve change its state in the API, and
the page works in Chinese and English."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from stationflow.contracts import Severity
from stationflow.stack.components import Component
from stationflow.stack.pipeline import Pipeline
from tests.integration.alerts_utils import ALERTS_ENV, alert_event, alerts_api, produce
from tests.integration.pipeline_utils import make_pipeline, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, {**ALERTS_ENV, "STATIONFLOW_ALERTS_REGISTRY": "false"})
    with p:
        p.start("alerts")
        yield p


def test_an_alert_appears_live_and_acknowledge_and_resolve_reach_the_api(pipeline: Pipeline) -> None:
    from playwright.sync_api import expect, sync_playwright

    api = alerts_api(pipeline)
    created = api.post("/api-keys", json={"name": "officer Li", "role": "operator"})
    assert created.status_code == 201
    token = created.json()["token"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            page.goto(f"{pipeline.alerts_url}/console?key={token}&lang=en")
            expect(page.get_by_test_id("connection")).to_have_class("live", timeout=20_000)
            expect(page.locator("#who")).to_contain_text("officer Li (operator)")
            expect(page.locator("#empty")).to_be_visible()
            page.evaluate("window.__loadedOnce = true")

            produce(pipeline, [alert_event("lvl-live", station="gauge-live", value=12.7)])
            row = page.locator("tr[data-alert-id]")
            expect(row).to_have_count(1, timeout=20_000)
            expect(row).to_have_attribute("data-status", "open")
            expect(row).to_contain_text("gauge-live")
            expect(row).to_contain_text("12.7 / 12")
            expect(row).to_contain_text("level 12.7 m at or above the warning level")
            assert page.evaluate("window.__loadedOnce") is True, "the page reloaded"
            assert len(navigations) == 1

            alert_id = int(row.get_attribute("data-alert-id") or 0)
            row = page.locator(f'tr[data-alert-id="{alert_id}"]')
            row.get_by_role("button", name="Acknowledge").click()
            expect(row).to_have_attribute("data-status", "acknowledged")
            state = api.get(f"/alerts/{alert_id}").json()
            assert (state["status"], state["acknowledged_by"]) == ("acknowledged", "officer Li")

            # Chinese: the same page, switched without reloading
            page.select_option("#lang", "zh")
            expect(page.locator("h1")).to_have_text("值班台")
            expect(row).to_contain_text("已确认")
            expect(row).to_contain_text("水位 12.7 米")
            expect(row.get_by_role("button", name="解除")).to_be_enabled()

            # a second alert arrives while the first is acknowledged; resolve the first by hand
            produce(pipeline, [alert_event("lvl-live-2", station="gauge-live-2", severity=Severity.CRITICAL)])
            expect(page.locator("tr[data-alert-id]")).to_have_count(2, timeout=20_000)
            first = page.locator("tr[data-alert-id]").first  # most severe first
            expect(first).to_contain_text("gauge-live-2")
            page.once("dialog", lambda dialog: dialog.accept())
            row.get_by_role("button", name="解除").click()
            expect(page.locator(f'tr[data-alert-id="{alert_id}"]')).to_have_count(0)
            assert wait_for(lambda: api.get(f"/alerts/{alert_id}").json()["status"] == "resolved", timeout=10)
            assert api.get(f"/alerts/{alert_id}").json()["resolved_by"] == "officer Li"
            assert page.evaluate("window.__loadedOnce") is True
        finally:
            browser.close()


def test_a_read_only_key_sees_alerts_but_cannot_act(pipeline: Pipeline) -> None:
    from playwright.sync_api import expect, sync_playwright

    api = alerts_api(pipeline)
    token = api.post("/api-keys", json={"name": "bureau wall screen", "role": "read-only"}).json()["token"]
    produce(pipeline, [alert_event("lvl-ro", station="gauge-ro")])
    assert wait_for(lambda: len(api.get("/alerts").json()) == 1, timeout=20)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{pipeline.alerts_url}/console?key={token}&lang=en")
            row = page.locator("tr[data-alert-id]")
            expect(row).to_have_count(1, timeout=20_000)
            expect(row.get_by_role("button", name="Acknowledge")).to_be_disabled()
            expect(row.get_by_role("button", name="Resolve")).to_be_disabled()
        finally:
            browser.close()
    # and the API refuses it too
    alert_id = api.get("/alerts").json()[0]["id"]
    r = api.post(f"/alerts/{alert_id}/acknowledge", json={}, headers={"X-API-Key": token})
    assert r.status_code == 403
