"""Show (issue 11, build 5): under ``stationflow up`` with its 48 h backfill, the duty console's
station board (``GET /stations/board`` of the alert service) lists every station the registry
has devices at, hidden ones too, within two minutes of start: air stations with their hourly
AQI in the standard's colours, water sections with their class against the target, gauges with
their level and margin to warning; worst first; open alerts counted as the alert API has them.
The console page shows the same rows."""

from __future__ import annotations

import shutil
from collections import Counter
from typing import Any

import httpx

from tests.integration.backfilled.conftest import BackfilledStack
from tests.integration.pipeline_utils import wait_for

AQI_COLOURS = {1: "#00E400", 2: "#FFFF00", 3: "#FF7E00", 4: "#FF0000", 5: "#99004C", 6: "#7E0023"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _get(url: str, key: str, **params: Any) -> Any:
    answer = httpx.get(url, headers={"X-API-Key": key}, params=params, timeout=15)
    answer.raise_for_status()
    return answer.json()


def _registered(stack: BackfilledStack) -> dict[str, dict[str, Any]]:
    """station id → registry station, for every station with at least one device."""
    stations = _get(f"{stack.registry_url}/stations", stack.registry_key, limit=1000)["data"]
    with_devices = {
        d["station_id"] for d in _get(f"{stack.registry_url}/devices", stack.registry_key, limit=1000)["data"]
    }
    return {s["id"]: s for s in stations if s["id"] in with_devices}


def _board(stack: BackfilledStack) -> dict[str, Any] | None:
    try:
        answer = httpx.get(
            f"{stack.alerts_url}/stations/board", headers={"X-API-Key": stack.alerts_key}, timeout=15
        )
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _complete(board: dict[str, Any] | None, registered: dict[str, dict[str, Any]]) -> bool:
    """Every registered station is on the board with the value of its kind."""
    if board is None:
        return False
    rows = {r["station_id"]: r for r in board["data"]}
    for sid, station in registered.items():
        row = rows.get(sid)
        if row is None:
            return False
        kind = station["kind"]
        if kind == "air" and row["aqi"] is None:
            return False
        if kind == "water" and row["water_class"] is None:
            return False
        if kind == "gauge" and station.get("warning_level") is not None and row["level_m"] is None:
            return False
    return True


def test_every_station_is_on_the_board_with_aqi_class_and_level(backfilled: BackfilledStack) -> None:
    registered = _registered(backfilled)
    kinds = Counter(s["kind"] for s in registered.values())
    assert kinds["air"] and kinds["water"] and kinds["gauge"], kinds
    assert any(not s.get("public") for s in registered.values()), "the fleet has no hidden station"
    latest: list[dict[str, Any] | None] = [None]

    def complete() -> bool:
        latest[0] = _board(backfilled)
        return _complete(latest[0], registered)

    assert wait_for(complete, timeout=backfilled.remaining(), interval=2.0), latest[0]
    board = latest[0]
    assert board is not None
    rows = {r["station_id"]: r for r in board["data"]}
    assert set(registered) <= set(rows)
    for sid, station in registered.items():
        row = rows[sid]
        assert row["public"] == bool(station.get("public")), sid  # hidden stations are listed too
        assert row["last_seen"] is not None, f"{sid}: the backfill wrote no reading"
        if station["kind"] == "air":
            assert 1 <= row["aqi_level"] <= 6 and row["aqi_color"] == AQI_COLOURS[row["aqi_level"]], row
        if station["kind"] == "water":
            assert 1 <= row["water_class"] <= 6 and row["water_color"], row
            if row["target"] is not None:
                assert row["meets_target"] == (row["water_class"] <= row["target"]), row
        if station["kind"] == "gauge" and station.get("warning_level") is not None:
            assert row["warning_level_m"] == station["warning_level"], row
            assert abs(row["margin_m"] - (station["warning_level"] - row["level_m"])) < 0.002, row
            assert row["level_state"] in {"normal", "approaching", "above_warning", "above_guaranteed"}
    # worst first
    badness = [r["badness"] for r in board["data"]]
    assert badness == sorted(badness, reverse=True), badness
    # open alerts per station are the alert service's own
    seen: list[object] = []

    def same_counts() -> bool:  # alerts keep changing as live readings arrive: compare until equal
        active = _get(f"{backfilled.alerts_url}/alerts", backfilled.alerts_key, status="active", limit=1000)
        expected = Counter(a["station_id"] for a in active if a["station_id"] in rows)
        fresh = _board(backfilled) or {"data": []}
        counted = {r["station_id"]: r["open_alerts"] for r in fresh["data"] if r["open_alerts"]}
        seen[:] = [expected, counted]
        return counted == dict(expected)

    assert wait_for(same_counts, timeout=20, interval=1.0), seen


def test_the_console_lists_the_board(backfilled: BackfilledStack) -> None:
    from playwright.sync_api import expect, sync_playwright

    registered = _registered(backfilled)
    assert wait_for(
        lambda: _complete(_board(backfilled), registered), timeout=backfilled.remaining(), interval=2.0
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{backfilled.alerts_url}/console?key={backfilled.alerts_key}&lang=en")
            rows = page.locator("#board-rows tr[data-station-id]")
            expect(rows).not_to_have_count(0, timeout=20_000)
            shown = set(rows.evaluate_all("rs => rs.map(r => r.dataset.stationId)"))
            assert set(registered) <= shown, set(registered) - shown
            for sid, station in registered.items():
                if station["kind"] == "air":
                    chip = page.locator(f'tr[data-station-id="{sid}"] .aqi')
                    assert chip.get_attribute("data-color") in AQI_COLOURS.values(), sid
            assert not errors, errors
        finally:
            browser.close()
