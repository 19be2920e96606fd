"""BatchProcessor with in-memory fakes at its two seams (sink, Kafka send)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.contracts import DeadLetter, Reading, ReadingBatch
from stationflow.wire import split_bundle
from streams.processor import BatchProcessor

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


class MemorySink:
    def __init__(self) -> None:
        self.bodies: list[tuple[bytes, int]] = []

    async def write(self, body: bytes, points: int) -> None:
        self.bodies.append((body, points))


class MemoryKafka:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> Any:
        self.records.append((topic, key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _raw(device: str, *values: float, ts: datetime = T0) -> bytes:
    batch = ReadingBatch(
        device_id=device,
        received_at=ts,
        source="t",
        readings=[Reading(metric=f"m{i}", value=v, ts=ts) for i, v in enumerate(values)],
    )
    return batch.model_dump_json().encode()


async def test_batch_is_stored_then_emitted_clean_and_dead_lettered() -> None:
    sink, kafka = MemorySink(), MemoryKafka()
    proc = BatchProcessor(sink=sink, send=kafka.send, clean_topic="clean", dead_topic="dead")
    later = _raw("d1", 5, ts=T0 + timedelta(seconds=1))
    stored = await proc.handle([_raw("d1", 1, 2), b"garbage", _raw("d1", 1, 2), _raw("d2", 3), later])
    assert stored == 4  # the repeated d1 record is a duplicate
    ((body, points),) = sink.bodies
    assert points == 4
    assert body.count(b"\n") == 2  # three points: one per device instant
    topics = [t for t, _, _ in kafka.records]
    assert topics == ["clean", "clean", "dead"]
    d1 = ReadingBatch.model_validate_json(kafka.records[0][2])
    assert d1.device_id == "d1" and kafka.records[0][1] == b"d1"
    assert [(r.metric, r.value) for r in d1.readings] == [("m0", 1), ("m1", 2), ("m0", 5)]
    letter = DeadLetter.model_validate_json(kafka.records[-1][2])
    assert letter.code == "invalid_record" and letter.stage == "streams"
    assert letter.payload() == b"garbage"


async def test_nothing_written_when_everything_is_duplicate() -> None:
    sink, kafka = MemorySink(), MemoryKafka()
    proc = BatchProcessor(sink=sink, send=kafka.send, clean_topic="c", dead_topic="d")
    await proc.handle([_raw("d1", 1)])
    await proc.handle([_raw("d1", 1)])
    assert len(sink.bodies) == 1
    assert len(kafka.records) == 1


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.binary(max_size=300) | st.sampled_from([b"{}", b"null", b'{"v":2}']), max_size=20))
def test_hostile_raw_records_become_dead_letters_never_exceptions(values: list[bytes]) -> None:
    proc = BatchProcessor(sink=MemorySink(), send=MemoryKafka().send, clean_topic="c", dead_topic="d")
    prepared = proc.prepare(values)
    assert prepared.records == len(values)
    # a value holding newlines is a bundle of several documents, each refused on its own
    assert prepared.documents == sum(len(split_bundle(v)) or 1 for v in values)
    assert len(prepared.dead) + len(prepared.clean) <= prepared.documents
    for key, value in prepared.dead:
        letter = DeadLetter.model_validate_json(value)
        assert letter.code == "invalid_record" and letter.reason
        assert key == letter.key()


async def test_a_large_backlog_of_one_device_leaves_in_bounded_records() -> None:
    """After a restart one batch may hold thousands of a device's messages (issue: 1 MB limit)."""
    from streams.processor import CLEAN_MAX_READINGS

    sink, kafka = MemorySink(), MemoryKafka()
    proc = BatchProcessor(sink=sink, send=kafka.send, clean_topic="clean", dead_topic="dead")
    raws = [_raw("big", *range(5), ts=T0 + timedelta(seconds=i)) for i in range(2500)]
    assert await proc.handle(raws) == 12500
    clean = [ReadingBatch.model_validate_json(v) for t, _, v in kafka.records if t == "clean"]
    assert len(clean) > 1
    assert all(len(c.readings) <= CLEAN_MAX_READINGS for c in clean)
    assert all(len(v) < 1_000_000 for _, _, v in kafka.records)
    values = [(r.ts, r.metric) for c in clean for r in c.readings]
    assert len(values) == 12500 and values == sorted(values)


async def test_unknown_devices_are_deferred_until_the_registry_view_caught_up() -> None:
    """A device registered a moment ago: its first messages wait for the view, then pass."""
    from stationflow.contracts import DeadLetter as DL
    from stationflow.registryview import RegistryView
    from tests.unit.streams.test_enrich import _record

    view = RegistryView()
    sink, kafka = MemorySink(), MemoryKafka()
    proc = BatchProcessor(sink=sink, send=kafka.send, clean_topic="clean", dead_topic="dead", registry=view)
    raw = (
        ReadingBatch(
            device_id="cold-001",
            received_at=T0,
            source="t",
            readings=[Reading(metric="temperature", value=4.0, ts=T0)],
        )
        .model_dump_json()
        .encode()
    )
    first = proc.prepare([raw], defer_unknown=True)
    assert first.unknown == [raw] and first.dead == [] and first.points == 0
    view.apply(b"cold-001", _record().model_dump_json().encode())  # the registry change arrives
    second = proc.prepare(first.unknown)
    assert second.points == 1 and second.dead == [] and second.unknown == []
    # a device that is still unknown after the catch-up is refused with the reason
    stranger = raw.replace(b"cold-001", b"nobody-01")
    refused = proc.prepare(proc.prepare([stranger], defer_unknown=True).unknown)
    ((_, value),) = refused.dead
    assert DL.model_validate_json(value).code == "unknown_device"
