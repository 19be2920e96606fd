"""Issue 11, history from the first minute: within two minutes of launching ``stationflow up``
the backfilled 48 h are analysed: hourly and daily AQI for every air station, rainfall sums,
water classes, and the alerts of the backfilled episodes in the alert service's history."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from stationflow.stack.components import influx_query
from tests.integration.backfilled.conftest import BackfilledStack
from tests.integration.pipeline_utils import wait_for

pytestmark = pytest.mark.integration


def _air_stations(stack: BackfilledStack) -> dict[str, str]:
    """Every device of an air type in the registry (public or hidden) → its station id."""
    headers = {"X-API-Key": stack.registry_key}
    with httpx.Client(base_url=stack.registry_url, headers=headers, timeout=10) as http:
        types = http.get("/device-types").raise_for_status().json()["data"]
        air = {t["name"] for t in types if t["domain"] == "air"}
        devices = http.get("/devices", params={"limit": 1000}).raise_for_status().json()["data"]
    return {d["id"]: d["station_id"] for d in devices if d["type"] in air}


def _count_by_station(stack: BackfilledStack, q: str) -> dict[str, int]:
    try:
        series = influx_query(stack.influx_url, stack.influx_db, q)
    except Exception:  # noqa: BLE001 - not up yet: polled again
        return {}
    return {s["tags"]["station"]: int(s["values"][0][1]) for s in series}


def _alerts(stack: BackfilledStack, rule: str) -> list[dict[str, Any]]:
    try:
        response = httpx.get(
            f"{stack.alerts_url}/alerts",
            params={"rule": rule, "limit": 1000},
            headers={"X-API-Key": stack.alerts_key},
            timeout=5,
        )
    except httpx.HTTPError:
        return []
    return list(response.json()) if response.status_code == 200 else []


def _within(stack: BackfilledStack, what: Callable[[], str], check: Callable[[], bool]) -> None:
    """``check`` holds within the two minutes; else say what it last saw (``what``, called then)."""
    assert wait_for(check, timeout=stack.remaining(), interval=1.0), (
        f"{what()}: not there within two minutes of start\n{stack.output()[-3000:]}"
    )


def test_every_air_station_has_hourly_and_daily_aqi(backfilled: BackfilledStack) -> None:
    stations = _air_stations(backfilled)
    assert {"air-hj-001", "air-dtu-001", "air-senml-001", "air-003"} <= set(stations), stations
    hourly: dict[str, int] = {}
    daily: dict[str, int] = {}

    def complete() -> bool:
        nonlocal hourly, daily
        base = "SELECT count(aqi) FROM aqi WHERE report='{}' AND time > now() - 3d GROUP BY station"
        hourly = _count_by_station(backfilled, base.format("hourly"))
        daily = _count_by_station(backfilled, base.format("daily"))
        # 48 h of history: at least 40 closed hours and one whole China-time day per station
        return all(hourly.get(s, 0) >= 40 and daily.get(s, 0) >= 1 for s in stations.values())

    names = sorted(stations.values())
    _within(backfilled, lambda: f"hourly {hourly} / daily {daily} AQI of {names}", complete)
    # the analysed hours can be complete before the last hours of history are acknowledged
    _within(
        backfilled,
        lambda: "the backfill's summary line",
        lambda: "backfill done: 48 h" in backfilled.output(),
    )


def test_pollution_episode_categories_and_primary_pollutants(backfilled: BackfilledStack) -> None:
    levels: set[int] = set()
    primaries: set[str] = set()

    def varied() -> bool:
        try:
            series = influx_query(
                backfilled.influx_url,
                backfilled.influx_db,
                "SELECT level, \"primary\" FROM aqi WHERE report='hourly' AND time > now() - 3d",
            )
        except Exception:  # noqa: BLE001 - polled again
            return False
        for s in series:
            for _, level, primary in s["values"]:
                if level is not None:
                    levels.add(int(level))
                primaries.update(p for p in re.split(r"[,\s]+", primary or "") if p)
        pollutants = {re.sub(r"_(1h|8h|24h)$", "", p) for p in primaries}  # pm2_5_1h → pm2_5
        return len(levels) >= 3 and len(pollutants) >= 2

    _within(backfilled, lambda: f"AQI categories {levels}, primary pollutants {primaries}", varied)
    assert {1, 3, 4, 5} <= levels  # 优, 轻度, 中度, 重度: the haze episode went through them


def test_flood_wave_alert_raised_in_the_past_and_resolved(backfilled: BackfilledStack) -> None:
    started = datetime.now(UTC) - timedelta(seconds=120 - backfilled.remaining())
    found: list[dict[str, Any]] = []

    def flood() -> bool:
        found[:] = _alerts(backfilled, "flood.level")
        return any(a["station_id"] == "st-river-001" and a["status"] == "resolved" for a in found)

    _within(backfilled, lambda: f"flood.level alerts {found}", flood)
    (alert,) = [a for a in found if a["station_id"] == "st-river-001"]
    raised = datetime.fromisoformat(alert["raised_at"])
    assert raised < started - timedelta(hours=2), alert  # the backfilled storm, not live data
    assert alert["resolved_by"] == "condition cleared"
    assert max(v for _, v in alert["trend"]) >= 22.5  # river-001's warning level: base 20 m + 2.5 m


def test_rainfall_sums_and_water_classes_exist(backfilled: BackfilledStack) -> None:
    rain: dict[str, int] = {}
    water: dict[str, int] = {}

    def stored() -> bool:
        nonlocal rain, water
        rain = _count_by_station(
            backfilled, "SELECT count(sum_24h) FROM rainfall_sum WHERE time > now() - 3d GROUP BY station"
        )
        water = _count_by_station(
            backfilled, "SELECT count(class) FROM water_quality WHERE time > now() - 3d GROUP BY station"
        )
        return rain.get("st-rain-001", 0) > 0 and all(
            water.get(s, 0) >= 40 for s in ("st-water-001", "st-water-002", "st-water-hj-001")
        )

    _within(backfilled, lambda: f"rainfall sums {rain}, water classes {water}", stored)
    series = influx_query(
        backfilled.influx_url,
        backfilled.influx_db,
        "SELECT max(sum_24h) FROM rainfall_sum WHERE station='st-rain-001' AND time > now() - 3d",
    )
    assert series and series[0]["values"][0][1] >= 50.0  # the storm: 暴雨 over 24 h


def test_water_class_and_cold_chain_excursion_alerts(backfilled: BackfilledStack) -> None:
    water: list[dict[str, Any]] = []
    cold: list[dict[str, Any]] = []
    storm: list[dict[str, Any]] = []

    def raised() -> bool:
        water[:] = [a for a in _alerts(backfilled, "water.class") if a["station_id"] == "st-water-001"]
        cold[:] = [a for a in _alerts(backfilled, "coldchain.excursion") if a["device_id"] == "cold-001"]
        storm[:] = [a for a in _alerts(backfilled, "rain.*") if a["device_id"] == "rain-001"]
        # raised and resolved again as the analytics go through the history: wait for both
        resolved = all(a and a[0]["status"] == "resolved" for a in (water, cold))
        return bool(water and cold and storm) and resolved

    _within(backfilled, lambda: f"water.class {water}, coldchain.excursion {cold}, rain {storm}", raised)
    assert water[0]["status"] == "resolved"  # back at its target before the end of the history
    assert max(v for _, v in water[0]["trend"]) >= 4.0  # class IV against target II
    assert cold[0]["status"] == "resolved"  # the fridge came back below 8 °C
    assert {a["rule"] for a in storm} >= {"rain.storm_signal"}
    cold_others = [a for a in _alerts(backfilled, "coldchain.excursion") if a["device_id"] != "cold-001"]
    assert not cold_others, cold_others  # the freezer has its own range; the other fridge had no excursion


def test_history_arrives_in_order_and_no_device_is_called_offline(backfilled: BackfilledStack) -> None:
    """The live simulator starts after the history: no reading is late, no device goes offline."""
    late: dict[str, int] = {}

    def every_device_reported() -> bool:
        nonlocal late
        try:
            series = influx_query(
                backfilled.influx_url,
                backfilled.influx_db,
                "SELECT last(late) FROM data_quality WHERE time > now() - 10m GROUP BY device",
            )
        except Exception:  # noqa: BLE001 - polled again
            return False
        late = {s["tags"]["device"]: int(s["values"][0][1]) for s in series}
        return len(late) >= 17  # the default fleet with its protocol devices

    _within(backfilled, lambda: f"data quality of every device {late}", every_device_reported)
    assert not {d: n for d, n in late.items() if n}, late  # a reading behind its device's hour: late
    assert not _alerts(backfilled, "health.offline")
