"""Checks of the public page (``opendata/static``) in headless Chromium against a running
open-data service: every public station on the map, air markers in the API's category
colours (in the DOM and in the screenshot's pixels), no console errors, zh/en, a station's
48 h chart, and no horizontal scroll on a 375 px phone.

Shared by the backfilled-stack test and the standalone one (own stations on real Tansu and
InfluxDB), so the same checks run against both.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 1000}
PHONE = {"width": 375, "height": 812}
REFILL_S = 4.0  # a page load spends ~5 API tokens; the default bucket refills at 2/s
COLOUR_TOLERANCE = 6  # per channel, for antialiasing / colour management in the screenshot


def rgb(hex_colour: str) -> tuple[int, int, int]:
    """``#RRGGBB`` as an (r, g, b) tuple."""
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def close_colour(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether two RGB colours match within :data:`COLOUR_TOLERANCE` per channel."""
    return all(abs(x - y) <= COLOUR_TOLERANCE for x, y in zip(a[:3], b[:3], strict=True))


@dataclass
class ApiView:
    """What the API says: public stations and the latest AQI per air station."""

    stations: list[dict[str, Any]]
    aqi: dict[str, dict[str, Any]]

    @property
    def mapped(self) -> set[str]:
        """Ids of the stations with coordinates (those drawn on the map)."""
        return {
            s["station_id"] for s in self.stations if s.get("lat") is not None and s.get("lon") is not None
        }


def read_api(api: httpx.Client) -> ApiView:
    """The public stations and the latest AQI, read as the page reads them."""
    stations = api.get("/api/v1/stations")
    stations.raise_for_status()
    aqi = api.get("/api/v1/aqi/latest")
    aqi.raise_for_status()
    return ApiView(stations.json()["data"], {a["station_id"]: a for a in aqi.json()["data"]})


def rest(api: httpx.Client, timeout_s: float) -> None:
    """Wait until the client's token bucket is full again (bounded), so a page load is not refused.

    The service rate-limits the /api/ paths only (the page's own files are free), so one page
    load takes its five API reads of the default burst of 30; the bucket refills at 2/s. Other
    tests on the same stack may have emptied it (the 429 test does).
    """
    deadline = time.monotonic() + timeout_s
    while api.get("/api/v1/stations").status_code == 429:
        assert time.monotonic() < deadline, "the open-data API kept answering 429"
        time.sleep(1.0)
    time.sleep(REFILL_S)


@dataclass
class PageLog:
    """Console errors and page errors seen by a page."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        """Record ``page``'s console errors and uncaught exceptions."""

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                self.errors.append(f"console: {msg.text} at {msg.location}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        return page


@contextmanager
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, through Playwright."""
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def open_page(
    b: Browser, url: str, log: PageLog, *, viewport: dict[str, int], locale: str, **kw: Any
) -> Page:
    """A new page at ``url``, waited until its first data load finished."""
    context = b.new_context(viewport=viewport, locale=locale, **kw)  # type: ignore[arg-type]
    page = log.attach(context.new_page())
    page.goto(url)
    expect(page.locator("body[data-ready=true]")).to_have_count(1, timeout=20_000)
    return page


def marker_info(page: Page) -> list[dict[str, Any]]:
    """Every map marker in DOM (paint) order: id, layer, data-color, fill, title, centre and radius."""
    result: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('#map-svg a.marker')].map((a) => {
            const dot = a.querySelector('circle.dot');
            const box = dot.getBoundingClientRect();
            return {
              id: a.dataset.stationId, layer: a.dataset.layer, color: a.dataset.color,
              fill: dot.getAttribute('fill'), title: a.querySelector('title').textContent,
              x: box.left + box.width / 2 + window.scrollX, y: box.top + box.height / 2 + window.scrollY,
              r: box.width / 2,
            };
        })"""
    )
    return result


def check_map(page: Page, view: ApiView, later: ApiView) -> list[dict[str, Any]]:
    """Every public station with coordinates is a marker (all are listed); air ones in the API's colours."""
    expect(page.locator("#map-svg a.marker")).to_have_count(len(view.mapped), timeout=20_000)
    markers = marker_info(page)
    assert {m["id"] for m in markers} == view.mapped, "the map's stations are not the public stations"
    listed = set(
        page.eval_on_selector_all(
            "#station-list li[data-station-id]", "els => els.map(e => e.dataset.stationId)"
        )
    )
    assert listed == {s["station_id"] for s in view.stations}, (
        "the list's stations are not the public stations"
    )
    air = [m for m in markers if m["layer"] == "air"]
    assert air, "no air station on the map"
    for m in air:
        assert m["id"] in view.aqi or m["id"] in later.aqi, f"air marker {m['id']} has no AQI in the API"
        allowed = {a["color"].upper() for a in (view.aqi.get(m["id"]), later.aqi.get(m["id"])) if a}
        assert m["color"].upper() == m["fill"].upper(), m
        assert m["fill"].upper() in allowed, f"{m['id']}: marker {m['fill']}, API {allowed}"
        # name, value and category in words: colour is never the only carrier
        assert "AQI" in m["title"] and m["title"].count(" · ") >= 2, m["title"]
    return markers


def check_screenshot(page: Page, markers: list[dict[str, Any]], path: Path, air_colours: set[str]) -> None:
    """The screenshot shows each marker's colour at its centre (the dot on top there), all AQI colours."""
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000, f"screenshot of {path.stat().st_size} bytes"
    scale = page.evaluate("window.devicePixelRatio")
    image = Image.open(path).convert("RGB")
    seen: set[str] = set()
    for m in markers:
        # the dot painted last at this centre is the one visible there
        top = [o for o in markers if math.dist((o["x"], o["y"]), (m["x"], m["y"])) < o["r"] - 1.5][-1]
        pixel = image.getpixel((round(m["x"] * scale), round(m["y"] * scale)))
        assert isinstance(pixel, tuple)
        assert close_colour(pixel, rgb(top["fill"])), (
            f"{m['id']}: pixel {pixel} at its centre, expected {top['fill']}"
        )
        if top is m and m["layer"] == "air":
            seen.add(m["fill"].upper())
    assert {c.upper() for c in air_colours} <= seen, (
        f"AQI colours {air_colours} not all in the screenshot ({seen})"
    )


def check_layers(page: Page, view: ApiView) -> None:
    """The layer switch: "air" shows exactly the air stations (in AQI colours), "all" every station again."""
    air = {
        s["station_id"] for s in view.stations if s["kind"] == "air" or "air" in s["domains"]
    } & view.mapped
    page.click('#layers button[data-layer="air"]')
    expect(page.locator('#layers button[data-layer="air"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#map-svg a.marker")).to_have_count(len(air))
    shown = marker_info(page)
    assert {m["id"] for m in shown} == air and {m["layer"] for m in shown} == {"air"}
    expect(page.locator("#legend .legend-group")).to_have_count(1)
    page.click('#layers button[data-layer="all"]')
    expect(page.locator("#map-svg a.marker")).to_have_count(len(view.mapped))


def check_languages(page: Page, view: ApiView) -> None:
    """The language toggle changes the UI text and the category names (from the API)."""
    page.click("#lang-zh")
    expect(page.locator("h1")).to_have_text("环境监测公开数据")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator('#layers button[data-layer="air"]')).to_have_text("空气")
    some = next(iter(view.aqi.values()))
    title = page.locator(f'#map-svg a.marker[data-station-id="{some["station_id"]}"] title')
    expect(title).to_contain_text("AQI")
    assert any(a["category_zh"] in (title.text_content() or "") for a in view.aqi.values())
    page.click("#lang-en")
    expect(page.locator("h1")).to_have_text("Open environmental data")
    expect(page.locator('#layers button[data-layer="air"]')).to_have_text("Air")
    assert any(a["category_en"] in (title.text_content() or "") for a in view.aqi.values())


def check_station_page(page: Page, api: httpx.Client, station_id: str) -> int:
    """The station's page (opened from its marker) shows its 48 h AQI chart with every hourly point."""
    page.locator(f'#map-svg a.marker[data-station-id="{station_id}"]').click()
    expect(page.locator("#station-name")).to_have_attribute("data-station-id", station_id, timeout=20_000)
    chart = page.locator("#station-view svg.chart").first
    expect(chart).to_be_visible(timeout=20_000)
    history = api.get(f"/api/v1/stations/{station_id}/history", params={"hours": 48}).json()
    shown = int(chart.get_attribute("data-points") or 0)
    hourly = len(history.get("aqi_hourly") or [])
    assert shown > 0 and abs(shown - hourly) <= 1, f"chart of {shown} points, API has {hourly} hourly AQI"
    assert chart.locator(".pt").count() == shown
    assert chart.locator(".bands rect").count() >= 2, "no AQI category bands"
    return shown


def check_phone(b: Browser, url: str, log: PageLog, view: ApiView, station_id: str) -> None:
    """At 375 × 812 the page and a station page have no horizontal scroll; the map fits the width."""
    page = open_page(
        b, url, log, viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True, device_scale_factor=2
    )
    expect(page.locator("#map-svg a.marker")).to_have_count(len(view.mapped), timeout=20_000)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"horizontal overflow of {overflow} px at 375 px"
    width = page.evaluate("document.getElementById('map-svg').getBoundingClientRect().width")
    assert 300 <= width <= PHONE["width"], width
    expect(page.locator("h1")).to_have_text("环境监测公开数据")  # navigator.language zh-CN
    page.locator(f'#station-list li[data-station-id="{station_id}"] a').tap()
    expect(page.locator("#station-view svg.chart").first).to_be_visible(timeout=20_000)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"horizontal overflow of {overflow} px on the station page at 375 px"
    page.context.close()


def check_public_page(
    base_url: str, shots: Path, *, hidden: frozenset[str] = frozenset(), timeout_s: float = 60.0
) -> None:
    """Every check above against the service at ``base_url``; screenshots go to ``shots``."""
    with httpx.Client(base_url=base_url, timeout=10) as api:
        rest(api, timeout_s)
        view = read_api(api)
        assert view.stations, "the API lists no public station"
        assert not hidden & {s["station_id"] for s in view.stations}, "a hidden station is listed by the API"
        with browser() as b:
            log = PageLog()
            page = open_page(b, f"{base_url}/?lang=en", log, viewport=DESKTOP, locale="en-US")
            later = read_api(api)
            markers = check_map(page, view, later)
            assert not hidden & {m["id"] for m in markers}, "a hidden station is on the map"
            air_colours = {m["fill"] for m in markers if m["layer"] == "air"}
            check_screenshot(page, markers, shots / "public-page.png", air_colours)
            check_layers(page, later)
            check_languages(page, later)
            worst = max(later.aqi.values(), key=lambda a: a["aqi"])["station_id"]
            check_station_page(page, api, worst)
            page.screenshot(path=str(shots / "station-page.png"), full_page=True)
            page.context.close()
            rest(api, timeout_s)
            check_phone(b, f"{base_url}/", log, later, worst)
            assert not log.errors, f"console errors: {log.errors}"
