"""The changelog writer keeps each partition's records in write order, across full batches and
overlapping flushes (the real records go through Kafka in the analytics integration tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.changelog import ChangelogWriter


class Recorder:
    """Builds real aiokafka batches and keeps, per (topic, partition), the records sent."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.sent: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
        self.batches = 0

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        records = MemoryRecords(bytes(batch._build())).next_batch()
        assert records is not None
        records = list(records)
        # the real producer may wait for the partition's previous batch to drain: for a few
        # loop turns here, so overlapping flushes would interleave without the writer's lock
        for _ in range(1 + len(records) % 3):
            await asyncio.sleep(0)
        self.sent.setdefault((topic, partition), []).extend((r.key, r.value) for r in records)
        self.batches += 1
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _partition(key: bytes) -> int:
    return key[0] % 3


@settings(max_examples=60, deadline=None)
@given(
    writes=st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c", b"d", b"e"]), st.binary(max_size=300))),
    batch_size=st.sampled_from([64, 512, 1 << 20]),
    flush_every=st.integers(1, 20),
)
def test_each_partition_gets_its_writes_in_order(
    writes: list[tuple[bytes, bytes]], batch_size: int, flush_every: int
) -> None:
    async def run() -> tuple[Recorder, dict[bytes, bytes]]:
        producer = Recorder(batch_size)
        writer = ChangelogWriter(lambda: producer, _partition)
        data: dict[bytes, bytes] = {}
        flushes = []
        for i, (key, value) in enumerate(writes):
            writer.put(data, "t-changelog", key, value)
            if i % flush_every == 0:  # flushes started while later writes go on
                flushes.append(asyncio.ensure_future(writer.flush()))
                await asyncio.sleep(0)
        for futures in await asyncio.gather(*flushes, writer.flush()):
            await asyncio.gather(*futures)
        return producer, data

    producer, data = asyncio.run(run())
    expected: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
    for key, value in writes:
        expected.setdefault(("t-changelog", _partition(key)), []).append((key, value))
    assert producer.sent == expected
    assert data == dict(writes)


def test_a_flush_sends_one_batch_per_partition() -> None:
    async def run() -> Recorder:
        producer = Recorder(1 << 20)
        writer = ChangelogWriter(lambda: producer, _partition)
        data: dict[bytes, bytes] = {}
        for i in range(300):
            writer.put(data, "t", bytes([i % 6]) + b"key", b"v%d" % i)
        assert writer.records == 300
        futures = await writer.flush()
        assert len(futures) == 3 and writer.records == 0
        assert await writer.flush() == []  # nothing left
        return producer

    producer = asyncio.run(run())
    assert producer.batches == 3
    assert sum(len(v) for v in producer.sent.values()) == 300
