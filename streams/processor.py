"""Batch processing of raw readings: parse, normalise, store, emit.

The Faust agent hands over a list of raw Kafka values; when ``handle`` returns, every
reading is either in InfluxDB, in the sink's on-disk spool, counted and logged as dropped,
or in the dead-letter topic — and only then does the agent acknowledge the offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from stationflow.contracts import DeadLetter, ReadingBatch, utcnow
from stationflow.logs import LogThrottle
from stationflow.registryview import RegistryView
from streams import metrics
from streams.enrich import Rejection, enrich
from streams.lineprotocol import batch_lines, encode
from streams.normalize import RecentKeys, normalize

__all__ = ["BatchProcessor", "Prepared", "ReadingSink", "Send"]

logger = logging.getLogger(__name__)

Send = Callable[[str, bytes, bytes], Awaitable[Awaitable[Any]]]
"""``await send(topic, key, value)`` buffers a record and returns its delivery future."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A processed batch ready to be stored: line protocol and the records to produce."""

    records: int
    body: bytes
    points: int
    clean: list[tuple[bytes, bytes]]
    dead: list[tuple[bytes, bytes]]
    cpu_s: float
    unknown: list[bytes] = field(default_factory=list)  # deferred: devices not in the registry view


class ReadingSink(Protocol):
    """Where line protocol goes (``streams.sink.BufferedSink``)."""

    async def write(self, body: bytes, points: int) -> None:
        """Store the batch durably (InfluxDB or spool) before returning."""
        ...


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
    ) -> None:
        self.sink = sink
        self.send = send
        self.clean_topic = clean_topic
        self.dead_topic = dead_topic
        self.recent = recent or RecentKeys()
        self.registry = registry
        self._throttle = LogThrottle()

    async def handle(self, values: Sequence[bytes]) -> int:
        """Process one batch end to end; return the number of readings stored."""
        return await self.store(self.prepare(values))

    def prepare(self, values: Sequence[bytes], *, defer_unknown: bool = False) -> Prepared:
        """CPU part: parse, deduplicate, render line protocol and outgoing records (no I/O).

        A device's messages within one batch leave as one ``readings.clean`` record (same
        key, readings in arrival order): downstream consumers update per-device state once
        per record, and Kafka carries a fraction of the records.

        ``defer_unknown``: messages of devices the registry view does not know are returned
        in ``unknown`` (untouched) instead of being refused, for a second pass once the view
        has caught up with the registry topic.
        """
        started = time.perf_counter()
        by_device: dict[tuple[str, str], list[ReadingBatch]] = {}
        dead: list[DeadLetter] = []
        lines: list[str] = []
        points = 0
        unknown: list[bytes] = []
        for raw in values:
            batch = self._parse(raw, dead)
            if batch is None:
                continue
            measurement: str | None = None
            tags: tuple[tuple[str, str], ...] = ()
            if self.registry is not None:
                record = self.registry.get(batch.device_id)
                if record is None and defer_unknown:
                    unknown.append(raw)
                    continue
                enriched = enrich(batch, record)
                if isinstance(enriched, Rejection):
                    dead.append(self._refused(raw, batch, enriched))
                    continue
                batch, measurement, tags = enriched.batch, enriched.domain, enriched.tags
            kept, dropped = normalize(batch, self.recent)
            if dropped:
                metrics.DUPLICATES.inc(dropped)
            if kept is not None:
                lines.extend(batch_lines(kept, tags, measurement))
                clean = kept.batch
                points += len(clean.readings)
                by_device.setdefault((clean.device_id, clean.source), []).append(clean)
        return Prepared(
            records=len(values),
            body=encode(lines),
            points=points,
            clean=[rec for group in by_device.values() for rec in _clean_records(group)],
            dead=[(d.key(), d.model_dump_json().encode()) for d in dead],
            cpu_s=time.perf_counter() - started,
            unknown=unknown,
        )

    async def store(self, prepared: Prepared) -> int:
        """I/O part: write to the sink, then produce clean / dead-letter records and await Kafka."""
        started = time.perf_counter()
        if prepared.points:
            await self.sink.write(prepared.body, prepared.points)
        futures = [await self.send(self.clean_topic, k, v) for k, v in prepared.clean]
        futures += [await self.send(self.dead_topic, k, v) for k, v in prepared.dead]
        if futures:
            await asyncio.gather(*futures)
        metrics.RECORDS.inc(prepared.records)
        metrics.READINGS.inc(prepared.points)
        metrics.BATCH_RECORDS.observe(prepared.records)
        metrics.BATCH_SECONDS.observe(prepared.cpu_s + time.perf_counter() - started)
        return prepared.points

    def _refused(self, raw: bytes, batch: ReadingBatch, rejection: Rejection) -> DeadLetter:
        metrics.REJECTED.labels(rejection.code).inc()
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

    def _parse(self, raw: bytes, dead: list[DeadLetter]) -> ReadingBatch | None:
        try:
            return ReadingBatch.model_validate_json(raw)
        except ValidationError as exc:
            reason = f"record on readings.raw is not a valid ReadingBatch: {exc.errors()[0]['msg']}"
            dead.append(
                DeadLetter.build(
                    payload=raw,
                    source="kafka:readings.raw",
                    stage="streams",
                    code="invalid_record",
                    reason=reason,
                    received_at=utcnow(),
                )
            )
            metrics.REJECTED.labels("invalid_record").inc()
            if self._throttle.allow("invalid_record", time.monotonic()) is not None:
                logger.warning("invalid record on raw topic reason=%s", reason)
            return None


CLEAN_MAX_READINGS = 2000
"""Readings per ``readings.clean`` record at most (~300 kB), far below Kafka's 1 MB limit.

After a restart a worker may fetch thousands of one device's messages in one batch; merged
into a single record they would exceed the producer's maximum request size."""


def _clean_records(group: list[ReadingBatch]) -> list[tuple[bytes, bytes]]:
    """Clean records for a device's batches, in arrival order, each of bounded size."""
    records: list[tuple[bytes, bytes]] = []
    chunk: list[ReadingBatch] = []
    size = 0
    for batch in group:
        if chunk and size + len(batch.readings) > CLEAN_MAX_READINGS:
            records.append(_clean_record(chunk))
            chunk, size = [], 0
        chunk.append(batch)
        size += len(batch.readings)
    if chunk:
        records.append(_clean_record(chunk))
    return records


def _clean_record(group: list[ReadingBatch]) -> tuple[bytes, bytes]:
    """One clean record for a device's batches (the latest received_at; readings concatenated)."""
    merged = group[0]
    if len(group) > 1:
        merged = ReadingBatch(
            device_id=merged.device_id,
            received_at=max(b.received_at for b in group),
            source=merged.source,
            readings=[r for b in group for r in b.readings],
        )
    return merged.key(), ReadingBatch.__pydantic_serializer__.to_json(merged)
