"""The outbox dispatcher: deliver due notifications, retry with backoff, never lose one.

A row is *claimed* (its next attempt moved past the send timeout) and committed before the
channel is called, and marked ``sent`` only after the channel accepted it; a channel that is
down keeps its rows pending, retried with exponential backoff (``alerts_retry_base_s`` ×
2ⁿ, at most ``alerts_retry_max_s``), so they go out within seconds of its return. A service
killed between a successful send and the mark re-sends that one notification after restart
with the same ``notification_id``, which receivers use to drop it (at-least-once plus an
idempotency key: the only exactly-once a network allows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts import metrics
from alerts.channels import Channel, ChannelError, Notification
from alerts.models import History, Outbox
from stationflow.logs import LogThrottle

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)

BATCH = 100


class Dispatcher:
    """Sends due outbox rows through their channels."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: Mapping[str, Channel],
        *,
        retry_base_s: float,
        retry_max_s: float,
        max_attempts: int,
        send_timeout_s: float,
        concurrency: int,
        on_change: Callable[[int], None] = lambda _alert: None,
    ) -> None:
        self.sessions = sessions
        self.channels = channels
        for name in channels:  # every channel's series exists from the start (0), for the dashboards
            for result in ("sent", "failed_attempt"):
                metrics.NOTIFICATIONS.labels(name, result)
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.max_attempts = max_attempts
        self.send_timeout_s = send_timeout_s
        self.limit = asyncio.Semaphore(concurrency)
        self.on_change = on_change
        self.throttle = LogThrottle()
        self._wake = asyncio.Event()
        self._handed: set[asyncio.Task[None]] = set()  # sends of handed-off rows (kept referenced)

    @property
    def claim_s(self) -> float:
        """How long a claimed row is left alone: longer than any send can take."""
        return self.send_timeout_s * 2 + 1

    def dispatch(self, rows: list[Outbox]) -> None:
        """Send rows queued and claimed by a committed transaction (a ``lifecycle.HandOff``)
        now, without a round (call on the loop's thread)."""
        for row in rows:
            task = asyncio.create_task(self._send(*_claimed(row)))
            self._handed.add(task)
            task.add_done_callback(self._handed_done)

    def _handed_done(self, task: asyncio.Task[None]) -> None:
        self._handed.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # (recording the outcome failed: the row stays claimed and is sent again when due)
            logger.error("handed-off notification not recorded reason=%r", exc)

    def wake(self) -> None:
        """New rows were queued: look now instead of at the next tick (call on the loop's thread)."""
        self._wake.set()

    def _claim(self) -> list[tuple[int, Notification, int]]:
        now = datetime.now(UTC)
        with self.sessions() as session:
            rows = list(
                session.scalars(
                    select(Outbox)
                    .where(Outbox.status == "pending", Outbox.next_attempt_at <= now)
                    .order_by(Outbox.id)
                    .limit(BATCH)
                )
            )
            for row in rows:
                row.next_attempt_at = now + timedelta(seconds=self.claim_s)
            claimed = [_claimed(row) for row in rows]
            session.commit()
        return claimed

    def _done(self, row_id: int, error: ChannelError | None) -> None:
        now = datetime.now(UTC)
        with self.sessions() as session:
            row = session.get(Outbox, row_id)
            if row is None:
                return
            row.attempts += 1
            if error is None:
                row.status, row.sent_at, row.last_error = "sent", now, None
                metrics.NOTIFICATIONS.labels(row.channel, "sent").inc()
                metrics.NOTIFICATION_LATENCY.labels(row.channel).observe(
                    max(0.0, (now - row.created_at).total_seconds())
                )
            else:
                row.last_error = str(error)[:2000]
                metrics.NOTIFICATIONS.labels(row.channel, "failed_attempt").inc()
                give_up = not error.retriable or (self.max_attempts and row.attempts >= self.max_attempts)
                if give_up:
                    row.status = "failed"
                    session.add(
                        History(
                            alert=row.alert,
                            what="notification_failed",
                            actor="system",
                            detail={"channel": row.channel, "target": row.target, "error": row.last_error},
                        )
                    )
                    logger.error(
                        "notification given up channel=%s target=%s alert=%s attempts=%d reason=%s",
                        row.channel,
                        row.target,
                        row.alert,
                        row.attempts,
                        row.last_error,
                    )
                else:
                    delay = min(self.retry_max_s, self.retry_base_s * 2 ** min(row.attempts - 1, 20))
                    row.next_attempt_at = now + timedelta(seconds=delay)
                    if self.throttle.allow(f"{row.channel}:{row.target}", time.monotonic()) is not None:
                        logger.warning(
                            "notification failed, will retry "
                            "channel=%s target=%s attempts=%d in_s=%.1f reason=%s",
                            row.channel,
                            row.target,
                            row.attempts,
                            delay,
                            row.last_error,
                        )
            session.commit()

    async def _send(self, row_id: int, note: Notification, alert: int) -> None:
        async with self.limit:
            channel = self.channels.get(note.channel)
            error: ChannelError | None = None
            if channel is None:
                error = ChannelError(f"no channel named {note.channel!r} is configured", retriable=False)
            else:
                try:
                    await asyncio.wait_for(channel.send(note), timeout=self.send_timeout_s)
                except ChannelError as exc:
                    error = exc
                except TimeoutError:
                    error = ChannelError(f"timed out after {self.send_timeout_s} s")
                except Exception as exc:  # a channel bug must not kill the dispatcher
                    logger.exception("channel %s raised unexpectedly", note.channel)
                    error = ChannelError(f"unexpected {type(exc).__name__}: {exc}")
            await asyncio.to_thread(self._done, row_id, error)
            if error is None:
                self.on_change(alert)

    async def run_once(self) -> int:
        """Send every due row once; return how many were attempted."""
        claimed = await asyncio.to_thread(self._claim)
        if claimed:
            await asyncio.gather(*(self._send(*c) for c in claimed))
        return len(claimed)

    async def run(self, tick_s: float) -> None:
        """Until cancelled; then the handed-off sends still running are cancelled too (their
        rows stay claimed and go out when due), so none outlives the service's shutdown."""
        try:
            while True:
                try:
                    attempted = await self.run_once()
                except Exception:  # the database may be briefly unavailable; keep going
                    logger.exception("outbox dispatch round failed")
                    attempted = 0
                if attempted < BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=tick_s)
                    self._wake.clear()
        except asyncio.CancelledError:
            handed = list(self._handed)
            for task in handed:
                task.cancel()
            await asyncio.gather(*handed, return_exceptions=True)
            raise


def _claimed(row: Outbox) -> tuple[int, Notification, int]:
    """``(row id, notification, alert id)`` of a claimed outbox row."""
    note = Notification(
        id=row.notification_id,
        channel=row.channel,
        target=row.target,
        kind=row.kind,
        title=row.title,
        title_zh=row.title_zh,
        body=row.body,
        payload=dict(row.payload),
    )
    return row.id, note, row.alert
