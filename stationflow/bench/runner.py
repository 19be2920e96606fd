"""``stationflow bench``: push N readings through a private local pipeline and measure it.

Everything runs on this machine: Tansu, Mosquitto, InfluxDB, the collector, the stream
worker and the load generator processes. Measured:

* ``readings_per_s``: readings stored ÷ (first publish → last reading visible in InfluxDB);
* ``latency_ms``: publish → visible for probe readings published every ~20 ms during the
  load (the probe's timestamp is its publish time; InfluxDB is polled every
  ``POLL_S``, so each sample is late by up to that much);
* ``rss_mb``: peak resident memory of every process; ``cpu_s``: CPU seconds each used;
* ``lost``: readings published (acknowledged by the broker) but never stored.

With analytics on (``--analytics`` runs the same load twice, analytics off and on), the run
also waits until the analytics agent has consumed every ``readings.clean`` record (its
consumer group's committed offsets reach the end offsets), and ``analytics_readings_per_s``
is readings ÷ (first publish → analytics caught up).

``--baseline`` first runs the plain paho → InfluxDB bridge (:mod:`stationflow.bench.baseline`)
on its own private Mosquitto + InfluxDB under the same load, counted the same way, and reports
``ratio_to_baseline`` (off: stationflow's readings/s ÷ the bridge's; on: readings ÷ time until
the analytics caught up, ÷ the bridge's). ``--runs N`` repeats the sequence alternating and
reports medians.

``cpu_us_per_reading``: each stage's CPU-seconds over the run (psutil at the end of the run, so
exact for the processes still alive; the load generator's processes report their own) ÷
readings stored. The worker runs the raw stage and the analytics in one process: the
analytics' figure is the worker's CPU per reading with analytics on minus off.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stationflow.bench.baseline import READY_LINE
from stationflow.bench.sampler import Sampler, stage_cpu
from stationflow.settings import CommonSettings
from stationflow.stack.components import influx_query
from stationflow.stack.monitor import scrape_by_label, scrape_counter, scrape_samples
from stationflow.stack.pipeline import Pipeline, kind_of
from stationflow.stack.ports import free_port
from stationflow.stack.procs import ManagedProcess
from streams.analytics import ENGINE

__all__ = ["Load", "run_bench"]

POLL_S = 0.05  # probe poll interval: the latency resolution
COUNT_EVERY_S = 2.0  # once everything is published: count at least this often while writes go on
QUIET_S = 0.2  # … and as soon as InfluxDB wrote nothing for this long
SETTLED_S = 5.0  # … or, with fewer points written than messages published, this long
WRITTEN_EVERY_S = 0.25  # how often the workers' own count of points written is scraped
BRIDGE_READY_S = 30.0
# the exact count found readings missing while a worker's sink still held batches on disk
# (InfluxDB slow or away: ``write`` returns once a batch is spooled, and the raw stage counts it
# as written) or InfluxDB still took points: wait this long at most for them before the count
# is final
LATE_WRITES_S = 30.0
STALL_S = 60.0  # give up waiting when the stored count has not moved for this long
MEASUREMENT = "sensor"  # bench metrics m0..mN are generic, so they land in `sensor`
PROBE_DEVICE = "bench-probe"
ANALYTICS_STAGE = "analytics (worker on - off)"
# stage → process names (a name's part before "-": ingest-2 is a collector too)
WORKER_PROCESSES = ("streams", "analytics")  # the stream worker's processes (``--split-analytics``)
STATIONFLOW_STAGES: dict[str, tuple[str, ...]] = {
    "collector": ("ingest",),
    "worker": WORKER_PROCESSES,  # the raw stage and the analytics, in one process or two
    "tansu": ("tansu",),
    "mosquitto": ("mosquitto",),
    "influxdb": ("influxd",),
    "loadgen": ("loadgen",),
}
BASELINE_STAGES: dict[str, tuple[str, ...]] = {
    "bridge": ("bridge",),
    "mosquitto": ("mosquitto",),
    "influxdb": ("influxd",),
    "loadgen": ("loadgen",),
}


@dataclass
class _Probes:
    """Probe readings seen in InfluxDB: timestamp (publish time) → first seen wall time."""

    seen: dict[int, int] = field(default_factory=dict)
    last_ns: int = 0

    def poll(self, url: str, db: str) -> None:
        q = (
            f"SELECT probe FROM {MEASUREMENT} WHERE device='{PROBE_DEVICE}' "  # noqa: S608 - constants
            f"AND time > {self.last_ns}"
        )
        now = time.time_ns()
        for series in influx_query(url, db, q):
            for ts, _ in series["values"]:
                self.seen.setdefault(int(ts), now)
                self.last_ns = max(self.last_ns, int(ts))

    def latencies_ms(self) -> list[float]:
        return sorted((seen - ts) / 1e6 for ts, seen in self.seen.items())


def _stored(url: str, db: str) -> int:
    q = f"SELECT count(*) FROM {MEASUREMENT} WHERE device != '{PROBE_DEVICE}'"  # noqa: S608
    total = 0
    for series in influx_query(url, db, q):
        for row in series["values"]:
            total += sum(int(v) for v in row[1:] if isinstance(v, int))
    return total


def _points_written(url: str, db: str) -> int:
    """Points InfluxDB has written to ``db`` since it started (its shard statistics: in memory, cheap)."""
    total = 0
    for series in influx_query(url, db, "SHOW STATS FOR 'shard'"):
        if (series.get("tags") or {}).get("database") == db:
            row = dict(zip(series["columns"], series["values"][0], strict=True))
            total += int(row.get("writePointsOk", 0))
    return total


class _Counter:
    """When the last reading became visible, without counting all the time.

    ``SELECT count(*)`` over every series is expensive (measured on InfluxDB 1.6: 44 ms of CPU
    for 200,000 readings of 200 devices, 400 ms for 400,000 of 10,000 devices), so counting it
    every poll would load the database being measured. InfluxDB's own shard statistics say
    cheaply whether points are still being written: the exact count is taken once everything
    is published and the writes paused for ``QUIET_S`` (or every ``COUNT_EVERY_S`` while they go
    on, as with analytics on), and the run ends at the last write before the count that found
    every reading (with analytics writing too, an upper bound).

    ``min_points``: readings' points that must have been written before a count can find
    everything (every message is at least one point, in stationflow and in the bridge);
    ``written``, when given, says how many of them the system under test had acknowledged
    (stationflow's raw stage; InfluxDB's statistics also count the analytics' points).
    Without this gate, a bridge writing a batch a second, or a worker pausing between batches,
    was counted after every write once the load was published: at 10,000 devices each count
    took InfluxDB 0.6-1.7 s of a core, 4-6 counts a run, in the middle of the run measured.
    Below the gate a count waits for ``SETTLED_S`` without writes (a gate that undercounts
    costs time, not a wrong result).

    ``defer``: no count while the run goes on. With analytics on, the run is measured until the
    analytics have caught up, and they are still writing when the readings are all stored: a
    count then (0.4-1.7 s of InfluxDB's CPU at 10,000 devices) ran inside the measured time,
    against the analytics, while the bridge's and the analytics-off runs are counted after
    theirs. Instead :attr:`ready_at` is set once the gate opens (or the writes settled), the
    caller waits for what else it measures, and :meth:`final` counts once; the readings'
    part of the run then ends at ``ready_at``.
    """

    def __init__(
        self,
        url: str,
        db: str,
        expected: int,
        min_points: int = 0,
        written: Callable[[], float] | None = None,
        defer: bool = False,
        pending: Callable[[], float] | None = None,
    ) -> None:
        self.url, self.db, self.expected = url, db, expected
        self.defer, self.pending = defer, pending
        self.ready_at: float | None = None  # deferred: when every reading could be stored
        self.points = self.points0 = _points_written(url, db)
        self.min_points, self.written = min_points, written
        self.written_at, self.gate_open = 0.0, min_points <= 0
        self.changed_at = time.monotonic()
        self.counted_at, self.counted_points = 0.0, -1
        self.stored = 0
        self.complete = False  # every expected reading was counted
        self.finished_at: float | None = None

    def step(self, now: float, *, published_all: bool) -> None:
        """One poll: watch the writes; count exactly when it may be over."""
        points = _points_written(self.url, self.db)
        if points != self.points:
            self.points, self.changed_at = points, now
        if self.complete or not published_all:
            return
        if not self._gate(now) and now - self.changed_at < SETTLED_S:
            return
        if self.defer:
            if self.ready_at is None:
                self.ready_at = now
            return
        quiet = now - self.changed_at >= QUIET_S and self.points != self.counted_points
        if quiet or now - self.counted_at >= COUNT_EVERY_S:
            self._count(now)

    def _gate(self, now: float) -> bool:
        """Could every reading be stored? (cheap: statistics, then the system's own counter)"""
        if self.gate_open:
            return True
        if self.points - self.points0 < self.min_points:
            return False
        if self.written is not None:
            if now - self.written_at < WRITTEN_EVERY_S:
                return False
            self.written_at = now
            if self.written() < self.min_points:
                return False
        self.gate_open = True
        return True

    def _count(self, now: float) -> None:
        last_write, incomplete_at = self.changed_at, self.counted_at
        self.stored = _stored(self.url, self.db)
        self.counted_at, self.counted_points = now, self.points
        if self.stored >= self.expected:
            # a write that landed between the statistics and the count, or that the statistics
            # missed: the end is only known to be before this count
            if _points_written(self.url, self.db) != self.points or last_write < incomplete_at:
                last_write = time.monotonic()
            self.complete, self.finished_at = True, last_write

    def final(self, late_writes_s: float = LATE_WRITES_S) -> int:
        """The exact count at the end (taken again unless it was complete).

        Short of the readings, it waits up to ``late_writes_s`` for writes still to come: while
        ``pending`` (the batches the workers' sinks hold on disk) is not 0, or InfluxDB's
        statistics still move, and counts again when they moved. The readings' time then ends
        at the last write, so late points lengthen the run instead of counting as lost.
        """
        if self.complete:
            return self.stored
        self._count(time.monotonic())
        if self.complete and self.ready_at is not None:
            self.finished_at = self.ready_at  # deferred: counted after other writes went on
            return self.stored
        deadline = time.monotonic() + late_writes_s
        while not self.complete and time.monotonic() < deadline:
            now = time.monotonic()
            points = _points_written(self.url, self.db)
            if points != self.points:
                self.points, self.changed_at = points, now
            elif self.points != self.counted_points and now - self.changed_at >= QUIET_S:
                self._count(now)
                continue
            elif now - self.changed_at >= SETTLED_S and not self._pending():
                if _points_written(self.url, self.db) == self.counted_points:
                    break  # nothing written for a while and nothing held back: the count is final
                continue  # the last of the spool landed as it emptied: count it
            time.sleep(POLL_S)
        if not self.complete:
            self.finished_at = self.changed_at
        return self.stored

    def _pending(self) -> bool:
        return self.pending is not None and self.pending() > 0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return round(values[index], 1)


@dataclass(frozen=True)
class Load:
    """The load every run of one bench gets (the same for the baseline and stationflow)."""

    readings: int
    per_message: int
    publishers: int
    devices: int


def run_bench(
    *,
    readings: int,
    per_message: int,
    publishers: int,
    devices: int,
    as_json: bool,
    collectors: int = 1,
    workers: int = 1,
    split_analytics: bool = False,
    analytics: bool = False,
    durable: bool = False,
    baseline: bool = False,
    runs: int = 1,
) -> int:
    """Run the benchmark; print JSON or a table; return the exit code (1 if a run failed or lost).

    ``analytics``: run analytics off then on, and report both. ``split_analytics``: with
    analytics on, each worker is two processes (raw stage, analytics). ``durable``: run the stack as
    ``stationflow up`` does (Mosquitto persistence, the Kafka state archive mirroring
    changelogs and dead letters), to measure what durability costs. ``baseline``: first run
    the plain paho → InfluxDB bridge (:mod:`stationflow.bench.baseline`) under the same load
    and report stationflow's readings/s as a ratio of its. ``runs``: repeat the sequence
    (baseline, off, on) that many times, alternating, and report medians.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    console = Console(stderr=True, quiet=as_json)
    load = Load(readings, per_message, publishers, devices)
    kinds = (["baseline"] if baseline else []) + ["analytics_off"] + (["analytics_on"] if analytics else [])
    rounds: list[dict[str, Any]] = []
    for n in range(1, runs + 1):
        done: dict[str, dict[str, Any]] = {}
        for i, kind in enumerate(kinds, 1):
            step = f"run {n} of {runs}, " if runs > 1 else ""
            console.print(f"[bold]{step}{i} of {len(kinds)}: {kind.replace('_', ' ')}")
            if kind == "baseline":
                done[kind] = _run_baseline(console, load)
            else:
                on = kind == "analytics_on"
                done[kind] = _run_once(
                    console,
                    load,
                    analytics=on,
                    collectors=collectors,
                    workers=workers,
                    split=on and split_analytics,
                    durable=durable,
                )
        rounds.append(_round(done))
    if not baseline and runs == 1:
        out = rounds[0]["analytics_off"] if not analytics else _comparison(rounds[0])
    else:
        out = _summary(rounds)
    if as_json:
        print(json.dumps(out))  # noqa: T201 - the command's output
    else:
        _print_all(Console(), rounds, out if (baseline or runs > 1) else None)
    return 0 if all(_ok(r) for rnd in rounds for r in _runs_of(rnd)) else 1


def _runs_of(rnd: dict[str, Any]) -> list[dict[str, Any]]:
    return [rnd[k] for k in ("baseline", "analytics_off", "analytics_on") if k in rnd]


def _ok(result: dict[str, Any]) -> bool:
    """A run counts: the load ran, nothing was lost, and (analytics on) the analytics caught up."""
    caught_up = result.get("analytics_caught_up", True) if result.get("analytics") else True
    return not result["failed"] and result["lost"] == 0 and bool(caught_up)


def _round(done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One round's runs plus what is computed across them: analytics CPU, ratios to the baseline."""
    rnd: dict[str, Any] = dict(done)
    off, on, base = done.get("analytics_off"), done.get("analytics_on"), done.get("baseline")
    if off is not None and on is not None:
        # one process runs the raw stage and the analytics: their cost is the difference
        worker_on, worker_off = on["cpu_s_exact"]["worker"], off["cpu_s_exact"]["worker"]
        on["cpu_us_per_reading"][ANALYTICS_STAGE] = _us(
            worker_on / max(on["stored"], 1) - worker_off / max(off["stored"], 1)
        )
        rnd["ratio_on_off"] = round(on["analytics_readings_per_s"] / max(off["readings_per_s"], 1), 3)
    if base is not None:
        # a ratio to a baseline run that did not count is no ratio
        b = base["readings_per_s"] if _ok(base) and base["readings_per_s"] > 0 else None
        rnd["baseline_readings_per_s"] = base["readings_per_s"]
        rnd["ratio_to_baseline"] = {"off": round(off["readings_per_s"] / b, 3) if off and b else None}
        if on is not None:
            rnd["ratio_to_baseline"]["on"] = round(on["analytics_readings_per_s"] / b, 3) if b else None
        untailed = base.get("readings_per_s_without_timer_tail") if b else None
        if untailed:
            rnd["ratio_to_baseline_without_timer_tail"] = {
                side: round(r / untailed, 3)
                for side, r in (
                    ("off", off["readings_per_s"] if off else None),
                    ("on", on["analytics_readings_per_s"] if on else None),
                )
                if r is not None
            }
    return rnd


def _comparison(rnd: dict[str, Any]) -> dict[str, Any]:
    """Analytics off vs on, one run each (the shape ``--analytics --json`` has always printed)."""
    off, on = rnd["analytics_off"], rnd["analytics_on"]
    return {
        "analytics_off": off,
        "analytics_on": on,
        "readings_per_s_off": off["readings_per_s"],
        "readings_per_s_on": on["analytics_readings_per_s"],
        "ratio_on_off": rnd["ratio_on_off"],
        "cpu_us_per_reading": {
            "analytics_off": off["cpu_us_per_reading"],
            "analytics_on": on["cpu_us_per_reading"],
        },
        "worker_peak_rss_mb": {"off": off["worker_peak_rss_mb"], "on": on["worker_peak_rss_mb"]},
    }


def _median(values: list[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Every run, and the medians over the rounds of each figure (per stage for the CPU)."""
    kinds = [k for k in ("baseline", "analytics_off", "analytics_on") if k in rounds[0]]
    per_s = {
        "baseline": "readings_per_s",
        "analytics_off": "readings_per_s",
        "analytics_on": "analytics_readings_per_s",
    }
    cpu: dict[str, dict[str, float | None]] = {}
    for kind in kinds:
        stages = list(dict.fromkeys(s for rnd in rounds for s in rnd[kind]["cpu_us_per_reading"]))
        cpu[kind] = {s: _median([rnd[kind]["cpu_us_per_reading"].get(s) for rnd in rounds]) for s in stages}
    out: dict[str, Any] = {
        "runs": rounds,
        "rounds": len(rounds),
        "lost": {kind: [rnd[kind]["lost"] for rnd in rounds] for kind in kinds},
        "failed": [r["failed"] for rnd in rounds for r in _runs_of(rnd) if r["failed"]],
        "cpu_us_per_reading": cpu,
    }
    for kind in kinds:
        key = "baseline_readings_per_s" if kind == "baseline" else f"readings_per_s_{kind.split('_')[1]}"
        out[key] = _median([rnd[kind][per_s[kind]] for rnd in rounds])
    if "baseline" in kinds:
        out["ratio_to_baseline"] = {
            side: _median([rnd["ratio_to_baseline"].get(side) for rnd in rounds])
            for side in ("off", "on")
            if f"analytics_{side}" in kinds
        }
    if any("ratio_to_baseline_without_timer_tail" in rnd for rnd in rounds):
        out["ratio_to_baseline_without_timer_tail"] = {
            side: _median([rnd.get("ratio_to_baseline_without_timer_tail", {}).get(side) for rnd in rounds])
            for side in ("off", "on")
            if f"analytics_{side}" in kinds
        }
    if "analytics_on" in kinds:
        out["ratio_on_off"] = _median([rnd["ratio_on_off"] for rnd in rounds])
    out["worker_peak_rss_mb"] = {
        kind.split("_")[1]: max(rnd[kind]["worker_peak_rss_mb"] for rnd in rounds)
        for kind in kinds
        if kind != "baseline"
    }
    return out


def _run_once(
    console: Console,
    load: Load,
    *,
    analytics: bool,
    collectors: int,
    workers: int,
    split: bool = False,
    durable: bool = False,
) -> dict[str, Any]:
    """One stationflow run: a fresh private stack, the load, the counts (``split``: each worker
    as a raw-stage process and an analytics process)."""
    with tempfile.TemporaryDirectory(prefix="stationflow-bench-") as tmp:
        pipeline = Pipeline(
            Path(tmp),
            ports={"kafka": free_port(), "mqtt": free_port(), "influx": free_port()},
            # the load generator's synthetic devices are not registered
            extra_env={
                "STATIONFLOW_ANALYTICS_ENABLED": str(analytics).lower(),
                "STATIONFLOW_STREAMS_REGISTRY": "false",
            },
            durable=durable,
            split_analytics=split,
        )
        with pipeline:
            with console.status("starting the stack…") as status:
                ep = pipeline.start_infra(on_step=lambda s: status.update(f"starting {s}…"))
                for n in range(1, collectors + 1):
                    pipeline.start("ingest", instance=n)
                status.update("starting the stream workers…")
                for n in range(1, workers + 1):
                    pipeline.start("streams", instance=n)
                    if split:
                        pipeline.start("analytics", instance=n)
            pids = {c.name: c.proc.pid for c in pipeline.components if c.proc.pid}
            pids.update({k: p.pid for k, p in pipeline.services.items() if p.pid})
            sampler = Sampler(pids)
            sampler.start()
            urls = [
                f"http://127.0.0.1:{port}/metrics"
                for name, port in pipeline.metrics_ports.items()
                if kind_of(name) in WORKER_PROCESSES
            ]

            def written() -> float:
                try:
                    return sum(scrape_counter(url, "stationflow_streams_readings_total") for url in urls)
                except httpx.HTTPError:
                    return 0.0  # a worker not answering: the count waits for the writes to settle

            def pending() -> float:
                """Batches the workers' sinks hold on disk, to be written to InfluxDB later."""
                try:
                    return sum(scrape_counter(url, "stationflow_sink_spool_batches") for url in urls)
                except httpx.HTTPError:
                    return 1.0  # a worker not answering: maybe (the wait is bounded)

            caught: dict[str, float | None] = {}
            analysed: dict[str, int] = {}  # records analysed and on the topic, at the last poll

            def catch_up() -> None:
                """Wait for the analytics (before the exact count, which would compete with them)."""
                with console.status("waiting for the analytics agent to catch up…"):
                    caught["at"] = _wait_analytics(ep.kafka, "readings.clean", urls, progress=analysed)
                if caught["at"] is None:
                    dump_tasks(pipeline)

            result = _drive(
                console,
                ep.mqtt_host,
                ep.mqtt_port,
                ep.influx_url,
                ep.influx_db,
                load,
                written,
                after_load=catch_up if analytics else None,
                pending=pending,
            )
            result["sink"] = sink_report(urls)
            if analytics:
                result["analytics_handoff"] = handoff_report(urls)
            result["worker_gc_seconds"] = gc_report(urls)
            if result["failed"] and any(result["sink"].values()):
                sinks = ", ".join(f"{k.replace('_', ' ')} {v:,.0f}" for k, v in result["sink"].items() if v)
                result["failed"] += f"; the workers' sinks: {sinks}"
                console.print(f"[bold red]the workers' sinks: {sinks}")
            result["analytics"] = analytics
            result["analytics_engine"] = ENGINE.name if analytics else None  # mypyc or python
            result["durable"] = durable
            if analytics:
                if "at" not in caught:  # the load failed before the analytics were waited for
                    catch_up()
                caught_up = caught["at"]
                elapsed = (caught_up or time.monotonic()) - result["started"]
                result["analytics_caught_up"] = caught_up is not None
                if caught_up is None and not result["failed"]:
                    result["failed"] = (
                        f"the analytics did not catch up within {STALL_S:.0f} s: "
                        f"{analysed.get('done', 0):,} of {analysed.get('target', 0):,} "
                        "readings.clean records analysed"
                    )
                    console.print(f"[bold red]bench failed: {result['failed']}")
                result["analytics_seconds"] = round(elapsed, 2)
                result["analytics_readings_per_s"] = round(result["stored"] / max(elapsed, 1e-9))
            _finish(result, sampler, STATIONFLOW_STAGES)
        if result["failed"]:  # the stack has stopped: its logs are complete
            result["logs"] = str(keep_logs(Path(tmp), analytics=analytics))
            console.print(f"[bold red]the failed run's logs: {result['logs']}")
    result["processes"] = {"collectors": collectors, "workers": workers, "publishers": load.publishers}
    if split:
        result["processes"]["analytics"] = workers
    return result


def _run_baseline(console: Console, load: Load) -> dict[str, Any]:
    """One baseline run: the plain bridge on its own private Mosquitto + InfluxDB, the same load."""
    with tempfile.TemporaryDirectory(prefix="stationflow-bench-baseline-") as tmp:
        # the same infrastructure with the same configs; Kafka stays unused
        pipeline = Pipeline(
            Path(tmp), ports={"kafka": free_port(), "mqtt": free_port(), "influx": free_port()}
        )
        with pipeline:
            with console.status("starting the stack…") as status:
                ep = pipeline.start_infra(on_step=lambda s: status.update(f"starting {s}…"))
                status.update("starting the baseline bridge…")
                bridge = _start_bridge(ep, Path(tmp) / "logs" / "baseline.log")
            try:
                pids = {c.name: c.proc.pid for c in pipeline.components if c.proc.pid and c.name != "tansu"}
                sampler = Sampler({**pids, "bridge": bridge.pid or 0})
                sampler.start()
                result = _drive(console, ep.mqtt_host, ep.mqtt_port, ep.influx_url, ep.influx_db, load)
                _finish(result, sampler, BASELINE_STAGES)
            finally:
                status_code = bridge.stop()
            result["bridge"] = _bridge_report(bridge.log_path)
            result["bridge"]["exit_code"] = status_code
    # Informational: the bridge's last batch usually waits out its 1 s timer with nothing more to
    # come; without that idle tail (a larger run dilutes it) the bridge would have finished at:
    tail = float(result["bridge"].get("idle_before_last_timer_write_s", 0.0))
    if tail and result["seconds"] > tail:
        result["readings_per_s_without_timer_tail"] = round(result["stored"] / (result["seconds"] - tail))
    result["processes"] = {"bridge": 1, "publishers": load.publishers}
    return result


def _start_bridge(ep: Any, log_path: Path) -> ManagedProcess:
    argv = [sys.executable, "-m", "stationflow.bench.baseline", "--mqtt-host", ep.mqtt_host]
    argv += ["--mqtt-port", str(ep.mqtt_port), "--influx-url", ep.influx_url, "--db", ep.influx_db]
    bridge = ManagedProcess("bridge", argv, log_path=log_path)
    bridge.start()

    def ready() -> bool:
        return log_path.exists() and READY_LINE in log_path.read_text(errors="replace")

    try:
        bridge.wait_ready(ready, BRIDGE_READY_S)
    except BaseException:
        bridge.stop()
        raise
    return bridge


def _bridge_report(log_path: Path) -> dict[str, Any]:
    """The bridge's own exit line (messages, points written / failed, its CPU), as numbers."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    lines = [line for line in text.splitlines() if line.startswith("baseline stopped")]
    if not lines:
        return {"stopped_cleanly": False}
    fields = dict(part.split("=", 1) for part in lines[-1].split()[2:] if "=" in part)
    report: dict[str, Any] = {k: float(v) if "." in v else int(v) for k, v in fields.items()}
    report["stopped_cleanly"] = True
    return report


def _finish(result: dict[str, Any], sampler: Sampler, stages: dict[str, tuple[str, ...]]) -> None:
    """Final sample (exact CPU of the processes still alive), RSS, CPU and CPU µs per reading."""
    sampler.stop_event.set()
    sampler.sample()
    load_result = result.pop("load_result", None)
    cpu = dict(sampler.cpu)
    if load_result is not None:  # the load generator's processes have exited: they report their CPU
        cpu["loadgen"] = float(load_result.cpu_seconds + load_result.probe_cpu_seconds)
    result.pop("started", None)
    result["rss_mb"] = {k: round(v, 1) for k, v in sampler.peak.items()}
    result["cpu_s"] = {k: round(v, 2) for k, v in cpu.items()}
    per_stage = stage_cpu(cpu, stages)
    result["cpu_s_exact"] = per_stage
    result["cpu_us_per_reading"] = {k: _us(v / max(result["stored"], 1)) for k, v in per_stage.items()}
    workers = [v for k, v in sampler.peak.items() if kind_of(k) in WORKER_PROCESSES]
    result["worker_peak_rss_mb"] = round(max(workers), 1) if workers else None
    result["machine"] = {"cpus": psutil.cpu_count(), "python": sys.version.split()[0]}


SINK_METRICS = {
    "points_written": "stationflow_sink_points_written_total",
    "write_requests": "stationflow_sink_write_seconds_count",
    "points_spooled": "stationflow_sink_spooled_points_total",
    "points_drained": "stationflow_sink_drained_points_total",
    "points_refused_and_kept": "stationflow_sink_rejected_kept_total",
    "points_dropped": "stationflow_sink_dropped_points_total",
    "batches_still_spooled": "stationflow_sink_spool_batches",
}


def sink_report(urls: list[str]) -> dict[str, float | None]:
    """What the workers' InfluxDB sinks wrote (points, write requests) and did besides writing at
    once (spooled while InfluxDB was slow or away, drained later, refused, dropped; all 0 in a
    healthy run)."""
    report: dict[str, float | None] = {}
    for key, metric in SINK_METRICS.items():
        try:
            report[key] = sum(scrape_counter(url, metric) for url in urls)
        except httpx.HTTPError:
            report[key] = None  # a worker not answering
    return report


def handoff_report(urls: list[str]) -> dict[str, float] | None:
    """readings.clean records the workers' analytics took decoded from their raw stage (``hit``),
    decoded themselves (``miss``), and the records the handoff forgot (``expired``) or had no room
    for (``full``): ``streams.handoff``. None when a worker does not answer."""
    return _summed_by_label(urls, "stationflow_analytics_handoff_total", "result")


def gc_report(urls: list[str]) -> dict[str, float] | None:
    """Seconds the workers spent in Python's cyclic garbage collector, by generation (summed over
    the workers; ``stationflow_gc_seconds_total``). None when a worker does not answer."""
    report = _summed_by_label(urls, "stationflow_gc_seconds_total", "generation")
    return None if report is None else {k: round(v, 3) for k, v in report.items()}


def _summed_by_label(urls: list[str], metric: str, label: str) -> dict[str, float] | None:
    """``metric`` summed over every worker's /metrics page, per value of ``label`` (None when a
    worker does not answer)."""
    report: dict[str, float] = {}
    try:
        for url in urls:
            for value, count in scrape_by_label(url, metric, label).items():
                report[value] = report.get(value, 0.0) + count
    except httpx.HTTPError:
        return None
    return report


def keep_logs(run_dir: Path, *, analytics: bool) -> Path:
    """Copy a failed run's logs and rejected points out of its temporary directory (which goes
    with the run) to ``<state dir>/bench-failed/<time>-analytics-<on|off>``, where a person can
    read why."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    base = (
        CommonSettings().state_dir.resolve()
        / "bench-failed"
        / f"{stamp}-analytics-{'on' if analytics else 'off'}"
    )
    dest, n = base, 1
    while dest.exists():
        n += 1
        dest = base.with_name(f"{base.name}.{n}")
    dest.mkdir(parents=True)
    if (run_dir / "logs").is_dir():
        shutil.copytree(run_dir / "logs", dest / "logs")
    for rejected in run_dir.glob("**/rejected"):  # points InfluxDB refused (``stationflow rejected``)
        shutil.copytree(rejected, dest / rejected.relative_to(run_dir))
    return dest


def _us(seconds_per_reading: float) -> float:
    return round(seconds_per_reading * 1e6, 2)


def dump_tasks(pipeline: Pipeline, settle_s: float = 2.0) -> None:
    """Have every worker write its threads and asyncio tasks, each with its stack, to its log
    (SIGUSR1: ``streams.__main__.Worker``, each task down to what it awaits), so a stalled
    run's kept logs say what waited."""
    for name, proc in pipeline.services.items():
        if kind_of(name) in WORKER_PROCESSES and proc.running:
            proc.signal(signal.SIGUSR1)
    time.sleep(settle_s)


def _wait_analytics(
    bootstrap: str, topic: str, metrics_urls: list[str], progress: dict[str, int] | None = None
) -> float | None:
    """Monotonic time at which the workers had analysed every record of ``topic`` (None: not
    within ``STALL_S``; ``progress`` then says how far they got: ``done`` of ``target``).

    Records on the topic: the sum of its end offsets; analysed: the workers'
    ``stationflow_analytics_records_total``. The time is when the last batch was done, by the
    workers' ``stationflow_analytics_last_batch_done_timestamp_seconds`` (the same clock on
    this machine), not when a poll found it so: polls every 0.25 s had added 0.125 s on
    average to a run of 3-8 s.
    """

    async def produced() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            await consumer.topics()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            ends = await consumer.end_offsets(parts)
            return sum(ends.values())
        finally:
            await consumer.stop()

    deadline = time.monotonic() + STALL_S
    target = asyncio.run(produced())
    while time.monotonic() < deadline:
        done = sum(scrape_counter(url, "stationflow_analytics_records_total") for url in metrics_urls)
        scraped = time.monotonic()
        if progress is not None:
            progress.update(done=int(done), target=target)
        # the end offsets are read again only once the analytics reached the last ones read
        # (a consumer per poll cost this process and Tansu CPU while the analytics caught up)
        if done >= target:
            target = asyncio.run(produced())
            if done >= target:
                return _done_at(metrics_urls, scraped)
        time.sleep(0.25)
    return None


def _done_at(metrics_urls: list[str], scraped: float) -> float:
    """The monotonic time of the workers' last finished analytics batch (at most ``scraped``)."""
    stamps = [
        t
        for url in metrics_urls
        for t in scrape_samples(url, "stationflow_analytics_last_batch_done_timestamp_seconds")
    ]
    last = max(stamps, default=0.0)
    if last <= 0:  # no worker says (none finished a batch): the poll's time
        return scraped
    return min(scraped, time.monotonic() - (time.time() - last))


def _drive(
    console: Console,
    mqtt_host: str,
    mqtt_port: int,
    influx_url: str,
    db: str,
    load: Load,
    written: Callable[[], float] | None = None,
    after_load: Callable[[], None] | None = None,
    pending: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Run the load and count what is stored until everything is, or nothing moved for ``STALL_S``.

    The clock starts when the publishers are told to go (after they rendered their messages)
    and stops when InfluxDB last wrote a point before the count that found every reading
    (see :class:`_Counter`; ``written``: the points the workers say they wrote).
    ``after_load``: called once every reading may be stored and before the exact count (the
    count is deferred until it returns; the readings' time then ends when the gate opened).
    """
    from stationflow.bench.loadgen import run_load

    probes = _Probes()
    published = {"n": 0}
    load_out: dict[str, Any] = {}
    launched = time.monotonic()
    clock = {"started": launched}
    me = psutil.Process()
    own_cpu = sum(me.cpu_times()[:2])

    def on_progress(n: int) -> None:
        published["n"] = n

    def on_start() -> None:
        clock["started"] = time.monotonic()

    def run() -> None:
        try:
            load_out["result"] = run_load(
                mqtt_host,
                mqtt_port,
                readings=load.readings,
                per_message=load.per_message,
                processes=load.publishers,
                devices=load.devices,
                on_progress=on_progress,
                on_start=on_start,
            )
        except Exception as exc:  # noqa: BLE001 - reported as the run's failure, exit code 1
            load_out["error"] = f"{type(exc).__name__}: {exc}"

    loader = threading.Thread(target=run, daemon=True)
    loader.start()
    messages = -(-load.readings // load.per_message)
    counter = _Counter(
        influx_url,
        db,
        load.readings,
        min_points=messages,
        written=written,
        defer=after_load is not None,
        pending=pending,
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        pub_task = progress.add_task("published", total=load.readings)
        store_task = progress.add_task("stored   ", total=load.readings)
        while True:
            probes.poll(influx_url, db)
            now = time.monotonic()
            counter.step(now, published_all=published["n"] >= load.readings or not loader.is_alive())
            progress.update(pub_task, completed=published["n"])
            estimate = (counter.points - len(probes.seen)) * load.per_message
            progress.update(store_task, completed=max(counter.stored, min(estimate, load.readings)))
            if not loader.is_alive() and (
                counter.complete or counter.ready_at is not None or "error" in load_out
            ):
                break
            if now - max(counter.changed_at, clock["started"]) > STALL_S:
                break
            time.sleep(POLL_S)
    loader.join(timeout=5)
    if after_load is not None and "error" not in load_out:
        after_load()
    stored = counter.final()
    own_cpu = sum(me.cpu_times()[:2]) - own_cpu
    last_change = counter.finished_at if counter.finished_at is not None else counter.changed_at
    started = clock["started"]
    load_result = load_out.get("result")
    sent = int(load_result.readings) if load_result else published["n"]
    lat = probes.latencies_ms()
    elapsed = max(last_change - started, 1e-9)
    failed = _failure(load_out.get("error"), readings=load.readings, sent=sent, stored=stored)
    if failed:
        console.print(f"[bold red]bench failed: {failed}")
    return {
        "failed": failed,
        "started": started,
        "load_result": load_result,
        "readings": load.readings,
        "published": sent,
        "stored": stored,
        "lost": max(0, sent - stored),
        # messages sent again after the broker went away / acknowledged "no matching subscribers"
        "resent": int(getattr(load_result, "resent", 0)),
        "unrouted": int(getattr(load_result, "unrouted", 0)),
        "seconds": round(elapsed, 2),
        # before the clock: spawning the load generator's processes and rendering the messages
        "load_setup_s": round(started - launched, 2),
        # this process (polls, counts, the load generator's parent) also shares the cores
        "bench_cpu_s": round(own_cpu, 2),
        "readings_per_s": round(stored / elapsed),
        "publish_readings_per_s": round(sent / load_result.seconds) if load_result else None,
        "per_message": load.per_message,
        "devices": load.devices,
        "latency_ms": {
            "p50": _percentile(lat, 50),
            "p95": _percentile(lat, 95),
            "p99": _percentile(lat, 99),
            "max": _percentile(lat, 100),
            "samples": len(lat),
            "resolution_ms": POLL_S * 1000,
        },
    }


def _failure(error: str | None, *, readings: int, sent: int, stored: int) -> str | None:
    """Why a run does not count, or None: the load did not run, fell short, or readings were lost."""
    if error:
        return f"the load generator stopped: {error}"
    if sent < readings:
        return f"published {sent:,} of {readings:,} readings"
    if stored < sent:
        return f"{sent - stored:,} of {sent:,} published readings were never stored"
    return None


def _print_all(console: Console, rounds: list[dict[str, Any]], summary: dict[str, Any] | None) -> None:
    """Each run's table; with a baseline or several rounds, the per-round and median figures."""
    titles = {"baseline": "baseline bridge", "analytics_off": "analytics off", "analytics_on": "analytics on"}
    for n, rnd in enumerate(rounds, 1):
        for kind in ("baseline", "analytics_off", "analytics_on"):
            if kind in rnd:
                prefix = f"run {n}: " if len(rounds) > 1 else ""
                _print_table(console, rnd[kind], prefix + titles[kind])
    if summary is not None:
        _print_rounds(console, rounds, summary)
        _print_stages(console, summary["cpu_us_per_reading"])


def _print_rounds(console: Console, rounds: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    table = Table(title="readings/s per run (on: until the analytics caught up) and ratio to the baseline")
    cols = [("baseline", "baseline"), ("analytics_off", "off"), ("analytics_on", "on")]
    cols = [(k, label) for k, label in cols if k in rounds[0]]
    table.add_column("run")
    for _, label in cols:
        table.add_column(f"{label} r/s", justify="right")
    base = "baseline" in rounds[0]
    for _, label in cols[1:] if base else []:
        table.add_column(f"ratio {label}", justify="right")
    table.add_column("lost", justify="right")
    for n, rnd in enumerate(rounds, 1):
        rates = [
            rnd[k]["analytics_readings_per_s" if k == "analytics_on" else "readings_per_s"] for k, _ in cols
        ]
        ratios = [rnd["ratio_to_baseline"].get(label) for _, label in cols[1:]] if base else []
        lost = " / ".join(str(rnd[k]["lost"]) for k, _ in cols)
        table.add_row(str(n), *(f"{v:,}" for v in rates), *(str(v) for v in ratios), lost)
    keys = ["baseline_readings_per_s" if k == "baseline" else f"readings_per_s_{label}" for k, label in cols]
    ratio = summary.get("ratio_to_baseline", {})
    table.add_row(
        "[bold]median",
        *(f"[bold]{summary[k]:,.0f}" for k in keys),
        *(f"[bold]{ratio.get(label)}" for _, label in (cols[1:] if base else [])),
        "",
    )
    console.print(table)
    if "ratio_to_baseline_without_timer_tail" in summary:
        console.print(
            "ratio to the baseline without its idle 1 s timer tail (informational), median: "
            + ", ".join(f"{k} {v}" for k, v in summary["ratio_to_baseline_without_timer_tail"].items())
        )
    rss = summary.get("worker_peak_rss_mb", {})
    console.print("[bold]worker peak RSS MB: " + ", ".join(f"analytics {k} {v}" for k, v in rss.items()))


def _print_stages(console: Console, cpu: dict[str, dict[str, float | None]]) -> None:
    table = Table(title="CPU µs per reading per stage (median over the runs)")
    table.add_column("stage")
    for kind in cpu:
        table.add_column(kind.replace("_", " "), justify="right")
    stages = list(dict.fromkeys(s for figures in cpu.values() for s in figures))
    for stage in stages:
        table.add_row(stage, *("-" if cpu[k].get(stage) is None else f"{cpu[k][stage]:.2f}" for k in cpu))
    totals = [sum(v for s, v in cpu[k].items() if v is not None and s != ANALYTICS_STAGE) for k in cpu]
    table.add_row("[bold]total (analytics is inside worker)", *(f"[bold]{t:.2f}" for t in totals))
    console.print(table)


def _print_table(console: Console, r: dict[str, Any], title: str = "") -> None:
    pipeline = "MQTT → paho bridge → InfluxDB" if "bridge" in r else "MQTT → Kafka → Faust → InfluxDB"
    table = Table(title=f"stationflow bench: {pipeline} {title}".strip())
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("readings published", f"{r['published']:,}")
    table.add_row("readings stored", f"{r['stored']:,}")
    table.add_row("lost", f"{r['lost']:,}")
    if r.get("failed"):
        table.add_row("FAILED", str(r["failed"]))
    resent, unrouted = r.get("resent", 0), r.get("unrouted", 0)
    table.add_row("messages resent / no subscriber (0x10)", f"{resent:,} / {unrouted:,}")
    table.add_row("end-to-end readings/s", f"{r['readings_per_s']:,}")
    if r.get("analytics"):
        table.add_row("readings/s incl. analytics caught up", f"{r['analytics_readings_per_s']:,}")
        table.add_row("analytics engine", str(r.get("analytics_engine")))
    if r.get("worker_peak_rss_mb") is not None:
        table.add_row("[bold]worker peak RSS MB", f"[bold]{r['worker_peak_rss_mb']}")
    lat = r["latency_ms"]
    table.add_row("latency p50 / p95 / p99 ms", f"{lat['p50']} / {lat['p95']} / {lat['p99']}")
    for stage, us in r["cpu_us_per_reading"].items():
        table.add_row(f"CPU µs per reading: {stage}", f"{us:.2f}")
    for name, rss in r["rss_mb"].items():
        table.add_row(f"peak RSS {name} MB", f"{rss}  (cpu {r['cpu_s'].get(name, '-')} s)")
    console.print(table)
