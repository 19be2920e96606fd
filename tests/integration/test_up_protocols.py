"""`stationflow up` listens for HJ 212 and SL 651 stations; its simulated ones reach InfluxDB over TCP."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from stationflow.stack.components import influx_query
from stationflow.stack.monitor import scrape_counter
from stationflow.stack.ports import free_ports
from tests.integration.pipeline_utils import wait_for

STORED_WITHIN_S = 90.0
# The simulated TCP stations of default_fleet (simulator/fleet.py) and the metric each sends.
TCP_DEVICES = {"air-hj-001": ("air", "pm25"), "water-hj-001": ("water", "ph"), "rtu-001": ("hydro", "level")}


def _stored(url: str, measurement: str, metric: str, device: str) -> bool:
    q = f"SELECT count({metric}) FROM {measurement} WHERE device = '{device}'"  # noqa: S608 - test constants
    try:
        series = influx_query(url, "stationflow", q)
    except Exception:  # noqa: BLE001 - not up yet
        return False
    return bool(series) and series[0]["values"][0][1] > 0


def _output(up: subprocess.Popen[bytes]) -> str:
    out, _ = up.communicate(timeout=30)
    return f"stationflow up exited with {up.returncode}:\n" + out.decode(errors="replace")[-3000:]


def test_up_runs_the_tcp_collector_and_its_stations_readings_are_stored(tmp_path: Path) -> None:
    mqtt, kafka, influx, m1, m2, registry, alerts, hj212, sl651, m3, opendata = free_ports(11)
    state = tmp_path / "state"
    up = subprocess.Popen(
        [sys.executable, "-m", "stationflow.cli", "up", "--state-dir", str(state),
         "--mqtt-port", str(mqtt), "--kafka-port", str(kafka), "--influx-port", str(influx),
         "--ingest-metrics-port", str(m1), "--streams-metrics-port", str(m2),
         "--registry-port", str(registry), "--alerts-port", str(alerts),
         "--hj212-port", str(hj212), "--sl651-port", str(sl651), "--tcp-metrics-port", str(m3),
             "--opendata-port", str(opendata),
         "--interval", "1", "--duration", str(STORED_WITHIN_S + 60), "--backfill", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{influx}"
        started = time.monotonic()
        for device, (measurement, metric) in TCP_DEVICES.items():
            left = max(1.0, STORED_WITHIN_S - (time.monotonic() - started))

            def stored_or_exited(m: str = measurement, f: str = metric, d: str = device) -> bool:
                return up.poll() is not None or _stored(url, m, f, d)

            wait_for(stored_or_exited, timeout=left, interval=1.0)
            assert up.poll() is None, _output(up)
            assert _stored(url, measurement, metric, device), f"no {metric} of {device} in {measurement}"
        tcp_metrics = f"http://127.0.0.1:{m3}/metrics"
        assert scrape_counter(tcp_metrics, "stationflow_tcp_connections_total") >= len(TCP_DEVICES)
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate(timeout=30)
    text = out.decode(errors="replace")
    assert up.returncode == 0, text[-3000:]
    assert f"HJ 212 tcp 127.0.0.1:{hj212}" in text and f"SL 651 tcp 127.0.0.1:{sl651}" in text
    assert f"http://127.0.0.1:{m3}/metrics (TCP collector)" in text
    assert "simulated HJ 212 stations stopped" in text and "all processes stopped" in text
