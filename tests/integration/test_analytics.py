"""Stream analytics through the running services (registry, collector, worker on Tansu,
InfluxDB): the flood hydrograph's exact alert sequence, one alert for a noisy signal at a
threshold, no-data raised and cleared, and the same hourly AQI after a worker is killed
mid-window as without the kill."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stationflow.bench.runner import dump_tasks
from stationflow.contracts import AlertEvent, DeviceRecord, HourlyValues, MetricSpec, Reading, StationInfo
from stationflow.stack.components import Component, influx_query
from stationflow.stack.monitor import scrape_by_label, scrape_samples
from stationflow.stack.pipeline import Pipeline
from stationflow.topics import ALERTS
from streams.analytics import ENGINE
from streams.analytics.device import AnalyticsConfig, DeviceState, update_device
from streams.analytics.rules import Subject
from streams.analytics.station import StationState, update_station
from tests.analytics_scenarios import (
    EXPECTED_LEVEL,
    EXPECTED_RAIN,
    GUARANTEED_LEVEL,
    STEP_S,
    STEPS,
    WARNING_LEVEL,
    hydrograph_start,
    level_at,
    rain_at,
)
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, read_topic, wait_for

NODATA_ENV = {
    "STATIONFLOW_STREAMS_REGISTRY": "true",
    "STATIONFLOW_ANALYTICS_NODATA_GRACE_S": "3",
    "STATIONFLOW_ANALYTICS_NODATA_CHECK_S": "1",
}


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, NODATA_ENV)
    with p:
        p.start("devices")
        p.start("ingest")
        p.start("streams")
        yield p


@pytest.fixture
def split_pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    """The worker as two processes: ``streams`` (raw stage only) and ``analytics``."""
    p, _ = make_pipeline(tansu, influxd, tmp_path, NODATA_ENV)
    p.split_analytics = True
    with p:
        p.start("devices")
        p.start("ingest")
        p.start("streams")
        p.start("analytics")
        yield p


def _api(p: Pipeline) -> httpx.Client:
    return httpx.Client(base_url=p.registry_url, headers={"X-API-Key": p.registry_admin_key}, timeout=10)


def _alerts(p: Pipeline, until: int, timeout: float = 90) -> list[AlertEvent]:
    ep = p.endpoints
    assert ep is not None
    raw = read_topic(ep.kafka, p.topic_prefix + ALERTS, until=lambda v: len(v) >= until, timeout=timeout)
    return [AlertEvent.model_validate_json(v) for v in raw]


def _publish(pub: Publisher, device: str, readings: list[dict[str, object]]) -> None:
    infos = [pub.publish(f"devices/{device}/readings", json.dumps({"readings": [r]})) for r in readings]
    for info in infos:
        info.wait_for_publish(timeout=30)


def test_flood_hydrograph_through_the_pipeline_gives_the_expected_events(pipeline: Pipeline) -> None:
    _flood_hydrograph(pipeline)


def test_with_the_analytics_in_a_process_of_their_own_the_events_are_the_same(
    split_pipeline: Pipeline,
) -> None:
    _flood_hydrograph(split_pipeline)
    logs = split_pipeline.state_dir / "logs"
    raw, analytics = (logs / "streams.log").read_text(), (logs / "analytics.log").read_text()
    assert "partitions assigned" in raw and "analytics ready" not in raw and "alert raised" not in raw
    assert "analytics ready" in analytics and "alert raised" in analytics
    assert f"engine={ENGINE.name}" in analytics  # the worker runs what this process chose
    assert "partitions assigned" not in analytics  # no raw stage there


def _flood_hydrograph(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    began = time.time()
    api = _api(pipeline)
    station = {
        "id": "gauge-hj-01",
        "name": "Han River gauge 1",
        "kind": "gauge",
        "region": "445100",
        "basin": "Han",
        "warning_level": WARNING_LEVEL,
        "guaranteed_level": GUARANTEED_LEVEL,
    }
    assert api.post("/stations", json=station).status_code == 201
    for device, kind in (("lvl-1", "level-gauge"), ("rain-1", "rain-gauge"), ("lvl-noisy", "level-gauge")):
        body = {"id": device, "type": kind, "station_id": "gauge-hj-01", "expected_interval_s": STEP_S}
        assert api.post("/devices", json=body).status_code == 201
    start = hydrograph_start()
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    try:
        at = [iso(start + timedelta(seconds=STEP_S * i)) for i in range(STEPS)]
        _publish(
            pub,
            "lvl-1",
            [{"metric": "level", "value": level_at(i), "unit": "m", "ts": at[i]} for i in range(STEPS)],
        )
        _publish(
            pub,
            "rain-1",
            [{"metric": "rain", "value": rain_at(i), "unit": "mm", "ts": at[i]} for i in range(STEPS)],
        )
        # a noisy level hovering ±4 cm around the warning level for 6 h of 1-minute samples
        noisy = [
            {
                "metric": "level",
                "value": WARNING_LEVEL + (0.04 if i % 2 else -0.04) * ((i % 7) / 6),
                "ts": iso(start + timedelta(minutes=i)),
            }
            for i in range(360)
        ]
        _publish(pub, "lvl-noisy", noisy)
    finally:
        pub.close()

    expected = len(EXPECTED_LEVEL) + len(EXPECTED_RAIN) + 1
    events = _alerts(pipeline, expected)
    by_device: dict[str | None, list[AlertEvent]] = {}
    for e in events:
        by_device.setdefault(e.device_id, []).append(e)

    def seq(device: str) -> list[tuple[str, str, str, int]]:
        return [
            (e.rule, e.state.value, e.severity.value, int((e.observed_at - start).total_seconds()) // STEP_S)
            for e in by_device.get(device, [])
        ]

    assert seq("lvl-1") == EXPECTED_LEVEL
    assert sorted(seq("rain-1"), key=lambda e: (e[0], e[3])) == sorted(
        EXPECTED_RAIN, key=lambda e: (e[0], e[3])
    )
    noisy_events = [(e.rule, e.state.value, e.severity.value) for e in by_device.get("lvl-noisy", [])]
    # the first sample is exactly at the warning level; then nothing, however long it hovers
    assert noisy_events == [("flood.level", "raised", "moderate")]
    first = by_device["lvl-1"][0]
    assert first.station_id == "gauge-hj-01" and first.region == "445100" and first.basin == "Han"
    assert first.alert_id == "flood.level:device:lvl-1" and "12" in first.explanation_zh

    # derived values and the alert annotations are in InfluxDB
    def _count(q: str) -> int:
        series = influx_query(ep.influx_url, ep.influx_db, q)
        return len(series[0]["values"]) if series else 0

    assert wait_for(
        lambda: _count("SELECT * FROM alerts WHERE device='lvl-1'") == len(EXPECTED_LEVEL), timeout=30
    )
    assert _count("SELECT sum_24h FROM rainfall_sum WHERE device='rain-1' AND sum_24h = 72") >= 1
    assert _count("SELECT rise_per_h FROM level_trend WHERE device='lvl-1'") >= 1
    assert _count("SELECT value FROM hourly WHERE device='lvl-1' AND valid = 1") >= 10

    # the process running the analytics says when its last batch was done (the bench's clock)
    analyst = "analytics" if "analytics" in pipeline.services else "streams"
    url = f"http://127.0.0.1:{pipeline.metrics_ports[analyst]}/metrics"
    (done_at,) = scrape_samples(url, "stationflow_analytics_last_batch_done_timestamp_seconds")
    assert began < done_at <= time.time()
    # a worker running both stages takes its raw stage's documents decoded (streams.handoff):
    # the same events as decoding them, above; an analytics-only process decodes them all
    handoff = scrape_by_label(url, "stationflow_analytics_handoff_total", "result")
    if analyst == "streams":
        assert handoff.get("hit", 0) > 0, handoff
    else:
        assert handoff.get("hit", 0) == 0 and handoff.get("miss", 0) == 0, handoff

    # a device's next update takes the state its last one left decoded (streams.livestates)
    def states() -> dict[str, float]:
        return scrape_by_label(url, "stationflow_analytics_states_total", "result")

    updates = sum(states().values())
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    try:
        again = {"metric": "level", "value": WARNING_LEVEL, "ts": iso(start + timedelta(minutes=360))}
        _publish(pub, "lvl-noisy", [again])
    finally:
        pub.close()
    assert wait_for(lambda: sum(states().values()) > updates, timeout=30), states()
    assert states().get("kept", 0) >= 1, states()


def test_no_data_alert_is_raised_within_interval_plus_grace_and_cleared(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    api = _api(pipeline)
    assert (
        api.post("/stations", json={"id": "st-nd", "name": "Quiet station", "kind": "gauge"}).status_code
        == 201
    )
    body = {"id": "quiet-1", "type": "level-gauge", "station_id": "st-nd", "expected_interval_s": 5}
    assert api.post("/devices", json=body).status_code == 201
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    try:
        _publish(pub, "quiet-1", [{"metric": "level", "value": 3.0, "ts": iso(datetime.now(UTC))}])
        raised = _alerts(pipeline, 1, timeout=60)
        assert [(e.rule, e.state.value) for e in raised] == [("health.offline", "raised")]
        # silent for longer than 5 s + 3 s grace; the check runs every second. The value is the
        # silence rounded to the millisecond, so a check 0.4 ms past the limit reports 8.0.
        assert raised[0].value is not None and 8.0 <= raised[0].value < 8.0 + 6.0
        _publish(pub, "quiet-1", [{"metric": "level", "value": 3.1, "ts": iso(datetime.now(UTC))}])
        events = _alerts(pipeline, 2, timeout=60)
    finally:
        pub.close()
    assert [(e.rule, e.state.value, e.seq) for e in events] == [
        ("health.offline", "raised", 1),
        ("health.offline", "cleared", 2),
    ]


AIR = ("pm25", "pm10", "so2", "no2", "co", "o3")


def _air_value(metric: str, minute: int) -> float:
    base = {"pm25": 80.0, "pm10": 120.0, "so2": 12.0, "no2": 45.0, "co": 0.9, "o3": 110.0}[metric]
    return round(base + 0.37 * ((minute * 7 + len(metric)) % 23), 2)


def _air_record() -> DeviceRecord:
    return DeviceRecord(
        device_id="air-k1",
        device_type="air-station",
        domain="air",
        station=StationInfo(station_id="st-air", name="Air station", region="440100"),
        metrics={
            m: MetricSpec(metric=m, unit="mg/m3" if m == "co" else "ug/m3", min=0, max=10000) for m in AIR
        },
        expected_interval_s=60,
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def _expected_hourly_aqi(start: datetime, minutes: int) -> dict[datetime, int]:
    """The uninterrupted run: the same readings through the pure engine, in one process."""
    state, station = DeviceState(), StationState()
    record = _air_record()
    subject = Subject(kind="station", id="st-air", domain="air", station_id="st-air")
    result: dict[datetime, int] = {}
    for minute in range(minutes):
        ts = start + timedelta(minutes=minute)
        readings = [Reading(metric=m, value=_air_value(m, minute), ts=ts) for m in AIR]
        out = update_device(
            state, "air-k1", readings, record=record, domain="air", now=0.0, config=AnalyticsConfig()
        )
        for hv in out.hourly:
            res = update_station(
                station,
                HourlyValues.model_validate(hv.model_dump()),
                subject=subject,
                attributes={},
                overrides={},
            )
            if res.hourly_aqi is not None and res.hourly_aqi.aqi is not None:
                result[hv.hour] = res.hourly_aqi.aqi
    return result


@pytest.mark.slow
def test_worker_killed_mid_window_gives_the_same_hourly_aqi(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    api = _api(pipeline)
    assert (
        api.post(
            "/stations", json={"id": "st-air", "name": "Air station", "kind": "air", "region": "440100"}
        ).status_code
        == 201
    )
    body = {"id": "air-k1", "type": "air-station", "station_id": "st-air", "expected_interval_s": 60}
    assert api.post("/devices", json=body).status_code == 201
    now = datetime.now(UTC)
    start = (now - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    minutes = 4 * 60
    expected = _expected_hourly_aqi(start, minutes)
    assert len(expected) == 3  # hours 0..2 close; hour 3 stays open

    def message(minute: int) -> dict[str, object]:
        ts = iso(start + timedelta(minutes=minute))
        return {"readings": [{"metric": m, "value": _air_value(m, minute), "ts": ts} for m in AIR]}

    def stored_aqi() -> dict[datetime, int]:
        series = influx_query(
            ep.influx_url, ep.influx_db, "SELECT aqi FROM aqi WHERE station='st-air' AND report='hourly'"
        )
        if not series:
            return {}
        return {datetime.fromtimestamp(t / 1e9, UTC): int(v) for t, v in series[0]["values"]}

    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    try:
        infos = [pub.publish("devices/air-k1/readings", json.dumps(message(m))) for m in range(100)]
        for info in infos:
            info.wait_for_publish(timeout=30)
        # the worker has analysed the first hour (its AQI is stored), and is mid-way in the second
        assert wait_for(lambda: start in stored_aqi(), timeout=60)
        pipeline.services["streams"].signal(signal.SIGKILL)
        assert wait_for(lambda: not pipeline.services["streams"].running, timeout=10)
        infos = [pub.publish("devices/air-k1/readings", json.dumps(message(m))) for m in range(100, minutes)]
        for info in infos:
            info.wait_for_publish(timeout=30)
        pipeline.start("streams")
        assert wait_for(lambda: len(stored_aqi()) >= 3, timeout=90), stored_aqi()
    finally:
        pub.close()
    assert stored_aqi() == expected
    # The restarted worker is sent again what the first did not commit, and its restored state
    # already holds some of it (hours closed): those records are skipped, not counted as late.
    (dq,) = influx_query(
        ep.influx_url, ep.influx_db, "SELECT last(late) FROM data_quality WHERE device='air-k1'"
    )
    assert dq["values"][0][1] == 0


@pytest.mark.slow
def test_a_reading_sent_again_after_a_worker_restart_is_counted_once(pipeline: Pipeline) -> None:
    """The raw stage remembers recent readings to drop duplicates, but only in memory: after a
    worker restart a message sent again (a device's resend, or the raw batches the worker had not
    committed) reaches the analytics as new records. Its late and flagged readings are counted
    once: the device's state remembers what it counted."""
    ep = pipeline.endpoints
    assert ep is not None
    api = _api(pipeline)
    station = {"id": "st-dup", "name": "Dup station", "kind": "air", "region": "440100"}
    assert api.post("/stations", json=station).status_code == 201
    body = {"id": "air-dup", "type": "air-station", "station_id": "st-dup", "expected_interval_s": 60}
    assert api.post("/devices", json=body).status_code == 201
    start = (datetime.now(UTC) - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)

    def at(minutes: float) -> str:
        return iso(start + timedelta(minutes=minutes))

    first = {"readings": [{"metric": "pm25", "value": 30.0, "ts": at(0)}]}
    closing = {"readings": [{"metric": "pm25", "value": 31.0, "ts": at(120)}]}  # the first hour closes
    again = {
        "readings": [
            {"metric": "pm25", "value": 99.0, "ts": at(30)},  # late: its hour has closed
            {"metric": "pm10", "value": 50.0, "ts": at(121), "quality": "F"},  # flagged
        ]
    }
    later = {"readings": [{"metric": "pm25", "value": 32.0, "ts": at(122)}]}

    def counts(since_minute: int) -> tuple[int, int] | None:
        """The newest data_quality point's (late, excluded), if one is as new as ``since_minute``."""
        series = influx_query(
            ep.influx_url, ep.influx_db, "SELECT late, excluded FROM data_quality WHERE device='air-dup'"
        )
        since_ns = (start + timedelta(minutes=since_minute)).timestamp() * 1e9
        points = [v for v in series[0]["values"] if v[0] >= since_ns] if series else []
        if not points:
            return None
        _, late, excluded = points[-1]
        return int(late), int(excluded)

    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    try:
        for doc in (first, closing):
            pub.publish("devices/air-dup/readings", json.dumps(doc)).wait_for_publish(timeout=30)
        # the first hour has closed before the late reading comes (in one batch, the readings
        # would be applied in event-time order, the late one while its hour was still open)
        assert wait_for(lambda: counts(120) is not None, timeout=60), counts(0)
        pub.publish("devices/air-dup/readings", json.dumps(again)).wait_for_publish(timeout=30)
        assert wait_for(lambda: counts(121) == (1, 1), timeout=60), counts(0)
        pipeline.services["streams"].signal(signal.SIGKILL)
        assert wait_for(lambda: not pipeline.services["streams"].running, timeout=10)
        pipeline.start("streams")
        for doc in (again, later):
            pub.publish("devices/air-dup/readings", json.dumps(doc)).wait_for_publish(timeout=30)
        assert wait_for(lambda: counts(122) is not None, timeout=90), counts(0)
    finally:
        pub.close()
    assert counts(122) == (1, 1)  # not (2, 2): the resent late and flagged readings counted once


def test_a_stalled_bench_run_keeps_what_every_worker_task_awaited(pipeline: Pipeline) -> None:
    """`stationflow bench` sends SIGUSR1 to the workers when the analytics did not catch up:
    their logs, kept with the failed run, then show every asyncio task and where it waits, down
    to the batch generator the analytics agent is in."""
    log = pipeline.state_dir / "logs" / "streams.log"
    assert wait_for(lambda: "analytics ready" in log.read_text(errors="replace"), timeout=60)
    before = log.stat().st_size
    dump_tasks(pipeline, settle_s=0.0)

    def dumped() -> str:
        return log.read_bytes()[before:].decode(errors="replace")

    assert wait_for(lambda: "_take_until_quiet" in dumped(), timeout=20), dumped()[-2000:]
    assert "in AnalyticsAgents.analyse\n" in dumped()
    assert pipeline.services["streams"].running  # a dump, not a stop
