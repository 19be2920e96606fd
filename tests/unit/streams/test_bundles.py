"""readings.raw records carrying bundles: every good document stored, every bad one dead-lettered."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.contracts import DeadLetter, Reading, ReadingBatch
from stationflow.registryview import RegistryView
from stationflow.wire import join_bundle, split_bundle
from streams.processor import BatchProcessor
from tests.unit.streams.test_enrich import _record
from tests.unit.streams.test_processor import MemoryKafka, MemorySink

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
    proc = BatchProcessor(
        sink=sink, send=kafka.send, clean_topic="clean", dead_topic="dead", registry=registry
    )
    return proc, sink, kafka


def _clean(kafka: MemoryKafka) -> list[ReadingBatch]:
    return [ReadingBatch.model_validate_json(v) for t, _, v in kafka.records if t == "clean"]


def _dead(kafka: MemoryKafka) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for t, _, v in kafka.records if t == "dead"]


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
    # every good document comes out clean (one record per device here), in order
    assert [c.model_dump() for c in _clean(kafka)] == [b.model_dump() for b in expected]
    # every bad one is dead-lettered on its own, with itself as the payload, in order
    letters = _dead(kafka)
    assert [letter.payload() for letter in letters] == bad
    assert all(letter.code == "invalid_record" and letter.reason for letter in letters)
    assert sum(len(split_bundle(r)) for r in records) == len(good) + len(bad)
