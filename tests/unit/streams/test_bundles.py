"""Bundles: readings.raw records carrying them (every good document stored, every bad one
dead-lettered) and the readings.clean bundles the raw stage emits (per partition, in order,
bounded) as the analytics and the registry's status consumer read them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.contracts import DeadLetter, Reading, ReadingBatch
from stationflow.registryview import RegistryView
from stationflow.wire import join_bundle, split_bundle
from streams.processor import CLEAN_MAX_BUNDLE_BYTES, CLEAN_MAX_READINGS, BatchProcessor
from tests.unit.streams.test_enrich import _record
from tests.unit.streams.test_processor import PARTITIONS, MemoryKafka, MemorySink, processor

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def _doc(device: str, n: int, *, metric: str = "m", seconds: int = 0) -> bytes:
    ts = T0 + timedelta(seconds=seconds)
    batch = ReadingBatch(
        device_id=device,
        received_at=ts,
        source="t",
        readings=[Reading(metric=f"{metric}{i}", value=float(i), ts=ts) for i in range(n)],
    )
    return batch.model_dump_json().encode()


def _processor(registry: RegistryView | None = None) -> tuple[BatchProcessor, MemorySink, MemoryKafka]:
    sink, kafka = MemorySink(), MemoryKafka()
    return processor(sink, kafka, registry=registry), sink, kafka


def _clean(kafka: MemoryKafka) -> list[ReadingBatch]:
    return [ReadingBatch.model_validate_json(d) for d in kafka.documents("clean")]


def _dead(kafka: MemoryKafka) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for t, _, v, _ in kafka.records if t == "dead"]


def _partition_of(device: str, partitions: list[int] = PARTITIONS) -> int:
    """The partition aiokafka's producer gives a record keyed by ``device``."""
    return int(DefaultPartitioner()(device.encode(), partitions, partitions))


def _clean_records(kafka: MemoryKafka) -> list[tuple[int, list[ReadingBatch]]]:
    """(partition, documents) of every readings.clean record, checking it is unkeyed."""
    out = []
    for topic, key, value, partition in kafka.records:
        if topic == "clean":
            assert key is None and partition is not None
            out.append((partition, [ReadingBatch.model_validate_json(d) for d in split_bundle(value)]))
    return out


async def test_a_bundle_is_split_and_a_bad_document_is_dead_lettered_on_its_own() -> None:
    proc, sink, kafka = _processor()
    bad = b'{"device_id":"d-2","received_at":"2026-11-21T08:00:00Z","source":"t","readings":[]}'
    bundle = join_bundle([_doc("d-1", 3), bad, _doc("d-3", 2), b"not json"])
    stored = await proc.handle([bundle, _doc("d-4", 1)])
    assert stored == 6
    ((body, points),) = sink.bodies
    assert points == 6 and body.count(b"\n") == 2  # one point per device instant
    assert sorted(c.device_id for c in _clean(kafka)) == ["d-1", "d-3", "d-4"]
    letters = _dead(kafka)
    assert [letter.payload() for letter in letters] == [bad, b"not json"]
    assert all(letter.code == "invalid_record" and letter.stage == "streams" for letter in letters)
    # the device of a refused document is named when it has a valid id; msgspec says why
    assert letters[0].device_id == "d-2" and letters[0].key() == b"d-2"
    assert "readings" in letters[0].reason and "not a valid ReadingBatch" in letters[0].reason
    assert letters[1].device_id is None and "malformed" in letters[1].reason


async def test_a_plain_record_is_a_bundle_of_one_and_a_blank_record_is_refused() -> None:
    proc, _sink, _kafka = _processor()
    prepared = proc.prepare([_doc("d-1", 2), b"\n\n", b""])
    assert (prepared.records, prepared.documents, prepared.points) == (3, 3, 2)
    assert [DeadLetter.model_validate_json(v).payload() for _, v in prepared.dead] == [b"\n\n", b""]


async def test_the_clean_record_decodes_as_the_pydantic_contract() -> None:
    proc, _, kafka = _processor()
    await proc.handle([join_bundle([_doc("d-1", 2), _doc("d-1", 2, seconds=5)])])
    ((clean,),) = [_clean(kafka)]
    assert clean.device_id == "d-1" and clean.received_at == T0 + timedelta(seconds=5)
    assert [(r.metric, r.ts) for r in clean.readings] == [
        ("m0", T0),
        ("m1", T0),
        ("m0", T0 + timedelta(seconds=5)),
        ("m1", T0 + timedelta(seconds=5)),
    ]


async def test_registry_refusals_and_deferrals_are_per_document() -> None:
    view = RegistryView()
    view.apply(b"cold-001", _record().model_dump_json().encode())
    proc, _sink, _kafka = _processor(view)
    good = _doc("cold-001", 1, metric="temperature")
    good = good.replace(b'"temperature0"', b'"temperature"')
    stranger = _doc("nobody-01", 1)
    wrong_metric = _doc("cold-001", 1, metric="rain", seconds=1)
    first = proc.prepare([join_bundle([good, stranger, wrong_metric])], defer_unknown=True)
    assert first.unknown == [stranger] and first.points == 1
    assert [DeadLetter.model_validate_json(v).code for _, v in first.dead] == ["unknown_metric"]
    second = proc.prepare(first.unknown)
    assert [DeadLetter.model_validate_json(v).code for _, v in second.dead] == ["unknown_device"]


_GARBAGE = (
    st.binary(min_size=1, max_size=200)
    | st.sampled_from([b"{}", b"null", b'{"v":2}', b"[]", b'{"device_id":"d-9"}'])
).filter(lambda b: b"\n" not in b and b.strip() != b"")


@st.composite
def _bundles(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Records (bundles of good and bad documents), the good documents, the bad ones."""
    records: list[bytes] = []
    good: list[bytes] = []
    bad: list[bytes] = []
    for r in range(draw(st.integers(1, 6))):
        docs: list[bytes] = []
        for d in range(draw(st.integers(1, 8))):
            if draw(st.booleans()):
                doc = draw(_GARBAGE)
                bad.append(doc)
            else:
                # distinct device per document: no reading is a duplicate of another
                doc = _doc(f"dev-{r}-{d}", draw(st.integers(1, 6)), seconds=d)
                good.append(doc)
            docs.append(doc)
        records.append(join_bundle(docs))
    return records, good, bad


@settings(max_examples=150, deadline=None)
@given(case=_bundles())
def test_garbage_in_bundles_every_good_document_stored_every_bad_one_dead_lettered(
    case: tuple[list[bytes], list[bytes], list[bytes]],
) -> None:
    records, good, bad = case
    proc, sink, kafka = _processor()
    asyncio.run(proc.handle(records))
    expected = [ReadingBatch.model_validate_json(doc) for doc in good]
    stored_points = sum(points for _, points in sink.bodies)
    assert stored_points == sum(len(b.readings) for b in expected)
    body = b"\n".join(body for body, _ in sink.bodies)
    assert all(f"device={b.device_id} ".encode() in body for b in expected)
    # every good document comes out clean (one per device here), in its device's partition,
    # in order within the partition
    for partition in PARTITIONS:
        got = [c.model_dump() for p, docs in _clean_records(kafka) if p == partition for c in docs]
        assert got == [b.model_dump() for b in expected if _partition_of(b.device_id) == partition]
    assert len(_clean(kafka)) == len(expected)
    # every bad one is dead-lettered on its own, with itself as the payload, in order
    letters = _dead(kafka)
    assert [letter.payload() for letter in letters] == bad
    assert all(letter.code == "invalid_record" and letter.reason for letter in letters)
    assert sum(len(split_bundle(r)) for r in records) == len(good) + len(bad)


async def test_clean_bundles_hold_the_devices_of_one_partition_each() -> None:
    proc, _sink, kafka = _processor()
    devices = [f"dev-{i:04d}" for i in range(500)]
    await proc.handle([join_bundle([_doc(d, 6) for d in devices[k::7]]) for k in range(7)])
    records = _clean_records(kafka)
    # small documents: one record per partition that has devices, not one per device
    assert sorted(p for p, _ in records) == sorted({_partition_of(d) for d in devices})
    for partition, docs in records:
        assert all(_partition_of(doc.device_id) == partition for doc in docs)
    assert sorted(doc.device_id for _, docs in records for doc in docs) == devices
    # as with two workers: the partitions of the topic are what the producer reports
    proc.clean_partitions = [0, 1]
    kafka.records.clear()
    await proc.handle([join_bundle([_doc(d, 6, seconds=60) for d in devices])])
    records = _clean_records(kafka)
    assert sorted(p for p, _ in records) == [0, 1]
    assert all(_partition_of(doc.device_id, [0, 1]) == p for p, docs in records for doc in docs)


async def test_a_devices_documents_stay_in_order_within_its_partition() -> None:
    """Three batches; a device with a backlog past CLEAN_MAX_READINGS among others."""
    proc, _sink, kafka = _processor()
    n = 0
    for batch in range(3):
        docs = []
        for i in range(900):  # 900 x 5 readings: more than two documents' worth per batch
            docs.append(_doc("busy-1", 5, metric=f"b{batch}-", seconds=n))
            if i % 30 == 0:
                docs.append(_doc(f"other-{i % 11}", 2, metric=f"b{batch}-", seconds=n))
            n += 1
        await proc.handle([join_bundle(docs[k : k + 400]) for k in range(0, len(docs), 400)])
    seen: dict[str, list[datetime]] = {}
    for partition, batches in _clean_records(kafka):
        for b in batches:
            assert _partition_of(b.device_id) == partition
            assert len(b.readings) <= CLEAN_MAX_READINGS
            seen.setdefault(b.device_id, []).extend(r.ts for r in b.readings)
    assert len(seen["busy-1"]) == 3 * 900 * 5
    for device, stamps in seen.items():
        assert stamps == sorted(stamps), device  # records of a partition are sent in order


async def test_clean_bundles_stay_under_the_size_bound() -> None:
    proc, _sink, kafka = _processor()
    # ~2,000 devices with 40 readings each: about 8 MB of clean documents in one batch
    devices = [f"big-{i:04d}" for i in range(2000)]
    raws = [join_bundle([_doc(d, 40) for d in devices[k : k + 100]]) for k in range(0, 2000, 100)]
    raws.append(join_bundle([_doc("huge-1", 10, metric=f"x{i}-", seconds=i) for i in range(300)]))
    await proc.handle(raws)
    records = [(p, v) for t, _, v, p in kafka.records if t == "clean"]
    sizes = [len(v) for _, v in records]
    assert sum(sizes) > 4 * CLEAN_MAX_BUNDLE_BYTES  # several bundles per partition
    for _, value in records:
        docs = split_bundle(value)
        assert len(value) <= CLEAN_MAX_BUNDLE_BYTES or len(docs) == 1
        assert len(value) < 1_000_000
    # huge-1's 3,000 readings leave in two documents (CLEAN_MAX_READINGS), in order
    huge = [b for _, docs in _clean_records(kafka) for b in docs if b.device_id == "huge-1"]
    assert [len(b.readings) for b in huge] == [2000, 1000]
    assert sorted(b.device_id for _, docs in _clean_records(kafka) for b in docs) == sorted(
        [*devices, "huge-1", "huge-1"]
    )


def test_clean_bundle_packing_edges() -> None:
    from streams.processor import _bundles

    assert _bundles([b"a" * 10], 5) == [b"a" * 10]  # larger than the bound: alone
    docs = [b"a" * 4, b"b" * 4, b"c" * 4, b"d" * 20, b"e"]
    # each document counts with its separator: 5 + 5 fit 10, the third does not
    assert _bundles(docs, 10) == [b"aaaa\nbbbb", b"cccc", b"d" * 20, b"e"]
    assert [d for b in _bundles(docs, 10) for d in split_bundle(b)] == docs
    assert _bundles(docs, 1000) == [join_bundle(docs)]


def test_a_malformed_document_in_a_clean_bundle_is_skipped_alone_by_the_analytics() -> None:
    from stationflow.logs import LogThrottle
    from streams import metrics
    from streams.analyticsworker import _by_device

    bundle = join_bundle([_doc("d-1", 2), b'{"device_id":"d-2","readings":[]}', b"not json", _doc("d-3", 1)])
    before = metrics.ANALYTICS_INVALID._value.get()
    by_device = _by_device([bundle, _doc("d-1", 1, seconds=5)], LogThrottle())
    assert metrics.ANALYTICS_INVALID._value.get() - before == 2
    assert {d: [len(b.readings) for b, _ in bs] for d, bs in by_device.items()} == {"d-1": [2, 1], "d-3": [1]}


async def test_a_malformed_document_in_a_clean_bundle_is_skipped_alone_by_the_status_consumer() -> None:
    from devices.consumer import StatusConsumer
    from devices.status import StatusTracker
    from stationflow import topics
    from stationflow.settings import CommonSettings

    settings = CommonSettings()
    tracker = StatusTracker()
    consumer = StatusConsumer(settings, group_id="g", tracker=tracker)  # not started: no I/O
    clean = settings.topic(topics.CLEAN)
    consumer._apply(
        clean, join_bundle([_doc("d-1", 2), b"not json", _doc("d-2", 3), _doc("d-1", 1, seconds=9)])
    )
    consumer._apply(clean, _doc("d-3", 4))  # a plain record is a bundle of one
    assert {d: c.last_seen for d, c in tracker.devices.items()} == {
        "d-1": T0 + timedelta(seconds=9),
        "d-2": T0,
        "d-3": T0,
    }
    now = T0 + timedelta(minutes=1)
    assert [tracker.get(d).last_hour(now) for d in ("d-1", "d-2", "d-3")] == [(3, 0), (3, 0), (4, 0)]
