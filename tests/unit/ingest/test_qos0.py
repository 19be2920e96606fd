"""QoS 0 admission: bounded overall and per device, and every slot taken is given back."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.collector import _publish_payload
from ingest.qos0 import DeviceLabels, Qos0Gate


def test_a_flooding_device_is_held_to_its_share_and_others_still_get_in() -> None:
    gate = Qos0Gate(max_inflight=10, max_per_device=3)
    assert [gate.try_acquire("devices/flood/readings") for _ in range(5)] == [True] * 3 + [False] * 2
    assert gate.held("devices/flood/readings") == 3
    assert all(gate.try_acquire(f"devices/d{i}/readings") for i in range(7))
    assert gate.inflight == 10
    assert not gate.try_acquire("devices/late/readings")  # overall limit
    gate.release("devices/flood/readings")
    assert gate.try_acquire("devices/late/readings")
    assert not gate.try_acquire("devices/flood/readings")


_OPS = st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b", "c", "d"])), max_size=300)


@settings(max_examples=300)
@given(_OPS, st.integers(1, 8), st.integers(1, 5))
def test_the_gate_matches_a_model_of_its_limits(
    ops: list[tuple[bool, str]], limit: int, per_device: int
) -> None:
    gate = Qos0Gate(max_inflight=limit, max_per_device=per_device)
    held: Counter[str] = Counter()
    for acquire, key in ops:
        if acquire:
            expected = sum(held.values()) < limit and held[key] < per_device
            assert gate.would_admit(key) is expected
            assert gate.try_acquire(key) is expected
            held[key] += expected
        elif held[key]:
            gate.release(key)
            held[key] -= 1
        assert gate.inflight == sum(held.values()) <= limit
        assert gate.held(key) == held[key] <= per_device
    for key, n in held.items():
        for _ in range(n):
            gate.release(key)
    assert gate.inflight == 0
    assert not gate._per_device  # no key left behind: memory does not grow with devices seen


def test_device_labels_are_capped() -> None:
    labels = DeviceLabels(max_devices=2)
    assert [labels.label(d) for d in ("a", "b", "c", "a", None)] == ["a", "b", "_other", "a", "_invalid"]


@given(
    st.text(min_size=1, max_size=40), st.binary(max_size=300), st.sampled_from([b"\x00", b"\x03\x23\x00\x05"])
)
def test_the_payload_of_a_qos0_publish_is_found_after_its_properties(
    topic: str, payload: bytes, properties: bytes
) -> None:
    encoded = topic.encode()
    body = len(encoded).to_bytes(2) + encoded + properties + payload  # variable header + payload
    assert _publish_payload(body, 2 + len(encoded)) == payload
