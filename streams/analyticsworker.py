"""The analytics agents of the Faust worker: windows, indices, rules (I/O edge).

- ``analyse`` (agent on ``readings.clean``, table ``devices``): per device, the windows,
  data-quality checks and device rules of ``streams.analytics.device``; closed hours go to
  ``analytics.hourly`` keyed by station, alert events to ``alerts.events``, derived values
  to InfluxDB.
- ``stations`` (agent on ``analytics.hourly``, table ``stations``): hourly / daily AQI, water
  class and the station rules of ``streams.analytics.station``.
- a timer raises no-data alerts for devices silent longer than their expected interval plus
  the grace period (the clear comes from ``analyse`` when the device is back).

Both tables are changelog-backed Faust tables (memory store, restored from the changelog at
start). Every batch ends by waiting until the changelog records, the produced records and
the InfluxDB write are acknowledged, and only then are its offsets acknowledged; so a worker
killed at any point resumes from state that includes everything it committed, and the
re-delivered readings overwrite their own slots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
import orjson
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from stationflow import topics
from stationflow.contracts import AlertEvent, AlertSync, DeviceRecord, HourlyValues, ReadingBatch, utcnow
from stationflow.logs import LogThrottle
from stationflow.registryview import RegistryView
from streams import metrics
from streams.analytics.device import AnalyticsConfig, DeviceState, check_silence, nodata_limit, update_device
from streams.analytics.rules import RuleState, Subject
from streams.analytics.station import StationState, update_station
from streams.catalog import domain_of
from streams.lineprotocol import FieldValue, encode, line
from streams.settings import StreamsSettings

__all__ = ["DEVICE_TABLE", "STATION_TABLE", "changelog_topics", "install_analytics"]

logger = logging.getLogger(__name__)

DEVICE_TABLE = "devices"
STATION_TABLE = "stations"
FLUSH_DEADLINE_S = 60.0
# The table's key -> partition mapping (use_partitioner: the producer's murmur2, as Java's).
_PARTITIONER = DefaultPartitioner()

LineSink = Callable[[bytes, int], Awaitable[None]]


def changelog_topics(settings: StreamsSettings) -> tuple[str, ...]:
    """The changelog topics of the analytics tables (created before the worker starts)."""
    return tuple(f"{settings.streams_app_id}-{t}-changelog" for t in (DEVICE_TABLE, STATION_TABLE))


def install_analytics(
    app: faust.App,
    settings: StreamsSettings,
    registry: RegistryView | None,
    open_sink: Callable[[], Any],
) -> None:
    """Register the analytics tables, agents and timer on ``app``."""
    config = AnalyticsConfig(
        grace_s=settings.analytics_grace_s,
        default_interval_s=settings.analytics_default_interval_s,
        nodata_grace_s=settings.analytics_nodata_grace_s,
    )
    partitions = settings.topic_partitions
    clean = app.topic(settings.topic(topics.CLEAN), partitions=partitions)
    hourly = app.topic(settings.topic(topics.HOURLY), partitions=partitions)
    alerts = app.topic(settings.topic(topics.ALERTS), partitions=partitions)
    alert_sync = app.topic(settings.topic(topics.ALERT_SYNC), partitions=partitions)
    # use_partitioner: the changelog partition is the key's hash, which is the partition the
    # key has on the source topic (same murmur2 partitioner, same raw key), so a table entry
    # can be written from a batch (take) or a timer without a "current event".
    devices = app.Table(
        DEVICE_TABLE, partitions=partitions, key_type=bytes, value_type=bytes, use_partitioner=True
    )
    stations = app.Table(
        STATION_TABLE, partitions=partitions, key_type=bytes, value_type=bytes, use_partitioner=True
    )
    throttle = LogThrottle()
    sinks: dict[str, Any] = {}
    sink_open = asyncio.Event()  # set by the analyse agent, which owns the sink's lifetime

    async def durable(futures: list[Awaitable[Any]]) -> None:
        """Wait until table changelogs and produced records are acknowledged by Kafka."""
        if futures:
            await asyncio.gather(*futures)
        producer = app.producer
        deadline = time.monotonic() + FLUSH_DEADLINE_S
        while producer.buffer.size and time.monotonic() < deadline:
            await producer.flush()
        await producer.flush()
        if producer.buffer.size:
            raise RuntimeError("changelog records not delivered in time; not acknowledging the batch")

    async def send_events(events: Sequence[AlertEvent], futures: list[Awaitable[Any]]) -> list[str]:
        lines = []
        for event in events:
            futures.append(await alerts.send(key=event.key(), value=event.model_dump_json().encode()))
            metrics.ALERT_EVENTS.labels(event.rule, event.state.value).inc()
            logger.info(
                "alert %s alert_id=%s severity=%s station=%s device=%s value=%s threshold=%s",
                event.state.value,
                event.alert_id,
                event.severity.value,
                event.station_id,
                event.device_id,
                event.value,
                event.threshold,
            )
            lines.append(_alert_line(event))
        return lines

    async def store(lines: list[str]) -> None:
        if lines:
            await sinks["sink"].write(encode(lines), len(lines))

    @app.agent(clean, name="analyse", concurrency=1)
    async def analyse(stream: faust.StreamT[bytes]) -> None:
        async with open_sink() as sink:
            sinks["sink"] = sink
            sink_open.set()
            if registry is not None:
                # as the raw consumer does: no device is analysed without its registry record
                # (its station, thresholds) because the view was still loading after a restart
                await registry.ready.wait()
            async for values in stream.take(settings.analytics_batch_max, within=settings.analytics_within_s):
                started = time.perf_counter()
                by_device: dict[str, list[ReadingBatch]] = {}
                for raw in values:
                    try:
                        batch = ReadingBatch.model_validate_json(raw)
                    except ValidationError as exc:
                        metrics.ANALYTICS_INVALID.inc()
                        if throttle.allow("invalid", time.monotonic()) is not None:
                            logger.error(
                                "invalid record on readings.clean skipped reason=%s", exc.errors()[0]["msg"]
                            )
                        continue
                    by_device.setdefault(batch.device_id, []).append(batch)
                now = time.time()
                lines: list[str] = []
                futures: list[Awaitable[Any]] = []
                for device_id, batches in by_device.items():
                    key = device_id.encode()
                    record = registry.get(device_id) if registry is not None else None
                    readings = [r for b in batches for r in b.readings]
                    domain = record.domain if record else domain_of(r.metric for r in readings)
                    try:
                        state = _load_device(devices.get(key))
                        out = update_device(
                            state, device_id, readings, record=record, domain=domain, now=now, config=config
                        )
                    except Exception as exc:  # one device's bad data must not stop the others
                        metrics.ANALYTICS_ERRORS.inc()
                        logger.exception(
                            "analytics failed, batch skipped device_id=%s readings=%d reason=%r",
                            device_id,
                            len(readings),
                            exc,
                        )
                        continue
                    devices[key] = orjson.dumps(state.dump())
                    if out.late:
                        metrics.LATE_READINGS.inc(out.late)
                        if throttle.allow(f"late:{device_id}", time.monotonic()) is not None:
                            logger.warning(
                                "late readings left out of windows device_id=%s count=%d grace_s=%s",
                                device_id,
                                out.late,
                                config.grace_s,
                            )
                    lines += out.lines
                    lines += await send_events(out.events, futures)
                    for hv in out.hourly:
                        futures.append(await hourly.send(key=hv.key(), value=hv.model_dump_json().encode()))
                await store(lines)
                await durable(futures)
                metrics.ANALYTICS_BATCH_SECONDS.observe(time.perf_counter() - started)
                metrics.ANALYTICS_RECORDS.inc(len(values))

    @app.agent(hourly, name="stations", concurrency=1)
    async def station_agent(stream: faust.StreamT[bytes]) -> None:
        async for values in stream.take(500, within=settings.analytics_within_s):
            lines: list[str] = []
            futures: list[Awaitable[Any]] = []
            for raw in values:
                try:
                    hv = HourlyValues.model_validate_json(raw)
                except ValidationError as exc:
                    metrics.ANALYTICS_INVALID.inc()
                    logger.error(
                        "invalid record on analytics.hourly skipped reason=%s", exc.errors()[0]["msg"]
                    )
                    continue
                record = registry.get(hv.device_id) if registry is not None else None
                key = hv.station_id.encode()
                try:
                    state = _load_station(stations.get(key))
                    out = update_station(
                        state,
                        hv,
                        subject=_station_subject(hv, record),
                        attributes=record.station.attributes if record and record.station else {},
                        overrides=record.thresholds if record else {},
                    )
                except Exception as exc:  # one station's bad hour must not stop the others
                    metrics.ANALYTICS_ERRORS.inc()
                    logger.exception(
                        "station analytics failed, hour skipped station_id=%s device_id=%s reason=%r",
                        hv.station_id,
                        hv.device_id,
                        exc,
                    )
                    continue
                stations[key] = orjson.dumps(state.dump())
                lines += out.lines
                lines += await send_events(out.events, futures)
            if lines:
                await sink_open.wait()
                await store(lines)
            await durable(futures)

    watching_since: list[float] = []  # when this worker first watched with its tables restored

    async def watch_silence() -> None:
        now = time.time()
        if not _recovered(app):
            return
        if not watching_since:
            watching_since.append(now)
        futures: list[Awaitable[Any]] = []
        lines: list[str] = []
        for key, value in list(devices.items()):
            if value is None:
                continue
            device_id = key.decode()
            record = registry.get(device_id) if registry is not None else None
            if now - watching_since[0] <= nodata_limit(record, config):
                # restored state, but this worker has not watched that long: the silence may be
                # the stack's own downtime (`stationflow up` stopped), and queued readings may
                # still be on their way
                continue
            state = _load_device(value)
            domain = record.domain if record else "sensor"
            event = check_silence(state, device_id, record=record, domain=domain, now=now, config=config)
            if event is not None:
                devices[key] = orjson.dumps(state.dump())
                lines += await send_events([event], futures)
        if lines and sink_open.is_set():
            await store(lines)
        await durable(futures)

    app.timer(interval=settings.analytics_nodata_check_s)(watch_silence)

    async def announce() -> None:
        """Tell the alert service which alerts this worker holds raised (see ``AlertSync``)."""
        if app.rebalancing or not _recovered(app):
            return  # tables incomplete: a missing entry must not read as "nothing raised"
        actives = app.assignor.assigned_actives()
        futures: list[Awaitable[Any]] = []
        for name, table, source, kind in (
            (DEVICE_TABLE, devices, clean, "device"),
            (STATION_TABLE, stations, hourly, "station"),
        ):
            topic = source.get_topic_name()
            owned = {tp.partition for tp in actives if tp.topic == topic}
            held = _held_by_partition(list(table.items()), kind, partitions, owned)
            at = utcnow()
            for partition, subjects in held.items():
                sync = AlertSync(subjects=subjects, at=at)
                futures.append(
                    await alert_sync.send(
                        key=sync.key(name, partition), value=sync.model_dump_json().encode()
                    )
                )
        await durable(futures)
        metrics.ALERT_SYNCS.inc(len(futures))

    app.timer(interval=settings.analytics_sync_s)(announce)


def _load_device(value: bytes | None) -> DeviceState:
    return DeviceState.load(orjson.loads(value) if value else None)


def _recovered(app: faust.App) -> bool:
    """Whether the tables have been restored from their changelogs since the worker started."""
    recovery = getattr(app.tables, "recovery", None)  # TableManager's, not on its interface
    return recovery is not None and bool(recovery.completed.is_set())


def _held_by_partition(
    entries: Sequence[tuple[bytes, bytes | None]], kind: str, partitions: int, owned: set[int]
) -> dict[int, dict[str, list[str]]]:
    """Per owned table partition: subject -> the alert ids its rule states hold raised."""
    out: dict[int, dict[str, list[str]]] = {}
    for key, value in entries:
        partition = int(_PARTITIONER(key, list(range(partitions)), list(range(partitions))))
        if value is None or partition not in owned:
            continue
        subject = f"{kind}:{key.decode()}"
        state = _load_device(value) if kind == "device" else _load_station(value)
        raised = [f"{rule}:{subject}" for rule, raw in state.rules.items() if RuleState.load(raw).active >= 0]
        out.setdefault(partition, {})[subject] = sorted(raised)
    return out


def _load_station(value: bytes | None) -> StationState:
    return StationState.load(orjson.loads(value) if value else None)


def _station_subject(hv: HourlyValues, record: DeviceRecord | None) -> Subject:
    station = record.station if record else None
    return Subject(
        kind="station",
        id=hv.station_id,
        domain=hv.domain,
        station_id=hv.station_id,
        region=station.region if station else None,
        basin=station.basin if station else None,
    )


def _alert_line(event: AlertEvent) -> str:
    """An ``alerts`` point for Grafana annotations (region and basin: the dashboards' variables)."""
    tags = {
        "rule": event.rule,
        "severity": event.severity.value,
        "station": event.station_id,
        "device": event.device_id,
        "region": event.region,
        "basin": event.basin,
    }
    fields: dict[str, FieldValue] = {
        "state": event.state.value,
        "alert_id": event.alert_id,
        "seq": event.seq,
        "text": event.explanation,
    }
    if event.value is not None:
        fields["value"] = float(event.value)
    if event.threshold is not None:
        fields["threshold"] = float(event.threshold)
    ts = int(event.observed_at.timestamp() * 1000) * 1_000_000
    written = line("alerts", tags, fields, ts)
    assert written is not None  # noqa: S101  (state, alert_id, seq and text are always written)
    return written
