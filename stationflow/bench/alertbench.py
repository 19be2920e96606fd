"""``stationflow bench --alerts``: alert latency from MQTT publish to webhook receipt, under load.

A private stack runs every service: Tansu, Mosquitto, InfluxDB, the registry, the collector,
the stream worker with analytics, and the alert service notifying a local webhook receiver.
Through the registry API the benchmark registers a device type for the load generator's
devices, those devices (CSV import), and a river gauge station with ``probes`` level gauges.
While a background publisher sends the load generator's messages at ``rate`` readings/s
(QoS 1, 200 devices by default), one gauge every ``PROBE_EVERY_S`` publishes a level above
the station's warning level; its alert is one webhook call, and
``alert_latency_ms`` is receipt time − publish time of that reading, over every probe.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psutil
from aiokafka import AIOKafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

from stationflow.bench.loadgen import format_ts_ms, plan
from stationflow.bench.receiver import WebhookReceiver
from stationflow.stack.pipeline import Pipeline
from stationflow.stack.ports import free_port
from stationflow.topics import ALERTS

__all__ = ["run_alert_bench"]

PROBE_EVERY_S = 1.0
WAIT_AFTER_S = 60.0  # after the load: how long to wait for the last probes' webhooks
WARNING_LEVEL = 10.0
MAX_BACKGROUND_MESSAGES = 10_000_000  # the background loop's bound (stops with the probes first)
SECRET = "bench-webhook-secret"  # noqa: S105 - a throwaway stack's secret


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 1)


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
        f"alarm-{i:03d},level-gauge,bench-gauge,3600" for i in range(probes)
    ]
    r = reg.post("/import/devices", content="\n".join(rows).encode(), headers={"Content-Type": "text/csv"})
    r.raise_for_status()


def _route(p: Pipeline, hook: WebhookReceiver) -> None:
    api = httpx.Client(base_url=p.alerts_url, headers={"X-API-Key": p.alerts_admin_key}, timeout=10)
    group = {"name": "bench", "members": [{"channel": "webhook", "target": f"{hook.url}/alerts"}]}
    api.put("/contact-groups/bench", json=group).raise_for_status()
    api.post("/policies", json={"name": "bench", "domain": "hydro", "groups": ["bench"]}).raise_for_status()


def _event_times(bootstrap: str, topic: str) -> dict[str, float]:
    """device id → when its first raised alert event was produced (Kafka record timestamp, s)."""

    async def read() -> dict[str, float]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: dict[str, float] = {}
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # bounded
                batches = await consumer.getmany(timeout_ms=1000)
                if not batches:
                    break
                for records in batches.values():
                    for r in records:
                        doc = orjson.loads(r.value or b"{}")
                        if doc.get("state") == "raised" and doc.get("device_id"):
                            out.setdefault(str(doc["device_id"]), r.timestamp / 1000)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


class _Background(threading.Thread):
    """Publishes the load generator's messages at ``rate`` readings/s until stopped (QoS 1)."""

    def __init__(self, host: str, port: int, *, rate: int, per_message: int, devices: int) -> None:
        super().__init__(daemon=True, name="background-load")
        self.plan = plan(10**9, devices=devices, per_message=per_message, start=datetime.now(UTC))
        self.interval = per_message / max(rate, 1)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alert-bench-load")
        self.client.max_inflight_messages_set(1000)
        self.client.connect(host, port)
        self.stop = threading.Event()
        self.readings = 0

    def run(self) -> None:
        self.client.loop_start()
        started = time.monotonic()
        try:
            k = 0
            while not self.stop.is_set() and k < MAX_BACKGROUND_MESSAGES:
                msg = self.plan.render(k)
                self.client.publish(msg.topic, msg.payload, qos=1)
                self.readings += msg.readings
                k += 1
                delay = started + k * self.interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        finally:
            self.client.loop_stop()
            self.client.disconnect()


def run_alert_bench(*, rate: int, per_message: int, devices: int, probes: int, as_json: bool) -> int:
    """Run it; print JSON or a table; exit code 1 if a probe's alert never arrived or came twice."""

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
        )
        with pipeline, WebhookReceiver(free_port()) as hook:
            with console.status("starting the stack…") as status:
                ep = pipeline.start_infra(on_step=lambda s: status.update(f"starting {s}…"))
                for kind in ("devices", "alerts", "ingest", "streams"):
                    status.update(f"starting {kind}…")
                    pipeline.start(kind)
                status.update("registering devices and routing…")
                _register(pipeline, devices=devices, per_message=per_message, probes=probes)
                _route(pipeline, hook)
                time.sleep(3.0)  # the worker applies the registry changes it follows
            rss: dict[str, float] = {}
            procs = {k: psutil.Process(s.pid) for k, s in pipeline.services.items() if s.pid}

            background = _Background(
                ep.mqtt_host, ep.mqtt_port, rate=rate, per_message=per_message, devices=devices
            )
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alert-bench-probe")
            client.connect(ep.mqtt_host, ep.mqtt_port)
            client.loop_start()
            sent: dict[str, float] = {}
            started = time.monotonic()
            background.start()
            try:
                for i in range(probes):  # bounded: one probe per PROBE_EVERY_S
                    device = f"alarm-{i:03d}"
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
                background.stop.set()
                background.join(timeout=30)
                load_seconds = time.monotonic() - started
                deadline = time.monotonic() + WAIT_AFTER_S
                while time.monotonic() < deadline and len(hook.snapshot()) < probes:
                    time.sleep(0.2)
                time.sleep(1.0)  # room for a duplicate to show up
            finally:
                client.loop_stop()
                client.disconnect()
            received: dict[str, list[float]] = {}
            for call in hook.snapshot():
                doc = orjson.loads(call.body)
                received.setdefault(str(doc.get("device_id")), []).append(call.at)
            latencies = [(received[d][0] - t) * 1000 for d, t in sent.items() if d in received]
            produced = _event_times(ep.kafka, pipeline.topic_prefix + ALERTS)
            to_event = [(produced[d] - t) * 1000 for d, t in sent.items() if d in produced]
            to_hook = [(received[d][0] - produced[d]) * 1000 for d in sent if d in produced and d in received]
            duplicates = sum(len(v) - 1 for v in received.values())
            result: dict[str, Any] = {
                "alert_latency_ms": {
                    "p50": _percentile(latencies, 50),
                    "p95": _percentile(latencies, 95),
                    "p99": _percentile(latencies, 99),
                    "max": _percentile(latencies, 100),
                    "samples": len(latencies),
                },
                "stages_ms_p50": {
                    "publish_to_alert_event": _percentile(to_event, 50),
                    "alert_event_to_webhook": _percentile(to_hook, 50),
                },
                "alerts_expected": probes,
                "alerts_received": len(latencies),
                "duplicates": duplicates,
                "background": {
                    "target_readings_per_s": rate,
                    "published": background.readings,
                    "readings_per_s": round(background.readings / max(load_seconds, 1e-9)),
                    "seconds": round(load_seconds, 1),
                    "devices": devices,
                },
                "rss_mb": {k: round(v, 1) for k, v in rss.items()},
                "machine": {"cpus": psutil.cpu_count()},
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
        table.add_row("background readings published", f"{result['background']['published']:,}")
        table.add_row("background readings/s", f"{result['background']['readings_per_s']:,}")
        for name, mb in result["rss_mb"].items():
            table.add_row(f"peak RSS {name} MB", str(mb))
        Console().print(table)
    return 0 if len(latencies) == probes and duplicates == 0 else 1
