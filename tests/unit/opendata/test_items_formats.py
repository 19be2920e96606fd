"""Items from InfluxQL rows (AQI, water, level, rain), public stations from records, CSV and GeoJSON."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from opendata.formats import to_csv, to_geojson
from opendata.schemas import AqiItem, LevelItem, RainItem, StationItem, WaterItem
from stationflow.contracts import DeviceRecord, StationInfo
from stationview import items
from stationview.state import board_rows, is_offline
from stationview.stations import StationEntry, public_stations, stations_from_records
from streams.analytics.aqi import CATEGORIES
from streams.analytics.water import class_number

T0 = 1_796_090_400  # 2026-12-01T02:00:00Z


def entry(sid: str = "st-a", **kw: object) -> StationEntry:
    base: dict[str, object] = {
        "station_id": sid, "name": "A 站", "kind": "air", "lat": 30.25, "lon": 120.16, "region": "330100",
        "basin": "qiantang", "public": True, "domains": ("air",), "devices": ("aq-1",),
        "expected_interval_s": 60, "warning_level_m": None, "guaranteed_level_m": None, "target": None,
    }  # fmt: skip
    base.update(kw)
    return StationEntry(**base)  # type: ignore[arg-type]


def record(
    dev: str, sid: str, *, public: bool, kind: str = "air", domain: str = "air", **attrs: object
) -> DeviceRecord:
    info = StationInfo(
        station_id=sid, name=sid, lat=1.0, lon=2.0, attributes={"kind": kind, **attrs}, public=public
    )
    return DeviceRecord(
        device_id=dev, device_type="t", domain=domain, station=info, updated_at=datetime.now(UTC)
    )


@pytest.mark.parametrize(
    ("aqi", "level"), [(0, 1), (50, 1), (51, 2), (101, 3), (151, 4), (201, 5), (301, 6), (520, 6)]
)
def test_aqi_item_category_from_the_standard_table(aqi: int, level: int) -> None:
    row = {"time": T0, "aqi": aqi, "primary": "pm2_5_24h,o3_8h,pm2_5_1h", "standard": "HJ 633-2026",
           "iaqi_pm2_5_24h": aqi, "iaqi_o3_8h": 10, "iaqi_so2_1h": None, "report": "hourly"}  # fmt: skip
    item = items.aqi_item(entry(), row)
    assert item is not None
    cat = CATEGORIES[level - 1]
    assert (item["level"], item["category_zh"], item["category_en"], item["color"]) == (
        level, cat.name_cn, cat.name_en, cat.colour.hex,
    )  # fmt: skip
    assert item["primary"] == ["PM2.5", "O3"]  # indicators folded to pollutants, first seen first
    assert item["iaqi"] == {"o3_8h": 10, "pm2_5_24h": aqi}
    assert item["time"] == "2026-12-01T02:00:00Z"
    AqiItem.model_validate(item)


def test_aqi_item_colours_are_the_spec_hexes() -> None:
    hexes = [items.aqi_item(entry(), {"time": T0, "aqi": a})["color"] for a in (10, 60, 120, 180, 250, 400)]  # type: ignore[index]
    assert hexes == ["#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#99004C", "#7E0023"]


def test_aqi_item_without_aqi_is_none() -> None:
    assert items.aqi_item(entry(), {"time": T0, "aqi": None}) is None
    assert items.aqi_item(entry(), {"time": T0}) is None


@pytest.mark.parametrize(
    ("klass", "target", "label", "meets", "colour"),
    [(1, 3, "I", True, "#1E90FF"), (3, 3, "III", True, "#00B050"), (4, 3, "IV", False, "#FFD700"),
     (6, 2, "劣V", False, "#FF0000"), (5, None, "V", None, "#FF7E00")],
)  # fmt: skip
def test_water_item(klass: int, target: int | None, label: str, meets: bool | None, colour: str) -> None:
    st = entry("st-w", kind="water", target=target)
    item = items.water_item(st, {"time": T0, "class": klass, "label": "x", "deciding": "nh3_n,tp"})
    assert item is not None
    assert (item["class"], item["label"], item["label_zh"], item["meets_target"], item["color"]) == (
        klass, label, f"{label}类", meets, colour,
    )  # fmt: skip
    assert item["deciding"] == ["nh3_n", "tp"]
    WaterItem.model_validate(item)
    assert items.water_item(st, {"time": T0, "class": 7}) is None


@pytest.mark.parametrize(
    ("level", "state", "margin"),
    [(20.0, "normal", 3.5), (23.0, "approaching", 0.5), (23.5, "above_warning", 0.0),
     (24.2, "above_warning", -0.7), (25.0, "above_guaranteed", -1.5)],
)  # fmt: skip
def test_level_item_states(level: float, state: str, margin: float) -> None:
    st = entry("st-g", kind="gauge", warning_level_m=23.5, guaranteed_level_m=25.0)
    item = items.level_item(st, {"time": T0, "level": level, "rise": 0.31234})
    assert item is not None
    assert (item["state"], item["margin_m"], item["rise_m_per_h"]) == (state, margin, 0.312)
    assert item["color"] == items.LEVEL_COLOURS[state]
    LevelItem.model_validate(item)


def test_level_without_warning_level_has_no_state() -> None:
    item = items.level_item(entry("st-g", kind="gauge"), {"time": T0, "level": 3.0})
    assert item is not None and item["state"] is None and item["margin_m"] is None and item["color"] is None


@pytest.mark.parametrize(
    ("mm", "en", "zh"), [(0.0, None, None), (12.0, "moderate rain", "中雨"), (60.0, "rainstorm", "暴雨")]
)
def test_rain_item_grade(mm: float, en: str | None, zh: str | None) -> None:
    row = {
        "time": T0,
        "sum_1h": 1.04,
        "sum_3h": 2.0,
        "sum_6h": 3.0,
        "sum_12h": 4.0,
        "sum_24h": mm,
        "storm_signal": 0,
    }
    item = items.rain_item(entry("st-r", kind="rain"), row)
    assert item is not None
    assert (item["grade_24h"], item["grade_24h_zh"], item["sum_1h"]) == (en, zh, 1.0)
    RainItem.model_validate(item)


def test_public_stations_only_public_and_never_coldchain() -> None:
    records = [
        record("aq-1", "st-a", public=True),
        record("aq-2", "st-a", public=True),
        record("wq-1", "st-w", public=False, kind="water", domain="water", target_class="III"),
        record("cc-1", "st-c", public=True, kind="coldchain", domain="coldchain"),
        record("lv-1", "st-g", public=True, kind="gauge", domain="hydro", warning_level=23.5),
    ]
    everything = stations_from_records(records)
    assert set(everything) == {"st-a", "st-w", "st-g"}
    assert everything["st-a"].devices == ("aq-1", "aq-2")
    assert everything["st-w"].target == 3 and everything["st-g"].warning_level_m == 23.5
    assert set(public_stations(records)) == {"st-a", "st-g"}
    assert "st-c" in stations_from_records(records, include_coldchain=True)
    StationItem.model_validate({**everything["st-a"].describe(), "kind": "air", "domains": ["air"]})


@pytest.mark.parametrize(
    ("value", "want"), [("III", 3), ("v", 5), (2, 2), (2.0, 2), ("劣V", None), (6, None), (True, None)]
)
def test_target_class(value: object, want: int | None) -> None:
    assert class_number(value) == want


def test_offline_rule() -> None:
    assert is_offline(None, 60, 1000.0)
    assert not is_offline(1000.0 - 180, 60, 1000.0) and is_offline(1000.0 - 181, 60, 1000.0)
    assert not is_offline(1000.0 - 600, None, 1000.0) and is_offline(1000.0 - 601, None, 1000.0)
    assert not is_offline(1000.0 - 60, 5, 1000.0) and is_offline(1000.0 - 61, 5, 1000.0)  # at least 60 s


def test_board_rows_join() -> None:
    now = datetime.fromtimestamp(T0, UTC) + timedelta(minutes=1)
    stations = {
        "st-a": entry(),
        "st-g": entry("st-g", kind="gauge", public=False, warning_level_m=23.5, guaranteed_level_m=25.0),
    }
    rows = board_rows(
        stations,
        seen={"st-a": T0},
        aqi={"st-a": {"time": T0, "aqi": 160, "primary": "pm10_1h"}},
        water={},
        levels={"st-g": {"time": T0, "level": 24.0}},
        now=now,
    )
    a, g = rows
    assert (a.aqi, a.aqi_level, a.aqi_color, a.primary, a.offline) == (160, 4, "#FF0000", ["PM10"], False)
    assert (g.offline, g.last_seen, g.level_state, g.margin_m, g.public) == (
        True,
        None,
        "above_warning",
        -0.5,
        False,
    )
    assert a.model_dump(mode="json")["last_seen"] == "2026-12-01T02:00:00Z"


def test_csv_quotes_and_flattens() -> None:
    data: list[dict[str, object]] = [
        {
            "station_id": "s,1",
            "name": '名 "x"',
            "primary": ["PM2.5", "O3"],
            "iaqi": {"pm10_1h": 3},
            "target": None,
            "ok": True,
        },
        {"station_id": "s2", "extra": 1.5},
    ]
    text = to_csv(data)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["station_id", "name", "primary", "iaqi", "target", "ok", "extra"]
    assert rows[1] == ["s,1", '名 "x"', "PM2.5;O3", "pm10_1h=3", "", "true", ""]
    assert rows[2] == ["s2", "", "", "", "", "", "1.5"]
    assert to_csv([]) == "\r\n"


def test_geojson_points_lon_lat_and_skips_missing_coordinates() -> None:
    data: list[dict[str, object]] = [
        {"station_id": "a", "lat": 30.0, "lon": 120.0, "aqi": 5},
        {"station_id": "b", "lat": None, "lon": 1.0},
    ]
    fc = to_geojson(data)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    feature = fc["features"][0]
    assert feature["geometry"] == {"type": "Point", "coordinates": [120.0, 30.0]}
    assert feature["properties"]["aqi"] == 5 and feature["id"] == "a"


def test_iso_times() -> None:
    assert items.iso(T0) == "2026-12-01T02:00:00Z"
    assert items.iso(T0 + 0.25) == "2026-12-01T02:00:00.250Z"
    assert items.iso(None) is None
