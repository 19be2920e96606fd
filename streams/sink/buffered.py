"""The sink the worker uses: write to InfluxDB, spool to disk while it is down, drain later.

Contract with the caller (who commits Kafka offsets after :meth:`BufferedSink.write`
returns): when ``write`` returns, the batch is in InfluxDB, or durably on disk, or was
counted and logged as dropped (spool full) or rejected (bad data). ``write`` raises only
:class:`SpoolFailure` (the disk itself failed), and then the worker must exit uncommitted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum

from stationflow.lifetime import AsyncLifetime
from streams.sink import metrics
from streams.sink.errors import SinkError, SinkRejected, SinkUnavailable, SpoolFailure
from streams.sink.spool import DiskSpool, SpoolEntry
from streams.sink.writers import Writer

__all__ = ["RETRY_INITIAL", "RETRY_MAX", "STOP_DRAIN_SECONDS", "BufferedSink"]

logger = logging.getLogger(__name__)

# First retry soon: most outages seen are restarts that are over in about a second.
RETRY_INITIAL = 0.5
# Cap the backoff so a returning InfluxDB is noticed within seconds, while a dead one
# costs one cheap refused connection per 10 s.
RETRY_MAX = 10.0
# SIGTERM grace periods are 10-30 s (systemd, Kubernetes); spend a few seconds on a last
# drain and leave the rest on disk for the next start.
STOP_DRAIN_SECONDS = 5.0


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class _Backoff:
    """Exponential retry delays from ``initial`` up to ``maximum``, honouring Retry-After."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self._current = initial

    def next(self, retry_after: float | None = None) -> float:
        """The delay before the next attempt (the server's Retry-After wins if longer)."""
        delay = max(self._current, retry_after or 0.0)
        self._current = min(self._current * 2, self._maximum)
        return delay

    def reset(self) -> None:
        """Start again from ``initial`` after a success."""
        self._current = self._initial


class BufferedSink(AsyncLifetime):
    """Writes batches through a :class:`Writer`, spooling to a :class:`DiskSpool` in outages."""

    def __init__(
        self,
        writer: Writer,
        spool: DiskSpool,
        *,
        retry_initial: float = RETRY_INITIAL,
        retry_max: float = RETRY_MAX,
        stop_drain_seconds: float = STOP_DRAIN_SECONDS,
    ) -> None:
        """Wire a writer to a spool; call :meth:`start` (or ``async with``) before writing.

        :param retry_initial: first drain retry delay in seconds while InfluxDB is down.
        :param retry_max: longest drain retry delay in seconds.
        :param stop_drain_seconds: deadline for the last drain attempt in :meth:`stop`.
        """
        if not 0 < retry_initial <= retry_max:
            raise ValueError("need 0 < retry_initial <= retry_max")
        self._writer = writer
        self._spool = spool
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._stop_drain_seconds = stop_drain_seconds
        self._state = _State.NEW
        self._wake = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._outage_since: float | None = None
        self._drained_points = 0  # since the spool was last empty

    @property
    def outage(self) -> bool:
        """True from the first failed write until the spool has drained."""
        return self._outage_since is not None

    @property
    def spool(self) -> DiskSpool:
        """The disk spool (for status: ``batches``, ``points``, ``bytes_used``)."""
        return self._spool

    async def start(self) -> None:
        """Start the writer and the background drainer (which drains any leftover spool)."""
        if self._state is not _State.NEW:
            raise RuntimeError(f"BufferedSink cannot start from state {self._state.value}")
        await self._writer.start()
        self._state = _State.RUNNING
        self._publish_spool()
        self._drainer = asyncio.create_task(self._drain_forever(), name="influx-sink-drainer")
        self._drainer.add_done_callback(_log_drainer_exit)
        if self._spool.batches:
            self._wake.set()

    async def stop(self) -> None:
        """Stop draining, try one last drain with a deadline, close the writer (idempotent)."""
        if self._state is not _State.RUNNING:
            self._state = _State.STOPPED
            return
        self._state = _State.STOPPED
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.cancel()
            await asyncio.wait([drainer])
        try:
            await self._final_drain()
        finally:
            await self._writer.stop()

    async def write(self, body: bytes, points: int) -> None:
        """Deliver or durably spool one batch; raises only SpoolFailure (see module docstring)."""
        if self._state is not _State.RUNNING:
            raise RuntimeError(f"BufferedSink is {self._state.value}, not running")
        if not self._spool.batches:  # no backlog: go straight to InfluxDB
            try:
                await self._send(body, points)
            except SinkUnavailable as exc:
                self._begin_outage(exc)
            except SinkRejected as exc:
                self._count_rejected(exc, points)
                return
            else:
                self._end_outage_if_drained()
                return
        self._to_spool(body, points)  # outage or backlog: keep FIFO order behind the backlog

    async def _send(self, body: bytes, points: int) -> None:
        """One timed write through the writer, counted in the metrics."""
        try:
            with metrics.WRITE_SECONDS.time():
                await self._writer.write(body)
        except SinkError as exc:
            metrics.WRITE_ERRORS.labels(kind="unavailable" if exc.retriable else "rejected").inc()
            raise
        metrics.POINTS_WRITTEN.inc(points)

    def _to_spool(self, body: bytes, points: int) -> None:
        """Append to the spool and wake the drainer; count and log a drop if it is full."""
        try:
            stored = self._spool.append(body, points)
        except OSError as exc:
            raise SpoolFailure(
                f"cannot spool batch dir={self._spool.directory} points={points}: {exc}"
            ) from exc
        if not stored:
            metrics.DROPPED_POINTS.inc(points)
            logger.error(
                "influx spool full, dropping batch points=%d batch_bytes=%d spool_bytes=%d "
                "max_bytes=%d dir=%s url=%s",
                points,
                len(body),
                self._spool.bytes_used,
                self._spool.max_bytes,
                self._spool.directory,
                self._writer.url,
            )
            return
        metrics.SPOOLED_POINTS.inc(points)
        self._publish_spool()
        self._wake.set()

    async def _drain_forever(self) -> None:
        """Background task: whenever woken, drain the spool, backing off while InfluxDB is down."""
        backoff = _Backoff(self._retry_initial, self._retry_max)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._spool.batches:
                try:
                    await self._drain_oldest()
                except SinkUnavailable as exc:
                    self._begin_outage(exc)
                    await asyncio.sleep(backoff.next(exc.retry_after))
                except Exception:
                    delay = backoff.next()
                    logger.exception(
                        "influx drain failed dir=%s retry_in_s=%.1f", self._spool.directory, delay
                    )
                    await asyncio.sleep(delay)
                else:
                    backoff.reset()

    async def _drain_oldest(self) -> None:
        """Write the oldest spooled batch; remove it on success, move it aside if rejected."""
        entry = self._spool.oldest()
        if entry is None:
            return
        try:
            await self._send(entry.body, entry.points)
        except SinkRejected as exc:
            self._quarantine(entry, exc)
        else:
            self._spool.remove(entry)
            metrics.DRAINED_POINTS.inc(entry.points)
            self._drained_points += entry.points
        self._publish_spool()
        self._end_outage_if_drained()

    async def _final_drain(self) -> None:
        """Drain until empty, the first failure, or the stop deadline; the rest stays on disk."""
        reason = "drained"
        try:
            async with asyncio.timeout(self._stop_drain_seconds):
                while self._spool.batches:
                    await self._drain_oldest()
        except TimeoutError:
            reason = f"deadline of {self._stop_drain_seconds}s"
        except SinkUnavailable as exc:
            reason = exc.message
        except OSError:
            logger.exception("influx final drain failed dir=%s", self._spool.directory)
            reason = "spool error"
        if self._spool.batches:
            logger.warning(
                "influx sink stopped, batches left on disk dir=%s batches=%d points=%d reason=%s",
                self._spool.directory,
                self._spool.batches,
                self._spool.points,
                reason,
            )

    def _quarantine(self, entry: SpoolEntry, exc: SinkRejected) -> None:
        """Count a refused spooled batch and move it to ``rejected/`` for a person."""
        kept = self._spool.quarantine(entry)
        self._count_rejected(exc, entry.points, kept_at=str(kept))

    def _count_rejected(self, exc: SinkRejected, points: int, *, kept_at: str = "-") -> None:
        """Count and log a batch the server refused, with its own words."""
        metrics.REJECTED_POINTS.labels(reason=exc.reason).inc(points)
        logger.error(
            "influx rejected batch points=%d status=%d reason=%s url=%s kept_at=%s message=%s",
            points,
            exc.status,
            exc.reason,
            self._writer.url,
            kept_at,
            exc.message,
        )

    def _begin_outage(self, exc: SinkUnavailable) -> None:
        """Mark the outage; log once when it starts, not per batch."""
        if self._outage_since is not None:
            return
        self._outage_since = time.monotonic()
        metrics.OUTAGE.set(1)
        logger.warning(
            "influx outage, spooling batches to disk url=%s reason=%s dir=%s",
            self._writer.url,
            exc.message,
            self._spool.directory,
        )

    def _end_outage_if_drained(self) -> None:
        """When the spool is empty again, end the outage and say how much was drained."""
        if self._spool.batches or (self._outage_since is None and not self._drained_points):
            return
        if self._outage_since is not None:
            logger.info(
                "influx outage over url=%s drained_points=%d duration_s=%.1f",
                self._writer.url,
                self._drained_points,
                time.monotonic() - self._outage_since,
            )
        else:
            logger.info(
                "influx spool drained url=%s drained_points=%d",
                self._writer.url,
                self._drained_points,
            )
        self._outage_since = None
        self._drained_points = 0
        metrics.OUTAGE.set(0)

    def _publish_spool(self) -> None:
        """Update the spool gauges."""
        metrics.SPOOL_BYTES.set(self._spool.bytes_used)
        metrics.SPOOL_BATCHES.set(self._spool.batches)


def _log_drainer_exit(task: asyncio.Task[None]) -> None:
    """The drainer only ends by cancellation; anything else is a bug that must be seen."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("influx sink drainer died", exc_info=exc)
