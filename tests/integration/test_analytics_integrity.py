"""Issue 9 items 3-5 through the running services (registry, collector, worker with analytics on
Tansu, InfluxDB): the same PM10 readings in different orders at four stations give one hourly
value (80.5) and one AQI (72, not 73); the daily O3 8-h maximum takes only the 17 windows of the
day (HJ 663-2013), not the previous evening; a logger's two shipments each get their own
``coldchain_summary`` with the excursions and the MKT of the spec function."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import httpx
import numpy as np
import pytest

from stationflow.stack.components import Component, influx_query
from stationflow.stack.pipeline import Pipeline
from streams.analytics import coldchain
from streams.analytics.station import CHINA
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, wait_for


@pytest.fixture(scope="module")
def pipeline(
    tansu: Component, influxd: Component, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    p, _ = make_pipeline(
        tansu, influxd, tmp_path_factory.mktemp("integrity"), {"STATIONFLOW_STREAMS_REGISTRY": "true"}
    )
    with p:
        p.start("devices")
        p.start("ingest")
        p.start("streams")
        yield p


def _api(p: Pipeline) -> httpx.Client:
    return httpx.Client(base_url=p.registry_url, headers={"X-API-Key": p.registry_admin_key}, timeout=10)


def _register(p: Pipeline, station: dict[str, object], devices: list[dict[str, object]]) -> None:
    with _api(p) as api:
        response = api.post("/stations", json=station)
        assert response.status_code == 201, response.text
        for device in devices:
            response = api.post("/devices", json=device)
            assert response.status_code == 201, response.text


def _publish(p: Pipeline, device: str, readings: list[dict[str, object]]) -> None:
    ep = p.endpoints
    assert ep is not None
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    try:
        pub.publish(f"devices/{device}/readings", json.dumps({"readings": readings})).wait_for_publish(30)
    finally:
        pub.close()


def _rows(p: Pipeline, q: str) -> list[list[object]]:
    ep = p.endpoints
    assert ep is not None
    series = influx_query(ep.influx_url, ep.influx_db, q)
    return series[0]["values"] if series else []


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def _pm10_values() -> list[float]:
    """60 PM10 values with one decimal whose exact mean is 80.5 µg/m³ (pairs summing to 161)."""
    rng = random.Random(9)
    half = [round(rng.uniform(78.0, 83.0), 1) for _ in range(30)]
    return half + [float(Fraction(161) - Fraction(repr(v))) for v in half]


def test_the_same_readings_in_any_order_give_pm10_80_5_and_aqi_72(pipeline: Pipeline) -> None:
    values = _pm10_values()
    assert sum(Fraction(repr(v)) for v in values) / len(values) == Fraction(161, 2)
    # four orders, three of which a float mean turns into something other than 80.5 (the defect:
    # 80.50000000000001 → 81 → AQI 73)
    rng = random.Random(1)
    orders = [values[:]]
    while len(orders) < 4:
        order = values[:]
        rng.shuffle(order)
        if float(np.asarray(order).mean()) != 80.5:
            orders.append(order)
    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    for i in range(len(orders)):
        _register(
            pipeline,
            {"id": f"st-half-{i}", "name": f"Half station {i}", "kind": "air", "region": "440100"},
            [
                {
                    "id": f"air-half-{i}",
                    "type": "air-station",
                    "station_id": f"st-half-{i}",
                    "expected_interval_s": 60,
                }
            ],
        )
    for i, order in enumerate(orders):
        readings: list[dict[str, object]] = [
            {"metric": "pm10", "value": v, "unit": "ug/m3", "ts": iso(hour + timedelta(minutes=m))}
            for m, v in enumerate(order)
        ]
        # past the hour's end + grace: the hour closes
        readings.append({"metric": "pm10", "value": 80.0, "ts": iso(hour + timedelta(minutes=66))})
        _publish(pipeline, f"air-half-{i}", readings)

    def hourly_aqi() -> dict[str, tuple[int, int]]:
        rows = _rows(
            pipeline,
            "SELECT aqi, iaqi_pm10_1h, station FROM aqi WHERE report='hourly' AND station =~ /^st-half-/",
        )
        return {str(r[3]): (int(str(r[1])), int(str(r[2]))) for r in rows}

    assert wait_for(lambda: len(hourly_aqi()) == 4, timeout=120, interval=1.0), hourly_aqi()
    assert hourly_aqi() == {f"st-half-{i}": (72, 72) for i in range(4)}
    means = _rows(
        pipeline, "SELECT value, n, device FROM hourly WHERE metric='pm10' AND device =~ /^air-half-/"
    )
    by_device = {str(r[3]): (r[1], r[2]) for r in means if r[0] == _ns(hour)}
    assert by_device == {f"air-half-{i}": (80.5, 60) for i in range(4)}


def test_daily_o3_8h_max_takes_the_17_windows_inside_the_day(pipeline: Pipeline) -> None:
    now_china = datetime.now(CHINA)
    back = 2 if now_china.hour == 0 else 1  # the whole day and its closing reading in the past
    day_start = (now_china - timedelta(days=back)).replace(hour=0, minute=0, second=0, microsecond=0)
    _register(
        pipeline,
        {"id": "st-o3", "name": "Ozone station", "kind": "air", "region": "440100"},
        [{"id": "air-o3", "type": "air-station", "station_id": "st-o3", "expected_interval_s": 900}],
    )
    readings: list[dict[str, object]] = []
    # the previous evening (17:00-24:00 China time) at 300 µg/m³, the day itself at 100 µg/m³,
    # every 15 minutes; windows ending 01:00…07:00 would reach the evening ((7·300+100)/8 = 275)
    for quarter in range(-7 * 4, 24 * 4):
        ts = day_start + timedelta(minutes=15 * quarter)
        readings.append({"metric": "o3", "value": 300.0 if quarter < 0 else 100.0, "ts": iso(ts)})
    readings.append({"metric": "o3", "value": 100.0, "ts": iso(day_start + timedelta(days=1, minutes=10))})
    _publish(pipeline, "air-o3", readings)

    def daily() -> list[list[object]]:
        return _rows(pipeline, "SELECT aqi, iaqi_o3_8h FROM aqi WHERE report='daily' AND station='st-o3'")

    assert wait_for(lambda: len(daily()) == 1, timeout=120, interval=1.0), daily()
    (row,) = daily()
    assert row[0] == _ns(day_start)
    assert (row[1], row[2]) == (50, 50)  # MDA8 100 µg/m³ → IAQI 50 (the evening would give > 150)
    hourly = _rows(pipeline, "SELECT aqi FROM aqi WHERE report='hourly' AND station='st-o3'")
    assert len(hourly) >= 31  # the evening's hours are there (O3 1-h 300 → IAQI 200), and were left out


def test_two_shipments_get_their_own_excursions_and_the_spec_mkt(pipeline: Pipeline) -> None:
    _register(
        pipeline,
        {"id": "truck-7", "name": "Truck 7", "kind": "coldchain", "region": "440300"},
        [{"id": "logger-7", "type": "coldchain-logger", "station_id": "truck-7", "expected_interval_s": 300}],
    )
    start = (datetime.now(UTC) - timedelta(hours=4)).replace(second=0, microsecond=0)
    # chilled range 0-8 °C: SH-A goes above for 3 readings, SH-B below for 2 and then above for 1
    plan = {
        "SH-A": [4.0, 4.5, 5.0, 10.0, 11.5, 10.5, 6.0, 5.0, 4.0, 4.2, 4.4, 4.1],
        "SH-B": [3.0, 2.0, -1.5, -2.0, 9.0, 3.0, 3.5, 4.0, 4.5, 4.0, 3.8, 3.6],
    }
    series: dict[str, list[tuple[float, float]]] = {}
    readings: list[dict[str, object]] = []
    step = 0
    for shipment, temps in plan.items():
        for temp in temps:
            ts = start + timedelta(minutes=5 * step)
            step += 1
            series.setdefault(shipment, []).append((ts.timestamp(), temp))
            readings.append(
                {"metric": "temperature", "value": temp, "unit": "degC", "ts": iso(ts), "shipment": shipment}
            )
    _publish(pipeline, "logger-7", readings[:12])  # one message per shipment
    _publish(pipeline, "logger-7", readings[12:])

    q = (
        "SELECT last(excursions) AS excursions, last(time_above_s) AS above, last(time_below_s) AS below, "
        "last(longest_s) AS longest, last(mkt_c) AS mkt FROM coldchain_summary WHERE device='logger-7' "
        "GROUP BY shipment"
    )

    def summaries() -> dict[str, dict[str, float]]:
        ep = pipeline.endpoints
        assert ep is not None
        out: dict[str, dict[str, float]] = {}
        for s in influx_query(ep.influx_url, ep.influx_db, q):
            cols, row = s["columns"], s["values"][0]
            out[s["tags"]["shipment"]] = dict(zip(cols[1:], row[1:], strict=True))
        return out

    def expected(shipment: str) -> dict[str, float]:
        times, temps = zip(*series[shipment], strict=True)
        summary = coldchain.excursions(series[shipment], 0.0, 8.0, 0.0, max_gap_s=3600.0)
        longest = summary.longest
        return {
            "excursions": summary.breaches,
            "above": summary.time_above_s,
            "below": summary.time_below_s,
            "longest": longest.duration_s if longest else 0.0,
            "mkt": round(coldchain.mkt_series(times, temps, max_gap_s=3600.0), 3),
        }

    want = {shipment: expected(shipment) for shipment in plan}
    assert want["SH-A"]["excursions"] == 1 and want["SH-A"]["above"] == 15 * 60
    assert want["SH-B"]["excursions"] == 2 and want["SH-B"]["below"] == 10 * 60

    def counted() -> dict[str, tuple[float, ...]]:
        return {k: (v["excursions"], v["above"], v["below"], v["longest"]) for k, v in summaries().items()}

    want_counts = {k: (v["excursions"], v["above"], v["below"], v["longest"]) for k, v in want.items()}
    # the shipment survived registry enrichment: no summary under "_"
    assert wait_for(lambda: counted() == want_counts, timeout=120, interval=1.0), (summaries(), want)
    got = summaries()
    for shipment in plan:  # the worker's MKT is the spec function's (10 K-scale sums, 3 decimals)
        assert got[shipment]["mkt"] == pytest.approx(want[shipment]["mkt"], abs=1.5e-3)
    assert got["SH-A"]["mkt"] != got["SH-B"]["mkt"]
