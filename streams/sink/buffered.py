"""The sink the worker uses: write to InfluxDB, spool to disk while it is down, drain later.

Contract with the caller (who commits Kafka offsets after :meth:`BufferedSink.write`
returns): when ``write`` returns, the batch is in InfluxDB, or durably on disk, or was
counted and logged as dropped (spool full), or InfluxDB refused some of its points: then the
others are stored and exactly the refused ones are kept in the rejected store
(``<spool>/rejected/points.jsonl``) with their device and InfluxDB's reason. ``write`` raises
only :class:`SpoolFailure` (the disk itself failed), and then the worker must exit uncommitted.

Finding the refused points: InfluxDB 1.x answers a batch with some bad points with 400
``partial write: …`` and stores the rest, but its message names only some of the bad points.
Measured on 1.6: every unparsable line is quoted (newline-separated, with ``dropped=0``); of
field type conflicts and refused names (a field or tag ``time``) only the first is named, with
the total in ``dropped=N``; a batch with both reports only the conflict. So the message cannot
say which points were refused. The sink splits a refused batch in halves and writes each again (writes
are idempotent: same series + timestamp overwrite) until each refused point stands alone:
``2·k·log2(n)`` requests for ``k`` bad points in ``n``, in the batch's order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum

from stationflow.lifetime import AsyncLifetime
from streams.sink import metrics
from streams.sink.errors import SinkError, SinkRejected, SinkUnavailable, SpoolFailure
from streams.sink.rejected import RejectedStore, rejected_point
from streams.sink.spool import REJECTED_DIR, DiskSpool
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
# Refusals worth splitting a batch for: bad data (400) and too large (413). Others (401, 403,
# 404) refuse every point alike, so all are kept at once.
SPLIT_STATUSES = frozenset({400, 413})
# Refused points of one batch logged one by one (all are counted and kept).
LOG_POINTS = 5


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
        rejected: RejectedStore | None = None,
    ) -> None:
        """Wire a writer to a spool; call :meth:`start` (or ``async with``) before writing.

        :param retry_initial: first drain retry delay in seconds while InfluxDB is down.
        :param retry_max: longest drain retry delay in seconds.
        :param stop_drain_seconds: deadline for the last drain attempt in :meth:`stop`.
        :param rejected: where refused points are kept (default: ``<spool>/rejected/``).
        """
        if not 0 < retry_initial <= retry_max:
            raise ValueError("need 0 < retry_initial <= retry_max")
        self._writer = writer
        self._spool = spool
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._stop_drain_seconds = stop_drain_seconds
        self._rejected = rejected or RejectedStore(spool.directory / REJECTED_DIR)
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

    @property
    def rejected(self) -> RejectedStore:
        """Where refused points are kept."""
        return self._rejected

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
                try:
                    await self._salvage(body, points, exc)
                except SinkUnavailable as down:  # went down while splitting: spool it all
                    self._begin_outage(down)
                except OSError as disk:
                    raise SpoolFailure(
                        f"cannot keep refused points dir={self._rejected.path}: {disk}"
                    ) from disk
                else:
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
            await self._salvage(entry.body, entry.points, exc)  # SinkUnavailable: entry stays
            self._spool.remove(entry)
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

    async def _salvage(self, body: bytes, points: int, exc: SinkRejected) -> None:
        """Store what InfluxDB takes of a refused batch; keep, count and log exactly the rest.

        Raises SinkUnavailable if InfluxDB becomes unreachable meanwhile; nothing is kept then
        and the whole batch is written again later (idempotent), so nothing is kept twice.
        """
        lines = [line for line in body.split(b"\n") if line.strip()]
        refused: list[tuple[bytes, SinkRejected]] = []
        if exc.status in SPLIT_STATUSES and len(lines) > 1:
            await self._isolate(lines, refused)
        else:
            refused = [(line, exc) for line in lines]
        records = [rejected_point(line, status=e.status, reason=e.message) for line, e in refused]
        self._rejected.keep(records)
        metrics.REJECTED_KEPT.inc(len(records))
        for _, e in refused:
            metrics.REJECTED_POINTS.labels(reason=e.reason).inc()
        stored = len(lines) - len(refused)
        if stored:  # ``points`` counts readings (a line may carry several): what is left of them
            metrics.POINTS_WRITTEN.inc(max(points - len(refused), stored))
        if not refused:
            logger.warning(
                "influx refused a batch, then took each of its points stored=%d status=%d url=%s message=%s",
                stored,
                exc.status,
                self._writer.url,
                exc.message,
            )
            return
        logger.error(
            "influx refused points refused=%d stored=%d status=%d reason=%s url=%s kept_at=%s message=%s",
            len(refused),
            stored,
            exc.status,
            exc.reason,
            self._writer.url,
            self._rejected.path,
            exc.message,
        )
        for record in records[:LOG_POINTS]:
            logger.error(
                "influx refused point device=%s measurement=%s status=%d reason=%s line=%r",
                record.device or "-",
                record.measurement,
                record.status,
                record.reason,
                record.line[:200],
            )

    async def _isolate(self, lines: list[bytes], refused: list[tuple[bytes, SinkRejected]]) -> None:
        """Write the halves of a refused chunk in order, splitting refused halves further."""
        mid = len(lines) // 2
        for half in (lines[:mid], lines[mid:]):
            try:
                await self._writer.write(b"\n".join(half))
            except SinkRejected as exc:
                if len(half) == 1 or exc.status not in SPLIT_STATUSES:
                    refused.extend((line, exc) for line in half)
                else:
                    await self._isolate(half, refused)

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
