"""The Faust application hosting the stream worker.

Its first job is the hot path (``streams.rawconsumer``): ``readings.raw`` → normalise →
InfluxDB + ``readings.clean``, run as a Faust task that owns its consumer-group member.
Stateful analytics (windows, indices, rules) are Faust agents and tables on
``readings.clean``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, TransportT

from stationflow import topics
from stationflow.consumerlag import ConsumerLagMonitor, GroupTopics
from stationflow.registryview import RegistryFollower, RegistryView
from stationflow.runtime import watch_loop_lag
from streams.analyticsworker import install_analytics
from streams.handoff import CleanHandoff
from streams.rawconsumer import RawConsumer
from streams.settings import StreamsSettings
from streams.sink import BufferedSink, DiskSpool, make_writer
from streams.sink.rejected import RejectedStore
from streams.sink.spool import REJECTED_DIR

__all__ = ["WorkerApp", "create_app", "lag_watches"]

logger = logging.getLogger(__name__)

STREAM_BUFFER_RECORDS = 256  # records an analytics agent may have fetched and not yet taken


class WorkerApp(faust.App):
    """The Faust app, its consumer fetching with ``fetch_max_wait_ms``.

    Faust's own aiokafka consumer lets the broker hold an empty fetch for 1500 ms, and Tansu
    answers it only then: a clean record reaching an idle analytics consumer waited up to
    750 ms before the analytics saw it.
    """

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._early_tasks: list[Callable[[], Awaitable[None]]] = []
        super().__init__(*args, **kwargs)

    def early_task(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` from the app's start, before Faust's consumer joins its group.

        ``app.task`` functions start only once Faust's consumer has its partitions (about 5 s
        on Tansu, which holds a join for half the session timeout); the raw stage has its own
        consumer group and does not wait for Faust's, so it starts here. Like an ``app.task``
        it is cancelled when the app stops, and its exception crashes the worker.
        """
        self._early_tasks.append(fn)

    async def on_start(self) -> None:
        """Faust's start, then the early tasks (before the consumer and the tables start)."""
        await super().on_start()
        for fn in self._early_tasks:
            self.add_future(fn())

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        if isinstance(self.app, WorkerApp):  # read by AIOKafkaConsumer.start() to create its fetcher
            consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        # Faust falls back to a round-robin assignor in a process with no changelog tables and
        # no standby replicas (a raw-stage-only worker, or any worker with the analytics off):
        # the group then refuses a worker with the analytics, which uses Faust's assignor
        # (InconsistentGroupProtocolError). Every worker of the app uses Faust's (read by
        # AIOKafkaConsumer.start() to create its coordinator).
        self._assignor = self.app.assignor
        consumer._partition_assignment_strategy = (self.app.assignor,)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Faust's seek back to the committed offsets, and the agents' partitions that have none
        read again from their beginning (see :func:`rewind_uncommitted`)."""
        await super().perform_seek()
        await rewind_uncommitted(self)


async def rewind_uncommitted(consumer: Any) -> list[TP]:
    """Seek the agents' assigned partitions with no committed offset to their beginning.

    Faust drops the records it fetched while its flow was suspended (a rebalance, a table
    recovery) and then seeks every partition back to its committed offset. A partition with no
    commit yet (or offset 0) is not moved, and stays after the dropped records: they were never
    analysed. Seen after a worker was SIGKILLed before its first commit and restarted: the
    analytics stayed idle, ``readings.clean`` at position = end of log, nothing delivered, no
    error (a fresh-clone CI run, and runs of the restart test under load). With no commit,
    ``consumer_auto_offset_reset="earliest"`` says the group starts at the beginning: now it
    does, whatever was fetched before. Analysing a record twice is harmless (the windows keep
    one value per slot, closed hours ignore late ones). Changelog partitions are left to Faust's
    table recovery. A seek that fails (the assignment changed meanwhile) is logged: the next
    rebalance seeks again.
    """
    changelogs = consumer.app.tables.changelog_topics
    read = consumer._read_offset  # what perform_seek set from the committed offsets (None: none)
    tps = sorted(tp for tp in consumer.assignment() if tp.topic not in changelogs and not read.get(tp))
    if not tps:
        return []
    by_topic: dict[str, list[str]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(str(tp.partition))
    names = " ".join(f"{topic}:{','.join(parts)}" for topic, parts in by_topic.items())
    try:
        await consumer._thread.seek_to_beginning(*(faust_aiokafka.ensure_aiokafka_TP(tp) for tp in tps))
    except Exception as exc:  # noqa: BLE001 - a rebalance in between; the next one seeks again
        logger.warning("seek to the beginning failed partitions=%s reason=%r", names, exc)
        return []
    logger.info("partitions with no committed offset read from their beginning partitions=%s", names)
    return tps


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def create_app(settings: StreamsSettings) -> faust.App:
    """Build the Faust app and its tasks for these settings."""
    datadir = settings.local_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        settings.streams_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        datadir=str(datadir),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,  # topics are created explicitly (stationflow.topics)
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.streams_session_timeout_s,
        broker_heartbeat_interval=settings.streams_heartbeat_s,
        broker_commit_interval=settings.streams_commit_interval_s,
        broker_rebalance_timeout=max(30.0, settings.streams_session_timeout_s * 3),
        stream_recovery_delay=0.0,
        # readings.clean records are bundles (up to 256 kB, hundreds of device documents):
        # Faust's default prefetch of 4,096 records per stream could hold a gigabyte in a backlog.
        stream_buffer_maxsize=STREAM_BUFFER_RECORDS,
        # Never acknowledge a record whose processing raised or was cancelled.
        stream_ack_exceptions=False,
        stream_ack_cancelled_tasks=False,
        producer_acks=-1,
        # the analytics' changelog records go as one producer batch per partition and batch
        # (streams.changelog): up to 512 kB each, as the raw stage's producer
        producer_max_batch_size=512 * 1024,
        web_enabled=settings.streams_web_enabled,
        web_port=settings.streams_web_port,
        fetch_max_wait_ms=settings.analytics_fetch_max_wait_ms,
        table_standby_replicas=settings.analytics_standby_replicas,
    )

    registry = RegistryView() if settings.streams_registry else None
    # the raw stage's clean documents, decoded, for this worker's own analytics
    handoff = (
        CleanHandoff(max_readings=settings.analytics_handoff_max_readings)
        if settings.streams_raw_enabled
        and settings.analytics_enabled
        and settings.analytics_handoff_max_readings
        else None
    )

    async def normalise_and_store() -> None:
        """readings.raw → InfluxDB + readings.clean until the worker stops."""
        async with _open_sink(settings) as sink:
            await RawConsumer(settings, sink, registry, handoff).run()

    async def follow_registry() -> None:
        """Keep the registry view current (only with STATIONFLOW_STREAMS_REGISTRY=true)."""
        if registry is not None:
            await RegistryFollower(settings, registry).run()

    async def watch_loop() -> None:
        """stationflow_event_loop_lag_seconds of the worker's loop (no parameter: Faust would
        pass the app)."""
        await watch_loop_lag()

    async def report_lag() -> None:
        """stationflow_consumer_lag of the worker's consumer groups."""
        await ConsumerLagMonitor(settings.kafka_bootstrap, lag_watches(settings)).run()

    if settings.streams_raw_enabled:
        app.early_task(normalise_and_store)
    app.early_task(follow_registry)
    app.task(report_lag)
    app.task(watch_loop)
    if settings.analytics_enabled:
        install_analytics(
            app, settings, registry, lambda: _open_sink(settings, "analytics-spool"), handoff=handoff
        )

    return app


def lag_watches(settings: StreamsSettings) -> list[GroupTopics]:
    """The worker's groups: the raw consumer's, and Faust's (the app id) on the analytics topics."""
    watches = []
    if settings.streams_raw_enabled:
        watches.append(GroupTopics(f"{settings.streams_app_id}.raw", (settings.topic(topics.RAW),)))
    if settings.analytics_enabled:
        analytics = (settings.topic(topics.CLEAN), settings.topic(topics.HOURLY))
        watches.append(GroupTopics(settings.streams_app_id, analytics))
    return watches


def _open_sink(settings: StreamsSettings, spool_dir: str = "spool") -> BufferedSink:
    spool = DiskSpool(settings.local_dir / spool_dir, settings.streams_spool_max_mb << 20)
    rejected = RejectedStore(spool.directory / REJECTED_DIR, settings.streams_rejected_max_mb << 20)
    return BufferedSink(make_writer(settings), spool, rejected=rejected)
