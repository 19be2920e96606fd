"""The InfluxDB sink against real servers: influxd 1.6 (v1) and VictoriaMetrics (v2 API)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from stationflow.rejectedpoints import read_rejected, rejected_files
from stationflow.settings import CommonSettings, InfluxDialect
from stationflow.stack import Component, free_port, influx_query, influx_write, victoria_force_flush
from stationflow.stack.components import patch_toml
from streams.sink import (
    BufferedSink,
    DiskSpool,
    SinkRejected,
    SinkUnavailable,
    SpoolFailure,
    V1Writer,
    V2Writer,
    make_writer,
)
from streams.sink.errors import error_for_status, parse_retry_after
from tests.conftest import NameFactory

# Each wait returns as soon as its condition holds; the bounds are for a loaded CI runner.
DRAIN_TIMEOUT = 30.0
VICTORIA_TIMEOUT = 15.0
POLL = 0.05
# Fast retries so a drain starts within a fraction of a second of the server returning.
RETRY: dict[str, Any] = {"retry_initial": 0.05, "retry_max": 0.5, "stop_drain_seconds": 2.0}
SPOOL_BYTES = 64 << 20
# Millisecond-aligned "now": VictoriaMetrics keeps ms and drops rows outside its 1-month retention.
T0 = time.time_ns() // 1_000_000 * 1_000_000


def lines(run: str, count: int, *, first: int = 0, measurement: str = "air") -> bytes:
    """``count`` points of ``measurement`` tagged ``run``, 1 ms apart, 7 stations."""
    return "".join(
        f"{measurement},station=s{i % 7},run={run} pm25={i}.5 {T0 + i * 1_000_000}\n"
        for i in range(first, first + count)
    ).encode()


def influx_count(url: str, db: str, run: str) -> int:
    """Points of ``air`` with tag ``run`` in InfluxDB 1.x."""
    query = f"SELECT count(pm25) FROM air WHERE run = '{run}'"  # noqa: S608 - run is ours
    series = influx_query(url, db, query)
    return int(series[0]["values"][0][1]) if series else 0


def sample(name: str, **labels: str) -> float:
    """Current value of a metric in the default registry (0 before first use)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(condition: Callable[[], bool], what: str, timeout: float = DRAIN_TIMEOUT) -> None:
    """Poll ``condition`` without blocking the event loop; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL)


def closed_url() -> str:
    """A loopback URL nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


# --- writers ----------------------------------------------------------------------------------


async def test_v1_writer_creates_database_and_writes(influxd: Component, unique_name: NameFactory) -> None:
    db, run = unique_name("db"), unique_name("run")
    async with V1Writer(influxd.url, db) as writer:
        await writer.write(lines(run, 3000))
        await writer.write(lines(run, 2000, first=3000))
    assert influx_count(influxd.url, db, run) == 5000
    query = f"SELECT pm25 FROM air WHERE run = '{run}' LIMIT 1"  # noqa: S608 - run is ours
    series = influx_query(influxd.url, db, query)
    assert series[0]["values"][0] == [T0, 0.5]


async def test_v1_writer_rejects_bad_line_with_server_message(influxd: Component, influx_db: str) -> None:
    async with V1Writer(influxd.url, influx_db) as writer:
        with pytest.raises(SinkRejected) as info:
            await writer.write(b"air,station=s1 pm25= 1\n")
    assert info.value.status == 400
    assert info.value.reason == "bad_data"
    assert "unable to parse" in info.value.message
    assert not info.value.retriable


async def test_v1_writer_starts_while_influx_is_down() -> None:
    async with V1Writer(closed_url(), "stationflow") as writer:
        with pytest.raises(SinkUnavailable) as info:
            await writer.write(lines("down", 1))
    assert info.value.retriable
    assert "Cannot connect" in info.value.message  # the transport error, named


async def test_v1_writer_sends_credentials_and_a_wrong_password_is_refused(
    influxd_factory: Callable[[], Component], unique_name: NameFactory
) -> None:
    """With ``[http] auth-enabled``, the writer's basic credentials are accepted (the database is
    created and written), and a wrong password is a 401 that retrying will not fix."""
    server, db, run = influxd_factory(), unique_name("db"), unique_name("run")
    created = httpx.post(  # the first user may be created without credentials
        f"{server.url}/query", data={"q": "CREATE USER sf WITH PASSWORD 's3cret:é' WITH ALL PRIVILEGES"}
    )
    assert created.status_code == 200 and "error" not in created.text
    server.stop()
    assert server.config_path is not None
    config = server.config_path.read_text()
    server.config_path.write_text(patch_toml(config, {"http": {"auth-enabled": True}}))
    server.start()
    async with V1Writer(server.url, db, username="sf", password="s3cret:é") as writer:  # noqa: S106
        await writer.write(lines(run, 5))
    query = f"SELECT count(pm25) FROM air WHERE run = '{run}'"  # noqa: S608 - run is ours
    counted = httpx.get(f"{server.url}/query", params={"db": db, "q": query}, auth=("sf", "s3cret:é"))
    assert counted.json()["results"][0]["series"][0]["values"][0][1] == 5
    with pytest.raises(SinkRejected) as info:  # at start: a misconfigured worker says so at once
        async with V1Writer(server.url, db, username="sf", password="wrong"):  # noqa: S106
            pass
    assert info.value.status == 401 and not info.value.retriable


async def test_v2_writer_writes_to_victoria_metrics(victoria: Component, unique_name: NameFactory) -> None:
    run = unique_name("run")
    async with V2Writer(victoria.url, "org", "bucket", "any-token") as writer:
        await writer.write(lines(run, 1000))
    rows = await victoria_rows(victoria.url, "air_pm25", run, expected=1000)
    values = sorted(v for row in rows for v in row["values"])
    stamps = sorted(t for row in rows for t in row["timestamps"])
    assert values == [i + 0.5 for i in range(1000)]
    assert stamps == [T0 // 1_000_000 + i for i in range(1000)]  # ns in, ms stored
    assert {row["metric"]["station"] for row in rows} == {f"s{i}" for i in range(7)}


async def victoria_rows(url: str, name: str, run: str, *, expected: int) -> list[dict[str, Any]]:
    """Rows of series ``name`` with label ``run`` from /api/v1/export, once ``expected`` arrived."""
    rows: list[dict[str, Any]] = []

    def arrived() -> bool:
        victoria_force_flush(url)
        params = {"match[]": f'{{__name__="{name}",run="{run}"}}'}
        response = httpx.get(f"{url}/api/v1/export", params=params, trust_env=False)
        rows[:] = [json.loads(line) for line in response.text.splitlines() if line]
        return sum(len(row["values"]) for row in rows) >= expected

    await eventually(arrived, f"{expected} rows of {name} in VictoriaMetrics", VICTORIA_TIMEOUT)
    return rows


async def test_v2_writer_maps_http_errors(influxd: Component) -> None:
    # InfluxDB 1.6 has no /api/v2/write: a real 404 through influxdb-client's ApiException.
    async with V2Writer(influxd.url, "org", "bucket", None) as writer:
        with pytest.raises(SinkRejected) as info:
            await writer.write(lines("v2", 1))
    assert info.value.status == 404


async def test_v2_writer_unreachable_is_retriable() -> None:
    async with V2Writer(closed_url(), "org", "bucket", "token") as writer:
        with pytest.raises(SinkUnavailable):
            await writer.write(lines("down", 1))


def test_make_writer_by_dialect() -> None:
    v1 = make_writer(CommonSettings(influx_token=SecretStr("user:secret")))
    v2 = make_writer(CommonSettings(influx_dialect=InfluxDialect.V2, influx_url="http://h:8086"))
    assert isinstance(v1, V1Writer)
    assert isinstance(v2, V2Writer)
    assert v2.url == "http://h:8086"
    with pytest.raises(ValueError, match="user:password"):
        make_writer(CommonSettings(influx_token=SecretStr("no-colon")))


@pytest.mark.parametrize(
    ("status", "retriable", "reason"),
    [
        pytest.param(400, False, "bad_data", id="bad-line-protocol"),
        pytest.param(401, False, "unauthorized", id="unauthorized"),
        pytest.param(403, False, "forbidden", id="forbidden"),
        pytest.param(404, False, "not_found", id="no-database"),
        pytest.param(413, False, "too_large", id="body-too-large"),
        pytest.param(408, True, None, id="request-timeout"),
        pytest.param(429, True, None, id="too-many-requests"),
        pytest.param(500, True, None, id="server-error"),
        pytest.param(503, True, None, id="unavailable"),
    ],
)
def test_status_mapping(status: int, retriable: bool, reason: str | None) -> None:
    error = error_for_status(status, "server says no", retry_after="7")
    assert error.retriable is retriable
    if isinstance(error, SinkRejected):
        assert (error.status, error.reason, error.message) == (status, reason, "server says no")
    else:
        assert error.retry_after == 7.0


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- buffered sink ----------------------------------------------------------------------------


async def test_sink_writes_directly_when_influx_is_up(
    influxd: Component, influx_db: str, unique_name: NameFactory, tmp_path: Path
) -> None:
    run = unique_name("run")
    written = sample("stationflow_sink_points_written_total")
    async with BufferedSink(V1Writer(influxd.url, influx_db), DiskSpool(tmp_path, SPOOL_BYTES)) as sink:
        for n in range(4):
            await sink.write(lines(run, 2500, first=n * 2500), 2500)
        assert sink.spool.batches == 0
        assert not sink.outage
    assert influx_count(influxd.url, influx_db, run) == 10_000
    assert sample("stationflow_sink_points_written_total") - written == 10_000


async def test_sink_counts_rejected_batch_and_keeps_working(
    influxd: Component, influx_db: str, unique_name: NameFactory, tmp_path: Path
) -> None:
    run = unique_name("run")
    rejected = sample("stationflow_sink_rejected_points_total", reason="bad_data")
    async with BufferedSink(V1Writer(influxd.url, influx_db), DiskSpool(tmp_path, SPOOL_BYTES)) as sink:
        await sink.write(b"air,station=s1,run=" + run.encode() + b" pm25= 1\n", 1)
        await sink.write(lines(run, 100), 100)
        assert sink.spool.batches == 0
        assert not sink.outage
    assert sample("stationflow_sink_rejected_points_total", reason="bad_data") - rejected == 1
    assert influx_count(influxd.url, influx_db, run) == 100


async def test_sink_spools_during_outage_and_drains_after(
    influxd_factory: Callable[[], Component], unique_name: NameFactory, tmp_path: Path
) -> None:
    server, db, run = influxd_factory(), unique_name("db"), unique_name("run")
    batches, per_batch = 20, 500
    spooled = sample("stationflow_sink_spooled_points_total")
    drained = sample("stationflow_sink_drained_points_total")
    async with BufferedSink(V1Writer(server.url, db), DiskSpool(tmp_path, SPOOL_BYTES), **RETRY) as sink:
        await sink.write(lines(run, per_batch), per_batch)
        await asyncio.to_thread(server.stop)
        for n in range(1, batches + 1):
            await sink.write(lines(run, per_batch, first=n * per_batch), per_batch)
        assert sink.outage
        assert sample("stationflow_sink_outage") == 1
        assert sink.spool.batches == batches
        assert sink.spool.points == batches * per_batch
        assert sample("stationflow_sink_spool_batches") == batches

        await asyncio.to_thread(server.restart)
        await eventually(lambda: sink.spool.batches == 0 and not sink.outage, "the spool to drain")
    assert influx_count(server.url, db, run) == (batches + 1) * per_batch
    assert sample("stationflow_sink_spooled_points_total") - spooled == batches * per_batch
    assert sample("stationflow_sink_drained_points_total") - drained == batches * per_batch
    assert sample("stationflow_sink_outage") == 0
    assert list(tmp_path.glob("*.batch")) == []


async def test_sink_starts_while_influx_is_down(
    influxd_factory: Callable[[], Component], unique_name: NameFactory, tmp_path: Path
) -> None:
    server, db, run = influxd_factory(), unique_name("db"), unique_name("run")
    await asyncio.to_thread(server.stop)
    async with BufferedSink(V1Writer(server.url, db), DiskSpool(tmp_path, SPOOL_BYTES), **RETRY) as sink:
        for n in range(5):
            await sink.write(lines(run, 200, first=n * 200), 200)
        assert sink.outage
        assert sink.spool.batches == 5
        await asyncio.to_thread(server.start)
        await eventually(lambda: sink.spool.batches == 0, "the spool to drain")
    assert influx_count(server.url, db, run) == 1000  # the database was created on the way


async def test_full_spool_drops_and_counts_exactly_what_did_not_fit(tmp_path: Path) -> None:
    body = lines("full", 50)
    spool = DiskSpool(tmp_path, max_bytes=3 * len(body))
    dropped = sample("stationflow_sink_dropped_points_total")
    async with BufferedSink(V1Writer(closed_url(), "db"), spool, **RETRY) as sink:
        for _ in range(7):
            await sink.write(body, 50)
        assert sink.spool.batches == 3
    assert sample("stationflow_sink_dropped_points_total") - dropped == 4 * 50


async def test_sink_drains_batches_left_by_a_previous_process(
    influxd: Component, influx_db: str, unique_name: NameFactory, tmp_path: Path
) -> None:
    run = unique_name("run")
    previous = DiskSpool(tmp_path, SPOOL_BYTES)
    previous.append(lines(run, 300), 300)
    previous.append(b"air,station=s1 pm25= 1\n", 1)  # bad: must be set aside, not retried
    previous.append(lines(run, 300, first=300), 300)
    rejected = sample("stationflow_sink_rejected_points_total", reason="bad_data")

    async with BufferedSink(
        V1Writer(influxd.url, influx_db), DiskSpool(tmp_path, SPOOL_BYTES), **RETRY
    ) as sink:
        await eventually(lambda: sink.spool.batches == 0, "the leftover spool to drain")
    assert influx_count(influxd.url, influx_db, run) == 600
    assert sample("stationflow_sink_rejected_points_total", reason="bad_data") - rejected == 1
    (kept,) = read_rejected([tmp_path / "rejected" / "points.jsonl"])
    assert (kept.line, kept.measurement, kept.device) == ("air,station=s1 pm25= 1", "air", "s1")
    assert "unable to parse" in kept.reason and kept.status == 400
    assert sink.spool.batches == 0


async def test_partial_write_keeps_exactly_the_refused_points(
    influxd: Component, influx_db: str, unique_name: NameFactory, tmp_path: Path
) -> None:
    """InfluxDB 1.x stores the good points of a batch and answers 400 ``partial write``; its
    message names only the first type conflict, yet exactly the refused points are kept."""
    run = unique_name("run")
    conflict = f"c{run}"
    influx_write(influxd.url, influx_db, f'{conflict},device=seed v="text" {T0}')  # v is a string now
    good = lines(run, 100).decode().splitlines()
    bad = [
        f"{conflict},device=dev-a v=1.5 {T0 + 1}",  # field type conflict
        "air,device=dev-b,run=x pm25= 1",  # unparsable
        f"{conflict},device=dev-c v=2.5 {T0 + 2}",  # another conflict, not in InfluxDB's message
        f"air,device=dev-d,run=x time=3 {T0 + 3}",  # a field InfluxDB refuses by name
    ]
    body = "\n".join(good[:10] + bad[:2] + good[10:70] + bad[2:] + good[70:]).encode()
    rejected = sample("stationflow_sink_rejected_kept_total")
    async with BufferedSink(V1Writer(influxd.url, influx_db), DiskSpool(tmp_path, SPOOL_BYTES)) as sink:
        await sink.write(body, len(good) + len(bad))
        assert sink.spool.batches == 0 and not sink.outage
    assert influx_count(influxd.url, influx_db, run) == 100
    kept = list(read_rejected(rejected_files(tmp_path)))
    assert [k.line for k in kept] == bad
    assert [k.device for k in kept] == ["dev-a", "dev-b", "dev-c", "dev-d"]
    assert all(k.status == 400 for k in kept)
    assert "field type conflict" in kept[0].reason and "field type conflict" in kept[2].reason
    assert "unable to parse" in kept[1].reason and '"time"' in kept[3].reason
    assert sample("stationflow_sink_rejected_kept_total") - rejected == 4
    assert list(read_rejected(rejected_files(tmp_path), device="dev-c")) == [kept[2]]


async def test_stop_during_outage_leaves_batches_on_disk(tmp_path: Path) -> None:
    sink = BufferedSink(V1Writer(closed_url(), "db"), DiskSpool(tmp_path, SPOOL_BYTES), **RETRY)
    await sink.start()
    for n in range(3):
        await sink.write(lines("stop", 10, first=n * 10), 10)
    started = time.monotonic()
    await sink.stop()
    await sink.stop()  # idempotent
    assert time.monotonic() - started < 2 * RETRY["stop_drain_seconds"]
    reopened = DiskSpool(tmp_path, SPOOL_BYTES)
    assert (reopened.batches, reopened.points) == (3, 30)


async def test_spool_failure_is_raised_not_swallowed(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    async with BufferedSink(V1Writer(closed_url(), "db"), DiskSpool(spool_dir, SPOOL_BYTES), **RETRY) as sink:
        shutil.rmtree(spool_dir)  # the disk "fails" under the sink
        with pytest.raises(SpoolFailure):
            await sink.write(lines("lost", 10), 10)


class _StopsInfluxOnRequest(V1Writer):
    """The real writer, but the server is stopped just before request ``stop_at`` (a test hook)."""

    def __init__(self, server: Component, db: str, stop_at: int) -> None:
        super().__init__(server.url, db)
        self.server, self.stop_at, self.requests = server, stop_at, 0

    async def write(self, body: bytes) -> None:
        self.requests += 1
        if self.requests == self.stop_at:
            await asyncio.to_thread(self.server.stop)
        await super().write(body)


async def test_influx_down_while_isolating_refused_points_keeps_nothing_twice(
    influxd_factory: Callable[[], Component], unique_name: NameFactory, tmp_path: Path
) -> None:
    """InfluxDB goes away half-way through splitting a refused batch: the whole batch is spooled,
    nothing is kept yet; when it returns the spool drains, the refused point is kept once."""
    server, db, run = influxd_factory(), unique_name("db"), unique_name("run")
    good = lines(run, 64).decode().splitlines()
    bad = "air,device=dev-x,run=x pm25= 1"
    body = "\n".join([*good[:40], bad, *good[40:]]).encode()
    writer = _StopsInfluxOnRequest(server, db, stop_at=3)  # 1: the batch, 2: first half, 3: …
    async with BufferedSink(writer, DiskSpool(tmp_path, SPOOL_BYTES), **RETRY) as sink:
        await sink.write(body, 65)
        assert sink.outage and sink.spool.batches == 1
        assert list(read_rejected(rejected_files(tmp_path))) == []
        await asyncio.to_thread(server.start)
        await eventually(lambda: sink.spool.batches == 0 and not sink.outage, "the spool to drain")
    assert influx_count(server.url, db, run) == 64
    (kept,) = read_rejected(rejected_files(tmp_path))
    assert (kept.line, kept.device) == (bad, "dev-x")
