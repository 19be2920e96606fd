"""`stationflow up` stopped (SIGTERM) while readings flow and started again forgets nothing.

Through the real processes, with the same state dir and ports both times: every reading a
device had acknowledged is stored once (a device of the test publishing right up to the
stop, and the simulated fleet), the dead letters from before are still listed, an hour of
air readings split by the restart gives the hourly AQI of the uninterrupted series, and an
open flood alert stays open and is resolved by the clearing after the restart: one alert.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulator.fleet import default_fleet
from simulator.mqtt import is_mqtt
from stationflow.contracts import DeviceRecord, HourlyValues, MetricSpec, Reading, StationInfo
from stationflow.stack.archive import ArchiveStore
from stationflow.stack.components import influx_query
from stationflow.stack.monitor import count_points
from stationflow.stack.ports import free_ports
from stationflow.topics import DEADLETTER
from streams.analytics.device import AnalyticsConfig, DeviceState, update_device
from streams.analytics.rules import Subject
from streams.analytics.station import StationState, update_station
from tests.integration.pipeline_utils import iso, wait_for

pytestmark = pytest.mark.slow

READY_WITHIN_S = 120.0
STOP_WITHIN_S = 150.0
DB = "stationflow"
AIR = ("pm25", "pm10", "so2", "no2", "co", "o3")
FLOW_RATE = 40.0  # messages/s of the test's own device while the stack stops


@dataclass
class Up:
    """One `stationflow up` run on fixed ports and a state dir."""

    state: Path
    log: Path
    ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        p = self.ports
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stationflow.cli", "up", "--state-dir", str(self.state),
             "--mqtt-port", str(p["mqtt"]), "--kafka-port", str(p["kafka"]),
             "--influx-port", str(p["influx"]), "--ingest-metrics-port", str(p["m1"]),
             "--streams-metrics-port", str(p["m2"]), "--registry-port", str(p["registry"]),
             "--alerts-port", str(p["alerts"]), "--opendata-port", str(p["opendata"]),
             "--hj212-port", str(p["hj212"]), "--sl651-port", str(p["sl651"]),
             "--tcp-metrics-port", str(p["m3"]), "--interval", "1", "--backfill", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        out.close()
        start = self.log.stat().st_size

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                return True
            try:
                return "stationflow is running" in self.text(start) and count_points(self.influx, DB) > 0
            except Exception:  # noqa: BLE001 - not up yet
                return False

        assert wait_for(ready, timeout=READY_WITHIN_S, interval=0.5), self.text()[-3000:]
        assert self.proc.poll() is None, self.text()[-3000:]

    def stop(self) -> str:
        """SIGTERM, as a supervisor sends it; the output of this run."""
        assert self.proc is not None
        start = self.log.stat().st_size
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=STOP_WITHIN_S)
        assert self.proc.returncode == 0, self.text()[-3000:]
        return self.text(start)

    def kill(self) -> None:
        """SIGKILL `up` and every process it started (they run in their own sessions)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    child.kill()
            self.proc.kill()
            self.proc.wait(timeout=10)

    def text(self, start: int = 0) -> str:
        return self.log.read_bytes()[start:].decode(errors="replace")

    @property
    def influx(self) -> str:
        return f"http://127.0.0.1:{self.ports['influx']}"

    def registry(self) -> httpx.Client:
        key = (self.state / "registry-admin-key").read_text().strip()
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.ports['registry']}", headers={"X-API-Key": key}, timeout=10
        )

    def alerts(self) -> httpx.Client:
        key = (self.state / "alerts-admin-key").read_text().strip()
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.ports['alerts']}", headers={"X-API-Key": key}, timeout=10
        )

    def device(self, client_id: str) -> mqtt.Client:
        """An MQTT v5 client with the simulator's account (it may publish for any device)."""
        accounts = json.loads((self.state / "service-accounts.json").read_text())
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set("stationflow-simulator", accounts["stationflow-simulator"])
        client.max_inflight_messages_set(100)
        client.connect("127.0.0.1", self.ports["mqtt"])
        client.loop_start()
        return client


class Flow(threading.Thread):
    """A device publishing unique level readings (QoS 1) until the broker goes."""

    def __init__(self, client: mqtt.Client, device: str) -> None:
        super().__init__(daemon=True)
        self.client, self.device = client, device
        self.start_ts = datetime.now(UTC) - timedelta(minutes=30)
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.halt = threading.Event()

    @property
    def published(self) -> int:
        return len(self.infos)

    @property
    def acked(self) -> int:
        """Messages the broker acknowledged (PUBACK)."""
        return sum(info.is_published() for info in list(self.infos))

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.halt.is_set():
            i = len(self.infos)
            ts = iso(self.start_ts + timedelta(milliseconds=i))
            body = json.dumps({"readings": [{"metric": "level", "value": 1 + i / 10_000, "ts": ts}]})
            info = self.client.publish(f"devices/{self.device}/readings", body, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # the broker went away: a real device would resend later
            self.infos.append(info)
            time.sleep(max(0.0, t0 + len(self.infos) / FLOW_RATE - time.monotonic()))


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    names = ("mqtt", "kafka", "influx", "m1", "m2", "registry", "alerts", "opendata", "hj212", "sl651", "m3")
    run = Up(
        state=tmp_path / ".state",
        log=tmp_path / "up.log",
        ports=dict(zip(names, free_ports(len(names)), strict=True)),
    )
    try:
        yield run
    finally:
        run.kill()


def _air_record() -> DeviceRecord:
    return DeviceRecord(
        device_id="air-rs1",
        device_type="air-station",
        domain="air",
        station=StationInfo(station_id="st-rs-air", name="Restart air", region="440300"),
        metrics={
            m: MetricSpec(metric=m, unit="mg/m3" if m == "co" else "ug/m3", min=0, max=10000) for m in AIR
        },
        expected_interval_s=60,
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def _air_value(metric: str, minute: int) -> float:
    base = {"pm25": 60.0, "pm10": 90.0, "so2": 10.0, "no2": 40.0, "co": 0.8, "o3": 100.0}[metric]
    return round(base + 0.41 * ((minute * 5 + len(metric)) % 19), 2)


def _air_message(start: datetime, minute: int) -> str:
    ts = iso(start + timedelta(minutes=minute))
    return json.dumps({"readings": [{"metric": m, "value": _air_value(m, minute), "ts": ts} for m in AIR]})


def _reference_aqi(start: datetime, minutes: list[int]) -> dict[datetime, int]:
    """The hourly AQI of these minutes through the pure engine, in one uninterrupted process."""
    state, station = DeviceState(), StationState()
    subject = Subject(kind="station", id="st-rs-air", domain="air", station_id="st-rs-air")
    result: dict[datetime, int] = {}
    for minute in minutes:
        ts = start + timedelta(minutes=minute)
        readings = [Reading(metric=m, value=_air_value(m, minute), ts=ts) for m in AIR]
        out = update_device(
            state, "air-rs1", readings, record=_air_record(), domain="air", now=0.0, config=AnalyticsConfig()
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


def _stored_aqi(url: str) -> dict[datetime, int]:
    q = "SELECT aqi FROM aqi WHERE station='st-rs-air' AND report='hourly'"
    series = influx_query(url, DB, q)
    return {datetime.fromtimestamp(t / 1e9, UTC): int(v) for t, v in series[0]["values"]} if series else {}


def _count(url: str, q: str) -> int:
    series = influx_query(url, DB, q)
    return sum(v for s in series for row in s["values"] for v in row[1:] if isinstance(v, int))


def _fleet_readings(url: str, before_ns: int) -> int:
    """Readings of the simulated MQTT fleet stored before ``before_ns``, as the simulator counts them."""
    ids = "|".join(d.device_id for d in default_fleet() if is_mqtt(d))  # TCP stations are counted apart
    total = 0
    for measurement in ("air", "water", "hydro", "coldchain"):
        q = f"SELECT count(*) FROM {measurement} WHERE device =~ /^({ids})$/ AND time < {before_ns}"  # noqa: S608 - test input
        for series in influx_query(url, DB, q):
            for name, value in zip(series["columns"], series["values"][0], strict=True):
                if name != "time" and not name.endswith("_q") and isinstance(value, int):
                    total += value
    return total


def _flood_alerts(api: httpx.Client) -> list[dict[str, object]]:
    answer = api.get("/alerts", params={"rule": "flood.level", "station_id": "st-rs-gauge"})
    assert answer.status_code == 200, answer.text
    alerts: list[dict[str, object]] = answer.json()
    return alerts


def _flood_statuses(api: httpx.Client) -> list[object] | None:
    """Statuses of the gauge's flood alerts; None while the alert service is still starting."""
    try:
        return [a["status"] for a in _flood_alerts(api)]
    except httpx.HTTPError:
        return None


def _register(up: Up) -> None:
    with up.registry() as api:
        stations = [
            {"id": "st-rs-air", "name": "Restart air", "kind": "air", "region": "440300"},
            {"id": "st-rs-gauge", "name": "Restart gauge", "kind": "gauge", "region": "440300",
             "basin": "Pearl", "warning_level": 12.5, "guaranteed_level": 14.0},
            {"id": "st-rs-flow", "name": "Restart flow", "kind": "gauge", "region": "440300"},
        ]  # fmt: skip
        gauges = {"river-rs1": "st-rs-gauge", "flow-rs1": "st-rs-flow", "early-rs1": "st-rs-flow"}
        devices = [
            {"id": "air-rs1", "type": "air-station", "station_id": "st-rs-air", "expected_interval_s": 60},
            *[
                {"id": d, "type": "level-gauge", "station_id": st, "expected_interval_s": 3600}
                for d, st in gauges.items()
            ],
        ]
        for body in stations:
            assert api.post("/stations", json=body).status_code == 201, body
        for body in devices:
            answer = api.post("/devices", json=body)
            assert answer.status_code == 201, answer.text


def _publish_all(client: mqtt.Client, device: str, bodies: list[str]) -> None:
    infos = [client.publish(f"devices/{device}/readings", b, qos=1) for b in bodies]
    for info in infos:
        info.wait_for_publish(timeout=30)
        assert info.is_published()


def _level(at: datetime, value: float) -> str:
    return json.dumps({"readings": [{"metric": "level", "value": value, "unit": "m", "ts": iso(at)}]})


EARLY = 20


def _send_early(up: Up, infos: list[mqtt.MQTTMessageInfo]) -> None:
    """Publish EARLY readings for early-rs1 the moment the broker accepts a connection."""
    deadline = time.monotonic() + 60
    while True:
        try:
            client = up.device("early-device")
            break
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
    try:
        start = datetime.now(UTC) - timedelta(minutes=10)
        for i in range(EARLY):
            infos.append(
                client.publish("devices/early-rs1/readings", _level(start + timedelta(seconds=i), 2.0), qos=1)
            )
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.loop_stop()


def _deadletters(up: Up, device: str) -> str:
    env = {**os.environ, "STATIONFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{up.ports['kafka']}", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "stationflow.cli", "deadletters", "--device", device],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_a_stop_and_start_of_up_forgets_nothing(up: Up) -> None:
    # --- first run -------------------------------------------------------------------------
    up.start()
    _register(up)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    t_flood = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=50)
    device = up.device("restart-test")
    flow = Flow(up.device("restart-flow"), "flow-rs1")
    try:
        # the first half of an hour of air readings
        _publish_all(device, "air-rs1", [_air_message(hour, m) for m in range(30)])
        # the river passes its warning level (12.5 m): a flood alert opens
        _publish_all(
            device, "river-rs1", [_level(t_flood, 11.0), _level(t_flood + timedelta(minutes=1), 13.0)]
        )
        # a message the pipeline refuses: a dead letter for the device
        _publish_all(device, "air-rs1", ["this is not json"])
        with up.alerts() as api:
            assert wait_for(lambda: _flood_statuses(api) == ["open"], timeout=90), _flood_alerts(api)
        assert "air-rs1" in _deadletters(up, "air-rs1")
        # readings flowing while the stack stops
        flow.start()
        assert wait_for(lambda: flow.acked >= 200, timeout=30)
        out = up.stop()
    finally:
        flow.halt.set()
        device.loop_stop()
    flow.join(timeout=10)
    flow.client.loop_stop()
    between_ns = time.time_ns()
    assert "draining" in out and "kafka state archived" in out, out
    sim = re.search(
        r"simulator stopped: published=([\d,]+) messages readings=([\d,]+) acknowledged=([\d,]+)", out
    )
    assert sim is not None, out
    sim_msgs, sim_readings, sim_acked = (int(g.replace(",", "")) for g in sim.groups())
    assert sim_acked == sim_msgs > 0

    # --- second run, same state dir and ports --------------------------------------------
    # a device that sends as soon as the broker is back, before the collector has subscribed
    early: list[mqtt.MQTTMessageInfo] = []
    sender = threading.Thread(target=_send_early, args=(up, early), daemon=True)
    sender.start()
    up.start()
    sender.join(timeout=60)
    device = up.device("restart-test-2")
    try:
        early_q = "SELECT count(level) FROM hydro WHERE device='early-rs1'"
        assert len(early) == EARLY and all(info.is_published() for info in early)
        assert wait_for(lambda: _count(up.influx, early_q) == EARLY, timeout=60), _count(up.influx, early_q)
        # every acknowledged reading of the flowing device is stored, once (≤ what was sent)
        flow_q = "SELECT count(level) FROM hydro WHERE device='flow-rs1'"
        assert wait_for(lambda: _count(up.influx, flow_q) >= flow.acked, timeout=60), (
            _count(up.influx, flow_q),
            flow.acked,
            flow.published,
        )
        assert flow.acked <= _count(up.influx, flow_q) <= flow.published
        stored_ts = influx_query(up.influx, DB, "SELECT level FROM hydro WHERE device='flow-rs1'")
        assert len({row[0] for row in stored_ts[0]["values"]}) == len(stored_ts[0]["values"])
        # the simulated fleet: every reading of the first run is stored
        assert _fleet_readings(up.influx, between_ns) == sim_readings
        # the dead letter from before the restart is still listed, and counted once
        assert "air-rs1" in _deadletters(up, "air-rs1")
        with up.registry() as api:
            status = api.get("/devices/air-rs1/status").json()
        assert status["rejected_last_hour"] == 1, status

        # the second half of the hour, then a reading that closes it
        _publish_all(
            device, "air-rs1", [_air_message(hour, m) for m in range(30, 60)] + [_air_message(hour, 70)]
        )
        expected = _reference_aqi(hour, [*range(60), 70])
        assert hour in expected and hour not in _reference_aqi(hour, [*range(30, 60), 70]), (
            "the hour is valid only with both halves: a forgotten window would show"
        )
        assert wait_for(lambda: hour in _stored_aqi(up.influx), timeout=60), _stored_aqi(up.influx)
        assert _stored_aqi(up.influx)[hour] == expected[hour]

        with up.alerts() as api:
            # still one flood alert, still open after the restart
            assert wait_for(lambda: _flood_statuses(api) is not None, timeout=90)
            assert _flood_statuses(api) == ["open"]
            # the level falls back below the warning level for more than the 15 min clear time
            falling = [_level(t_flood + timedelta(minutes=m), 11.0) for m in range(2, 20)]
            _publish_all(device, "river-rs1", falling)
            assert wait_for(lambda: _flood_statuses(api) == ["resolved"], timeout=60), _flood_alerts(api)
            (alert,) = _flood_alerts(api)
            assert alert["resolved_by"] == "condition cleared"
    finally:
        device.loop_stop()
    up.stop()


def _archived_deadletters(archive: ArchiveStore, device: str) -> int:
    records = archive.stream_records()
    return sum(1 for r in records if r.topic.endswith(DEADLETTER) and r.key == device.encode())


def _archived_entries(archive: ArchiveStore) -> set[tuple[str, bytes | None]]:
    return {(r.topic, r.key) for r in archive.table_records()}


def test_after_a_sigkill_of_every_process_the_archived_state_comes_back(up: Up) -> None:
    """A power cut: nothing stops cleanly, no drain; what the archive had committed returns."""
    up.start()
    _register(up)
    t_flood = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    device = up.device("kill-test")
    try:
        _publish_all(
            device, "river-rs1", [_level(t_flood, 11.0), _level(t_flood + timedelta(minutes=1), 13.0)]
        )
        _publish_all(device, "air-rs1", ["this is not json either"])
        with up.alerts() as api:
            assert wait_for(lambda: _flood_statuses(api) == ["open"], timeout=90), _flood_statuses(api)
        archive = ArchiveStore(up.state / "kafka-archive")
        # the dead letter and the gauge's rule state have reached the archive (flushed every 2 s)
        # (the test's own; the simulated fleet's protocol stations may add theirs)
        # Each is committed at the mirror's next flush after it reached Kafka, and the gauge's
        # state (written by the worker after the analytics) may reach Kafka after the dead
        # letter (written by the collector at once): one flush apart, so wait for each.
        assert wait_for(lambda: _archived_deadletters(archive, "air-rs1") == 1, timeout=30), archive.counts()
        gauge = ("stationflow-streams-devices-changelog", b"river-rs1")
        assert wait_for(lambda: gauge in _archived_entries(archive), timeout=30), _archived_entries(archive)
    finally:
        device.loop_stop()
    up.kill()  # every process at once, as a power cut

    up.start()
    device = up.device("kill-test-2")
    try:
        assert "air-rs1" in _deadletters(up, "air-rs1")
        with up.alerts() as api:
            assert wait_for(lambda: _flood_statuses(api) is not None, timeout=90)
            assert _flood_statuses(api) == ["open"]
            # the restored rule state clears the same alert
            falling = [_level(t_flood + timedelta(minutes=m), 11.0) for m in range(2, 20)]
            _publish_all(device, "river-rs1", falling)
            assert wait_for(lambda: _flood_statuses(api) == ["resolved"], timeout=60), _flood_alerts(api)
            (alert,) = _flood_alerts(api)
            assert alert["resolved_by"] == "condition cleared"
    finally:
        device.loop_stop()
    up.stop()
