"""BatchProcessor with in-memory fakes at its two seams (sink, Kafka send)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.contracts import DeadLetter, Reading, ReadingBatch
from stationflow.wire import decode_batch, split_bundle
from streams.processor import BatchProcessor

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


class MemorySink:
    def __init__(self) -> None:
        self.bodies: list[tuple[bytes, int]] = []

    async def write(self, body: bytes, points: int) -> None:
        self.bodies.append((body, points))


PARTITIONS = [0, 1, 2, 3]


class MemoryKafka:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes, int | None]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
        self.records.append((topic, key, value, partition))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def documents(self, topic: str) -> list[bytes]:
        """The documents of ``topic``'s records (readings.clean records are bundles)."""
        return [doc for t, _, v, _ in self.records if t == topic for doc in split_bundle(v)]


def processor(sink: MemorySink, kafka: MemoryKafka, **kwargs: Any) -> BatchProcessor:
    """A BatchProcessor on the fakes; readings.clean has ``PARTITIONS``."""
    kwargs.setdefault("clean_partitions", PARTITIONS)
    return BatchProcessor(sink=sink, send=kafka.send, clean_topic="clean", dead_topic="dead", **kwargs)


def _partition(document: bytes) -> int:
    """The partition aiokafka's producer gives a record keyed by the document's device id."""
    key = decode_batch(document).device_id.encode()
    return int(DefaultPartitioner()(key, PARTITIONS, PARTITIONS))


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
    proc = processor(sink, kafka)
    later = _raw("d1", 5, ts=T0 + timedelta(seconds=1))
    stored = await proc.handle([_raw("d1", 1, 2), b"garbage", _raw("d1", 1, 2), _raw("d2", 3), later])
    assert stored == 4  # the repeated d1 record is a duplicate
    ((body, points),) = sink.bodies
    assert points == 4
    assert body.count(b"\n") == 2  # three points: one per device instant
    topics = [t for t, *_ in kafka.records]
    assert topics[-1] == "dead" and set(topics[:-1]) == {"clean"}
    # clean records are unkeyed bundles with the partition of their devices' keys
    assert all(
        k is None and p == _partition(split_bundle(v)[0]) for t, k, v, p in kafka.records if t == "clean"
    )
    d1, d2 = sorted(
        (ReadingBatch.model_validate_json(d) for d in kafka.documents("clean")), key=lambda b: b.device_id
    )
    assert (d1.device_id, d2.device_id) == ("d1", "d2")
    assert [(r.metric, r.value) for r in d1.readings] == [("m0", 1), ("m1", 2), ("m0", 5)]
    letter = DeadLetter.model_validate_json(kafka.records[-1][2])
    assert letter.code == "invalid_record" and letter.stage == "streams"
    assert letter.payload() == b"garbage"


async def test_nothing_written_when_everything_is_duplicate() -> None:
    sink, kafka = MemorySink(), MemoryKafka()
    proc = processor(sink, kafka)
    await proc.handle([_raw("d1", 1)])
    await proc.handle([_raw("d1", 1)])
    assert len(sink.bodies) == 1
    assert len(kafka.records) == 1


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.binary(max_size=300) | st.sampled_from([b"{}", b"null", b'{"v":2}']), max_size=20))
def test_hostile_raw_records_become_dead_letters_never_exceptions(values: list[bytes]) -> None:
    proc = processor(MemorySink(), MemoryKafka())
    prepared = proc.prepare(values)
    assert prepared.records == len(values)
    # a value holding newlines is a bundle of several documents, each refused on its own
    assert prepared.documents == sum(len(split_bundle(v)) or 1 for v in values)
    clean = [doc for _, bundle in prepared.clean for doc in split_bundle(bundle)]
    assert len(prepared.dead) + len(clean) <= prepared.documents
    for key, value in prepared.dead:
        letter = DeadLetter.model_validate_json(value)
        assert letter.code == "invalid_record" and letter.reason
        assert key == letter.key()


async def test_a_large_backlog_of_one_device_leaves_in_bounded_records() -> None:
    """After a restart one batch may hold thousands of a device's messages (issue: 1 MB limit)."""
    from streams.processor import CLEAN_MAX_READINGS

    sink, kafka = MemorySink(), MemoryKafka()
    proc = processor(sink, kafka)
    raws = [_raw("big", *range(5), ts=T0 + timedelta(seconds=i)) for i in range(2500)]
    assert await proc.handle(raws) == 12500
    clean = [ReadingBatch.model_validate_json(d) for d in kafka.documents("clean")]
    assert len(clean) > 1
    assert all(len(c.readings) <= CLEAN_MAX_READINGS for c in clean)
    assert all(len(v) < 1_000_000 for _, _, v, _ in kafka.records)
    values = [(r.ts, r.metric) for c in clean for r in c.readings]
    assert len(values) == 12500 and values == sorted(values)


async def test_unknown_devices_are_deferred_until_the_registry_view_caught_up() -> None:
    """A device registered a moment ago: its first messages wait for the view, then pass."""
    from stationflow.contracts import DeadLetter as DL
    from stationflow.registryview import RegistryView
    from tests.unit.streams.test_enrich import _record

    view = RegistryView()
    sink, kafka = MemorySink(), MemoryKafka()
    proc = processor(sink, kafka, registry=view)
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


async def test_a_device_s_only_unchanged_document_is_forwarded_as_it_came() -> None:
    """Not encoded again: the clean document is the raw one, byte for byte, and decodes the same."""
    sink, kafka = MemorySink(), MemoryKafka()
    proc = processor(sink, kafka)
    # as a device integrator's tool might write it: defaults left out, an offset, spaces
    first = b'{"device_id": "d1", "received_at": "2026-11-21T16:00:00+08:00", "source": "t",'
    first += b' "readings": [{"metric": "m0", "value": 1, "ts": "2026-11-21T16:00:00+08:00"}]}'
    second = _raw("d2", 3)
    await proc.handle([first, second])
    assert sorted(kafka.documents("clean")) == sorted([first, second])
    assert decode_batch(first).readings[0].ts == T0


async def test_a_changed_or_merged_document_is_encoded_anew() -> None:
    sink, kafka = MemorySink(), MemoryKafka()
    proc = processor(sink, kafka)
    await proc.handle([_raw("d1", 1)])
    kafka.records.clear()
    # one reading of d1 again (a duplicate, dropped) beside a new one: the document changed
    repeated = _raw("d1", 1, 7)
    later = _raw("d2", 4, ts=T0 + timedelta(seconds=1))
    merged = [_raw("d2", 3), later]
    await proc.handle([repeated, *merged])
    docs = {decode_batch(d).device_id: d for d in kafka.documents("clean")}
    assert docs["d1"] != repeated
    assert [(r.metric, r.value) for r in decode_batch(docs["d1"]).readings] == [("m1", 7.0)]
    assert [(r.metric, r.value) for r in decode_batch(docs["d2"]).readings] == [("m0", 3.0), ("m0", 4.0)]


async def test_with_the_registry_a_document_it_changes_is_encoded_and_one_it_keeps_is_not() -> None:
    from stationflow.registryview import RegistryView
    from tests.unit.streams.test_enrich import _record

    view = RegistryView()
    view.apply(b"cold-001", _record().model_dump_json().encode())
    sink, kafka = MemorySink(), MemoryKafka()
    proc = processor(sink, kafka, registry=view)

    def doc(unit: str | None, ts: datetime) -> bytes:
        reading = Reading(metric="temperature", value=4.0, unit=unit, ts=ts)
        batch = ReadingBatch(device_id="cold-001", received_at=ts, source="t", readings=[reading])
        return batch.model_dump_json(exclude_defaults=True).encode()  # not msgspec's bytes

    canonical, unitless = doc("degC", T0), doc(None, T0 + timedelta(seconds=1))
    await proc.handle([canonical])
    await proc.handle([unitless])
    kept, filled = kafka.documents("clean")
    assert kept == canonical
    assert filled != unitless and decode_batch(filled).readings[0].unit == "degC"
