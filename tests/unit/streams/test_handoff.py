"""The raw stage hands its analytics the clean documents decoded (``streams.handoff``): what the
analytics take is exactly what decoding the record gives, and only for the record remembered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.logs import LogThrottle
from stationflow.wire import WireBatch, decode_batch, join_bundle, split_bundle
from streams import handoff as handoff_module
from streams.analyticsworker import Position, _by_device
from streams.handoff import CleanHandoff
from streams.metrics import ANALYTICS_HANDOFF
from tests.unit.streams.test_bundles import _doc
from tests.unit.streams.test_processor import PARTITIONS, MemorySink, processor


@dataclass
class _Metadata:
    offset: int


class OffsetKafka:
    """Kafka's acknowledgements as the producer gives them: each record its partition's next offset."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, int, bytes]] = []  # topic, partition, offset, value
        self.next: dict[tuple[str, int], int] = {}

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
        part = partition if partition is not None else 0
        offset = self.next.get((topic, part), 0)
        self.next[(topic, part)] = offset + 1
        self.records.append((topic, part, offset, value))
        fut: asyncio.Future[_Metadata] = asyncio.get_running_loop().create_future()
        fut.set_result(_Metadata(offset))
        return fut

    def clean(self) -> list[tuple[int, int, bytes]]:
        return [(p, o, v) for t, p, o, v in self.records if t == "clean"]


def _handoff(**kwargs: Any) -> CleanHandoff:
    handoff = CleanHandoff(**kwargs)
    handoff.owned = lambda: PARTITIONS
    return handoff


async def _run(
    records: list[list[bytes]], handoff: CleanHandoff, kafka: OffsetKafka | None = None
) -> OffsetKafka:
    kafka = kafka or OffsetKafka()
    proc = processor(MemorySink(), kafka, handoff=handoff)  # type: ignore[arg-type]
    for batch in records:
        await proc.handle(batch)
        await asyncio.sleep(0)  # the acknowledgements' callbacks run
    return kafka


def _hits() -> float:
    return ANALYTICS_HANDOFF.labels("hit")._value.get()  # type: ignore[attr-defined,no-any-return]


@st.composite
def _batches(draw: st.DrawFn) -> list[list[bytes]]:
    """Raw batches: devices sending one or several messages a batch (merged into one clean
    document), repeats (dropped as duplicates), and garbage (dead-lettered)."""
    batches: list[list[bytes]] = []
    for b in range(draw(st.integers(1, 3))):
        docs: list[bytes] = []
        for _ in range(draw(st.integers(1, 12))):
            device = f"dev-{draw(st.integers(0, 5))}"
            if draw(st.integers(0, 9)) == 0:
                docs.append(b'{"device_id":"' + device.encode() + b'"}')
            else:
                docs.append(_doc(device, draw(st.integers(1, 4)), seconds=draw(st.integers(0, 3)) + 10 * b))
        batches.append([join_bundle(docs[k : k + 4]) for k in range(0, len(docs), 4)])
    return batches


@settings(max_examples=100, deadline=None)
@given(batches=_batches())
def test_the_documents_taken_are_what_decoding_the_record_gives(batches: list[list[bytes]]) -> None:
    handoff = _handoff()
    kafka = asyncio.run(_run(batches, handoff))
    clean = kafka.clean()
    assert len(handoff) == len(clean)  # every acknowledged clean record, and nothing else
    values = [v for _, _, v in clean]
    positions = [Position(p, o, 0) for p, o, _ in clean]
    decoded = _by_device(values, LogThrottle(), positions)
    hits = _hits()
    taken = _by_device(values, LogThrottle(), positions, handoff)
    assert _hits() - hits == len(clean)
    assert taken == decoded  # the same devices, documents, order and positions
    for docs in taken.values():
        for batch, _ in docs:
            assert isinstance(batch, WireBatch)
    assert len(handoff) == 0 and handoff.readings == 0  # taken once, then forgotten


async def test_a_record_at_a_remembered_position_with_other_bytes_is_decoded() -> None:
    handoff = _handoff()
    kafka = await _run([[_doc("dev-1", 3)]], handoff)
    ((partition, offset, value),) = kafka.clean()
    other = join_bundle([_doc("dev-2", 2)])
    assert handoff.take(partition, offset, other) is None  # e.g. a broker that gave the offset again
    assert handoff.take(partition, offset, value) is None  # forgotten with the first look
    [batch] = _by_device([other], LogThrottle(), [Position(partition, offset, 0)], handoff)["dev-2"]
    assert batch[0] == decode_batch(split_bundle(other)[0])


async def test_only_the_partitions_this_worker_analyses_are_remembered() -> None:
    handoff = CleanHandoff()
    handoff.owned = lambda: {PARTITIONS[0]}
    devices = [f"dev-{i}" for i in range(40)]
    kafka = await _run([[join_bundle([_doc(d, 1) for d in devices])]], handoff)
    clean = kafka.clean()
    assert {p for p, _, _ in clean} > {PARTITIONS[0]}
    assert len(handoff) == sum(1 for p, _, _ in clean if p == PARTITIONS[0]) > 0
    # before the analytics' group has assigned anything (a worker starting): every record
    handoff.owned = lambda: None
    more = await _run([[join_bundle([_doc(d, 1, seconds=1) for d in devices])]], handoff, kafka)
    assert len(handoff) == sum(1 for p, _, _ in clean if p == PARTITIONS[0]) + len(more.clean()) - len(clean)


async def test_beyond_its_bound_a_record_is_not_remembered_and_the_oldest_stay() -> None:
    handoff = _handoff(max_readings=10)
    kafka = await _run(
        [[_doc("dev-1", 4)], [_doc("dev-1", 4, seconds=1)], [_doc("dev-1", 4, seconds=2)]], handoff
    )
    first, _, third = kafka.clean()
    assert handoff.readings == 8 and len(handoff) == 2
    assert handoff.take(third[0], third[1], third[2]) is None  # no room for it: decoded
    assert handoff.take(first[0], first[1], first[2]) is not None
    assert handoff.readings == 4


async def test_what_is_not_taken_in_time_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(handoff_module.time, "monotonic", lambda: now[0])
    handoff = _handoff(max_age_s=30.0)
    kafka = await _run([[_doc("dev-1", 2)]], handoff)
    ((partition, offset, value),) = kafka.clean()
    now[0] += 31.0
    await _run([[_doc("dev-9", 1)]], handoff, kafka)  # remembering another record forgets the old one
    assert handoff.take(partition, offset, value) is None
    assert handoff.readings == 1
