"""The plain MQTT → InfluxDB bridge that ``stationflow bench --baseline`` measures against.

What a user would write in one file: paho-mqtt (v2 callback API) subscribed at QoS 1 to
``devices/+/readings``, ``json.loads`` of each message, one line-protocol point per device and
timestamp (the same measurement, tag and fields stationflow stores for the bench's devices, so
the bench counts both the same way), and a writer thread that POSTs batches of
``BATCH_POINTS`` points, or whatever arrived within ``BATCH_WAIT_S``, to InfluxDB 1.x's
``/write``. No Kafka, no checks, no deduplication; paho acknowledges a message once
``on_message`` returned, i.e. once the point is buffered (not stored): a killed bridge loses its
buffer. On SIGTERM it disconnects, writes what it holds, and prints its own CPU.

Run as ``python -m stationflow.bench.baseline --mqtt-host H --mqtt-port P --influx-url U --db D``.
It prints ``READY_LINE`` once its subscription is acknowledged and ``baseline stopped …`` on exit.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["READY_LINE", "Batcher", "influx_writer", "main", "message_lines"]

logger = logging.getLogger("stationflow.bench.baseline")

READY_LINE = "baseline ready"
TOPIC = "devices/+/readings"
MEASUREMENT = "sensor"
BATCH_POINTS = 5000
BATCH_WAIT_S = 1.0
WRITE_ATTEMPTS = 3
WRITE_TIMEOUT_S = 30.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def _ns(ts: str) -> int:
    """An ISO 8601 timestamp as integer nanoseconds since the epoch."""
    delta = datetime.fromisoformat(ts) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def message_lines(device: str, payload: dict[str, Any]) -> list[str]:
    """Line protocol for one device message: one point per timestamp, a field per metric (pure)."""
    by_ts: dict[int, list[str]] = {}
    for r in payload["readings"]:
        by_ts.setdefault(_ns(r["ts"]), []).append(
            f"{str(r['metric']).translate(_ESCAPES)}={float(r['value'])!r}"
        )
    prefix = f"{MEASUREMENT},device={device.translate(_ESCAPES)} "
    return [f"{prefix}{','.join(fields)} {ns}" for ns, fields in by_ts.items()]


class Batcher:
    """Points from the MQTT thread, written by a writer thread in batches (size or age, whichever first)."""

    def __init__(
        self,
        write: Callable[[bytes], None],
        *,
        max_points: int = BATCH_POINTS,
        max_wait_s: float = BATCH_WAIT_S,
    ) -> None:
        """``write`` sends one body of newline-separated points (raises on failure)."""
        self.write, self.max_points, self.max_wait_s = write, max_points, max_wait_s
        self.pending: list[str] = []
        self.oldest = 0.0  # monotonic time of the oldest pending point
        self.cond = threading.Condition()
        self.closed = False
        self.written = self.failed = self.requests = 0
        self.timer_writes, self.timer_wait_s = 0, 0.0  # batches sent by age, and how long they waited
        self.last_add = 0.0
        self.idle_before_timer_s = 0.0  # before the last batch sent by age: time since the last point came
        self.thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self.thread.start()

    def add(self, lines: Sequence[str]) -> None:
        """Buffer points; wake the writer when a batch is full."""
        with self.cond:
            first = not self.pending
            self.last_add = time.monotonic()
            if first:
                self.oldest = self.last_add
            self.pending.extend(lines)
            if first or len(self.pending) >= self.max_points:
                self.cond.notify()  # the first point starts the writer's clock

    def close(self, timeout: float = WRITE_TIMEOUT_S * WRITE_ATTEMPTS) -> None:
        """Write everything still pending, then stop the writer."""
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout)

    def _take(self) -> list[str] | None:
        """The next batch (None: closed and nothing left); waits for size, age or close."""
        with self.cond:
            while True:
                if len(self.pending) >= self.max_points or self.closed:
                    break
                if self.pending:
                    left = self.oldest + self.max_wait_s - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
                else:
                    self.cond.wait()
            if not self.pending:
                return None
            if len(self.pending) < self.max_points and not self.closed:
                now = time.monotonic()
                self.timer_writes += 1
                self.timer_wait_s += now - self.oldest
                self.idle_before_timer_s = now - self.last_add
            batch = self.pending[: self.max_points]
            del self.pending[: self.max_points]
            if self.pending:
                self.oldest = time.monotonic()
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            body = "\n".join(batch).encode()
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                self.requests += 1
                try:
                    self.write(body)
                except (OSError, urllib.error.URLError) as exc:
                    logger.warning(
                        "influx write failed attempt=%d points=%d reason=%s", attempt, len(batch), exc
                    )
                    time.sleep(1.0)
                    continue
                self.written += len(batch)
                break
            else:
                self.failed += len(batch)


def influx_writer(url: str, db: str, username: str | None, password: str | None) -> Callable[[bytes], None]:
    """A function POSTing a body to InfluxDB 1.x ``/write`` (HTTP errors raise)."""
    target = f"{url.rstrip('/')}/write?db={db}&precision=ns"
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if username:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"

    def write(body: bytes) -> None:
        request = urllib.request.Request(target, data=body, headers=headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=WRITE_TIMEOUT_S) as response:  # noqa: S310
            response.read()

    return write


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bridge until SIGTERM / SIGINT; print its CPU on the way out."""
    parser = argparse.ArgumentParser(prog="python -m stationflow.bench.baseline", description=__doc__)
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--influx-url", default="http://127.0.0.1:8086")
    parser.add_argument("--db", default="stationflow")
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)

    batcher = Batcher(influx_writer(args.influx_url, args.db, args.username, args.password))
    batcher.start()
    received = {"messages": 0}

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            logger.error("mqtt connect refused reason=%s", reason)
            return
        client.subscribe(TOPIC, qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        print(f"{READY_LINE} topic={TOPIC} granted={[str(r) for r in reasons]}", flush=True)  # noqa: T201

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        logger.info("mqtt disconnected reason=%s messages=%d", reason, received["messages"])

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        received["messages"] += 1
        batcher.add(message_lines(msg.topic.split("/")[1], json.loads(msg.payload)))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="stationflow-baseline")
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.on_disconnect = on_disconnect
    if args.username:
        client.username_pw_set(args.username, args.password)

    def stop(_sig: int, _frame: FrameType | None) -> None:
        client.disconnect()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client.connect(args.mqtt_host, args.mqtt_port)
    client.loop_forever()
    batcher.close()
    print(  # noqa: T201 - the bench reads this line
        f"baseline stopped messages={received['messages']} points_written={batcher.written} "
        f"points_failed={batcher.failed} requests={batcher.requests} timer_writes={batcher.timer_writes} "
        f"timer_wait_s={batcher.timer_wait_s:.3f} "
        f"idle_before_last_timer_write_s={batcher.idle_before_timer_s:.3f} cpu_s={time.process_time():.3f}",
        flush=True,
    )
    return 0 if batcher.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
