"""The worker's copy of the device registry, followed from the compacted ``registry`` topic.

Every worker reads all partitions of the topic from the beginning (no consumer group), so
each holds the full registry; it is ``ready`` once it has read up to the end offsets it saw
at start, and keeps applying changes after that, so a calibration or status change in the
registry reaches the stored values within seconds, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from stationflow import topics
from stationflow.contracts import DeviceRecord
from stationflow.kafka import start_with_retry, true_end_offsets
from stationflow.settings import CommonSettings

__all__ = ["CATCH_UP_S", "RegistryFollower", "RegistryView"]

logger = logging.getLogger(__name__)

POLL_MS = 500
# Longest wait for the view to read what is on the topic now, before a device is called unknown
# (an integrator registers a device and publishes at once: the change may still be in flight).
CATCH_UP_S = 2.0
# How often the follower compares the topic's end offsets with its positions. A broker that lost
# the topic (a restarted in-memory Tansu) answers a fetch past the new end with nothing, not with
# OFFSET_OUT_OF_RANGE as Kafka does, so without this the view would stay at its old positions and
# miss the records the registry republishes (devices/relay.py waits longer than this to refill it).
RESET_CHECK_S = 1.0
RESET_CHECK_TIMEOUT_S = 2.0


class RegistryView:
    """device id → latest DeviceRecord, with the protocol keys (HJ 212 MN, SL 651 address) indexed."""

    def __init__(self) -> None:
        self._records: dict[str, DeviceRecord] = {}
        self._by_mn: dict[str, str] = {}
        self._by_address: dict[str, str] = {}
        self.ready = asyncio.Event()
        self._catch_up: Callable[[float], Awaitable[bool]] | None = None

    async def catch_up(self, timeout_s: float = CATCH_UP_S) -> bool:
        """Wait until the view holds everything on the registry topic *now*; False on timeout.

        Used before calling a device unknown: an integrator who registers a device and
        publishes at once must not see the reading refused (or analysed without its station)
        because the change was in flight.
        """
        if self._catch_up is None:
            return True
        return await self._catch_up(timeout_s)

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[DeviceRecord]:
        """Every device's record (a snapshot: later changes do not alter the list)."""
        return list(self._records.values())

    def get(self, device_id: str) -> DeviceRecord | None:
        """The device's record, or None if it is not registered."""
        return self._records.get(device_id)

    def by_hj212_mn(self, mn: str) -> DeviceRecord | None:
        """The device registered with this HJ 212 MN, or None."""
        device_id = self._by_mn.get(mn)
        return None if device_id is None else self._records.get(device_id)

    def by_sl651_address(self, address: str) -> DeviceRecord | None:
        """The device registered with this SL 651 RTU address (10 hex digits, upper case), or None."""
        device_id = self._by_address.get(address.upper())
        return None if device_id is None else self._records.get(device_id)

    def _unindex(self, device_id: str) -> None:
        old = self._records.pop(device_id, None)
        if old is None:
            return
        if old.hj212 is not None and self._by_mn.get(old.hj212.mn) == device_id:
            del self._by_mn[old.hj212.mn]
        if old.sl651 is not None and self._by_address.get(old.sl651.address) == device_id:
            del self._by_address[old.sl651.address]

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one registry record (a None value deletes the device)."""
        if key is None:
            logger.warning("registry record without key ignored")
            return
        device_id = key.decode(errors="replace")
        if value is None:
            self._unindex(device_id)
            return
        try:
            record = DeviceRecord.model_validate_json(value)
        except ValidationError as exc:
            logger.error("invalid registry record device_id=%s reason=%s", device_id, exc.errors()[0]["msg"])
            return
        self._unindex(record.device_id)
        self._records[record.device_id] = record
        if record.hj212 is not None:
            self._by_mn[record.hj212.mn] = record.device_id
        if record.sl651 is not None:
            self._by_address[record.sl651.address] = record.device_id


class RegistryFollower:
    """Keep a RegistryView up to date from the registry topic until cancelled."""

    def __init__(self, settings: CommonSettings, view: RegistryView) -> None:
        self.topic = settings.topic(topics.REGISTRY)
        self.view = view
        self._partitions_list: list[TopicPartition] = []
        self._progress = asyncio.Event()
        # end offsets are asked through a second client: querying them on the consumer that is
        # fetching stalled its fetch loop (aiokafka 0.12)
        self._offsets = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
        self._offsets_started = False
        view._catch_up = self.catch_up
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def run(self) -> None:
        """Load the whole topic, mark the view ready, then follow changes."""
        await start_with_retry("registry consumer", self.consumer.start)
        try:
            partitions = await self._partitions()
            self._partitions_list = partitions
            self.consumer.assign(partitions)
            await self.consumer.seek_to_beginning(*partitions)
            end = await self.consumer.end_offsets(partitions)
            loop = asyncio.get_running_loop()
            next_check = loop.time() + RESET_CHECK_S
            while True:
                fetched = await self.consumer.getmany(timeout_ms=POLL_MS)
                for records in fetched.values():
                    for record in records:
                        self.view.apply(record.key, record.value)
                self._progress.set()
                if loop.time() >= next_check:
                    await self._rewind_if_reset()
                    next_check = loop.time() + RESET_CHECK_S
                if not self.view.ready.is_set() and await self._caught_up(end):
                    logger.info("registry loaded devices=%d", len(self.view))
                    self.view.ready.set()
        finally:
            await self.consumer.stop()
            # always, even if never (or only half) started: an unclosed client warns at exit
            with contextlib.suppress(Exception):
                await self._offsets.stop()

    async def _rewind_if_reset(self) -> None:
        """Read the topic again from the start if its end is below our position (the broker lost it).

        The view keeps its records meanwhile (every device stays known); the republished
        records overwrite them, and tombstones the registry sends afterwards remove devices.
        """
        try:
            if not self._offsets_started:
                await asyncio.wait_for(self._offsets.start(), RESET_CHECK_TIMEOUT_S)
                self._offsets_started = True
            listed = await asyncio.wait_for(
                self._offsets.end_offsets(self._partitions_list), RESET_CHECK_TIMEOUT_S
            )
            positions = {tp: await self.consumer.position(tp) for tp in self._partitions_list}
            suspect = [tp for tp in self._partitions_list if tp in listed and positions[tp] > listed[tp]]
            if not suspect:
                return
            # Tansu lists the last batch's base offset + 1 as the end: ask for the real one
            # before calling the topic reset (else every multi-record batch looks like a reset).
            end = await asyncio.wait_for(
                true_end_offsets(self._offsets, suspect, RESET_CHECK_TIMEOUT_S), 2 * RESET_CHECK_TIMEOUT_S
            )
        except (TimeoutError, KafkaError, OSError):
            return  # broker unreachable: check again later
        behind = {}
        for tp in suspect:
            position = await self.consumer.position(tp)
            if tp in end and position > end[tp]:
                behind[tp.partition] = (position, end[tp])
        if behind:
            logger.warning(
                "registry topic reset by the broker, reading it again from the start topic=%s "
                "partitions_position_end=%s devices_kept=%d",
                self.topic,
                behind,
                len(self.view),
            )
            await self.consumer.seek_to_beginning(*self._partitions_list)

    async def _partitions(self) -> list[TopicPartition]:
        for _ in range(60):
            ids = self.consumer.partitions_for_topic(self.topic)
            if ids:
                return [TopicPartition(self.topic, p) for p in sorted(ids)]
            await self.consumer.topics()  # refresh metadata
            await asyncio.sleep(0.5)
        raise RuntimeError(f"registry topic {self.topic!r} not found")

    async def catch_up(self, timeout_s: float) -> bool:
        """Wait until every record on the topic at this moment has been applied."""
        if not self._partitions_list:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            if not self._offsets_started:
                await asyncio.wait_for(self._offsets.start(), timeout_s)
                self._offsets_started = True
            end = await asyncio.wait_for(self._offsets.end_offsets(self._partitions_list), timeout_s)
        except (TimeoutError, KafkaError):
            return False
        while not await self._caught_up(end):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        return True

    async def _caught_up(self, end: dict[TopicPartition, int]) -> bool:
        for tp, offset in end.items():
            if await self.consumer.position(tp) < offset:
                return False
        return True
