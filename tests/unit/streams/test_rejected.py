"""The rejected-points store (bounded, rotated, counted) and ``stationflow rejected``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import REGISTRY
from typer.testing import CliRunner

from stationflow.cli import app
from stationflow.rejectedpoints import read_rejected, rejected_files
from streams.lineprotocol import line
from streams.sink.rejected import RejectedStore, rejected_point

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _point(device: str, n: int) -> bytes:
    written = line("air", {"device": device, "region": "深圳, 南山 = 1"}, {"pm25": float(n)}, n)
    assert written is not None
    return written.encode()


def test_a_record_names_device_and_measurement_of_an_escaped_line() -> None:
    record = rejected_point(_point("dev a,b", 1), status=400, reason="bad", now=T0)
    assert (record.device, record.measurement, record.status, record.reason) == ("dev a,b", "air", 400, "bad")
    station = rejected_point(b"aqi,station=st-1,report=hourly aqi=1i 1", status=400, reason="x")
    assert station.device == "st-1" and station.measurement == "aqi"


def test_store_is_bounded_and_counts_what_it_discards(tmp_path: Path) -> None:
    one = len(rejected_point(_point("d", 0), status=400, reason="r", now=T0).model_dump_json()) + 1
    store = RejectedStore(tmp_path / "rejected", max_bytes=20 * one)
    discarded = REGISTRY.get_sample_value("stationflow_sink_rejected_discarded_total") or 0.0
    for n in range(50):
        store.keep(
            [rejected_point(_point(f"d{n}", n), status=400, reason="r", now=T0 + timedelta(seconds=n))]
        )
    files = rejected_files(tmp_path)
    assert sum(f.stat().st_size for f in files) <= 20 * one
    kept = [p.device for p in read_rejected(files)]
    assert kept == [f"d{n}" for n in range(50 - len(kept), 50)]  # the newest, in order
    gone = (REGISTRY.get_sample_value("stationflow_sink_rejected_discarded_total") or 0.0) - discarded
    assert gone == 50 - len(kept) and gone > 0


def _state(tmp_path: Path) -> Path:
    for worker, devices in (("1", ["air-1", "air-2"]), ("2", ["air-1"])):
        store = RejectedStore(tmp_path / "streams" / worker / "spool" / "rejected")
        store.keep(
            rejected_point(
                _point(d, 10 * int(worker) + i),
                status=400,
                reason=f"reason {worker}-{d}",
                now=T0 + timedelta(minutes=i),
            )
            for i, d in enumerate(devices)
        )
    return tmp_path


def test_cli_lists_points_as_json_with_a_device_filter(tmp_path: Path) -> None:
    state = _state(tmp_path)
    result = CliRunner().invoke(app, ["rejected", "--state-dir", str(state), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(r) for r in result.output.splitlines()]
    assert [(r["device"], r["reason"]) for r in rows] == [
        ("air-1", "reason 1-air-1"),
        ("air-1", "reason 2-air-1"),
        ("air-2", "reason 1-air-2"),
    ]
    assert all(r["measurement"] == "air" and r["line"].startswith("air,device=") for r in rows)

    only = CliRunner().invoke(app, ["rejected", "--state-dir", str(state), "--json", "--device", "air-2"])
    assert [json.loads(r)["reason"] for r in only.output.splitlines()] == ["reason 1-air-2"]


def test_cli_table_and_help(tmp_path: Path) -> None:
    state = _state(tmp_path)
    result = CliRunner().invoke(
        app, ["rejected", "--state-dir", str(state), "--limit", "1"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "air-2" in result.output and "reason 1-air-2" in result.output and "air-1" not in result.output
    empty = CliRunner().invoke(app, ["rejected", "--state-dir", str(tmp_path / "none"), "--json"])
    assert empty.exit_code == 0 and empty.output == ""
    helped = CliRunner().invoke(app, ["rejected", "--help"], env={"COLUMNS": "200"})
    assert helped.exit_code == 0 and "--device" in helped.output and "--json" in helped.output


def test_cli_shows_a_point_refused_again_after_a_replay_once(tmp_path: Path) -> None:
    store = RejectedStore(tmp_path / "streams" / "1" / "spool" / "rejected")
    for minute in (0, 5):  # the worker was killed before its commit and refused it again
        store.keep(
            [rejected_point(_point("air-1", 1), status=400, reason="r", now=T0 + timedelta(minutes=minute))]
        )
    result = CliRunner().invoke(app, ["rejected", "--state-dir", str(tmp_path), "--json"])
    (row,) = [json.loads(r) for r in result.output.splitlines()]
    assert row["time"].startswith("2026-11-30T08:05")
