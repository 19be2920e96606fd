"""The baseline bridge's pure parts: its line protocol equals stationflow's, and its batching."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.bench import runner
from stationflow.bench.baseline import Batcher, message_lines
from stationflow.bench.loadgen import plan, probe_payload
from stationflow.bench.sampler import stage_cpu
from stationflow.contracts import Reading, ReadingBatch
from streams.lineprotocol import batch_lines

START = datetime(2026, 11, 21, 8, 0, 0, 123000, tzinfo=UTC)


def stationflow_lines(topic: str, payload: bytes) -> list[str]:
    """What the worker writes for this MQTT message (the collector's batch, then the raw stage's lines)."""
    device = topic.split("/")[1]
    readings = [Reading.model_validate(r) for r in json.loads(payload)["readings"]]
    batch = ReadingBatch(device_id=device, received_at=START, source=f"mqtt:{topic}", readings=readings)
    return batch_lines(batch)


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(min_value=0, max_value=50_000),
    devices=st.integers(min_value=1, max_value=99_999),
    per_message=st.integers(min_value=1, max_value=12),
)
def test_bridge_writes_what_stationflow_writes_for_every_bench_message(
    k: int, devices: int, per_message: int
) -> None:
    schedule = plan(100_000 * per_message, devices=devices, per_message=per_message, start=START)
    message = schedule.render(k)
    lines = message_lines(message.topic.split("/")[1], json.loads(message.payload))
    assert lines == stationflow_lines(message.topic, message.payload)
    assert len(lines) == 1 and lines[0].count("=") == 1 + message.readings  # device tag + one field each


def test_probe_lines_match_too() -> None:
    payload = probe_payload(7, 1_795_248_000_123)
    topic = "devices/bench-probe/readings"
    assert message_lines("bench-probe", json.loads(payload)) == stationflow_lines(topic, payload)
    assert message_lines("bench-probe", json.loads(payload)) == [
        "sensor,device=bench-probe probe=7.0 1795248000123000000"
    ]


def test_readings_of_one_message_at_two_instants_are_two_points() -> None:
    payload = {
        "readings": [
            {"metric": "m0", "value": 1, "ts": "2026-11-21T08:00:00Z"},
            {"metric": "m1", "value": 2.5, "ts": "2026-11-21T08:00:00Z"},
            {"metric": "m0", "value": 3, "ts": "2026-11-21T08:00:01.5+00:00"},
        ]
    }
    assert message_lines("a b", payload) == [
        r"sensor,device=a\ b m0=1.0,m1=2.5 1795248000000000000",
        r"sensor,device=a\ b m0=3.0 1795248001500000000",
    ]


class Recorder:
    """A write function that records bodies (and fails the first ``fail`` calls)."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, body: bytes) -> None:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise OSError("refused")
            self.bodies.append(body)


def wait_until(check: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_a_full_batch_is_written_at_once_and_in_batches_of_at_most_max_points() -> None:
    write = Recorder()
    batcher = Batcher(write, max_points=100, max_wait_s=60.0)
    batcher.start()
    batcher.add([f"p{i}" for i in range(250)])
    assert wait_until(lambda: len(write.bodies) == 2)  # two full batches long before the 60 s wait
    assert [b.count(b"\n") + 1 for b in write.bodies] == [100, 100]
    batcher.close()
    assert len(write.bodies) == 3 and write.bodies[2].count(b"\n") + 1 == 50  # close flushes the rest
    assert batcher.written == 250 and batcher.failed == 0 and batcher.timer_writes == 0
    assert b"\n".join(write.bodies).split(b"\n") == [f"p{i}".encode() for i in range(250)]


def test_a_partial_batch_is_written_after_the_wait() -> None:
    write = Recorder()
    batcher = Batcher(write, max_points=5000, max_wait_s=0.2)
    batcher.start()
    added = time.monotonic()
    batcher.add(["a", "b"])
    assert wait_until(lambda: write.bodies, timeout=3.0)
    assert 0.15 <= time.monotonic() - added < 3.0
    assert write.bodies == [b"a\nb"]
    batcher.close()
    assert batcher.written == 2 and batcher.timer_writes == 1 and 0.15 <= batcher.timer_wait_s < 3.0
    assert 0.15 <= batcher.idle_before_timer_s <= batcher.timer_wait_s


def test_a_failed_write_is_retried_and_counted_when_it_keeps_failing() -> None:
    write = Recorder(fail=1)
    batcher = Batcher(write, max_points=2, max_wait_s=60.0)
    batcher.start()
    batcher.add(["a", "b"])
    batcher.close()
    assert write.bodies == [b"a\nb"] and batcher.written == 2 and batcher.requests == 2

    always = Recorder(fail=10)
    failing = Batcher(always, max_points=1, max_wait_s=60.0)
    failing.start()
    failing.add(["x"])
    failing.close()
    assert failing.written == 0 and failing.failed == 1 and failing.requests == 3


def test_stage_cpu_sums_the_instances_of_a_stage() -> None:
    cpu = {"ingest": 1.0, "ingest-2": 0.5, "streams": 2.0, "tansu": 0.25, "loadgen": 0.1}
    stages = {"collector": ("ingest",), "worker": ("streams",), "tansu": ("tansu",), "influxdb": ("influxd",)}
    assert stage_cpu(cpu, stages) == {"collector": 1.5, "worker": 2.0, "tansu": 0.25, "influxdb": 0.0}


class FakeInflux:
    """What the bench's counter reads from InfluxDB: points written (statistics) and the exact count."""

    def __init__(self) -> None:
        self.points: list[int] = []  # successive answers of the statistics (the last one repeats)
        self.stored = 0
        self.counts = 0

    def points_written(self, _url: str, _db: str) -> int:
        return self.points.pop(0) if len(self.points) > 1 else self.points[0]

    def count(self, _url: str, _db: str) -> int:
        self.counts += 1
        return self.stored


def counter(
    monkeypatch: pytest.MonkeyPatch, influx: FakeInflux, expected: int, **gate: Any
) -> runner._Counter:
    monkeypatch.setattr(runner, "_points_written", influx.points_written)
    monkeypatch.setattr(runner, "_stored", influx.count)
    return runner._Counter("http://influx", "db", expected, **gate)


def test_the_run_ends_at_the_last_write_before_the_count_that_found_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    influx = FakeInflux()
    influx.points = [0, 0, 0, 10, 10]
    c = counter(monkeypatch, influx, expected=50)
    c.step(100.0, published_all=False)  # still publishing: no exact count
    assert influx.counts == 0
    c.step(100.5, published_all=True)  # nothing written for a while: count (0 of 50)
    assert influx.counts == 1 and not c.complete
    c.step(101.0, published_all=True)  # the writes: 10 points
    influx.stored = 50
    c.step(101.1, published_all=True)  # not quiet yet
    assert influx.counts == 1
    c.step(101.25, published_all=True)  # quiet for 0.25 s: count, all there
    assert influx.counts == 2 and c.complete and c.finished_at == 101.0
    assert c.final() == 50 and influx.counts == 2


def test_a_write_landing_between_the_statistics_and_the_count_ends_the_run_after_the_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    influx = FakeInflux()
    influx.points = [0, 0, 10]  # construction, the step's read, the read after the count
    c = counter(monkeypatch, influx, expected=50)
    influx.stored = 50  # the write landed just before the count
    before = time.monotonic()
    c.step(before, published_all=True)
    assert c.complete and c.finished_at is not None and c.finished_at >= before


def test_an_incomplete_run_ends_at_its_last_write_and_reports_what_was_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    influx = FakeInflux()
    influx.points = [0, 7]
    c = counter(monkeypatch, influx, expected=50)
    c.step(200.0, published_all=True)
    influx.stored = 35
    assert c.final() == 35 and not c.complete and c.finished_at == 200.0


def test_no_count_before_as_many_points_as_messages_were_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact count costs InfluxDB up to seconds of a core at 10,000 devices: it waits for the
    cheap statistics (and the workers' own count, when given) to say everything may be there."""
    influx = FakeInflux()
    influx.points = [0, 5, 5, 5, 10, 10]
    told = {"written": 0.0}
    c = counter(monkeypatch, influx, 50, min_points=10, written=lambda: told["written"])
    c.step(100.0, published_all=True)  # 5 of 10 points: no count, quiet or not
    c.step(100.5, published_all=True)
    c.step(101.0, published_all=True)
    assert influx.counts == 0
    c.step(102.0, published_all=True)  # 10 points, but the workers wrote 4 of their own: no count
    told["written"] = 4.0
    c.step(102.5, published_all=True)
    assert influx.counts == 0
    told["written"] = 10.0
    influx.stored = 50
    c.step(102.8, published_all=True)  # the workers wrote 10: quiet, count, all there
    assert influx.counts == 1 and c.complete and c.finished_at == 102.0


def test_a_gate_that_never_opens_still_counts_once_the_writes_settled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    influx = FakeInflux()
    influx.points = [0, 3]
    c = counter(monkeypatch, influx, 50, min_points=10)
    c.step(100.0, published_all=True)
    c.step(100.0 + runner.SETTLED_S - 0.1, published_all=True)
    assert influx.counts == 0
    influx.stored = 18
    c.step(100.0 + runner.SETTLED_S, published_all=True)
    assert influx.counts == 1 and not c.complete and c.stored == 18


def test_a_deferred_count_waits_for_the_caller_and_the_readings_end_at_the_gate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With analytics on, the exact count waits until the analytics have caught up: counted while
    they still write, it took InfluxDB's CPU from them inside the measured time."""
    influx = FakeInflux()
    influx.points = [0, 10, 14, 19]  # the readings' 10 points, then the analytics' own
    c = counter(monkeypatch, influx, 50, min_points=10, defer=True)
    c.step(100.0, published_all=True)  # every reading may be stored: ready, not counted
    assert c.ready_at == 100.0 and influx.counts == 0 and not c.complete
    c.step(102.5, published_all=True)  # writes go on (a plain counter counts every 2 s here)
    c.step(105.0, published_all=True)
    assert influx.counts == 0 and c.ready_at == 100.0
    influx.stored = 50
    assert c.final() == 50 and influx.counts == 1 and c.complete and c.finished_at == 100.0


class DrainingInflux:
    """InfluxDB as a worker's sink drains a spooled batch into it: the points land late."""

    def __init__(self, points: int, stored: int) -> None:
        self.points, self.stored, self.counts = points, stored, 0
        self.pending_calls = 0

    def points_written(self, _url: str, _db: str) -> int:
        return self.points

    def count(self, _url: str, _db: str) -> int:
        self.counts += 1
        return self.stored

    def pending(self) -> float:
        """The spool holds a batch for the first three asks, then drains it (6 readings)."""
        self.pending_calls += 1
        if self.pending_calls == 3:
            self.points += 6
            self.stored += 6
        return 1.0 if self.pending_calls < 3 else 0.0


@pytest.fixture
def fast_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "SETTLED_S", 0.3)
    monkeypatch.setattr(runner, "QUIET_S", 0.02)
    monkeypatch.setattr(runner, "POLL_S", 0.01)


def _ready_deferred(monkeypatch: pytest.MonkeyPatch, influx: DrainingInflux) -> runner._Counter:
    monkeypatch.setattr(runner, "_points_written", influx.points_written)
    monkeypatch.setattr(runner, "_stored", influx.count)
    written, influx.points = influx.points, 0  # none before the run
    c = runner._Counter("http://influx", "db", 50, min_points=10, defer=True, pending=influx.pending)
    influx.points = written
    c.step(time.monotonic(), published_all=True)
    assert c.ready_at is not None and influx.counts == 0
    return c


@pytest.mark.usefixtures("fast_waits")
def test_a_batch_a_worker_spooled_is_waited_for_not_counted_as_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw stage counts a batch its sink spooled (InfluxDB slow) as written, so the gate
    opens before those points are in InfluxDB; the final count waits for the drain."""
    influx = DrainingInflux(points=44, stored=44)
    c = _ready_deferred(monkeypatch, influx)
    began = time.monotonic()
    assert c.final(late_writes_s=10.0) == 50
    assert c.complete and influx.counts >= 2
    # the readings' time ends at the drain's write, after the gate opened
    assert c.finished_at is not None and c.ready_at is not None and c.finished_at > c.ready_at
    assert time.monotonic() - began < 5.0


@pytest.mark.usefixtures("fast_waits")
def test_readings_missing_with_nothing_held_back_are_reported_once_the_writes_settled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    influx = DrainingInflux(points=44, stored=44)
    influx.pending_calls = 10  # nothing spooled, nothing to drain
    c = _ready_deferred(monkeypatch, influx)
    began = time.monotonic()
    assert c.final(late_writes_s=10.0) == 44
    assert not c.complete and time.monotonic() - began < 3.0  # not the whole 10 s


@pytest.mark.usefixtures("fast_waits")
def test_the_wait_for_late_writes_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    influx = DrainingInflux(points=44, stored=44)
    monkeypatch.setattr(influx, "pending", lambda: 1.0)  # a spool that never drains
    c = _ready_deferred(monkeypatch, influx)
    began = time.monotonic()
    assert c.final(late_writes_s=0.5) == 44
    assert not c.complete and 0.5 <= time.monotonic() - began < 3.0


def test_the_analytics_end_when_their_last_batch_was_done_not_when_a_poll_saw_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stamps = {"http://w1/metrics": [time.time() - 0.20], "http://w2/metrics": [time.time() - 0.15]}
    monkeypatch.setattr(runner, "scrape_samples", lambda url, _name: stamps[url])
    scraped = time.monotonic()
    done = runner._done_at(list(stamps), scraped)
    assert done == pytest.approx(scraped - 0.15, abs=0.02)  # the later of the two workers

    stamps["http://w2/metrics"] = [time.time() + 5]  # a clock step: never after the poll
    assert runner._done_at(list(stamps), scraped) == scraped
    stamps.update({url: [] for url in stamps})  # no worker finished a batch: the poll's time
    assert runner._done_at(list(stamps), scraped) == scraped
