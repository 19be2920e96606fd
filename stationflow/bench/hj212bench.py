"""``stationflow bench hj212``: N concurrent HJ 212 stations through the TCP collector.

On a private stack (Tansu, InfluxDB, the TCP collector, the stream worker; Mosquitto too,
as every pipeline has one) the bench registers N HJ 212 stations on the registry topic,
opens N TCP connections at once and uploads each station's minute data (see
:mod:`stationflow.bench.hj212load`), waits for every 9014 acknowledgement, then waits until
every reading is in InfluxDB. Measured:

* ``frames_per_s``: acknowledged frames ÷ (first frame sent → last acknowledgement);
* ``ack_latency_ms``: frame sent → its 9014 received, per backlog frame (resends count from
  the first send); with all stations uploading back to back this is mostly queueing, about
  N ÷ frames/s; ``steady_ack_latency_ms``: the same for the paced frames (``--steady``);
* ``readings_per_s``: readings stored ÷ (first frame sent → last reading visible);
* ``cpu_s`` / ``rss_mb``: CPU seconds used during the run and peak resident memory of each
  process: the collector (``tcp``), the worker (``streams``), the brokers and the load
  generator (``loadgen``); ``cpu_us_per_frame`` divides the CPU by the frames acknowledged;
* ``lost``: readings in acknowledged frames that never showed up in InfluxDB. An
  acknowledged frame is the collector's promise; any loss fails the run (exit 1).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import queue
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stationflow.bench.hj212load import POLLUTANTS, Hj212Scenario, LoadReport, raise_nofile, run_stations
from stationflow.bench.registrytopic import publish_records
from stationflow.bench.sampler import Sampler
from stationflow.contracts import DeviceRecord, Hj212Link, MetricSpec, utcnow
from stationflow.passwords import hash_password
from stationflow.settings import CommonSettings
from stationflow.stack.components import influx_query
from stationflow.stack.pipeline import Pipeline
from stationflow.stack.ports import free_port
from stationflow.stack.procs import StackError

__all__ = ["count_stored", "hj212_records", "measure", "run_hj212_bench", "verdict"]

MEASUREMENT = "air"  # the bench stations' domain
DEVICE_TYPE = "air-station"
COUNT_EVERY_S = 1.0
STALL_S = 60.0  # give up waiting for InfluxDB when the stored count has not moved this long
PROGRESS_EVERY_S = 0.2
LOAD_START_TIMEOUT_S = 60.0
# Open files the bench needs beyond one socket per station (brokers' clients, logs, pipes).
NOFILE_MARGIN = 1024
# Metric value ranges: wide, so no bench value is flagged T.
_RANGE = (0.0, 10_000.0)

_Report = tuple[str, Any]


def hj212_records(scenario: Hj212Scenario) -> list[DeviceRecord]:
    """Registry records of the scenario's stations (one shared password hash: scrypt is slow)."""
    password_hash = hash_password(scenario.password)
    metrics = {
        metric: MetricSpec(metric=metric, unit=unit, min=_RANGE[0], max=_RANGE[1], hj212_code=code)
        for code, metric, unit in POLLUTANTS
    }
    now = utcnow()
    return [
        DeviceRecord(
            device_id=scenario.device_id(i),
            device_type=DEVICE_TYPE,
            domain=MEASUREMENT,
            metrics=metrics,
            protocol="hj212",
            hj212=Hj212Link(mn=scenario.mn(i), password_hash=password_hash, crc="hj212"),
            updated_at=now,
        )
        for i in range(scenario.connections)
    ]


def count_stored(influx_url: str, db: str, prefix: str = "hjb-") -> int:
    """Numeric values stored by the bench stations (quality ``_q`` fields left out)."""
    q = f"SELECT count(*) FROM {MEASUREMENT} WHERE device =~ /^{prefix}/"  # noqa: S608 - constants
    total = 0
    for series in influx_query(influx_url, db, q):
        for row in series["values"]:
            for name, value in zip(series["columns"], row, strict=True):
                if name.startswith("count_") and not name.endswith("_q") and isinstance(value, int):
                    total += value
    return total


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return round(values[index], 1)


def _load_main(host: str, port: int, scenario: Hj212Scenario, out: Queue[_Report]) -> None:
    """Process entry of the load generator: run the stations, report progress and the result."""
    raise_nofile(scenario.connections + NOFILE_MARGIN)
    counts = {"sent": 0, "acked": 0}

    def on_frame(sent: int, acked: int) -> None:
        counts["sent"] += sent
        counts["acked"] += acked

    def connected(n: int) -> None:
        out.put(("connected", (n, time.monotonic())))

    async def main() -> LoadReport:
        async def report() -> None:
            while True:
                out.put(("progress", (counts["sent"], counts["acked"])))
                await asyncio.sleep(PROGRESS_EVERY_S)

        reporter = asyncio.create_task(report())
        try:
            return await run_stations(host, port, scenario, on_frame=on_frame, on_connected=connected)
        finally:
            reporter.cancel()

    try:
        result = asyncio.run(main())
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        out.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    out.put(("progress", (counts["sent"], counts["acked"])))
    out.put(("done", result))


def verdict(result: dict[str, Any]) -> list[str]:
    """Why the run failed (empty: it passed): lost readings, unacknowledged frames, failed connects."""
    problems = []
    if result["connect_failures"]:
        problems.append(f"{result['connect_failures']:,} stations could not connect")
    unacked = result["frames_expected"] - result["frames_acked"]
    if unacked:
        problems.append(f"{unacked:,} frames were never acknowledged with a 9014")
    if result["lost"]:
        problems.append(
            f"{result['lost']:,} readings of acknowledged frames are not in InfluxDB "
            f"(stored {result['readings_stored']:,} of {result['readings_sent']:,})"
        )
    return problems


def measure(
    console: Console,
    scenario: Hj212Scenario,
    *,
    stall_s: float = STALL_S,
    on_started: Callable[[Pipeline], None] = lambda _p: None,
) -> dict[str, Any]:
    """Run the scenario on a private stack and return the measurements (see the module doc).

    ``on_started`` runs once the services are up, before the first connection (tests use
    it to break the pipeline and check that the bench notices).
    """
    nofile = raise_nofile(scenario.connections + NOFILE_MARGIN)
    with tempfile.TemporaryDirectory(prefix="stationflow-bench-hj212-") as tmp:
        pipeline = Pipeline(
            Path(tmp),
            ports={"kafka": free_port(), "mqtt": free_port(), "influx": free_port()},
            extra_env={
                "STATIONFLOW_STREAMS_REGISTRY": "true",
                "STATIONFLOW_ANALYTICS_ENABLED": "false",
                "STATIONFLOW_TCP_MAX_CONNECTIONS": str(scenario.connections + 100),
            },
        )
        with pipeline:
            with console.status("starting the stack…") as status:
                ep = pipeline.start_infra(on_step=lambda s: status.update(f"starting {s}…"))
                status.update(f"registering {scenario.connections:,} HJ 212 stations…")
                asyncio.run(
                    publish_records(CommonSettings(kafka_bootstrap=ep.kafka), hj212_records(scenario))
                )
                status.update("starting the TCP collector (reads the registry first)…")
                pipeline.start("tcp")
                status.update("starting the stream worker…")
                pipeline.start("streams")
            on_started(pipeline)
            # every process of the stack is named, so ``loadgen`` is the load generator alone
            procs = [(c.name, c.proc) for c in pipeline.components] + list(pipeline.services.items())
            pids = {name: proc.pid for name, proc in procs if proc.pid and proc.running}
            sampler = Sampler(pids)
            sampler.start()
            result = _drive(console, pipeline, scenario, stall_s)
            sampler.stop_event.set()
            sampler.sample()
    frames = max(result["frames_acked"], 1)
    result["cpu_s"] = {k: round(v, 2) for k, v in sampler.cpu.items()}
    result["rss_mb"] = {k: round(v, 1) for k, v in sampler.peak.items()}
    result["cpu_us_per_frame"] = {k: round(v / frames * 1e6, 1) for k, v in sampler.cpu.items()}
    result["open_files_limit"] = nofile
    result["machine"] = {"cpus": psutil.cpu_count(), "python": sys.version.split()[0]}
    result["problems"] = verdict(result)
    return result


def _drive(console: Console, pipeline: Pipeline, scenario: Hj212Scenario, stall_s: float) -> dict[str, Any]:
    """Start the load generator process, follow it and InfluxDB until everything is stored."""
    ep = pipeline.endpoints
    assert ep is not None  # noqa: S101 - start_infra() ran
    ctx = multiprocessing.get_context("spawn")
    out: Queue[_Report] = ctx.Queue()
    args = ("127.0.0.1", pipeline.hj212_port, scenario, out)
    child = ctx.Process(target=_load_main, args=args, name="bench-hj212", daemon=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
    )
    report: LoadReport | None = None
    error: str | None = None
    stored, last_change, last_count = 0, time.monotonic(), 0.0
    with progress:
        conn_task = progress.add_task("connected     ", total=scenario.connections)
        sent_task = progress.add_task("frames sent   ", total=scenario.frames)
        ack_task = progress.add_task("frames acked  ", total=scenario.frames)
        store_task = progress.add_task("readings in DB", total=scenario.readings)
        child.start()
        started = time.monotonic()
        while True:
            try:
                kind, value = out.get(timeout=PROGRESS_EVERY_S)
            except queue.Empty:
                kind, value = "", None
            if kind == "connected":  # uploads start now (monotonic clocks are system-wide)
                progress.update(conn_task, completed=value[0])
                started = value[1]
            elif kind == "progress":
                progress.update(sent_task, completed=value[0])
                progress.update(ack_task, completed=value[1])
            elif kind == "done":
                report = value
                last_change = max(last_change, time.monotonic())  # the stall clock starts now
            elif kind == "error":
                error = str(value)
            now = time.monotonic()
            if report is None and error is None and not child.is_alive() and out.empty():
                error = f"the load generator died (exit code {child.exitcode})"
            if now - last_count >= COUNT_EVERY_S or report is not None:
                last_count = now
                count = count_stored(ep.influx_url, ep.influx_db)
                if count != stored:
                    stored, last_change = count, now
                progress.update(store_task, completed=stored)
            if report is None and error is None:
                continue  # uploads still running
            expected = report.frames_acked * len(POLLUTANTS) if report else 0
            if stored >= expected or now - last_change > stall_s or error is not None:
                break
    child.join(10)
    if child.is_alive():
        child.terminate()
    finished = last_change
    if report is None:
        report = LoadReport(
            connections=0,
            connect_failures=scenario.connections,
            frames_sent=0,
            frames_acked=0,
            frames_resent=0,
            seconds=0.0,
            latencies_ms=[],
            errors=[error or "no result"],
        )
    return _result(scenario, report, stored, finished - started, error)


def _latency(sorted_ms: list[float]) -> dict[str, Any]:
    return {
        "p50": _percentile(sorted_ms, 50),
        "p99": _percentile(sorted_ms, 99),
        "max": _percentile(sorted_ms, 100),
        "samples": len(sorted_ms),
    }


def _result(
    scenario: Hj212Scenario, report: LoadReport, stored: int, store_seconds: float, error: str | None
) -> dict[str, Any]:
    sent_readings = report.frames_acked * len(POLLUTANTS)
    return {
        "connections": report.connections,
        "connect_failures": report.connect_failures,
        "minutes": scenario.minutes,
        "steady_minutes": scenario.steady,
        "pollutants_per_frame": len(POLLUTANTS),
        "frames_expected": scenario.frames,
        "frames_sent": report.frames_sent,
        "frames_acked": report.frames_acked,
        "frames_resent": report.frames_resent,
        "upload_seconds": round(report.seconds, 2),
        "frames_per_s": round(report.frames_per_s),
        "ack_latency_ms": _latency(report.latencies_ms),
        "steady_ack_latency_ms": _latency(report.steady_latencies_ms),
        "readings_sent": sent_readings,
        "readings_stored": stored,
        "lost": max(0, sent_readings - stored),
        "seconds_to_stored": round(store_seconds, 2),
        "readings_per_s": round(stored / max(store_seconds, 1e-9)),
        "errors": ([error] if error else []) + report.errors[:10],
    }


def run_hj212_bench(
    *, connections: int, minutes: int, steady: int, steady_interval_s: float, as_json: bool
) -> int:
    """Run the HJ 212 bench; print JSON or a table; exit 1 (saying why) on any loss, 2 if it could not run."""
    console = Console(stderr=True, quiet=as_json)
    scenario = Hj212Scenario(
        connections=connections,
        minutes=minutes,
        end=datetime.now(UTC),
        steady=steady,
        steady_interval_s=steady_interval_s,
    )
    try:
        result = measure(console, scenario)
    except StackError as exc:
        Console(stderr=True).print(f"[red]the bench could not run:[/red] {exc}")
        return 2
    if as_json:
        print(json.dumps(result))  # noqa: T201 - the command's output
    else:
        _print_table(Console(), result)
    for problem in result["problems"]:
        Console(stderr=True).print(f"[red]FAILED:[/red] {problem}")
    return 1 if result["problems"] else 0


def _print_table(console: Console, r: dict[str, Any]) -> None:
    table = Table(title="stationflow bench hj212: TCP → Kafka → Faust → InfluxDB")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("concurrent connections", f"{r['connections']:,} (failed {r['connect_failures']:,})")
    table.add_row("minute records per station", f"{r['minutes']:,} ({r['steady_minutes']:,} paced)")
    table.add_row("frames sent / acked (9014)", f"{r['frames_sent']:,} / {r['frames_acked']:,}")
    table.add_row("frames resent after 10 s", f"{r['frames_resent']:,}")
    table.add_row("frames/s (acked)", f"{r['frames_per_s']:,}")
    lat = r["ack_latency_ms"]
    table.add_row("ack latency p50 / p99 / max ms (backlog)", f"{lat['p50']} / {lat['p99']} / {lat['max']}")
    lat = r["steady_ack_latency_ms"]
    if lat["samples"]:
        table.add_row("ack latency p50 / p99 / max ms (paced)", f"{lat['p50']} / {lat['p99']} / {lat['max']}")
    table.add_row("readings sent / stored", f"{r['readings_sent']:,} / {r['readings_stored']:,}")
    table.add_row("lost", f"{r['lost']:,}")
    table.add_row("readings/s to InfluxDB", f"{r['readings_per_s']:,}")
    for name in ("tcp", "streams"):
        if name in r["cpu_s"]:
            table.add_row(
                f"{name}: CPU s / µs per frame / peak RSS MB",
                f"{r['cpu_s'][name]} / {r['cpu_us_per_frame'][name]} / {r['rss_mb'][name]}",
            )
    if "loadgen" in r["rss_mb"]:
        table.add_row("load generator peak RSS MB", f"{r['rss_mb']['loadgen']}")
    console.print(table)
