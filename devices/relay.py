"""The outbox relay: registry changes committed with an outbox row reach the ``registry`` topic.

Every change to a device, its station or its type commits, in the same transaction, one
``registry_outbox`` row per device concerned (``crud.queue_changes``). This relay, a task of
the registry service, reads the rows in order, publishes each device's *current* record (a
tombstone if it is gone), and deletes exactly the rows it sent once Kafka acknowledged them.
Because the current record is sent, rows may be retried or sent twice and the compacted topic
still ends with the latest state of every device.

While Kafka is unreachable the rows stay; the relay retries after ``retry_base_s`` × 2ⁿ
seconds (at most ``retry_max_s``), logs it, and shows the depth and age of the outbox in
``/health`` and in Prometheus metrics. A full snapshot of the registry is published at start
and whenever the topic was lost: the relay compares the topic's end offsets with the offsets
Kafka gave its own records (every ``check_s``, and before the first send after a failure). An
end offset below them (or a missing topic) means the broker restarted without its data, as the
in-memory Tansu of ``stationflow up`` does; the relay creates the topic again, waits
``settle_s`` so followers see it empty and rewind, then republishes every device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka.errors import KafkaError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from stationflow.contracts import DeviceRecord
from stationflow.logs import LogThrottle

from . import crud, metrics
from .publisher import Entry, RegistryPublisher

__all__ = ["OutboxRelay", "OutboxStatus"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
SNAPSHOT_CHUNK = 1000  # devices per snapshot batch: bounds memory on a large registry
RETRIED = (KafkaError, TimeoutError, OSError, SQLAlchemyError)


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """What ``/health`` shows of the relay."""

    depth: int
    oldest_age_s: float | None
    kafka: str  # "ok" or "unreachable"
    last_error: str | None
    failed_attempts: int


class OutboxRelay:
    """Publishes outbox rows in order, retrying while Kafka is down; republishes after a reset."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        publisher: RegistryPublisher,
        *,
        batch: int = 500,
        retry_base_s: float = 0.5,
        retry_max_s: float = 15.0,
        check_s: float = 5.0,
        settle_s: float = 3.0,
    ) -> None:
        self.sessions = sessions
        self.publisher = publisher
        self.batch = batch
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.check_s = check_s
        self.settle_s = settle_s
        self.failing = False
        self.failed_attempts = 0
        self.last_error: str | None = None
        self._snapshot_reason: str | None = "start"
        self._high: dict[int, int] = {}  # partition → one past the highest offset Kafka gave us
        self._next_check = 0.0
        self._down_since: float | None = None
        self._wake = asyncio.Event()
        self._cond = asyncio.Condition()
        self._passes_started = 0
        self._passes_done = 0
        self._throttle = LogThrottle()

    # ------------------------------------------------------------ used by the routes

    def wake(self) -> None:
        """Rows were committed: publish now instead of at the next tick (call on the loop)."""
        self._wake.set()

    async def wait_published(self, timeout_s: float) -> bool:
        """Wait until what is committed now has been published; False if Kafka is down or slow.

        Returns at once while the relay is failing: the change stays in the outbox.
        """
        need = self._passes_started + 1  # a pass that starts after this call sees its rows
        self.wake()
        async with self._cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: self._passes_done >= need or self.failing), timeout_s
                )
        return self._passes_done >= need

    async def status(self) -> OutboxStatus:
        """Depth and age of the outbox, whether Kafka is reached, the last error."""
        depth, oldest = await asyncio.to_thread(self._read, lambda s: crud.outbox_depth(s))
        age = None if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        metrics.OUTBOX_DEPTH.set(depth)
        metrics.OUTBOX_AGE.set(age or 0.0)
        return OutboxStatus(
            depth=depth,
            oldest_age_s=None if age is None else round(age, 3),
            kafka="unreachable" if self.failing else "ok",
            last_error=self.last_error,
            failed_attempts=self.failed_attempts,
        )

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Publish until cancelled."""
        while True:
            self._wake.clear()
            self._passes_started += 1
            started = self._passes_started
            try:
                await self._pass()
            except RETRIED as exc:
                await self._failed(exc)
                continue
            except Exception as exc:  # the relay must outlive any one failure: logged, retried
                logger.exception("outbox relay pass failed unexpectedly")
                await self._failed(exc)
                continue
            self._recovered()
            async with self._cond:
                self._passes_done = started
                self._cond.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.check_s)

    async def _pass(self) -> None:
        if self.failing or time.monotonic() >= self._next_check:
            await self._check_topic()
        if self._snapshot_reason is not None:
            await self._snapshot()
        while rows := await asyncio.to_thread(self._read, lambda s: crud.outbox_batch(s, limit=self.batch)):
            await self._publish_rows(rows)
        await self.status()

    async def _failed(self, exc: BaseException) -> None:
        self.failed_attempts += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        metrics.PUBLISH_FAILURES.inc()
        metrics.KAFKA_UP.set(0)
        if self._down_since is None:
            self._down_since = time.monotonic()
        async with self._cond:
            self.failing = True
            self._cond.notify_all()
        delay = min(self.retry_max_s, self.retry_base_s * 2 ** min(self.failed_attempts - 1, 20))
        suppressed = self._throttle.allow("kafka", time.monotonic())
        if suppressed is not None:
            depth = (await self.status()).depth if not isinstance(exc, SQLAlchemyError) else -1
            logger.warning(
                "registry publish failed, will retry attempts=%d in_s=%.1f outbox_depth=%d "
                "suppressed=%d reason=%s",
                self.failed_attempts,
                delay,
                depth,
                suppressed,
                self.last_error,
            )
        await asyncio.sleep(delay)

    def _reachable(self) -> None:
        """Kafka answered (the pass may still fail further on, and back off as before)."""
        metrics.KAFKA_UP.set(1)
        self.failing = False

    def _recovered(self) -> None:
        """A whole pass succeeded: the outage, if any, is over."""
        self._reachable()
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            logger.info(
                "registry publishing again after_s=%.1f failed_attempts=%d", down, self.failed_attempts
            )
        self._down_since = None
        self.failed_attempts = 0
        self.last_error = None

    # ------------------------------------------------------------ reset detection

    async def _check_topic(self) -> None:
        ends = await self.publisher.end_offsets()
        self._reachable()
        self._next_check = time.monotonic() + self.check_s
        if ends is None:
            reason = "topic_missing"
        elif any(ends.get(p, 0) < high for p, high in self._high.items()):
            reason = "topic_reset"
        else:
            return
        logger.warning(
            "registry topic lost by the broker reason=%s published_ends=%s broker_ends=%s; "
            "republishing every device in_s=%.1f",
            reason,
            self._high,
            ends,
            self.settle_s,
        )
        await self.publisher.ensure_topic()
        self._high.clear()
        self._snapshot_reason = reason
        await asyncio.sleep(self.settle_s)

    def _record_acks(self, acks: list[tuple[int, int]]) -> None:
        for partition, offset in acks:
            if offset < self._high.get(partition, 0):
                logger.warning(
                    "registry topic offsets went back partition=%d offset=%d expected_at_least=%d; "
                    "republishing every device",
                    partition,
                    offset,
                    self._high[partition],
                )
                self._high.clear()
                self._snapshot_reason = "offsets_went_back"
            self._high[partition] = max(self._high.get(partition, 0), offset + 1)

    # ------------------------------------------------------------ publishing

    async def _snapshot(self) -> None:
        reason, self._snapshot_reason = self._snapshot_reason, None
        try:
            ids = await asyncio.to_thread(self._read, lambda s: crud.all_device_ids(s))
            for start in range(0, len(ids), SNAPSHOT_CHUNK):
                chunk = ids[start : start + SNAPSHOT_CHUNK]
                records = await asyncio.to_thread(
                    self._read, lambda s, c=chunk: crud.device_records(s, ids=c)
                )
                self._record_acks(await self.publisher.send([(r.device_id, r) for r in records]))
        except BaseException:
            self._snapshot_reason = self._snapshot_reason or reason
            raise
        metrics.SNAPSHOTS.labels(reason or "start").inc()
        metrics.PUBLISHED.labels("record").inc(len(ids))
        logger.info("published registry snapshot devices=%d reason=%s", len(ids), reason)

    async def _publish_rows(self, rows: list[tuple[int, str]]) -> None:
        device_ids = list(dict.fromkeys(device_id for _, device_id in rows))
        current = await asyncio.to_thread(self._read, lambda s: _records_by_id(s, device_ids))
        entries: list[Entry] = [(d, current.get(d)) for d in device_ids]
        self._record_acks(await self.publisher.send(entries))
        self._reachable()
        await asyncio.to_thread(self._read, lambda s: crud.outbox_delete(s, row_ids=[r for r, _ in rows]))
        tombstones = sum(1 for _, record in entries if record is None)
        metrics.PUBLISHED.labels("record").inc(len(entries) - tombstones)
        metrics.PUBLISHED.labels("tombstone").inc(tombstones)
        logger.info(
            "published registry changes devices=%d tombstones=%d outbox_rows=%d",
            len(entries),
            tombstones,
            len(rows),
        )

    def _read(self, work: Callable[[Session], T]) -> T:
        with self.sessions() as session:
            return work(session)


def _records_by_id(session: Session, device_ids: list[str]) -> dict[str, DeviceRecord]:
    return {r.device_id: r for r in crud.device_records(session, ids=device_ids)}
