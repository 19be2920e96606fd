"""``stationflow bench analytics``: the steady-state bench warms real states and times real updates."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from stationflow.bench.statebench import measure_states, metric_names
from stationflow.cli import app
from streams.analytics.statecodec import decode_device, encode_device


def test_metric_names_start_with_the_air_pollutants() -> None:
    assert metric_names(8) == ["pm25", "pm10", "so2", "no2", "o3", "co", "m7", "m8"]


def test_the_measured_devices_hold_the_warmed_hours() -> None:
    result = measure_states(devices=6, hours=3, metrics=2, messages=2)
    assert result.updates == 12
    assert result.decode_us > 0 and result.update_us > 0 and result.encode_us > 0
    # an hour of minute slots of two metrics (a fresh state is a few dozen bytes)
    assert result.state_bytes > 2000 > 20 * len(encode_device(decode_device(None)))


def test_the_command_prints_json() -> None:
    out = CliRunner().invoke(app, ["bench", "analytics", "--devices", "3", "--hours", "1", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    # by default an hour of messages per device (60), so each device closes an hour once
    assert doc["messages"] == 60 and doc["updates"] == 180 and doc["cpu_us_per_update"]["total"] > 0


def test_new_devices_a_millisecond_apart_are_the_pipeline_benchs() -> None:
    result = measure_states(devices=5, hours=0, metrics=6, messages=3, interval_s=0.001)
    assert result.updates == 15 and result.interval_s == 0.001
    assert result.update_us > 0
    # minutes of windows, not hours: one slot per metric
    assert result.state_bytes < 2000


def test_the_command_takes_new_devices_and_an_interval() -> None:
    args = ["bench", "analytics", "--devices", "2", "--hours", "0", "--messages", "2", "--interval", "0.001"]
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["updates"] == 4 and doc["interval_s"] == 0.001 and doc["hours"] == 0
