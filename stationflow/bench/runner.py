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
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stationflow.bench.sampler import Sampler
from stationflow.stack.components import influx_query
from stationflow.stack.monitor import scrape_counter
from stationflow.stack.pipeline import Pipeline
from stationflow.stack.ports import free_port

__all__ = ["run_bench"]

POLL_S = 0.05  # probe poll interval: the latency resolution
COUNT_EVERY_S = 0.5  # how often the stored total is counted
STALL_S = 60.0  # give up waiting when the stored count has not moved for this long
MEASUREMENT = "sensor"  # bench metrics m0..mN are generic, so they land in `sensor`
PROBE_DEVICE = "bench-probe"


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


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return round(values[index], 1)


def run_bench(
    *,
    readings: int,
    per_message: int,
    publishers: int,
    devices: int,
    as_json: bool,
    collectors: int = 1,
    workers: int = 1,
    analytics: bool = False,
    durable: bool = False,
) -> int:
    """Run the benchmark; print JSON or a table; return the exit code (1 if anything was lost).

    ``analytics``: run twice, analytics off then on, and report both. ``durable``: run the
    stack as ``stationflow up`` does (Mosquitto persistence, the Kafka state archive
    mirroring changelogs and dead letters), to measure what durability costs.
    """
    console = Console(stderr=True, quiet=as_json)
    kwargs: dict[str, Any] = {
        "readings": readings,
        "per_message": per_message,
        "publishers": publishers,
        "devices": devices,
        "collectors": collectors,
        "workers": workers,
        "durable": durable,
    }
    if not analytics:
        result = _run_once(console, analytics=False, **kwargs)
        if as_json:
            print(json.dumps(result))  # noqa: T201 - the command's output
        else:
            _print_table(Console(), result)
        return 0 if result["lost"] == 0 and not result["failed"] else 1
    console.print("[bold]run 1 of 2: analytics off")
    off = _run_once(console, analytics=False, **kwargs)
    console.print("[bold]run 2 of 2: analytics on")
    on = _run_once(console, analytics=True, **kwargs)
    comparison = {
        "analytics_off": off,
        "analytics_on": on,
        "readings_per_s_off": off["readings_per_s"],
        "readings_per_s_on": on["analytics_readings_per_s"],
        "ratio_on_off": round(on["analytics_readings_per_s"] / max(off["readings_per_s"], 1), 3),
    }
    if as_json:
        print(json.dumps(comparison))  # noqa: T201 - the command's output
    else:
        for title, r in (("analytics off", off), ("analytics on", on)):
            _print_table(Console(), r, title)
    ok = not off["failed"] and not on["failed"] and on.get("analytics_caught_up")
    return 0 if ok and off["lost"] == 0 and on["lost"] == 0 else 1


def _run_once(
    console: Console,
    *,
    analytics: bool,
    readings: int,
    per_message: int,
    publishers: int,
    devices: int,
    collectors: int,
    workers: int,
    durable: bool = False,
) -> dict[str, Any]:
    from stationflow.bench.loadgen import run_load

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
        )
        with pipeline:
            with console.status("starting the stack…") as status:
                ep = pipeline.start_infra(on_step=lambda s: status.update(f"starting {s}…"))
                for n in range(1, collectors + 1):
                    pipeline.start("ingest", instance=n)
                status.update("starting the stream workers…")
                for n in range(1, workers + 1):
                    pipeline.start("streams", instance=n)
            pids = {c.name: c.proc.pid for c in pipeline.components if c.proc.pid}
            pids.update({k: p.pid for k, p in pipeline.services.items() if p.pid})
            sampler = Sampler(pids)
            sampler.start()
            result = _drive(
                console,
                ep.mqtt_host,
                ep.mqtt_port,
                ep.influx_url,
                ep.influx_db,
                run_load,
                readings=readings,
                per_message=per_message,
                publishers=publishers,
                devices=devices,
            )
            result["analytics"] = analytics
            result["durable"] = durable
            if analytics:
                with console.status("waiting for the analytics agent to catch up…"):
                    urls = [
                        f"http://127.0.0.1:{port}/metrics"
                        for name, port in pipeline.metrics_ports.items()
                        if name.startswith("streams")
                    ]
                    caught_up = _wait_analytics(ep.kafka, "readings.clean", urls)
                elapsed = (caught_up or time.monotonic()) - result.pop("started")
                result["analytics_caught_up"] = caught_up is not None
                result["analytics_seconds"] = round(elapsed, 2)
                result["analytics_readings_per_s"] = round(result["stored"] / max(elapsed, 1e-9))
            else:
                result.pop("started")
            sampler.stop_event.set()
            sampler.sample()
            result["rss_mb"] = {k: round(v, 1) for k, v in sampler.peak.items()}
            result["cpu_s"] = {k: round(v, 1) for k, v in sampler.cpu.items()}
    result["machine"] = {"cpus": psutil.cpu_count(), "python": sys.version.split()[0]}
    result["processes"] = {"collectors": collectors, "workers": workers, "publishers": publishers}
    return result


def _wait_analytics(bootstrap: str, topic: str, metrics_urls: list[str]) -> float | None:
    """Monotonic time at which the workers had analysed every record of ``topic`` (None: stalled).

    Records on the topic: the sum of its end offsets; analysed: the workers'
    ``stationflow_analytics_records_total``.
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
    while time.monotonic() < deadline:
        done = sum(scrape_counter(url, "stationflow_analytics_records_total") for url in metrics_urls)
        if done >= asyncio.run(produced()):
            return time.monotonic()
        time.sleep(0.25)
    return None


def _drive(
    console: Console,
    mqtt_host: str,
    mqtt_port: int,
    influx_url: str,
    db: str,
    run_load: Any,
    *,
    readings: int,
    per_message: int,
    publishers: int,
    devices: int,
) -> dict[str, Any]:
    probes = _Probes()
    published = {"n": 0}
    load_out: dict[str, Any] = {}

    def on_progress(n: int) -> None:
        published["n"] = n

    def load() -> None:
        try:
            load_out["result"] = _call_load()
        except Exception as exc:  # noqa: BLE001 - reported as the run's failure, exit code 1
            load_out["error"] = f"{type(exc).__name__}: {exc}"

    def _call_load() -> Any:
        return run_load(
            mqtt_host,
            mqtt_port,
            readings=readings,
            per_message=per_message,
            processes=publishers,
            devices=devices,
            on_progress=on_progress,
        )

    started = time.monotonic()
    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    stored, last_change, last_count = 0, time.monotonic(), 0.0
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        pub_task = progress.add_task("published", total=readings)
        store_task = progress.add_task("stored   ", total=readings)
        while True:
            probes.poll(influx_url, db)
            now = time.monotonic()
            if now - last_count >= COUNT_EVERY_S:
                last_count = now
                count = _stored(influx_url, db)
                if count != stored:
                    stored, last_change = count, now
            progress.update(pub_task, completed=published["n"])
            progress.update(store_task, completed=stored)
            if not loader.is_alive() and (stored >= readings or "error" in load_out):
                break
            if now - last_change > STALL_S:
                break
            time.sleep(POLL_S)
    finished = last_change
    loader.join(timeout=5)
    load_result = load_out.get("result")
    sent = int(getattr(load_result, "readings", readings)) if load_result else published["n"]
    lat = probes.latencies_ms()
    elapsed = max(finished - started, 1e-9)
    failed = _failure(load_out.get("error"), readings=readings, sent=sent, stored=stored)
    if failed:
        console.print(f"[bold red]bench failed: {failed}")
    return {
        "failed": failed,
        "started": started,
        "readings": readings,
        "published": sent,
        "stored": stored,
        "lost": max(0, sent - stored),
        # messages sent again after the broker went away / acknowledged "no matching subscribers"
        "resent": int(getattr(load_result, "resent", 0)),
        "unrouted": int(getattr(load_result, "unrouted", 0)),
        "seconds": round(elapsed, 2),
        "readings_per_s": round(stored / elapsed),
        "publish_readings_per_s": round(sent / getattr(load_result, "seconds", elapsed))
        if load_result
        else None,
        "per_message": per_message,
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


def _print_table(console: Console, r: dict[str, Any], title: str = "") -> None:
    table = Table(title=f"stationflow bench: MQTT → Kafka → Faust → InfluxDB {title}".strip())
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
    lat = r["latency_ms"]
    table.add_row("latency p50 / p95 / p99 ms", f"{lat['p50']} / {lat['p95']} / {lat['p99']}")
    for name, rss in r["rss_mb"].items():
        table.add_row(f"peak RSS {name} MB", f"{rss}  (cpu {r['cpu_s'].get(name, '-')} s)")
    console.print(table)
