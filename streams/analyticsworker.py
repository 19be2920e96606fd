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
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

import faust
import msgspec
import orjson
from faust.tables.table import Table
from mode.utils.aiter import aiter
from mode.utils.futures import notify
from pydantic import ValidationError

from stationflow import topics
from stationflow.contracts import AlertEvent, AlertSync, DeviceRecord, HourlyValues, utcnow
from stationflow.kafka import CachingPartitioner
from stationflow.logs import LogThrottle
from stationflow.registryview import CATCH_UP_S, RegistryView
from stationflow.wire import WireBatch, WireReading, decode_batch, split_bundle
from streams import metrics
from streams.analytics.device import (
    AnalyticsConfig,
    DeviceState,
    check_silence,
    nodata_limit,
    silence_due,
    update_device,
)
from streams.analytics.native import ENGINE, NativeSettings
from streams.analytics.rules import RuleState, Subject
from streams.analytics.statecodec import decode_device, encode_device, peek_device
from streams.analytics.station import StationState, update_station
from streams.catalog import domain_of
from streams.changelog import ChangelogWriter
from streams.handoff import CleanHandoff
from streams.lineprotocol import FieldValue, encode, line
from streams.livestates import LiveStates
from streams.settings import StreamsSettings

__all__ = [
    "DEVICE_TABLE",
    "STATION_TABLE",
    "AnalyticsAgents",
    "Position",
    "already_applied",
    "changelog_topics",
    "install_analytics",
]

logger = logging.getLogger(__name__)

DEVICE_TABLE = "devices"
STATION_TABLE = "stations"
FLUSH_DEADLINE_S = 60.0
QUIET_S = 0.005  # a batch goes once nothing new arrived for this long (see take_until_quiet)
IDLE_WAKE_S = 1.0  # an idle agent looks up this often (a first value wakes it at once)
# The analytics hand the event loop over at least this often within a batch: the raw stage
# runs on the same loop, and a batch of 200 devices took 50-335 ms of CPU on a slow machine
# (alert bench, 10,000 readings/s), during which no raw batch was fetched, prepared or emitted.
YIELD_EVERY_S = 0.005
CATCH_UP_EVERY_S = 1.0  # a device unknown after a registry catch-up waits again this often at most
MAX_REMEMBERED_UNKNOWN = 10_000

LineSink = Callable[[bytes, int], Awaitable[None]]


class PartitionOf:
    """A record key's partition as the producer's murmur2 partitioner picks it, remembered.

    The analytics send one changelog record per device per batch and one hourly record per
    device-hour, for the same keys again and again: ``stationflow.kafka.CachingPartitioner``
    (bounded) over this topic's partitions.
    """

    def __init__(self, partitions: int, max_keys: int = 200_000) -> None:
        self._all = list(range(partitions))
        self._cached = CachingPartitioner(max_keys)

    def __call__(self, key: bytes) -> int:
        """The partition of ``key``."""
        return self._cached(key, self._all, self._all)


class KeyPartitionedTable(Table[bytes, bytes]):
    """A table whose changelog partition is the key's murmur2 partition, from ``PartitionOf``.

    The same partition ``use_partitioner=True`` gives (the producer's partitioner on the raw
    key: the key's partition on the source topic), without hashing the key at every write.
    """

    partition_of: PartitionOf

    def partition_for_key(self, key: Any) -> int | None:
        """The changelog partition of ``key`` (bytes keys only)."""
        return self.partition_of(key) if isinstance(key, bytes) else None


def _table(app: faust.App, name: str, partitions: int, partition_of: PartitionOf) -> Any:
    """A bytes → bytes changelog-backed table written from batches (no current event needed)."""
    table = KeyPartitionedTable(
        app,
        name=name,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        use_partitioner=True,
        beacon=app.tables.beacon,
    )
    table.partition_of = partition_of
    return app.tables.add(table)


def changelog_topics(settings: StreamsSettings) -> tuple[str, ...]:
    """The changelog topics of the analytics tables (created before the worker starts)."""
    return tuple(f"{settings.streams_app_id}-{t}-changelog" for t in (DEVICE_TABLE, STATION_TABLE))


def install_analytics(
    app: faust.App,
    settings: StreamsSettings,
    registry: RegistryView | None,
    open_sink: Callable[[], Any],
    *,
    handoff: CleanHandoff | None = None,
) -> AnalyticsAgents:
    """Register the analytics tables, agents and timers on ``app``."""
    agents = AnalyticsAgents(app, settings, registry, open_sink, handoff=handoff)
    agents.install()
    return agents


class AnalyticsAgents:
    """The analytics of one worker: two tables, two agents and two timers (see the module docs).

    Every table write goes through one ``ChangelogWriter``: the entry is set at once, and its
    changelog record goes with the others of its partition in one producer batch at the next
    flush (before the batch that wrote it is acknowledged), so a key's writes stay in order.
    """

    def __init__(
        self,
        app: faust.App,
        settings: StreamsSettings,
        registry: RegistryView | None,
        open_sink: Callable[[], Any],
        *,
        handoff: CleanHandoff | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.registry = registry
        self.open_sink = open_sink
        self.config = AnalyticsConfig(
            grace_s=settings.analytics_grace_s,
            default_interval_s=settings.analytics_default_interval_s,
            nodata_grace_s=settings.analytics_nodata_grace_s,
            window_points=settings.analytics_window_points,
        )
        self.partitions = partitions = settings.topic_partitions
        self.clean = app.topic(settings.topic(topics.CLEAN), partitions=partitions)
        self.hourly = app.topic(settings.topic(topics.HOURLY), partitions=partitions)
        self.alerts = app.topic(settings.topic(topics.ALERTS), partitions=partitions)
        self.alert_sync = app.topic(settings.topic(topics.ALERT_SYNC), partitions=partitions)
        # use_partitioner: the changelog partition is the key's hash, which is the partition the
        # key has on the source topic (same murmur2 partitioner, same raw key), so a table entry
        # can be written from a batch (take) or a timer without a "current event".
        self.partition_of = PartitionOf(partitions)
        self.devices = _table(app, DEVICE_TABLE, partitions, self.partition_of)
        self.stations = _table(app, STATION_TABLE, partitions, self.partition_of)
        self.changelog = {t.name: t.changelog_topic.get_topic_name() for t in (self.devices, self.stations)}
        # faust's aiokafka producer, asked for only once the app runs (``app.producer`` is created
        # on first access, and must not be before the app has started)
        self.writer = ChangelogWriter(lambda: cast(Any, app.producer)._ensure_producer(), self.partition_of)
        self.throttle = LogThrottle()
        # documents the raw stage of this worker already decoded (None: decode every record)
        self.handoff = handoff
        if handoff is not None:
            handoff.owned = self.owned_clean_partitions
        # the decoded state of each device this worker last wrote (None: decode every update)
        mb = settings.analytics_live_states_mb
        self.live = LiveStates(mb << 20) if mb else None
        self.sink: Any = None  # opened and closed by the analyse agent
        self.sink_open = asyncio.Event()
        self.watching_since: float | None = None  # when this worker first watched, tables restored
        # device id → when the view last caught up and still did not know it (a deleted device)
        self.unknown_after_catch_up: dict[str, float] = {}

    def install(self) -> None:
        """Register the agents and timers on the app."""
        app, settings = self.app, self.settings
        app.agent(self.clean, name="analyse", concurrency=1)(self.analyse)
        app.agent(self.hourly, name="stations", concurrency=1)(self.station_agent)
        app.timer(interval=settings.analytics_nodata_check_s)(self.watch_silence)
        app.timer(interval=settings.analytics_sync_s)(self.announce)
        app.task(self.ready)
        metrics.ANALYTICS_ENGINE.labels(ENGINE.name).set(1)
        level = logging.INFO if ENGINE.compiled or not NativeSettings().native else logging.WARNING
        logger.log(level, "analytics engine=%s reason=%s", ENGINE.name, ENGINE.reason)

    def owned_clean_partitions(self) -> set[int] | None:
        """The readings.clean partitions this worker's analytics hold now (None: not known yet,
        before the group's first assignment or during a rebalance)."""
        app = self.app
        actives = app.assignor.assigned_actives()
        if app.rebalancing or not actives:
            return None
        topic = self.clean.get_topic_name()
        return {tp.partition for tp in actives if tp.topic == topic}

    async def ready(self) -> None:
        """Log ``analytics ready`` once the tables are restored (an analytics-only worker's
        ready line: it has no raw stage to say ``partitions assigned``)."""
        recovery = getattr(self.app.tables, "recovery", None)  # as in _recovered
        if recovery is not None:
            await recovery.completed.wait()
        logger.info("analytics ready tables=%s engine=%s", ",".join(self.changelog), ENGINE.name)

    def put(self, table: Any, key: bytes, value: bytes) -> None:
        """What ``table[key] = value`` does (store, then a changelog record at the key's
        partition), without faust's per-record buffering (``send_soon``: a FutureMessage, a
        queue and a task per record)."""
        self.writer.put(table.data, self.changelog[table.name], key, value)

    async def durable(self, futures: list[Awaitable[Any]]) -> None:
        """Wait until table changelogs and produced records are acknowledged by Kafka."""
        futures = [*futures, *await self.writer.flush()]
        if futures:
            await asyncio.gather(*futures)
        producer = self.app.producer
        deadline = time.monotonic() + FLUSH_DEADLINE_S
        while producer.buffer.size and time.monotonic() < deadline:
            await producer.flush()
        await producer.flush()
        if producer.buffer.size:
            raise RuntimeError("changelog records not delivered in time; not acknowledging the batch")

    async def send_events(self, events: Sequence[AlertEvent], futures: list[Awaitable[Any]]) -> list[str]:
        """Send alert events (keyed by alert id); their ``alerts`` points for InfluxDB."""
        lines = []
        for event in events:
            key = event.key()
            value = event.model_dump_json().encode()
            futures.append(await self.alerts.send(key=key, value=value, partition=self.partition_of(key)))
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

    async def store(self, lines: list[str]) -> None:
        if lines:
            await self.sink.write(encode(lines), len(lines))

    async def finish(
        self,
        before: asyncio.Future[None] | None,
        lines: list[str],
        futures: list[Awaitable[Any]],
        started: float,
        records: int,
    ) -> None:
        """A batch's InfluxDB write and Kafka acks, after the batch before it finished (so
        points and acknowledgements keep the batches' order), while the next is computed."""
        if before is not None:
            await before
        await self.store(lines)
        await self.durable(futures)
        metrics.ANALYTICS_BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.ANALYTICS_RECORDS.inc(records)
        metrics.ANALYTICS_DONE_AT.set(time.time())

    async def analyse(self, stream: faust.StreamT[bytes]) -> None:
        """``readings.clean`` → device windows, rules and derived values, batch by batch."""
        settings, registry = self.settings, self.registry
        async with self.open_sink() as sink:
            self.sink = sink
            self.sink_open.set()
            if registry is not None:
                # as the raw consumer does: no device is analysed without its registry record
                # (its station, thresholds) because the view was still loading after a restart
                await registry.ready.wait()
            finishing: asyncio.Future[None] | None = None
            async for batch in take_until_quiet(
                stream,
                settings.analytics_batch_max,
                quiet_s=QUIET_S,
                within=settings.analytics_within_s,
                max_bytes=settings.analytics_batch_max_bytes,
                ahead=1,
            ):
                started = time.perf_counter()
                now = time.time()
                lines: list[str] = []
                futures: list[Awaitable[Any]] = []
                by_device = _by_device(batch.values, self.throttle, batch.positions, self.handoff)
                await self.know_devices(by_device)
                await self.analyse_devices(by_device, now, lines, futures)
                futures += await self.writer.flush()  # the table changes leave now, not after the points
                # the writes are acknowledged while the next batch is computed; this batch's
                # records are acknowledged once they are (take_until_quiet)
                finishing = asyncio.ensure_future(
                    self.finish(finishing, lines, futures, started, len(batch.values))
                )
                batch.finish_later(finishing)

    async def analyse_devices(
        self, by_device: dict[str, Docs], now: float, lines: list[str], futures: list[Awaitable[Any]]
    ) -> None:
        """Analyse a batch's devices in turn, letting the other tasks of the loop run at least
        every ``YIELD_EVERY_S`` (between two devices, never within one device's update)."""
        turn = time.perf_counter()
        for device_id, docs in by_device.items():
            await self._analyse_device(device_id, docs, now, lines, futures)
            if time.perf_counter() - turn >= YIELD_EVERY_S:
                await asyncio.sleep(0)
                turn = time.perf_counter()

    async def know_devices(self, device_ids: Iterable[str]) -> None:
        """Let the registry view catch up before a batch that has devices it does not know.

        The raw stage let these readings through with the device's record, so the record is on
        the registry topic; a worker that runs only the analytics follows that topic in its own
        view, which may not have read it yet (a device registered a moment before it published:
        analysed without its station, a river level had no warning level to cross). A device
        still unknown after a catch-up (deleted since) waits again at most every
        ``CATCH_UP_EVERY_S``.
        """
        registry = self.registry
        if registry is None:
            return
        now = time.monotonic()
        waited = self.unknown_after_catch_up
        unknown = [
            d
            for d in device_ids
            if registry.get(d) is None and now - waited.get(d, -CATCH_UP_EVERY_S) >= CATCH_UP_EVERY_S
        ]
        if not unknown:
            return
        metrics.ANALYTICS_REGISTRY_WAITS.inc()
        if not await registry.catch_up(CATCH_UP_S):
            logger.warning(
                "registry view not caught up within %.0f s, analysed without a record devices=%s",
                CATCH_UP_S,
                ",".join(unknown[:10]),
            )
        if len(waited) > MAX_REMEMBERED_UNKNOWN:
            waited.clear()
        for d in unknown:
            if registry.get(d) is None:
                waited[d] = now

    async def _analyse_device(
        self,
        device_id: str,
        docs: Docs,
        now: float,
        lines: list[str],
        futures: list[Awaitable[Any]],
    ) -> None:
        key = device_id.encode()
        record = self.registry.get(device_id) if self.registry is not None else None
        config = self.config
        live = self.live
        try:
            value = self.devices.data.get(key)  # as put writes it (no Faust get hooks)
            state = (live.get(key, value) if live is not None else None) or _load_device(value)
            fresh = [(doc, at) for doc, at in docs if not already_applied(state.applied, at)]
            if len(fresh) < len(docs):
                self._replayed(device_id, len(docs) - len(fresh), state.applied)
                if not fresh:
                    return  # all in the state already: nothing to apply, nothing to write
            readings: list[WireReading] = [r for doc, _ in fresh for r in doc.readings]
            domain = record.domain if record else domain_of(r.metric for r in readings)
            last = fresh[-1][1]
            if last.offset >= 0:
                state.applied = list(last)
            out = update_device(
                state, device_id, readings, record=record, domain=domain, now=now, config=config
            )
        except Exception as exc:  # one device's bad data must not stop the others
            if live is not None:
                live.forget(key)  # the state may be half-applied: decoded again next time
            metrics.ANALYTICS_ERRORS.inc()
            logger.exception(
                "analytics failed, batch skipped device_id=%s readings=%d reason=%r",
                device_id,
                sum(len(doc.readings) for doc, _ in docs),
                exc,
            )
            return
        value = encode_device(state)
        self.put(self.devices, key, value)
        if live is not None:
            live.keep(key, value, state)
        if out.late:
            metrics.LATE_READINGS.inc(out.late)
            if self.throttle.allow(f"late:{device_id}", time.monotonic()) is not None:
                logger.warning(
                    "late readings left out of windows device_id=%s count=%d grace_s=%s",
                    device_id,
                    out.late,
                    config.grace_s,
                )
        lines += out.lines
        if out.events:
            # the rule state that raised or cleared an alert leaves before the alert does: a
            # state restored after a crash is never older than an alert already delivered
            futures += await self.writer.flush()
            lines += await self.send_events(out.events, futures)
        for hv in out.hourly:
            hkey = hv.key()
            futures.append(
                await self.hourly.send(
                    key=hkey, value=hv.model_dump_json().encode(), partition=self.partition_of(hkey)
                )
            )

    def _replayed(self, device_id: str, documents: int, applied: Sequence[int] | None) -> None:
        """Count (and log, throttled) documents skipped because the state already holds them."""
        metrics.ANALYTICS_REPLAYED.inc(documents)
        if self.throttle.allow(f"replayed:{device_id}", time.monotonic()) is not None:
            logger.info(
                "replayed readings already in the state skipped device_id=%s documents=%d applied=%s",
                device_id,
                documents,
                applied,
            )

    async def station_agent(self, stream: faust.StreamT[bytes]) -> None:
        """``analytics.hourly`` → station AQI / water class and station rules."""
        registry = self.registry
        async for batch in take_until_quiet(
            stream, 500, quiet_s=QUIET_S, within=self.settings.analytics_within_s
        ):
            lines: list[str] = []
            futures: list[Awaitable[Any]] = []
            for raw in batch.values:
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
                    state = _load_station(self.stations.data.get(key))
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
                self.put(self.stations, key, orjson.dumps(state.dump()))
                lines += out.lines
                if out.events:
                    futures += await self.writer.flush()  # the state before its alert, as in analyse
                    lines += await self.send_events(out.events, futures)
            if lines:
                await self.sink_open.wait()
                await self.store(lines)
            await self.durable(futures)

    async def watch_silence(self) -> None:
        """Raise the no-data alert of every device silent longer than its limit (a timer)."""
        now = time.time()
        if not _recovered(self.app):
            return
        if self.watching_since is None:
            self.watching_since = now
        registry, config, devices = self.registry, self.config, self.devices
        futures: list[Awaitable[Any]] = []
        lines: list[str] = []
        for key in list(devices.keys()):
            # the entry as it is now, not as it was when the loop began: a batch may have
            # updated it while this loop waited for a send
            value = devices.data.get(key)
            if value is None:
                continue
            device_id = key.decode()
            record = registry.get(device_id) if registry is not None else None
            if now - self.watching_since <= nodata_limit(record, config):
                # restored state, but this worker has not watched that long: the silence may be
                # the stack's own downtime (`stationflow up` stopped), and queued readings may
                # still be on their way
                continue
            seen, rules = peek_device(value)
            if not silence_due(seen, rules, record=record, now=now, config=config):
                continue  # most devices, most of the time: no need to decode the windows
            state = _load_device(value)
            domain = record.domain if record else "sensor"
            event = check_silence(state, device_id, record=record, domain=domain, now=now, config=config)
            if event is not None:
                self.put(devices, key, encode_device(state))
                futures += await self.writer.flush()  # the state before its alert, as in analyse
                lines += await self.send_events([event], futures)
        if lines and self.sink_open.is_set():
            await self.store(lines)
        await self.durable(futures)

    async def announce(self) -> None:
        """Tell the alert service which alerts this worker holds raised (see ``AlertSync``)."""
        app = self.app
        if app.rebalancing or not _recovered(app):
            return  # tables incomplete: a missing entry must not read as "nothing raised"
        actives = app.assignor.assigned_actives()
        futures: list[Awaitable[Any]] = []
        for name, table, source, kind in (
            (DEVICE_TABLE, self.devices, self.clean, "device"),
            (STATION_TABLE, self.stations, self.hourly, "station"),
        ):
            topic = source.get_topic_name()
            owned = {tp.partition for tp in actives if tp.topic == topic}
            held = _held_by_partition(list(table.items()), kind, self.partitions, owned)
            at = utcnow()
            for partition, subjects in held.items():
                sync = AlertSync(subjects=subjects, at=at)
                futures.append(
                    await self.alert_sync.send(
                        key=sync.key(name, partition), value=sync.model_dump_json().encode()
                    )
                )
        await self.durable(futures)
        metrics.ALERT_SYNCS.inc(len(futures))


class Position(NamedTuple):
    """Where a record was read: partition, offset and Kafka timestamp (ms)."""

    partition: int
    offset: int
    ts_ms: int


UNKNOWN = Position(-1, -1, -1)  # a record whose position is not known: no state's last applied


def already_applied(applied: Sequence[int] | None, at: Position) -> bool:
    """Whether the record at ``at`` is in a state whose last applied record was ``applied``.

    After a restart, the records after the last committed offset come again, and a device's
    state restored from the changelog may already hold some of them (its changelog record is
    written before the batch's offsets are committed). Such a record is at or before the last
    one applied on the same partition, and not newer: the Kafka timestamp is a record's own,
    so a record written after a topic was emptied and refilled (offsets from 0 again, newer
    timestamps) is applied, never skipped.
    """
    return (
        applied is not None
        and at.partition == applied[0]
        and at.offset <= applied[1]
        and at.ts_ms <= applied[2]
    )


class Batch:
    """A batch from :func:`take_until_quiet`: its values, where each was read, and what must
    finish before its records are acknowledged."""

    __slots__ = ("finishing", "positions", "values")

    def __init__(self, values: list[bytes], positions: list[Position]) -> None:
        self.values = values
        self.positions = positions
        self.finishing: asyncio.Future[None] | None = None

    def finish_later(self, task: asyncio.Future[None]) -> None:
        """Acknowledge this batch's records only once ``task`` has finished without error,
        instead of when the loop body that received it returns (the next batch may be taken
        meanwhile: at most ``ahead`` batches are waiting for their tasks)."""
        self.finishing = task


def take_until_quiet(
    stream: Any,
    max_: int,
    *,
    quiet_s: float,
    within: float,
    max_bytes: int | None = None,
    ahead: int = 1,
) -> AsyncIterator[Batch]:
    """Faust's ``Stream.take`` that hands over a batch once the stream has gone quiet.

    ``take(max_, within)`` always waits ``within`` for a batch to fill: a lone alert-worthy
    reading waits that long in an idle worker, and a short ``within`` cuts a backlog into
    small batches (each with its own changelog flush and InfluxDB write; measured at 10,000
    devices: 24 vs 17 µs of worker CPU per reading, 0.02 s against 0.5 s). Here the batch
    is handed over when no new value arrived for ``quiet_s`` (an idle stream: at most about
    2 x ``quiet_s`` after its first value), when it holds ``max_`` values or ``max_bytes``
    bytes of them (bundles: one value may carry hundreds of documents), or ``within``
    after its first value. The rest is ``take``'s own code: values are added by a processor
    while the stream is consumed passively, and a batch's events are acknowledged only after
    the loop body that received it has finished, or, if the body handed its last steps to a
    task (``Batch.finish_later``: the writes being acknowledged while the next batch is
    computed), after that task; always in order, and never for a batch whose body or task
    failed or was cancelled.
    """
    batches = _take_until_quiet(stream, max_, quiet_s, within, max_bytes, ahead)
    # as faust's own take: the stream closes it on stop (its finally detaches the processor)
    stream._active_agens.add(batches)
    return batches


async def _take_until_quiet(
    stream: Any, max_: int, quiet_s: float, within: float, max_bytes: int | None, ahead: int
) -> AsyncGenerator[Batch, None]:
    buffer: list[bytes] = []
    held_bytes = 0
    events: list[Any] = []
    arrived = asyncio.Event()  # a batch's first value is in
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    enable_acks = stream.enable_acks
    # batches handed over and done with, oldest first: their events, and the task to wait for
    unacked: deque[tuple[list[Any], asyncio.Future[None] | None]] = deque()

    async def acknowledge(keep: int) -> None:
        """Acknowledge finished batches in order, waiting for the oldest while more than
        ``keep`` are unacknowledged; a failed task raises here, and nothing after it is acked."""
        while unacked and (len(unacked) > keep or unacked[0][1] is None or unacked[0][1].done()):
            taken, task = unacked[0]
            if task is not None:
                await task
            unacked.popleft()
            for event in taken:
                await stream.ack(event)

    async def add(value: bytes) -> bytes:
        nonlocal consuming, held_bytes
        if consuming is not None:
            try:
                await consuming
            finally:
                consuming = None
        buffer.append(value)
        events.append(stream.current_event)
        held_bytes += len(value)
        if len(buffer) == 1:
            arrived.set()
        if len(buffer) >= max_ or (max_bytes is not None and held_bytes >= max_bytes):
            full.set()
            consumed.clear()
            await stream.wait(consumed)
        return value

    stream.enable_acks = False
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            await acknowledge(ahead)
            await stream.wait_for_stopped(arrived, timeout=IDLE_WAKE_S)
            if not buffer:
                continue
            first_seen = time.monotonic()
            while not full.is_set() and not stream.should_stop:
                held = len(buffer)
                await stream.wait_for_stopped(full, timeout=quiet_s)
                if len(buffer) == held or time.monotonic() - first_seen >= within:
                    break  # quiet for quiet_s (or waited long enough): hand it over
            consuming = asyncio.get_running_loop().create_future()
            batch = Batch(list(buffer), [_position(e) for e in events])
            done = False
            try:
                yield batch
                done = True  # the body returned (not raised, not closed mid-batch)
            finally:
                buffer.clear()
                held_bytes = 0
                taken = events[:]
                events.clear()
                arrived.clear()
                notify(consuming)
                full.clear()
                consumed.set()
                if done:
                    unacked.append((taken, batch.finishing))
        await acknowledge(0)
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add)
        for _, task in unacked:  # stopped, or a task failed: what is left is not acknowledged
            if task is not None and not task.done():
                task.cancel()


def _position(event: Any) -> Position:
    """Where ``event``'s record was read (unknown: -1, which no state's applied record matches)."""
    message = getattr(event, "message", None)
    if message is None:
        return UNKNOWN
    return Position(message.partition, message.offset, round(message.timestamp * 1000))


Docs = list[tuple[WireBatch, Position]]


def _by_device(
    values: Sequence[bytes],
    throttle: LogThrottle,
    positions: Sequence[Position] | None = None,
    handoff: CleanHandoff | None = None,
) -> dict[str, Docs]:
    """The documents of a batch of ``readings.clean`` records, per device in arrival order,
    each with the position of its record.

    msgspec (``stationflow.wire``), not pydantic, on this hot path: same checks. A record may
    be a bundle (several documents); a malformed document is counted and skipped on its own.
    A record this worker's raw stage produced comes decoded from ``handoff`` when it is there
    with the same bytes (``streams.handoff``).
    """
    by_device: dict[str, Docs] = {}
    for i, raw in enumerate(values):
        at = positions[i] if positions is not None else UNKNOWN
        if handoff is not None and at.offset >= 0:
            taken = handoff.take(at.partition, at.offset, raw)
            if taken is not None:
                for batch in taken:
                    by_device.setdefault(batch.device_id, []).append((batch, at))
                continue
        for doc in split_bundle(raw):
            try:
                batch = decode_batch(doc)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                metrics.ANALYTICS_INVALID.inc()
                if throttle.allow("invalid", time.monotonic()) is not None:
                    logger.error("invalid record on readings.clean skipped reason=%s", exc)
                continue
            by_device.setdefault(batch.device_id, []).append((batch, at))
    return by_device


def _load_device(value: bytes | None) -> DeviceState:
    return decode_device(value, lazy=True)  # closed hours decoded only when the update needs them


def _recovered(app: faust.App) -> bool:
    """Whether the tables have been restored from their changelogs since the worker started."""
    recovery = getattr(app.tables, "recovery", None)  # TableManager's, not on its interface
    return recovery is not None and bool(recovery.completed.is_set())


def _held_by_partition(
    entries: Sequence[tuple[bytes, bytes | None]], kind: str, partitions: int, owned: set[int]
) -> dict[int, dict[str, list[str]]]:
    """Per owned table partition: subject -> the alert ids its rule states hold raised."""
    out: dict[int, dict[str, list[str]]] = {}
    partition_of = PartitionOf(partitions)
    for key, value in entries:
        partition = partition_of(key)
        if value is None or partition not in owned:
            continue
        subject = f"{kind}:{key.decode()}"
        rules = peek_device(value)[1] if kind == "device" else _load_station(value).rules
        raised = [f"{rule}:{subject}" for rule, raw in rules.items() if RuleState.load(raw).active >= 0]
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
