"""The analytics' active set (AlertSync): which alert ids each owned table entry holds raised."""

from __future__ import annotations

import orjson
from aiokafka.partitioner import DefaultPartitioner

from streams.analytics.device import DeviceState
from streams.analytics.rules import RuleState
from streams.analyticsworker import _held_by_partition


def _entry(device: str, raised: dict[str, bool]) -> tuple[bytes, bytes]:
    state = DeviceState()
    for rule, on in raised.items():
        rs = RuleState()
        if on:
            rs.active, rs.seq, rs.raised_at = 1, 1, 1_700_000_000.0
        state.rules[rule] = rs.dump()
    return device.encode(), orjson.dumps(state.dump())


def test_each_owned_subject_lists_exactly_its_raised_rules() -> None:
    partitions = 4
    entries = [
        _entry("lvl-1", {"flood.level": True, "flood.rise": False, "nodata": True}),
        _entry("lvl-3", {"flood.level": False}),
        (b"gone", None),
    ]
    where = {
        key: DefaultPartitioner()(key, list(range(partitions)), list(range(partitions))) for key, _ in entries
    }
    held = _held_by_partition(entries, "device", partitions, owned=set(range(partitions)))
    assert held[where[b"lvl-1"]]["device:lvl-1"] == ["flood.level:device:lvl-1", "nodata:device:lvl-1"]
    assert held[where[b"lvl-3"]]["device:lvl-3"] == []  # held, nothing raised: its open alerts are stale
    assert all("device:gone" not in subjects for subjects in held.values())
    # partitions this worker does not own are another worker's to announce
    others = _held_by_partition(entries, "device", partitions, owned={where[b"lvl-3"]})
    assert where[b"lvl-1"] != where[b"lvl-3"]
    assert others == {where[b"lvl-3"]: {"device:lvl-3": []}}
