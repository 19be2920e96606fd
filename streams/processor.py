"""Batch processing of raw readings: split bundles, parse, normalise, store, emit.

The raw consumer hands over a list of ``readings.raw`` record values. Each value is a bundle
of one or more ``ReadingBatch`` documents (``stationflow.wire``: newline-separated; a plain
record is a bundle of one), decoded and checked with msgspec. A bad document is
dead-lettered on its own (``invalid_record``, msgspec's reason, the document as payload) and
the rest of its bundle goes on. When ``store`` returns, every reading is either in InfluxDB,
in the sink's on-disk spool, counted and logged as dropped, or in the dead-letter topic — and
only then does the consumer commit the offsets. Metrics are counted once per batch.

``readings.clean`` carries bundles too: one clean document per device (and source) per batch,
grouped by the partition the device id hashes to (the producer's murmur2 partitioner, as a
record keyed by the device would go: the analytics' table partition and the partition a
worker owns stay the device's), one record per partition (a few when it would pass
``CLEAN_MAX_BUNDLE_BYTES``), without a key and with that explicit partition. Downstream pays
its per-record cost (Faust's is about 100 µs) once per partition and batch instead of once
per device. A device's documents keep their order within its partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import msgspec

from stationflow.contracts import DEVICE_ID_PATTERN, DeadLetter, utcnow
from stationflow.kafka import CachingPartitioner
from stationflow.logs import LogThrottle
from stationflow.registryview import RegistryView
from stationflow.wire import WireBatch, decode_batch, encode_wire_batch, join_bundle, split_bundle
from streams import metrics
from streams.enrich import Rejection, enrich
from streams.handoff import CleanHandoff
from streams.lineprotocol import batch_lines, encode
from streams.normalize import RecentKeys, normalize

__all__ = ["BatchProcessor", "Prepared", "ReadingSink", "Send"]

logger = logging.getLogger(__name__)

Send = Callable[[str, bytes | None, bytes, int | None], Awaitable[Awaitable[Any]]]
"""``await send(topic, key, value, partition)`` buffers a record and returns its delivery future.

``partition`` None: the producer's partitioner picks it from the key."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A processed batch ready to be stored: line protocol and the records to produce."""

    records: int  # Kafka records (bundles)
    body: bytes
    points: int
    clean: list[tuple[int, bytes]]  # (partition, bundle) of readings.clean, unkeyed
    dead: list[tuple[bytes, bytes]]  # (key, value) of readings.deadletter
    cpu_s: float
    unknown: list[bytes] = field(default_factory=list)  # deferred documents: devices not in the view
    documents: int = 0  # ReadingBatch documents in the records
    # the documents each clean bundle encodes, in ``clean``'s order (for ``streams.handoff``)
    clean_documents: list[list[WireBatch]] = field(default_factory=list)


class ReadingSink(Protocol):
    """Where line protocol goes (``streams.sink.BufferedSink``)."""

    async def write(self, body: bytes, points: int) -> None:
        """Store the batch durably (InfluxDB or spool) before returning."""
        ...


@dataclass(slots=True)
class Emitted:
    """A batch's records handed to the producer: their delivery futures, and when it began."""

    futures: list[Awaitable[Any]]
    started: float


class BatchProcessor:
    """Turn a batch of raw records into stored points and clean / dead-letter records."""

    def __init__(
        self,
        *,
        sink: ReadingSink,
        send: Send,
        clean_topic: str,
        dead_topic: str,
        recent: RecentKeys | None = None,
        registry: RegistryView | None = None,
        clean_partitions: list[int] | None = None,
        handoff: CleanHandoff | None = None,
    ) -> None:
        self.sink = sink
        self.send = send
        self.clean_topic = clean_topic
        self.dead_topic = dead_topic
        self.recent = recent or RecentKeys()
        self.registry = registry
        # the partitions of readings.clean as the producer knows them (set before prepare)
        self.clean_partitions: list[int] = clean_partitions or []
        self._partitioner = CachingPartitioner()
        # this worker's analytics take the clean documents from here instead of decoding them
        self.handoff = handoff
        self._throttle = LogThrottle()

    async def handle(self, values: Sequence[bytes]) -> int:
        """Process one batch end to end; return the number of readings stored."""
        return await self.store(self.prepare(values))

    def prepare(self, values: Sequence[bytes], *, defer_unknown: bool = False) -> Prepared:
        """CPU part: split bundles, parse, deduplicate, render line protocol and records (no I/O).

        A device's messages within one batch leave as one ``readings.clean`` document
        (readings in arrival order; several when it would pass ``CLEAN_MAX_READINGS``),
        bundled with the other devices of its partition (see the module docs).

        ``defer_unknown``: documents of devices the registry view does not know are returned
        in ``unknown`` (untouched, one document each) instead of being refused, for a second
        pass once the view has caught up with the registry topic.
        """
        started = time.perf_counter()
        # per device and source, its batches, each with its document when forwarded unchanged
        by_device: dict[tuple[str, str], list[tuple[WireBatch, bytes | None]]] = {}
        dead: list[DeadLetter] = []
        refused: Counter[str] = Counter()
        lines: list[str] = []
        points = documents = duplicates = 0
        unknown: list[bytes] = []
        registry, recent = self.registry, self.recent
        for value in values:
            # a record with no document at all (blank) is refused like an invalid document
            for raw in split_bundle(value) or [value]:
                documents += 1
                batch = parsed = self._parse(raw, dead)
                if batch is None:
                    refused["invalid_record"] += 1
                    continue
                measurement: str | None = None
                tags: tuple[tuple[str, str], ...] = ()
                if registry is not None:
                    record = registry.get(batch.device_id)
                    if record is None and defer_unknown:
                        unknown.append(raw)
                        continue
                    enriched = enrich(batch, record)
                    if isinstance(enriched, Rejection):
                        refused[enriched.code] += 1
                        dead.append(self._refused(raw, batch, enriched))
                        continue
                    batch, measurement, tags = enriched.batch, enriched.domain, enriched.tags
                kept, dropped = normalize(batch, recent)
                duplicates += dropped
                if kept is not None:
                    lines.extend(batch_lines(kept, tags, measurement))
                    clean = kept.batch
                    points += len(clean.readings)
                    by_device.setdefault((clean.device_id, clean.source), []).append(
                        (clean, raw if clean is parsed else None)
                    )
        if duplicates:
            metrics.DUPLICATES.inc(duplicates)
        for code, count in refused.items():
            metrics.REJECTED.labels(code).inc(count)
        bundles = self._clean_bundles(by_device.values())
        return Prepared(
            records=len(values),
            body=encode(lines),
            points=points,
            clean=[(partition, bundle) for partition, bundle, _ in bundles],
            dead=[(d.key(), d.model_dump_json().encode()) for d in dead],
            cpu_s=time.perf_counter() - started,
            unknown=unknown,
            documents=documents,
            clean_documents=[docs for _, _, docs in bundles],
        )

    async def store(self, prepared: Prepared) -> int:
        """I/O part: :meth:`emit` the records, then :meth:`complete` (sink write, Kafka acks)."""
        return await self.complete(prepared, await self.emit(prepared))

    async def emit(self, prepared: Prepared) -> Emitted:
        """Hand the clean / dead-letter records to the producer (in order; one partition's
        bundles one after another, each appended before the next is sent), so the analytics
        and the alerts get the batch while InfluxDB takes its points."""
        started = time.perf_counter()
        futures = [await self.send(self.clean_topic, None, v, partition) for partition, v in prepared.clean]
        handoff = self.handoff
        if handoff is not None and prepared.clean_documents:
            for future, (partition, value), docs in zip(
                futures, prepared.clean, prepared.clean_documents, strict=True
            ):
                if isinstance(future, asyncio.Future):
                    future.add_done_callback(_remember(handoff, partition, value, docs))
        futures += [await self.send(self.dead_topic, k, v, None) for k, v in prepared.dead]
        return Emitted(futures, started)

    async def complete(self, prepared: Prepared, emitted: Emitted) -> int:
        """Write the points to the sink and wait for Kafka to acknowledge the emitted records;
        the batch counts as stored only then (the caller commits after this returns)."""
        if prepared.points:
            await self.sink.write(prepared.body, prepared.points)
        if emitted.futures:
            await asyncio.gather(*emitted.futures)
        metrics.RECORDS.inc(prepared.records)
        metrics.DOCUMENTS.inc(prepared.documents)
        metrics.READINGS.inc(prepared.points)
        metrics.BATCH_RECORDS.observe(prepared.records)
        metrics.BATCH_SECONDS.observe(prepared.cpu_s + time.perf_counter() - emitted.started)
        return prepared.points

    def _clean_bundles(
        self, groups: Iterable[list[tuple[WireBatch, bytes | None]]]
    ) -> list[tuple[int, bytes, list[WireBatch]]]:
        """(partition, bundle, its documents decoded) records of readings.clean for the batch's
        per-device groups."""
        partitions = self.clean_partitions
        if not partitions:
            raise RuntimeError("BatchProcessor.clean_partitions is not set")
        per_partition: dict[int, list[tuple[bytes, WireBatch]]] = {}
        partitioner = self._partitioner
        for group in groups:
            key = group[0][0].device_id.encode()
            documents = per_partition.get(partition := partitioner(key, partitions, partitions))
            if documents is None:
                documents = per_partition[partition] = []
            documents.extend(_clean_documents(group))
        out: list[tuple[int, bytes, list[WireBatch]]] = []
        for partition, documents in per_partition.items():
            texts = [text for text, _ in documents]
            for start, end in _bundle_spans(texts, CLEAN_MAX_BUNDLE_BYTES):
                bundle = texts[start] if end - start == 1 else join_bundle(texts[start:end])
                out.append((partition, bundle, [doc for _, doc in documents[start:end]]))
        return out

    def _refused(self, raw: bytes, batch: WireBatch, rejection: Rejection) -> DeadLetter:
        if self._throttle.allow(batch.device_id, time.monotonic()) is not None:
            logger.warning(
                "message refused device_id=%s code=%s reason=%s",
                batch.device_id,
                rejection.code,
                rejection.reason,
            )
        return DeadLetter.build(
            payload=raw,
            source=batch.source,
            stage="streams",
            code=rejection.code,
            reason=rejection.reason,
            received_at=batch.received_at,
            device_id=batch.device_id,
        )

    def _parse(self, raw: bytes, dead: list[DeadLetter]) -> WireBatch | None:
        """One document decoded and checked, or None with its dead letter appended to ``dead``."""
        try:
            return decode_batch(raw)
        except msgspec.DecodeError as exc:  # msgspec.ValidationError is a DecodeError
            reason = f"document on readings.raw is not a valid ReadingBatch: {exc}"
            device_id = _device_of(raw)
            dead.append(
                DeadLetter.build(
                    payload=raw,
                    source="kafka:readings.raw",
                    stage="streams",
                    code="invalid_record",
                    reason=reason,
                    received_at=utcnow(),
                    device_id=device_id,
                )
            )
            if self._throttle.allow(device_id or "invalid_record", time.monotonic()) is not None:
                logger.warning(
                    "invalid document on raw topic device_id=%s reason=%s", device_id or "-", reason
                )
            return None


class _DeviceOnly(msgspec.Struct):
    """The device id of a document that failed its checks, when it has a valid one."""

    device_id: Annotated[str, msgspec.Meta(pattern=DEVICE_ID_PATTERN)] | None = None


_DEVICE_PROBE = msgspec.json.Decoder(_DeviceOnly)


def _device_of(raw: bytes) -> str | None:
    """The valid ``device_id`` of an invalid document, if it is JSON with one (else None)."""
    try:
        return _DEVICE_PROBE.decode(raw).device_id
    except msgspec.DecodeError:
        return None


CLEAN_MAX_READINGS = 2000
"""Readings per ``readings.clean`` document at most (~300 kB), far below Kafka's 1 MB limit.

After a restart a worker may fetch thousands of one device's messages in one batch; merged
into a single document they would exceed the producer's maximum request size."""

CLEAN_MAX_BUNDLE_BYTES = 256 * 1024
"""A ``readings.clean`` bundle is closed before it passes this size (as the collector's
``readings.raw`` bundles): well below Kafka's 1 MB default maximum request and the worker
producer's 512 kB batches. A single document larger than this goes as a bundle of one."""


def _clean_documents(group: list[tuple[WireBatch, bytes | None]]) -> list[tuple[bytes, WireBatch]]:
    """Clean documents for a device's batches, in arrival order, each of bounded size.

    A device's only document of the batch, when neither the registry nor deduplication
    changed it, goes on as it came (its bytes decode to the same ``ReadingBatch``): encoding
    it again was most of the raw stage's cost for readings.clean at 10,000 devices.
    """
    if len(group) == 1 and group[0][1] is not None:
        return [(group[0][1], group[0][0])]
    documents: list[tuple[bytes, WireBatch]] = []
    chunk: list[WireBatch] = []
    size = 0
    for batch, _ in group:
        if chunk and size + len(batch.readings) > CLEAN_MAX_READINGS:
            documents.append(_clean_document(chunk))
            chunk, size = [], 0
        chunk.append(batch)
        size += len(batch.readings)
    if chunk:
        documents.append(_clean_document(chunk))
    return documents


def _clean_document(group: list[WireBatch]) -> tuple[bytes, WireBatch]:
    """One clean document for a device's batches (the latest received_at; readings concatenated),
    and the batch it encodes.

    Encoded with msgspec: the same JSON a ``ReadingBatch`` decodes (the analytics and the
    registry's consumer parse ``readings.clean``).
    """
    merged = group[0]
    if len(group) > 1:
        merged = WireBatch(
            device_id=merged.device_id,
            received_at=max(b.received_at for b in group),
            source=merged.source,
            readings=[r for b in group for r in b.readings],
        )
    return encode_wire_batch(merged), merged


def _bundles(documents: list[bytes], max_bytes: int) -> list[bytes]:
    """``documents`` in order as few bundles as fit ``max_bytes`` each (a larger one alone)."""
    return [join_bundle(documents[start:end]) for start, end in _bundle_spans(documents, max_bytes)]


def _bundle_spans(documents: list[bytes], max_bytes: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges of ``documents`` that :func:`_bundles` joins into one bundle each."""
    if len(documents) == 1:
        return [(0, 1)]
    spans: list[tuple[int, int]] = []
    start = size = 0
    for i, document in enumerate(documents):
        grown = size + len(document) + 1  # with its separator
        if i > start and grown > max_bytes:
            spans.append((start, i))
            start, grown = i, len(document) + 1
        size = grown
    spans.append((start, len(documents)))
    return spans


def _remember(
    handoff: CleanHandoff, partition: int, value: bytes, documents: list[WireBatch]
) -> Callable[[asyncio.Future[Any]], None]:
    """A delivery future's callback: once Kafka acknowledged the clean record, its offset is
    known, and the analytics of this worker may take its documents from ``handoff``."""

    def remember(future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        offset = getattr(future.result(), "offset", None)
        if isinstance(offset, int) and offset >= 0:
            handoff.remember(partition, offset, value, documents)

    return remember
