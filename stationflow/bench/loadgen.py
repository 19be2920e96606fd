"""Benchmark load generator: push N readings into MQTT as fast as the broker takes them.

``run_load`` renders a deterministic schedule (``plan``) in separate OS processes, then
publishes it at QoS 1 with a window of unacknowledged messages, and meanwhile a probe
process publishes one timestamped reading every ~20 ms for latency measurement.

The publishers speak MQTT v5 over a plain socket (CONNECT, PUBLISH, PUBACK, PINGREQ,
DISCONNECT) with packets encoded before the clock starts. Measured here, paho-mqtt costs
about 55 us of CPU per QoS 1 message (two ``send`` calls per packet, a ``Properties``
object and a ``Condition`` per PUBACK, and with its own in-flight limit a scan of every
in-flight message per PUBACK); this costs about 5 us, which leaves the cores to the pipeline
being measured. The broker's Receive Maximum caps the window, and a PUBACK with a failure
reason code (e.g. 0x87 not authorized) stops the run with that reason.

Publishers behave like real devices when the broker goes away (``DeviceLink``): a message
counts as published only once PUBACKed; the unacknowledged ones are kept, and after a
reconnect (backoff with jitter, bounded by ``RECONNECT_GIVE_UP_S`` and the run's deadline)
they are sent again with the DUP flag and their original packet ids, then the schedule
continues. The broker may have stored some of them before it died, so a resend can make a
duplicate downstream (the InfluxDB sink is idempotent by series and timestamp); what it
never acknowledged is never lost.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import random
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.queues import Queue
from typing import Any, NamedTuple, Protocol

from stationflow.bench.mqttwire import Connection, ConnectionLost, LoadError, encode_publish, mark_dup

__all__ = [
    "PROBE_DEVICE",
    "PROBE_METRIC",
    "DeviceLink",
    "LoadError",
    "LoadPlan",
    "LoadResult",
    "Message",
    "WorkerResult",
    "format_ts_ms",
    "plan",
    "probe_worker",
    "publish_worker",
    "run_load",
]

PROBE_DEVICE = "bench-probe"
PROBE_METRIC = "probe"
DEFAULT_INFLIGHT = 1000
READY_TIMEOUT_S = 120.0  # rendering a shard of a few million readings takes seconds
DRAIN_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 10.0
PROGRESS_EVERY_S = 0.2
_CHUNK = 64  # messages per send(): fewer syscalls, still a smooth stream
# Reconnect backoff of a publisher that lost the broker: doubling from the first delay to the
# cap, each wait drawn between half and all of it (jitter, so a fleet does not reconnect in
# lockstep); a broker away longer than the give-up time fails the run.
RECONNECT_FIRST_S = 0.05
RECONNECT_MAX_S = 1.0
RECONNECT_GIVE_UP_S = 60.0
_MAX_DEVICES = 99_999  # ids bench-0001…bench-9999, then five digits

_Report = tuple[str, int, Any]  # (kind, worker, value) from a child process to the parent


# ------------------------------------------------------------------------- the schedule


class Message(NamedTuple):
    """One rendered device message."""

    topic: str
    payload: bytes
    readings: int


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Message k goes to device ``k % devices``, its ts is ``start + (k // devices)`` ms."""

    readings: int
    devices: int
    per_message: int
    start: datetime

    @property
    def messages(self) -> int:
        """Number of messages (the last one may carry fewer readings)."""
        return math.ceil(self.readings / self.per_message)

    def device_id(self, k: int) -> str:
        """Device that sends message ``k``."""
        n = k % self.devices + 1
        return f"bench-{n:04d}" if self.devices <= 9999 else f"bench-{n:05d}"

    def ts(self, k: int) -> datetime:
        """Timestamp of every reading in message ``k``."""
        return self.start + timedelta(milliseconds=k // self.devices)

    def count(self, k: int) -> int:
        """Readings in message ``k``."""
        return min(self.per_message, self.readings - k * self.per_message)

    def indexes(self, shard: int = 0, shards: int = 1) -> Iterator[int]:
        """Message numbers of one shard; shards split by device, so each device has one sender."""
        return (k for k in range(self.messages) if (k % self.devices) % shards == shard)

    def render(self, k: int) -> Message:
        """Topic and JSON payload of message ``k``."""
        device, count = self.device_id(k), self.count(k)
        ts = format_ts_ms(self.ts(k)).encode()
        items = b",".join(
            b'{"metric":"m%d","value":%d.%d,"ts":"%s"}' % (j, (k + j) % 1000, j, ts) for j in range(count)
        )
        return Message(f"devices/{device}/readings", b'{"readings":[%s]}' % items, count)

    def render_shard(self, shard: int = 0, shards: int = 1) -> list[Message]:
        """All messages of one shard, in schedule order."""
        return [self.render(k) for k in self.indexes(shard, shards)]


def plan(readings: int, *, devices: int, per_message: int, start: datetime) -> LoadPlan:
    """Schedule ``readings`` readings, unique by (device, metric, ts)."""
    if readings < 0 or per_message < 1 or not 1 <= devices <= _MAX_DEVICES:
        raise ValueError(f"need readings >= 0, per_message >= 1, 1 <= devices <= {_MAX_DEVICES}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    start = start.astimezone(UTC).replace(microsecond=start.microsecond // 1000 * 1000)
    return LoadPlan(readings, devices, per_message, start)


def format_ts_ms(t: datetime) -> str:
    """``2026-11-21T08:00:00.123Z``."""
    u = t.astimezone(UTC)
    return f"{u:%Y-%m-%dT%H:%M:%S}.{u.microsecond // 1000:03d}Z"


# ------------------------------------------------------------------------- workers


class Signal(Protocol):
    """A ``threading.Event`` or ``multiprocessing.Event``."""

    def is_set(self) -> bool:
        """Whether the event is set."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the event, up to ``timeout`` seconds."""
        ...


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """What one publisher delivered, all acknowledged by the broker."""

    messages: int
    readings: int
    seconds: float
    cpu_seconds: float  # CPU this process spent publishing (not rendering)
    resent: int = 0  # messages sent again (DUP) after a reconnect
    reconnects: int = 0
    unrouted: int = 0  # acknowledged with 0x10 "no matching subscribers": dropped by the broker


class _Progress:
    """Reports acknowledged readings to the parent, at most every ``PROGRESS_EVERY_S``."""

    def __init__(self, out: Queue[_Report] | None, worker_id: int, readings: Sequence[int]):
        self.out, self.worker_id, self.cumulative = out, worker_id, array("q", accumulate(readings))
        self.last = 0.0

    def ready(self) -> None:
        """Tell the parent this worker is ready to start."""
        if self.out is not None:
            self.out.put(("ready", self.worker_id, 0))

    def update(self, acked: int, *, force: bool = False) -> None:
        """Report progress after ``acked`` messages were acknowledged."""
        now = time.monotonic()
        if self.out is not None and (force or now - self.last >= PROGRESS_EVERY_S):
            self.last = now
            self.out.put(("progress", self.worker_id, self.cumulative[acked - 1] if acked else 0))


class DeviceLink:
    """QoS 1 publishing as a device does it: in order, windowed, resent after a reconnect.

    ``packets`` (PUBLISH packets, packet id ``i % 65535 + 1`` for message ``i``) may grow while
    the link is used. Messages ``[acked, sent)`` are on the wire unacknowledged, at most
    ``window`` of them; MQTT requires PUBACKs in the order of the PUBLISHes (MQTT 5.0, 4.6), so
    counting PUBACKs tells which messages they acknowledge. When the connection breaks, the
    link reconnects with backoff and rewinds ``sent`` to ``acked``: every message sent before
    (below ``high``) goes out again with the DUP flag and is counted in ``resent``.
    """

    def __init__(
        self,
        connect: Callable[[], Connection],
        packets: list[bytes],
        *,
        max_inflight: int,
        deadline: float,
        give_up_s: float = RECONNECT_GIVE_UP_S,
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be positive")
        self.connect, self.packets = connect, packets
        self.max_inflight, self.deadline, self.give_up_s = max_inflight, deadline, give_up_s
        self.sent = self.acked = self.high = 0
        self.resent = self.reconnects = self._unrouted_before = 0
        self.conn = connect()
        self.window = min(max_inflight, self.conn.receive_maximum, 65535)

    @property
    def unrouted(self) -> int:
        """Messages the broker acknowledged with "no matching subscribers" (and dropped)."""
        return self._unrouted_before + self.conn.unrouted

    @property
    def done(self) -> bool:
        """Every packet so far is acknowledged."""
        return self.acked >= len(self.packets)

    def pump(self, wait_s: float, *, wait_when_all_sent: bool = True, due: int | None = None) -> None:
        """Send what the window allows (one chunk), then read PUBACKs; reconnect if the broker went.

        ``due``: send only messages below this index (pacing). Waits up to ``wait_s`` for
        PUBACKs when the window is full (or when everything due is sent and
        ``wait_when_all_sent``); otherwise only takes the PUBACKs already there.
        """
        try:
            limit = len(self.packets) if due is None else min(due, len(self.packets))
            end = min(limit, self.acked + self.window, self.sent + _CHUNK)
            if end > self.sent:
                self.conn.send(self._chunk(self.sent, end))
                self.sent = end
            full = self.sent - self.acked >= self.window
            idle = self.sent >= limit and wait_when_all_sent
            self.acked += self.conn.read_acks(wait_s if full or idle else 0.0)
        except ConnectionLost as exc:
            self._reconnect(exc)

    def _chunk(self, start: int, end: int) -> bytes:
        if start >= self.high:
            return b"".join(self.packets[start:end])
        again = min(end, self.high)
        self.resent += again - start
        return b"".join([*map(mark_dup, self.packets[start:again]), *self.packets[again:end]])

    def _reconnect(self, lost: ConnectionLost) -> None:
        """Connect again (bounded backoff); the unacknowledged messages will be resent."""
        self.conn.abort()
        self._unrouted_before += self.conn.unrouted
        self.high = max(self.high, self.sent)
        self.sent = self.acked
        give_up = min(self.deadline, time.monotonic() + self.give_up_s)
        delay, reason = RECONNECT_FIRST_S, lost
        while True:
            pause = delay * random.uniform(0.5, 1.0)
            if time.monotonic() + pause > give_up:
                raise LoadError(
                    f"broker unreachable, gave up with {self.high - self.acked} messages "
                    f"unacknowledged: {reason}"
                ) from reason
            time.sleep(pause)
            try:
                self.conn = self.connect()
            except ConnectionLost as exc:
                reason, delay = exc, min(delay * 2, RECONNECT_MAX_S)
                continue
            break
        self.reconnects += 1
        self.window = min(self.max_inflight, self.conn.receive_maximum, 65535)

    def close(self) -> None:
        """DISCONNECT (normal) and close."""
        self.conn.close()


def _pump(link: DeviceLink, deadline: float, progress: _Progress, rate: float | None = None) -> None:
    """Publish every packet of ``link`` (at most ``rate`` messages/s); return when all are acked."""
    total, started = len(link.packets), time.monotonic()
    while not link.done:
        now = time.monotonic()
        if now > deadline:
            raise LoadError(f"timed out with {link.acked} of {total} messages acknowledged")
        if rate is None:
            link.pump(0.5)
        else:  # message k is due k / rate seconds after the start
            due = min(total, int((now - started) * rate) + 1)
            link.pump(0.5 if due >= total else min(0.5, due / rate - (now - started)), due=due)
        progress.update(link.acked)


def _blast(conn: Connection, packets: Sequence[bytes]) -> None:
    """QoS 0: send everything, then a PINGREQ round trip proves the broker read it all."""
    for i in range(0, len(packets), _CHUNK):
        conn.send(b"".join(packets[i : i + _CHUNK]))
    conn.sync(DRAIN_TIMEOUT_S)


def publish_worker(
    host: str,
    port: int,
    messages: Sequence[Message],
    *,
    qos: int = 1,
    max_inflight: int = DEFAULT_INFLIGHT,
    progress_queue: Queue[_Report] | None = None,
    worker_id: int = 0,
    start_event: Signal | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 600.0,
    rate: float | None = None,
) -> WorkerResult:
    """Publish ``messages`` in order (QoS 1: at most ``rate`` messages/s if given); return once
    the broker acknowledged every one."""
    if qos not in (0, 1) or max_inflight < 1 or (rate is not None and rate <= 0):
        raise ValueError("qos must be 0 or 1, max_inflight positive and rate positive")
    packets = [encode_publish(m.topic, m.payload, i % 65535 + 1, qos) for i, m in enumerate(messages)]
    progress = _Progress(progress_queue, worker_id, [m.readings for m in messages])
    progress.ready()
    if start_event is not None and not start_event.wait(READY_TIMEOUT_S):
        raise LoadError(f"no start signal within {READY_TIMEOUT_S:.0f} s")
    started, cpu = time.monotonic(), time.process_time()
    client_id = f"stationflow-bench-{os.getpid()}-{worker_id}"

    def connect() -> Connection:
        return Connection(host, port, client_id, (username, password))

    resent = reconnects = unrouted = 0
    if qos:
        link = DeviceLink(connect, packets, max_inflight=max_inflight, deadline=started + timeout_s)
        try:
            _pump(link, started + timeout_s, progress, rate)
        finally:
            link.close()
        resent, reconnects, unrouted = link.resent, link.reconnects, link.unrouted
    else:
        conn = connect()
        try:
            _blast(conn, packets)
        finally:
            conn.close()
    progress.update(len(packets), force=True)
    total = progress.cumulative[-1] if packets else 0
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    return WorkerResult(len(packets), total, seconds, cpu, resent, reconnects, unrouted)


def probe_payload(seq: int, ts_ms: int) -> bytes:
    """One probe reading whose ``ts`` is its publish time (ms)."""
    ts = format_ts_ms(datetime.fromtimestamp(ts_ms / 1000, UTC)).encode()
    return b'{"readings":[{"metric":"%s","value":%d.0,"ts":"%s"}]}' % (PROBE_METRIC.encode(), seq, ts)


def probe_worker(
    host: str,
    port: int,
    stop_event: Signal,
    interval_s: float = 0.02,
    *,
    max_seconds: float = 3600.0,
    username: str | None = None,
    password: str | None = None,
) -> int:
    """Publish a probe every ``interval_s`` until ``stop_event``; return how many were acknowledged.

    Like the publishers, it reconnects and resends if the broker goes away; after the stop
    signal it waits (bounded) for the last PUBACKs.
    """
    client_id = f"stationflow-probe-{os.getpid()}"
    topic = f"devices/{PROBE_DEVICE}/readings"
    packets: list[bytes] = []
    started = time.monotonic()
    link = DeviceLink(
        lambda: Connection(host, port, client_id, (username, password)),
        packets,
        max_inflight=65535,
        deadline=started + max_seconds + DRAIN_TIMEOUT_S,
    )
    last_ms = 0
    try:
        # the first probe goes even if the load is already over (a short load on a fast
        # machine could finish before this process started): every run has one latency sample
        while len(packets) < max(1, max_seconds / interval_s) and not (packets and stop_event.is_set()):
            last_ms = max(time.time_ns() // 1_000_000, last_ms + 1)  # unique, increasing
            seq = len(packets)
            packets.append(encode_publish(topic, probe_payload(seq, last_ms), seq % 65535 + 1))
            link.pump(0.5, wait_when_all_sent=False)
            stop_event.wait(max(0.0, started + len(packets) * interval_s - time.monotonic()))
        drain_until = time.monotonic() + DRAIN_TIMEOUT_S
        while not link.done and time.monotonic() < drain_until:
            link.pump(min(0.5, max(0.0, drain_until - time.monotonic())))
    finally:
        link.close()
    return link.acked


# ------------------------------------------------------------------------- orchestration


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What ``run_load`` published (every message acknowledged by the broker)."""

    readings: int
    messages: int
    seconds: float  # start signal -> last PUBACK
    probes: int
    start: datetime  # ts of the first scheduled message
    cpu_seconds: float  # CPU the publisher processes spent publishing
    resent: int = 0  # messages sent again (DUP) after the broker went away
    reconnects: int = 0
    unrouted: int = 0  # acknowledged with 0x10 "no matching subscribers": dropped by the broker
    probe_cpu_seconds: float = 0.0  # CPU the probe process spent publishing probes

    @property
    def readings_per_s(self) -> float:
        """Publish rate in readings per second."""
        return self.readings / self.seconds if self.seconds > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        """Publish rate in messages per second."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _Job:
    host: str
    port: int
    plan: LoadPlan
    shard: int
    shards: int
    max_inflight: int
    username: str | None
    password: str | None
    timeout_s: float
    rate: float | None = None  # messages/s of this publisher


def _publisher_main(job: _Job, out: Queue[_Report], start_event: Signal) -> None:
    """Process entry: render this shard, wait for the start signal, publish it."""
    try:
        result = publish_worker(
            job.host,
            job.port,
            job.plan.render_shard(job.shard, job.shards),
            max_inflight=job.max_inflight,
            progress_queue=out,
            worker_id=job.shard,
            start_event=start_event,
            username=job.username,
            password=job.password,
            timeout_s=job.timeout_s,
            rate=job.rate,
        )
        out.put(("done", job.shard, result))
    except Exception as exc:  # noqa: BLE001 - the parent raises it as LoadError
        out.put(("error", job.shard, _describe(f"publisher {job.shard}", exc)))


def _probe_main(
    job: _Job, out: Queue[_Report], start_event: Signal, stop_event: Signal, interval_s: float
) -> None:
    """Process entry: publish probes between the start and the stop signals."""
    try:
        if not start_event.wait(READY_TIMEOUT_S):
            raise LoadError("no start signal")
        cpu = time.process_time()
        sent = probe_worker(
            job.host,
            job.port,
            stop_event,
            interval_s,
            max_seconds=job.timeout_s,
            username=job.username,
            password=job.password,
        )
        out.put(("probe", -1, (sent, time.process_time() - cpu)))
    except Exception as exc:  # noqa: BLE001 - the parent raises it as LoadError
        out.put(("error", -1, _describe("probe", exc)))


def _describe(who: str, exc: Exception) -> str:
    """An error from a child, in words (our own errors need no type name)."""
    return f"{who}: {exc}" if isinstance(exc, LoadError) else f"{who}: {type(exc).__name__}: {exc}"


class _Children:
    """The spawned processes and the one queue they report on."""

    def __init__(self, ctx: SpawnContext) -> None:
        self.ctx = ctx
        self.out: Queue[_Report] = ctx.Queue()
        self.procs: list[SpawnProcess] = []
        self.readings: dict[int, int] = {}

    def spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        """Start one daemon child."""
        proc = self.ctx.Process(target=target, args=(*args,), name=name, daemon=True)
        proc.start()
        self.procs.append(proc)

    def wait_for(
        self, kind: str, count: int, deadline: float, on_progress: Callable[[int], None] | None
    ) -> list[Any]:
        """Collect ``count`` reports of ``kind``, passing progress on; raise on error or deadline."""
        found: list[Any] = []
        while len(found) < count:
            if time.monotonic() > deadline:
                raise LoadError(f"timed out waiting for {count - len(found)} '{kind}' report(s)")
            try:
                what, worker, value = self.out.get(timeout=PROGRESS_EVERY_S)
            except queue.Empty:
                self._check_alive()
                continue
            if what == "error":
                raise LoadError(str(value))
            if what == "progress":
                self.readings[worker] = int(value)
                if on_progress is not None:
                    on_progress(sum(self.readings.values()))
            elif what == kind:
                found.append(value)
        return found

    def _check_alive(self) -> None:
        dead = [p for p in self.procs if p.exitcode not in (None, 0)]
        if dead:
            raise LoadError(f"{dead[0].name} died with exit code {dead[0].exitcode}")

    def reap(self) -> None:
        """Join every child (bounded), terminating stragglers."""
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
        self.out.close()


def run_load(
    host: str,
    port: int,
    *,
    readings: int,
    per_message: int = 5,
    processes: int = 2,
    devices: int = 200,
    on_progress: Callable[[int], None] | None = None,
    max_inflight: int = DEFAULT_INFLIGHT,
    probe_interval_s: float = 0.02,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float | None = None,
    start: datetime | None = None,
    rate: float | None = None,
    on_start: Callable[[], None] | None = None,
) -> LoadResult:
    """Publish ``readings`` readings from ``processes`` processes plus latency probes.

    ``rate``: readings/s of all publishers together, as a fleet would send them; None: as
    fast as the broker acknowledges. ``on_start`` is called when the publishers are told to
    start (after they rendered their messages): the first publish.
    """
    schedule = plan(readings, devices=devices, per_message=per_message, start=start or datetime.now(UTC))
    budget = timeout_s if timeout_s is not None else 120.0 + readings / 5000.0
    shards = max(1, min(processes, devices))
    children = _Children(multiprocessing.get_context("spawn"))
    go, stop = children.ctx.Event(), children.ctx.Event()
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    if rate is not None and timeout_s is None:
        budget += readings / rate
    per_shard = None if rate is None else rate / per_message / shards
    jobs = [
        _Job(host, port, schedule, i, shards, max_inflight, username, password, budget, per_shard)
        for i in range(shards)
    ]
    try:
        for job in jobs:
            children.spawn(f"bench-publisher-{job.shard}", _publisher_main, job, children.out, go)
        children.spawn("bench-probe", _probe_main, jobs[0], children.out, go, stop, probe_interval_s)
        children.wait_for("ready", shards, time.monotonic() + READY_TIMEOUT_S, on_progress)
        go.set()
        started = time.monotonic()
        if on_start is not None:
            on_start()
        results = children.wait_for("done", shards, started + budget, on_progress)
        seconds = time.monotonic() - started
        stop.set()
        probes = children.wait_for("probe", 1, time.monotonic() + DRAIN_TIMEOUT_S + 1, None)
    finally:
        go.set()
        stop.set()
        children.reap()
    return LoadResult(
        readings=sum(r.readings for r in results),
        messages=sum(r.messages for r in results),
        seconds=seconds,
        probes=int(probes[0][0]),
        start=schedule.start,
        cpu_seconds=sum(r.cpu_seconds for r in results),
        resent=sum(r.resent for r in results),
        reconnects=sum(r.reconnects for r in results),
        unrouted=sum(r.unrouted for r in results),
        probe_cpu_seconds=float(probes[0][1]),
    )
