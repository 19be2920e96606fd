"""The README's first command: `stationflow up` runs everything, data arrives, Ctrl-C stops all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from stationflow.stack.components import influx_query
from stationflow.stack.monitor import count_points
from stationflow.stack.ports import free_ports
from tests.integration.pipeline_utils import wait_for

DATA_WITHIN_S = 30.0


def _children_using(state_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " ".join((proc.info["environ"] or {}).values())
        except (psutil.Error, TypeError):
            continue
        if str(state_dir) in text and proc.pid != psutil.Process().pid:
            found.append(proc)
    return found


def _anonymous_refused(port: int) -> bool:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    codes: list[int] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_for(lambda: bool(codes), timeout=10, interval=0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    return bool(codes) and codes[0] >= 0x80


def test_up_stores_simulated_readings_within_30s_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    mqtt, kafka, influx, m1, m2, registry, alerts, opendata, hj212, sl651, m3 = free_ports(11)
    state = tmp_path / "state"
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "stationflow.cli", "up", "--state-dir", str(state),
         "--mqtt-port", str(mqtt), "--kafka-port", str(kafka), "--influx-port", str(influx),
         "--ingest-metrics-port", str(m1), "--streams-metrics-port", str(m2),
         "--registry-port", str(registry), "--alerts-port", str(alerts), "--interval", "1",
         "--opendata-port", str(opendata), "--hj212-port", str(hj212), "--sl651-port", str(sl651),
         "--tcp-metrics-port", str(m3), "--backfill", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{influx}"

        def stored() -> bool:
            try:
                return count_points(url, "stationflow") > 0
            except Exception:  # noqa: BLE001 - not up yet
                return False

        assert wait_for(stored, timeout=DATA_WITHIN_S, interval=0.5), "no data within 30 s"
        elapsed = time.monotonic() - started
        assert elapsed <= DATA_WITHIN_S
        assert _children_using(state), "the stack runs as child processes"
        assert _anonymous_refused(mqtt), "the local broker runs with authentication on"
        # The simulator registered its fleet through the registry API; the worker enriches
        # with it: cold-chain loggers land in their own measurement, tagged with the station.
        key = (state / "registry-admin-key").read_text().strip()
        listed = httpx.get(
            f"http://127.0.0.1:{registry}/devices", headers={"X-API-Key": key}, timeout=10
        ).json()
        assert {d["id"] for d in listed["data"]} >= {"air-001", "river-001", "cold-001"}
        cold = "SELECT count(temperature) FROM coldchain WHERE station = 'st-cold-001'"
        assert wait_for(lambda: bool(influx_query(url, "stationflow", cold)), timeout=DATA_WITHIN_S)
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
            for child in _children_using(state):  # a failed run must not leave brokers on ports
                child.kill()
    text = out.decode(errors="replace")
    assert up.returncode == 0, text[-2000:]
    assert "stationflow is running" in text and "all processes stopped" in text
    assert wait_for(lambda: not _children_using(state), timeout=10), _children_using(state)
