"""The benchmark's load generator against a real Mosquitto: every message reaches a subscriber."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from stationflow.bench.loadgen import run_load
from stationflow.stack.components import Component
from tests.integration.pipeline_utils import wait_for


def test_run_load_delivers_every_reading_to_a_subscriber(mosquitto: Component) -> None:
    seen: set[tuple[str, str, str]] = set()
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        device = msg.topic.split("/")[1]
        if device == "bench-probe":
            return
        with lock:
            for r in json.loads(msg.payload)["readings"]:
                seen.add((device, r["metric"], r["ts"]))

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("devices/+/readings", qos=1)
    sub.loop_start()
    try:
        result = run_load(
            mosquitto.host, mosquitto.port, readings=20_003, per_message=5, processes=2, devices=17
        )
        assert result.readings == 20_003
        assert wait_for(lambda: len(seen) == 20_003, timeout=30), len(seen)
    finally:
        sub.loop_stop()
        sub.disconnect()
