"""The duty console in a real headless browser (Debian's chromium driven by Playwright): an
alert appears without a reload, acknowledge and resolve change its state in the API, and
the page works in Chinese and English. The station board: ``GET /stations/board`` over a real
registry (Tansu registry topic), InfluxDB and alert service, and the board in the console
(stations listed worst first, offline marked, colours right, live on alerts and on a timer)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stationflow.contracts import Severity
from stationflow.stack.components import Component, influx_write
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


# --- the station board ----------------------------------------------------------------------

BOARD_ENV = {**ALERTS_ENV, "STATIONFLOW_ALERTS_REGISTRY": "true", "STATIONFLOW_ALERTS_BOARD_REFRESH_S": "2"}
STATIONS = [
    {"id": "air-bad", "name": "Air bad", "kind": "air", "region": "445100", "basin": "Han"},
    {"id": "air-ok", "name": "Air ok", "kind": "air", "region": "445100", "basin": "Han", "public": True},
    {"id": "air-dead", "name": "Air dead", "kind": "air", "region": "440300", "basin": "Rong"},
    {"id": "water-1", "name": "Section 1", "kind": "water", "region": "445100", "basin": "Han",
     "target_class": "III"},
    {"id": "gauge-1", "name": "Gauge 1", "kind": "gauge", "region": "445100", "basin": "Han",
     "warning_level": 12.0, "guaranteed_level": 13.0},
]  # fmt: skip
DEVICES = {"air-bad": "air-station", "air-ok": "air-station", "air-dead": "air-station",
           "water-1": "water-station", "gauge-1": "level-gauge"}  # fmt: skip


@pytest.fixture
def board_pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    """Registry and alert service (following the registry) on a fresh InfluxDB database."""
    p, _ = make_pipeline(tansu, influxd, tmp_path, BOARD_ENV)
    with p:
        p.start("devices")
        p.start("alerts")
        yield p


def _register(p: Pipeline) -> None:
    registry = httpx.Client(base_url=p.registry_url, headers={"X-API-Key": p.registry_admin_key}, timeout=10)
    for station in STATIONS:
        assert registry.post("/stations", json=station).status_code == 201, station
        device = {"id": f"d-{station['id']}", "type": DEVICES[str(station["id"])],
                  "station_id": station["id"], "expected_interval_s": 60}  # fmt: skip
        assert registry.post("/devices", json=device).status_code == 201, device


def _write_state(p: Pipeline, *, level: float = 12.4) -> None:
    """The newest readings and derived values as the worker writes them: air-dead last heard 2 h ago."""
    ep = p.endpoints
    assert ep is not None
    now = time.time_ns()
    hour = now - now % 3_600_000_000_000
    lines = [
        f"air,device=d-air-bad,station=air-bad pm2_5=180.0 {now}",
        f"air,device=d-air-ok,station=air-ok pm2_5=12.0 {now}",
        f"air,device=d-air-dead,station=air-dead pm2_5=20.0 {now - 7_200_000_000_000}",
        f"water,device=d-water-1,station=water-1 nh3_n=1.2 {now}",
        f"hydro,device=d-gauge-1,station=gauge-1 level={level} {now}",
        f'aqi,station=air-bad,report=hourly aqi=230i,primary="pm2_5_1h",iaqi_pm2_5=230i {hour}',
        f'aqi,station=air-ok,report=hourly aqi=35i,primary="",iaqi_pm2_5=35i {hour}',
        f'water_quality,station=water-1 class=4i,label="IV",deciding="nh3_n",target_class=3i {hour}',
    ]
    influx_write(ep.influx_url, ep.influx_db, "\n".join(lines))


def _board(p: Pipeline, token: str | None = None, **params: str) -> dict[str, object]:
    r = alerts_api(p).get("/stations/board", params=params, headers={"X-API-Key": token} if token else {})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def _rows(body: dict[str, object]) -> dict[str, dict[str, object]]:
    data = body["data"]
    assert isinstance(data, list)
    return {row["station_id"]: row for row in data}


def _ids(body: dict[str, object]) -> list[str]:
    return list(_rows(body))


def test_the_board_endpoint_joins_registry_influx_and_open_alerts(board_pipeline: Pipeline) -> None:
    p = board_pipeline
    api = alerts_api(p)
    assert api.get("/stations/board", headers={"X-API-Key": "nope"}).status_code == 401
    _register(p)
    _write_state(p)
    produce(p, [alert_event("d-gauge-1", station="gauge-1", severity=Severity.CRITICAL, value=12.4)])
    assert wait_for(lambda: len(api.get("/alerts").json()) == 1, timeout=30)
    assert wait_for(lambda: len(_rows(_board(p))) == len(STATIONS), timeout=30), _board(p)
    body = _board(p)
    rows = _rows(body)
    assert body["count"] == len(STATIONS) and body["refresh_s"] == 2
    # worst first: the critical flood alert at a gauge above warning, then the heavily polluted
    # station, the offline station and the section worse than its target (by id), the good one
    order = _ids(body)
    assert order == ["gauge-1", "air-bad", "air-dead", "water-1", "air-ok"], order
    gauge, bad, dead, section, ok = (rows[k] for k in order)
    assert (gauge["open_alerts"], gauge["worst_severity"], gauge["level_state"]) == (
        1,
        "critical",
        "above_warning",
    )
    assert gauge["level_m"] == 12.4 and gauge["margin_m"] == -0.4 and gauge["warning_level_m"] == 12.0
    assert (bad["aqi"], bad["aqi_level"], bad["aqi_color"], bad["primary"]) == (230, 5, "#99004C", ["PM2.5"])
    assert bad["public"] is False and ok["public"] is True  # hidden stations are on the bureau's board
    assert (ok["aqi"], ok["aqi_color"], ok["offline"], ok["open_alerts"]) == (35, "#00E400", False, 0)
    assert (section["water_class"], section["target"], section["meets_target"]) == (4, 3, False)
    assert dead["offline"] is True and not bad["offline"] and dead["last_seen"] is not None
    # filters
    assert _ids(_board(p, kind="air")) == ["air-bad", "air-dead", "air-ok"]
    assert _ids(_board(p, region="440300")) == ["air-dead"]
    assert _board(p, basin="Nowhere")["count"] == 0
    # a read-only key may look at it
    viewer = api.post("/api-keys", json={"name": "wall", "role": "read-only"}).json()["token"]
    assert _board(p, viewer)["count"] == len(STATIONS)
    # and how long the board takes is measured
    scraped = httpx.get(f"{p.alerts_url}/metrics", timeout=10).text
    counts = [
        line for line in scraped.splitlines() if line.startswith("stationflow_alerts_board_seconds_count")
    ]
    assert counts and float(counts[0].split()[-1]) >= 5, counts


def test_the_console_shows_the_board_live(board_pipeline: Pipeline) -> None:
    from playwright.sync_api import expect, sync_playwright

    p = board_pipeline
    _register(p)
    _write_state(p, level=11.0)
    api = alerts_api(p)
    token = api.post("/api-keys", json={"name": "wall screen", "role": "read-only"}).json()["token"]
    assert wait_for(lambda: len(_rows(_board(p))) == len(STATIONS), timeout=30)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{p.alerts_url}/console?key={token}&lang=en")
            rows = page.locator("#board-rows tr[data-station-id]")
            expect(rows).to_have_count(len(STATIONS), timeout=20_000)
            expect(page.locator("#board-title")).to_have_text("Stations")
            expect(rows.first).to_have_attribute("data-station-id", "air-bad")  # worst first
            dead = page.locator('tr[data-station-id="air-dead"]')
            expect(dead).to_have_attribute("data-offline", "true")
            expect(dead).to_contain_text("offline")
            expect(page.locator('tr[data-station-id="air-ok"]')).to_contain_text("online")
            expect(page.locator('tr[data-station-id="air-bad"] .aqi')).to_have_attribute(
                "data-color", "#99004C"
            )
            expect(page.locator('tr[data-station-id="air-ok"] .aqi')).to_have_attribute(
                "data-color", "#00E400"
            )
            bad_bg = page.locator('tr[data-station-id="air-bad"] .aqi').evaluate(
                "e => getComputedStyle(e).backgroundColor"
            )
            assert bad_bg == "rgb(153, 0, 76)"
            expect(page.locator('tr[data-station-id="water-1"] .water')).to_have_text("IV")
            expect(page.locator('tr[data-station-id="water-1"]')).to_contain_text("target III")
            gauge = page.locator('tr[data-station-id="gauge-1"]')
            expect(gauge.locator(".level")).to_have_attribute("data-state", "normal")
            expect(gauge).to_contain_text("1 m below warning")
            page.evaluate("window.__loadedOnce = true")

            # the river rises over the warning level: the timer refresh shows it without a reload
            _write_state(p, level=12.6)
            expect(gauge.locator(".level")).to_have_attribute("data-state", "above_warning", timeout=15_000)
            expect(gauge).to_contain_text("0.6 m above warning")
            # an alert at the gauge: counted on the board at once (SSE), the gauge goes to the top
            produce(p, [alert_event("d-gauge-1", station="gauge-1", severity=Severity.CRITICAL, value=12.6)])
            expect(gauge.locator(".open-alerts")).to_have_text("1", timeout=15_000)
            expect(rows.first).to_have_attribute("data-station-id", "gauge-1")
            # filter by kind, then Chinese
            page.select_option("#f-kind", "air")
            expect(rows).to_have_count(3)
            page.select_option("#lang", "zh")
            expect(page.locator("#board-title")).to_have_text("站点")
            expect(dead).to_contain_text("离线")
            assert page.evaluate("window.__loadedOnce") is True, "the page reloaded"
            assert not errors, errors
        finally:
            browser.close()
