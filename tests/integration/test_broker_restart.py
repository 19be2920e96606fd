"""Mosquitto SIGKILLed under load and started again on the same port and data directory.

The load generator's publishers behave like devices (they keep unacknowledged QoS 1
messages and resend them, DUP, after reconnecting); Mosquitto runs with persistence (the
collector's session, its subscription and what was queued for it at the last autosave come
back); the collector reconnects, subscribes again and still delivers what it held; the
InfluxDB sink makes the resulting duplicates harmless (series + timestamp).

Mosquitto 2.0.11 does not persist *shared* subscriptions: until the collector has subscribed
again, the restarted broker drops what devices send and tells them so (PUBACK 0x10, "no
matching subscribers"). A single collector with a plain subscription (share group "") loses
nothing; with a shared subscription every lost reading is one the broker acknowledged with
0x10, which the second test measures.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from stationflow.bench.loadgen import PROBE_DEVICE, LoadResult, run_load
from stationflow.bench.mqttwire import Connection, encode_publish
from stationflow.stack.components import Component, influx_query, start_mosquitto
from stationflow.stack.monitor import scrape_counter
from stationflow.stack.pipeline import Pipeline
from tests.integration.pipeline_utils import make_pipeline, wait_for

READINGS = 50_000
DEVICES = 100
PER_MESSAGE = 5
RATE = 5000.0  # readings/s: a fleet's steady flow, within what the pipeline carries here
KILL_AT = 0.2  # share of the load acknowledged by the broker when it is killed
DOWN_S = 2.0  # how long the broker stays dead
BENCH = "device =~ /^bench-[0-9]+$/"
PROBES = f"device = '{PROBE_DEVICE}'"


def _stored(url: str, db: str, where: str) -> int:
    """Points stored (all fields) for the devices matching an InfluxQL condition."""
    total = 0
    for series in influx_query(url, db, f"SELECT count(*) FROM sensor WHERE {where}"):  # noqa: S608
        for row in series["values"]:
            total += sum(v for v in row[1:] if isinstance(v, int))
    return total


def _saved_since(broker: Component, since_ns: int) -> bool:
    """Whether Mosquitto has finished an autosave begun after ``since_ns`` (``time.time_ns()``).

    The log's "Saving in-memory database" line comes *before* the write: a SIGKILL just after
    it keeps the previous file. Mosquitto writes ``mosquitto.db.new`` and renames it, so a
    ``mosquitto.db`` modified after ``since_ns`` is a save that completed.
    """
    try:
        return (broker.workdir / "mosquitto.db").stat().st_mtime_ns > since_ns
    except FileNotFoundError:
        return False


def _kill_under_load(pipeline: Pipeline) -> tuple[LoadResult, int]:
    """Publish the load; SIGKILL the broker at KILL_AT of it, start it DOWN_S later."""
    ep = pipeline.endpoints
    assert ep is not None
    broker = pipeline.component("mosquitto")
    # The collector's session is on disk only from the first autosave after it subscribed.
    subscribed = time.time_ns()
    assert wait_for(lambda: _saved_since(broker, subscribed), timeout=15, interval=0.1)
    acked = [0]
    out: dict[str, Any] = {}

    def load() -> None:
        try:
            out["result"] = run_load(
                ep.mqtt_host,
                ep.mqtt_port,
                readings=READINGS,
                per_message=PER_MESSAGE,
                processes=2,
                devices=DEVICES,
                on_progress=lambda n: acked.__setitem__(0, n),
                timeout_s=300,
                rate=RATE,
            )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            out["error"] = exc

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    assert wait_for(lambda: acked[0] >= KILL_AT * READINGS, timeout=120, interval=0.005), acked
    broker.kill()
    acked_at_kill = acked[0]
    time.sleep(DOWN_S)
    broker.start()
    loader.join(timeout=360)
    assert not loader.is_alive()
    assert "error" not in out, out.get("error")
    result: LoadResult = out["result"]
    assert result.readings == READINGS
    assert acked_at_kill < READINGS and result.reconnects >= 1, "the broker died mid-load"
    return result, acked_at_kill


def _report(pipeline: Pipeline, result: LoadResult, acked_at_kill: int) -> str:
    """Where the readings got to: the numbers these tests exist to measure."""
    urls = {k: f"http://127.0.0.1:{port}/metrics" for k, port in pipeline.metrics_ports.items()}
    forwarded = scrape_counter(urls["ingest"], "stationflow_ingest_readings_total")
    counters = [
        (urls["ingest"], "stationflow_ingest_rejected_total"),
        (urls["ingest"], "stationflow_mqtt_broker_dropped_messages"),
        (urls["streams"], "stationflow_streams_readings_total"),
        (urls["streams"], "stationflow_streams_rejected_total"),
    ]
    found = ", ".join(f"{name}={scrape_counter(url, name):.0f}" for url, name in counters)
    return (
        f"broker killed at {acked_at_kill} of {READINGS} readings acknowledged; devices resent "
        f"{result.resent} messages over {result.reconnects} reconnects; {result.unrouted} messages "
        f"acknowledged 'no matching subscribers'; collector forwarded {forwarded:.0f} readings for "
        f"{READINGS + result.probes} published ({forwarded - READINGS - result.probes:.0f} "
        f"duplicates for the sink to absorb); {found}"
    )


@pytest.mark.slow
def test_mosquitto_sigkill_under_load_loses_no_reading(
    tansu: Component, influxd: Component, tmp_path: Path
) -> None:
    pipeline, _ = make_pipeline(
        tansu,
        influxd,
        tmp_path,
        {"STATIONFLOW_INGEST_SHARE_GROUP": ""},  # one collector, plain persistent subscription
        mosquitto_persistence=True,
    )
    with pipeline:
        pipeline.start("ingest")
        pipeline.start("streams")
        ep = pipeline.endpoints
        assert ep is not None
        result, acked_at_kill = _kill_under_load(pipeline)
        assert result.unrouted == 0, "the restarted broker still had the collector's subscription"
        assert wait_for(
            lambda: _stored(ep.influx_url, ep.influx_db, BENCH) >= READINGS, timeout=120, interval=1.0
        ), f"stored {_stored(ep.influx_url, ep.influx_db, BENCH)}; {_report(pipeline, result, acked_at_kill)}"
        assert wait_for(
            lambda: _stored(ep.influx_url, ep.influx_db, PROBES) >= result.probes, timeout=30, interval=1.0
        ), f"stored {_stored(ep.influx_url, ep.influx_db, PROBES)} of {result.probes} probes"
        time.sleep(2.0)  # late duplicates would land now, and must not add points
        assert _stored(ep.influx_url, ep.influx_db, BENCH) == READINGS
        assert _stored(ep.influx_url, ep.influx_db, PROBES) == result.probes
        ingest_metrics = f"http://127.0.0.1:{pipeline.metrics_ports['ingest']}/metrics"
        assert scrape_counter(ingest_metrics, "stationflow_ingest_mqtt_connected") == 1
        print(_report(pipeline, result, acked_at_kill))  # noqa: T201 - shown with -s


@pytest.mark.slow
def test_shared_subscription_loses_only_what_the_restarted_broker_said_it_dropped(
    tansu: Component, influxd: Component, tmp_path: Path
) -> None:
    pipeline, _ = make_pipeline(tansu, influxd, tmp_path, mosquitto_persistence=True)
    with pipeline:
        pipeline.start("ingest")
        pipeline.start("streams")
        ep = pipeline.endpoints
        assert ep is not None
        result, acked_at_kill = _kill_under_load(pipeline)
        # READINGS is a multiple of PER_MESSAGE: every message carries PER_MESSAGE readings.
        expected = READINGS - PER_MESSAGE * result.unrouted
        assert wait_for(
            lambda: _stored(ep.influx_url, ep.influx_db, BENCH) >= expected, timeout=120, interval=1.0
        ), f"stored {_stored(ep.influx_url, ep.influx_db, BENCH)}; {_report(pipeline, result, acked_at_kill)}"
        time.sleep(2.0)
        assert _stored(ep.influx_url, ep.influx_db, BENCH) == expected, _report(
            pipeline, result, acked_at_kill
        )
        print(_report(pipeline, result, acked_at_kill))  # noqa: T201 - shown with -s


def _subscriber(broker: Component, received: list[bytes]) -> mqtt.Client:
    """A collector-like subscriber: persistent session (clean start off, 1 h expiry)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="collector", protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, msg: received.append(bytes(msg.payload))
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect(broker.host, broker.port, clean_start=False, properties=props)
    client.loop_start()
    return client


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared"])
def test_restarted_mosquitto_keeps_a_plain_subscription_but_not_a_shared_one(
    tmp_path: Path, shared: bool
) -> None:
    """Why the single collector subscribes plainly: what Mosquitto 2.0.11 restores after SIGKILL."""
    broker = start_mosquitto(tmp_path / "mosquitto", persistence=True)
    try:
        received: list[bytes] = []
        sub = _subscriber(broker, received)
        topic_filter = "$share/g/devices/+/readings" if shared else "devices/+/readings"
        subacked = threading.Event()
        sub.on_subscribe = lambda *_args: subacked.set()
        sub.subscribe(topic_filter, qos=1)
        assert subacked.wait(10)
        subscribed = time.time_ns()
        assert wait_for(lambda: _saved_since(broker, subscribed), timeout=15, interval=0.1)
        broker.kill()
        sub.loop_stop()
        broker.start()
        device = Connection(broker.host, broker.port, "dev", (None, None))  # before the collector
        device.send(b"".join(encode_publish("devices/d1/readings", b"%d" % i, i + 1) for i in range(10)))
        acked = 0
        deadline = time.monotonic() + 10
        while acked < 10 and time.monotonic() < deadline:
            acked += device.read_acks(0.5)
        device.close()
        assert acked == 10
        sub = _subscriber(broker, received)  # the collector comes back
        try:
            if shared:  # dropped, and the device was told: PUBACK 0x10 no matching subscribers
                time.sleep(1.0)
                assert (device.unrouted, received) == (10, [])
            else:  # queued for the restored session and delivered
                assert wait_for(lambda: len(received) == 10, timeout=10)
                assert device.unrouted == 0
        finally:
            sub.loop_stop()
            sub.disconnect()
    finally:
        broker.stop()
