"""``stationflow bench --alerts``: alert latency from MQTT publish to webhook receipt, under load.

A private stack runs every service: Tansu, Mosquitto, InfluxDB, the registry, the collector,
the stream worker with analytics, and the alert service notifying a local webhook receiver.
Through the registry API the benchmark registers a device type for the load generator's
devices, those devices (CSV import), and a river gauge station with ``probes`` level gauges.
While a background publisher sends the load generator's messages at ``rate`` readings/s
(QoS 1, 200 devices by default), one gauge every ``PROBE_EVERY_S`` publishes a level above
the station's warning level; its alert is one webhook call, and
``alert_latency_ms`` is receipt time − publish time of that reading, over every probe.

Where the time goes: after the run the bench reads back ``readings.raw``, ``readings.clean``
and ``alerts.events`` and takes, for every probe, the Kafka timestamp (the producer's create
time) of the first record that carries it, and the alert's ``opened_at`` from the alert
service. ``hops_ms`` gives p50 / p99 per hop: publish → raw record (the collector), raw →
clean record (the worker's raw stage, including its InfluxDB write), clean → alert event (the
analytics), alert event → alert stored (the analytics' wait until its batch is durable, the
alert service's fetch and transaction), stored → signed webhook (outbox and dispatcher). A
probe whose alert never arrives, arrives twice or unsigned, or a background load that fell
short of the rate asked for, fails the run (exit 1, with the reasons in ``failures``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

from alerts.channels.webhook import verify
from stationflow.bench.loadgen import format_ts_ms, plan
from stationflow.bench.mqttwire import Connection, encode_publish
from stationflow.bench.receiver import Received, WebhookReceiver
from stationflow.kafka import true_end_offsets
from stationflow.stack.monitor import scrape_buckets
from stationflow.stack.pipeline import Pipeline, kind_of
from stationflow.stack.ports import free_port
from stationflow.topics import ALERTS, CLEAN, RAW
from stationflow.wire import split_bundle

__all__ = ["HOPS", "hop_latencies", "probe_failures", "run_alert_bench"]

PROBE_EVERY_S = 1.0
PROBE_PREFIX = "alarm-"
WAIT_AFTER_S = 60.0  # after the load: how long to wait for the last probes' webhooks
READ_BACK_S = 60.0  # longest read-back of the topics after the run
WARNING_LEVEL = 10.0
MAX_BACKGROUND_MESSAGES = 10_000_000  # the background loop's bound (stops with the probes first)
BACKGROUND_TICK_S = 0.01  # the background publisher writes what is due this often
BACKGROUND_MAX_INFLIGHT = 20_000  # unacknowledged messages (packet ids cycle through 65,535)
MIN_BACKGROUND_SHARE = 0.9  # a background load below this share of the rate asked fails the run
SECRET = "bench-webhook-secret"  # noqa: S105 - a throwaway stack's secret

# The points every probe passes, in order; a hop is two neighbours.
HOPS = ("publish", "readings_raw", "readings_clean", "alert_event", "alert_stored", "webhook")


LOOP_LAG_METRIC = "stationflow_event_loop_lag_seconds"  # stationflow.runtime.LOOP_LAG
LOOP_LAG_REPORTED = (0.05, 0.25, 1.0)  # the bounds (s) whose exceedances the bench counts


def loop_lag_summary(before: Mapping[float, float], after: Mapping[float, float]) -> dict[str, float]:
    """The worker's event-loop timers during the load (``stationflow.runtime.LOOP_LAG``'s
    cumulative buckets before and after it): how many woke, and how many woke later than
    50 ms, 250 ms and 1 s (a callback held the loop that long)."""
    total = after.get(math.inf, 0.0) - before.get(math.inf, 0.0)
    out: dict[str, float] = {"timers": total}
    for bound in LOOP_LAG_REPORTED:
        under = after.get(bound, 0.0) - before.get(bound, 0.0)
        out[f"late_over_{round(bound * 1000)}ms"] = total - under
    return out


def _worker_loop_lag(pipeline: Pipeline) -> dict[float, float]:
    """The workers' loop-lag buckets, summed (empty if a worker did not answer)."""
    summed: dict[float, float] = {}
    for name, port in pipeline.metrics_ports.items():
        if kind_of(name) not in ("streams", "analytics"):
            continue
        try:
            buckets = scrape_buckets(f"http://127.0.0.1:{port}/metrics", LOOP_LAG_METRIC)
        except httpx.HTTPError:
            return {}
        for bound, count in buckets.items():
            summed[bound] = summed.get(bound, 0.0) + count
    return summed


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 1)


def hop_latencies(
    times: Mapping[str, Mapping[str, float]], points: Sequence[str] = HOPS
) -> dict[str, dict[str, float | int | None]]:
    """p50 / p99 / samples (ms) of each hop between neighbouring ``points``.

    ``times[point][probe]`` is when ``probe`` passed ``point`` (seconds, wall clock); a probe
    missing at either end of a hop is left out of that hop.
    """
    out: dict[str, dict[str, float | int | None]] = {}
    for a, b in itertools.pairwise(points):
        ms = [(times[b][d] - times[a][d]) * 1000 for d in times.get(a, {}) if d in times.get(b, {})]
        out[f"{a}_to_{b}"] = {"p50": _percentile(ms, 50), "p99": _percentile(ms, 99), "samples": len(ms)}
    return out


def probe_failures(
    sent: Sequence[str],
    received: Mapping[str, int],
    unsigned: int,
    *,
    background_readings_per_s: float,
    rate: int,
) -> list[str]:
    """Why the run failed (empty: it did not): missing or repeated alerts, bad signatures, short load."""
    failures: list[str] = []
    missing = [d for d in sent if received.get(d, 0) == 0]
    if missing:
        failures.append(f"{len(missing)} of {len(sent)} probes got no webhook: {', '.join(missing[:10])}")
    repeated = {d: n for d, n in received.items() if n > 1}
    if repeated:
        listed = ", ".join(f"{d} x{n}" for d, n in sorted(repeated.items())[:10])
        failures.append(f"{len(repeated)} probes got their alert more than once: {listed}")
    unexpected = sorted(d for d in received if d not in sent)
    if unexpected:
        failures.append(f"webhooks for devices that sent no probe: {', '.join(unexpected[:10])}")
    if unsigned:
        failures.append(f"{unsigned} webhook calls without a valid signature")
    if background_readings_per_s < MIN_BACKGROUND_SHARE * rate:
        failures.append(
            f"the background load reached {background_readings_per_s:,.0f} readings/s "
            f"of the {rate:,} asked for"
        )
    return failures


def _register(p: Pipeline, *, devices: int, per_message: int, probes: int) -> None:
    reg = httpx.Client(base_url=p.registry_url, headers={"X-API-Key": p.registry_admin_key}, timeout=60)
    metrics = [{"metric": f"m{j}", "unit": "1"} for j in range(per_message)]
    r = reg.post("/device-types", json={"name": "bench-sensor", "domain": "sensor", "metrics": metrics})
    r.raise_for_status()
    rows = ["id,type"] + [f"bench-{i:04d},bench-sensor" for i in range(1, devices + 1)]
    r = reg.post("/import/devices", content="\n".join(rows).encode(), headers={"Content-Type": "text/csv"})
    r.raise_for_status()
    if r.json()["failed"]:
        raise RuntimeError(f"registering the load devices failed: {r.json()['errors'][:3]}")
    station = {
        "id": "bench-gauge",
        "name": "benchmark river gauge",
        "kind": "gauge",
        "region": "000000",
        "basin": "bench",
        "warning_level": WARNING_LEVEL,
        "guaranteed_level": WARNING_LEVEL * 2,
    }
    reg.post("/stations", json=station).raise_for_status()
    rows = ["id,type,station_id,expected_interval_s"] + [
        f"{PROBE_PREFIX}{i:03d},level-gauge,bench-gauge,3600" for i in range(probes)
    ]
    r = reg.post("/import/devices", content="\n".join(rows).encode(), headers={"Content-Type": "text/csv"})
    r.raise_for_status()


def _route(p: Pipeline, hook: WebhookReceiver) -> None:
    api = httpx.Client(base_url=p.alerts_url, headers={"X-API-Key": p.alerts_admin_key}, timeout=10)
    group = {"name": "bench", "members": [{"channel": "webhook", "target": f"{hook.url}/alerts"}]}
    api.put("/contact-groups/bench", json=group).raise_for_status()
    api.post("/policies", json={"name": "bench", "domain": "hydro", "groups": ["bench"]}).raise_for_status()


def _probes_in(topic: str, value: bytes) -> list[str]:
    """The probe devices a record of ``topic`` carries (raw and clean: a bundle of documents)."""
    if PROBE_PREFIX.encode() not in value:
        return []
    if topic == ALERTS:
        doc = orjson.loads(value)
        device = doc.get("device_id")
        raised = doc.get("state") == "raised" and isinstance(device, str)
        return [device] if raised and device.startswith(PROBE_PREFIX) else []
    out = []
    for document in split_bundle(value):
        if PROBE_PREFIX.encode() in document:
            device = orjson.loads(document).get("device_id")
            if isinstance(device, str) and device.startswith(PROBE_PREFIX):
                out.append(device)
    return out


def _first_seen(bootstrap: str, prefix: str) -> dict[str, dict[str, float]]:
    """Per topic (raw, clean, alert events): probe device → Kafka timestamp (s) of its first record."""

    async def read(topic: str) -> dict[str, float]:
        name = prefix + topic
        # one consumer per topic: after an unsubscribe aiokafka forgets the other topics' metadata
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 << 20
        )
        await consumer.start()
        seen: dict[str, float] = {}
        try:
            tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
            ends = await true_end_offsets(consumer, tps)
            todo = {tp for tp in tps if ends.get(tp, 0) > 0}
            if not todo:
                return seen
            consumer.assign(sorted(todo, key=lambda tp: tp.partition))
            await consumer.seek_to_beginning(*todo)
            deadline = time.monotonic() + READ_BACK_S
            while todo and time.monotonic() < deadline:  # bounded
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    for r in records:
                        for device in _probes_in(topic, r.value or b""):
                            seen[device] = min(seen.get(device, float("inf")), r.timestamp / 1000)
                todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
        finally:
            await consumer.stop()
        return seen

    async def read_all() -> dict[str, dict[str, float]]:
        return {topic: await read(topic) for topic in (RAW, CLEAN, ALERTS)}

    return asyncio.run(read_all())


def _stored(p: Pipeline) -> dict[str, float]:
    """Probe device → when the alert service stored its alert (``opened_at``, s)."""
    api = httpx.Client(base_url=p.alerts_url, headers={"X-API-Key": p.alerts_admin_key}, timeout=30)
    r = api.get("/alerts", params={"station_id": "bench-gauge", "limit": 1000})
    r.raise_for_status()
    out: dict[str, float] = {}
    for alert in r.json():
        device = alert.get("device_id")
        if isinstance(device, str) and device.startswith(PROBE_PREFIX):
            at = datetime.fromisoformat(alert["opened_at"]).timestamp()
            out[device] = min(out.get(device, at), at)
    return out


def _webhooks(calls: Sequence[Received]) -> tuple[dict[str, list[float]], int]:
    """device id → arrival times of its webhook calls, and how many calls were not validly signed."""
    received: dict[str, list[float]] = {}
    unsigned = 0
    for call in calls:
        if not verify(SECRET.encode(), call.body, call.headers.get("x-stationflow-signature")):
            unsigned += 1
        doc = orjson.loads(call.body)
        received.setdefault(str(doc.get("device_id")), []).append(call.at)
    return received, unsigned


def _publish_background(
    host: str,
    port: int,
    rate: int,
    per_message: int,
    devices: int,
    stop: Any,
    readings: Any,
    cpu_s: Any,
) -> None:
    """The background publisher's process: the load generator's messages at ``rate`` readings/s
    (QoS 1) until ``stop`` is set; ``readings`` counts what it published, ``cpu_s`` its CPU.

    It writes the messages due every ``BACKGROUND_TICK_S`` in one socket write, as the load
    generator does (``stationflow.bench.mqttwire``), and reads the PUBACKs in between: paho,
    one publish call and one sleep per message, took about half a core for 10,000 readings/s
    (15 CPU-s in 30 s), CPU the pipeline under test then lacked on this 2-core machine.
    """
    load = plan(10**9, devices=devices, per_message=per_message, start=datetime.now(UTC))
    interval = per_message / max(rate, 1)
    conn = Connection(host, port, "alert-bench-load", (None, None))
    started = time.monotonic()
    sent = acked = 0
    try:
        while not stop.is_set() and sent < MAX_BACKGROUND_MESSAGES:
            due = min(int((time.monotonic() - started) / interval), MAX_BACKGROUND_MESSAGES)
            if due > sent and sent - acked < BACKGROUND_MAX_INFLIGHT:
                chunk = []
                for k in range(sent, min(due, sent + BACKGROUND_MAX_INFLIGHT - (sent - acked))):
                    msg = load.render(k)
                    chunk.append(encode_publish(msg.topic, msg.payload, k % 65535 + 1))
                    readings.value += msg.readings
                conn.send(b"".join(chunk))
                sent += len(chunk)
            while ack := conn.read_acks(0.0):  # what arrived, without waiting
                acked += ack
            time.sleep(BACKGROUND_TICK_S)
    finally:
        conn.close()
        times = os.times()
        cpu_s.value = times.user + times.system


class _Background:
    """The background publisher in a process of its own, so it does not share the bench's GIL
    with the probe publisher and the webhook receiver, whose timestamps are the measurement."""

    def __init__(self, host: str, port: int, *, rate: int, per_message: int, devices: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self._readings = ctx.Value("q", 0)
        self._cpu_s = ctx.Value("d", 0.0)
        self.process = ctx.Process(
            target=_publish_background,
            args=(host, port, rate, per_message, devices, self.stop, self._readings, self._cpu_s),
            name="alert-bench-load",
            daemon=True,
        )

    @property
    def readings(self) -> int:
        """Readings published so far."""
        return int(self._readings.value)

    @property
    def cpu_s(self) -> float:
        """The publisher's CPU seconds (known once it has stopped)."""
        return float(self._cpu_s.value)

    def start(self) -> None:
        """Start publishing."""
        self.process.start()

    def join(self, timeout: float) -> None:
        """Wait for the publisher to stop (after ``stop.set()``); kill it if it does not."""
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def _cpu_s(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def run_alert_bench(
    *,
    rate: int,
    per_message: int,
    devices: int,
    probes: int,
    as_json: bool,
    split_analytics: bool = False,
    workers: int = 1,
) -> int:
    """Run it; print JSON or a table; exit code 1 (with the reasons) if a probe's alert never
    arrived, came twice or unsigned, or the background load fell short. ``workers``: stream
    worker processes sharing the partitions; ``split_analytics``: each worker as a raw-stage
    process and an analytics process."""

    console = Console(stderr=True, quiet=as_json)
    with tempfile.TemporaryDirectory(prefix="stationflow-alertbench-") as tmp:
        pipeline = Pipeline(
            Path(tmp),
            ports={"kafka": free_port(), "mqtt": free_port(), "influx": free_port()},
            extra_env={
                "STATIONFLOW_ANALYTICS_ENABLED": "true",
                "STATIONFLOW_STREAMS_REGISTRY": "true",
                "STATIONFLOW_ALERTS_WEBHOOK_SECRET": SECRET,
                "STATIONFLOW_ALERTS_TICK_S": "0.5",
            },
            split_analytics=split_analytics,
        )
        with pipeline, WebhookReceiver(free_port()) as hook:
            with console.status("starting the stack…") as status:
                ep = pipeline.start_infra(on_step=lambda s: status.update(f"starting {s}…"))
                for kind in ("devices", "alerts", "ingest"):
                    status.update(f"starting {kind}…")
                    pipeline.start(kind)
                for kind in ("streams", "analytics") if split_analytics else ("streams",):
                    status.update(f"starting {kind} ({workers})…")
                    for starting in [pipeline.launch(kind, instance=n) for n in range(1, workers + 1)]:
                        starting.wait()
                status.update("registering devices and routing…")
                _register(pipeline, devices=devices, per_message=per_message, probes=probes)
                _route(pipeline, hook)
                time.sleep(3.0)  # the worker applies the registry changes it follows
            rss: dict[str, float] = {}
            procs = {k: psutil.Process(s.pid) for k, s in pipeline.services.items() if s.pid}
            for comp in pipeline.components:
                if comp.proc.pid:
                    procs[comp.name] = psutil.Process(comp.proc.pid)
            cpu_before = {name: _cpu_s(proc) for name, proc in procs.items()}
            lag_before = _worker_loop_lag(pipeline)

            background = _Background(
                ep.mqtt_host, ep.mqtt_port, rate=rate, per_message=per_message, devices=devices
            )
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alert-bench-probe")
            client.connect(ep.mqtt_host, ep.mqtt_port)
            client.loop_start()
            sent: dict[str, float] = {}
            background.start()
            ready_by = time.monotonic() + 60
            while background.readings == 0 and time.monotonic() < ready_by:  # its process starting
                time.sleep(0.05)
            started, published_before = time.monotonic(), background.readings
            try:
                for i in range(probes):  # bounded: one probe per PROBE_EVERY_S
                    device = f"{PROBE_PREFIX}{i:03d}"
                    now = datetime.now(UTC)
                    body = {
                        "readings": [
                            {"metric": "level", "value": WARNING_LEVEL + 0.5, "ts": format_ts_ms(now)}
                        ]
                    }
                    sent[device] = time.time()
                    client.publish(f"devices/{device}/readings", orjson.dumps(body), qos=1).wait_for_publish(
                        10
                    )
                    console.log(f"probe {i + 1}/{probes} published; webhooks so far: {len(hook.snapshot())}")
                    for name, proc in procs.items():
                        try:
                            rss[name] = max(rss.get(name, 0.0), proc.memory_info().rss / 2**20)
                        except psutil.Error:
                            continue
                    time.sleep(PROBE_EVERY_S)
                load_seconds = time.monotonic() - started
                published = background.readings - published_before
                background.stop.set()
                background.join(timeout=30)
                deadline = time.monotonic() + WAIT_AFTER_S
                while time.monotonic() < deadline and len(hook.snapshot()) < probes:
                    time.sleep(0.2)
                # after the last probe's webhook: the pipeline has processed the load before it,
                # so this is the CPU the load cost, however far behind a starved stage fell
                cpu_s = {name: round(_cpu_s(proc) - cpu_before[name], 2) for name, proc in procs.items()}
                cpu_s["background_publisher"] = round(background.cpu_s, 2)
                loop_lag = loop_lag_summary(lag_before, _worker_loop_lag(pipeline))
                time.sleep(1.0)  # room for a duplicate to show up
            finally:
                background.stop.set()
                client.loop_stop()
                client.disconnect()
            received, unsigned = _webhooks(hook.snapshot())
            latencies = [(received[d][0] - t) * 1000 for d, t in sent.items() if d in received]
            console.log("reading the probes back from Kafka…")
            seen = _first_seen(ep.kafka, pipeline.topic_prefix)
            times = {
                "publish": sent,
                "readings_raw": seen[RAW],
                "readings_clean": seen[CLEAN],
                "alert_event": seen[ALERTS],
                "alert_stored": _stored(pipeline),
                "webhook": {d: v[0] for d, v in received.items()},
            }
            hops = hop_latencies(times)
            duplicates = sum(len(v) - 1 for v in received.values())
            background_rate = published / max(load_seconds, 1e-9)
            failures = probe_failures(
                list(sent),
                {d: len(v) for d, v in received.items()},
                unsigned,
                background_readings_per_s=background_rate,
                rate=rate,
            )
            result: dict[str, Any] = {
                "alert_latency_ms": {
                    "p50": _percentile(latencies, 50),
                    "p95": _percentile(latencies, 95),
                    "p99": _percentile(latencies, 99),
                    "max": _percentile(latencies, 100),
                    "samples": len(latencies),
                },
                "hops_ms": hops,
                # each probe's way, ms after its publish (None: not seen there), in publish order
                "probes": {
                    d: [None if d not in times[h] else round((times[h][d] - t) * 1000, 1) for h in HOPS[1:]]
                    for d, t in sent.items()
                },
                "stages_ms_p50": {  # the two halves, as before
                    "publish_to_alert_event": hop_latencies(times, ("publish", "alert_event"))[
                        "publish_to_alert_event"
                    ]["p50"],
                    "alert_event_to_webhook": hop_latencies(times, ("alert_event", "webhook"))[
                        "alert_event_to_webhook"
                    ]["p50"],
                },
                "alerts_expected": probes,
                "alerts_received": len(latencies),
                "duplicates": duplicates,
                "unsigned": unsigned,
                "background": {
                    "target_readings_per_s": rate,
                    "published": published,
                    "readings_per_s": round(background_rate),
                    "seconds": round(load_seconds, 1),
                    "devices": devices,
                },
                "split_analytics": split_analytics,
                "workers": workers,
                "cpu_s": cpu_s,
                "worker_loop_lag": loop_lag,
                "rss_mb": {k: round(v, 1) for k, v in rss.items()},
                "machine": {"cpus": psutil.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]},
                "failures": failures,
            }
    if as_json:
        print(json.dumps(result))  # noqa: T201 - the command's output
    else:
        table = Table(title="stationflow bench --alerts: MQTT publish → webhook receipt")
        table.add_column("measure")
        table.add_column("value", justify="right")
        lat = result["alert_latency_ms"]
        table.add_row("alerts received / expected", f"{result['alerts_received']} / {probes}")
        table.add_row("duplicates", str(duplicates))
        table.add_row("alert latency p50 / p95 / p99 ms", f"{lat['p50']} / {lat['p95']} / {lat['p99']}")
        for hop, stats in hops.items():
            table.add_row(f"{hop.replace('_', ' ')} p50 / p99 ms", f"{stats['p50']} / {stats['p99']}")
        table.add_row("background readings published", f"{result['background']['published']:,}")
        table.add_row("background readings/s", f"{result['background']['readings_per_s']:,}")
        for name, seconds in result["cpu_s"].items():
            table.add_row(f"CPU s {name}", str(seconds))
        lag = result["worker_loop_lag"]
        table.add_row(
            "worker loop timers / late > 50, 250, 1000 ms",
            " / ".join(
                str(int(lag.get(k, 0)))
                for k in ("timers", "late_over_50ms", "late_over_250ms", "late_over_1000ms")
            ),
        )
        for name, mb in result["rss_mb"].items():
            table.add_row(f"peak RSS {name} MB", str(mb))
        Console().print(table)
    for reason in failures:
        Console(stderr=True).print(f"[red]FAILED:[/red] {reason}")
    return 1 if failures else 0
