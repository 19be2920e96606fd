"""Consume ``alerts.events`` into the alert database (I/O edge).

Each batch is applied in one database transaction (alerts, history, outbox rows), and only
then are the Kafka offsets committed: a crash re-delivers events whose history keys already
exist, which makes them no-ops. A record that is not a valid ``AlertEvent`` is logged with
its offset, counted, and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from alerts import metrics
from alerts.lifecycle import HAND_OFF, HandOff, apply_event, apply_sync
from alerts.models import Outbox
from stationflow.contracts import AlertEvent, AlertSync
from stationflow.kafka import FETCH_MAX_WAIT_MS, start_with_retry

__all__ = ["EventConsumer"]

logger = logging.getLogger(__name__)

# What the database says about a value it will not store (too long, out of range, NUL,
# constraint). A database that is down raises OperationalError instead: that propagates, the
# offsets stay uncommitted and the batch is retried once the service reconnects.
REFUSED = (DataError, IntegrityError)

Item = AlertEvent | AlertSync


def parse(value: bytes, *, sync: bool) -> Item:
    """An alert event, or (``sync``: from the sync topic) the analytics' active set."""
    return AlertSync.model_validate_json(value) if sync else AlertEvent.model_validate_json(value)


def _describe(item: Item) -> str:
    if isinstance(item, AlertSync):
        return f"sync subjects={len(item.subjects)} at={item.at.isoformat()}"
    return f"alert_id={item.alert_id:.200s} seq={item.seq}"


class EventConsumer:
    """A consumer-group member applying alert events."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group_id: str,
        sessions: sessionmaker[Session],
        console_url: str,
        maintenance: Callable[[str | None], bool],
        on_change: Callable[[int], None],
        sync_topic: str | None = None,
        sync_grace_s: float = 30.0,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
        hand_off: tuple[float, Callable[[list[Outbox]], None]] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.sessions = sessions
        self.console_url = console_url
        self.maintenance = maintenance
        self.on_change = on_change
        self.sync_topic = sync_topic
        self.sync_grace = timedelta(seconds=sync_grace_s)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        # (claim seconds, send): the notifications a batch queues are claimed in its own
        # transaction and handed to ``send`` after the commit (``lifecycle.HandOff``)
        self.hand_off = hand_off
        self._handed: list[Outbox] = []  # filled by apply (a thread), sent by run (the loop)
        self.ready = asyncio.Event()

    def apply(self, events: list[Item]) -> list[int]:
        """Apply a batch in one transaction; return the ids of alerts that changed.

        If the batch fails (an event the database refuses), the events are applied one by one
        and the ones that still fail are logged with their alert id and reason, counted, and
        skipped: one poisoned event must not stop every alert behind it.
        """
        try:
            return self._apply(events)
        except REFUSED:  # the database refused a value; an outage (OperationalError) propagates
            logger.warning("alert event batch failed, applying one by one events=%d", len(events))
        changed: list[int] = []
        for event in events:
            try:
                changed += self._apply([event])
            except REFUSED as exc:
                metrics.EVENTS.labels("failed").inc()
                logger.error(
                    "alert event could not be applied, skipped %s reason=%s",
                    _describe(event),
                    f"{type(exc).__name__}: {exc}"[:500],
                )
        return changed

    def _apply(self, events: list[Item]) -> list[int]:
        changed: list[int] = []
        results: list[str] = []
        reconciled = 0
        now = datetime.now(UTC)
        with self.sessions() as session:
            hand_off = None
            if self.hand_off is not None:
                hand_off = session.info[HAND_OFF] = HandOff(now + timedelta(seconds=self.hand_off[0]))
            for event in events:
                if isinstance(event, AlertSync):
                    resolved = apply_sync(
                        session, event, now=now, console_url=self.console_url, grace=self.sync_grace
                    )
                    session.flush()
                    changed += [a.id for a in resolved]
                    reconciled += len(resolved)
                    results.append("sync")
                    continue
                applied = apply_event(
                    session,
                    event,
                    now=now,
                    console_url=self.console_url,
                    maintenance=self.maintenance(event.device_id),
                )
                results.append("duplicate" if applied.duplicate else "applied")
                if applied.alert is not None:
                    session.flush()
                    changed.append(applied.alert.id)
            session.commit()
        if hand_off is not None:
            self._handed += hand_off.rows
        for result in results:  # counted once the transaction holds
            metrics.EVENTS.labels(result).inc()
        metrics.RECONCILED.inc(reconciled)
        return changed

    def kafka_consumer(self) -> AIOKafkaConsumer:
        """The (not yet started) group member on the alert topics."""
        return AIOKafkaConsumer(
            *([self.topic] if self.sync_topic is None else [self.topic, self.sync_topic]),
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # an alert event is fetched within about half of this on Tansu (see FETCH_MAX_WAIT_MS)
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )

    async def run(self) -> None:
        """Until cancelled."""
        consumer = self.kafka_consumer()
        await start_with_retry("alert events consumer", consumer.start)
        self.ready.set()
        logger.info("consuming alert events topic=%s group=%s", self.topic, self.group_id)
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                events: list[Item] = []
                for tp, records in batches.items():
                    for record in records:
                        if record.value is None:
                            continue
                        try:
                            events.append(parse(record.value, sync=tp.topic == self.sync_topic))
                        except ValidationError as exc:
                            metrics.EVENTS.labels("invalid").inc()
                            logger.error(
                                "invalid alert event skipped topic=%s partition=%d offset=%d reason=%s",
                                tp.topic,
                                tp.partition,
                                record.offset,
                                exc.errors()[0]["msg"],
                            )
                if events:
                    changed = await asyncio.to_thread(self.apply, events)
                    if self._handed and self.hand_off is not None:
                        handed, self._handed = self._handed, []
                        self.hand_off[1](handed)
                    for alert in changed:
                        self.on_change(alert)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()
