"""Token buckets, allow-lists and connection slots of the TCP collector."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.tcp.limits import Buckets, ConnectionSlots, TokenBucket, address_allowed


def test_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 token refilled
    assert bucket.take(0.5)  # 1.0
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at the burst


def test_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)


@settings(max_examples=100, deadline=None)
@given(
    rate=st.floats(0.1, 100),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_bucket_never_grants_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        granted += bucket.take(now)
    assert granted <= burst + rate * now + 1e-6


def test_buckets_are_per_key_and_bounded() -> None:
    buckets = Buckets(rate=1.0, burst=1, max_keys=2)
    assert buckets.take("a", 0.0)
    assert not buckets.take("a", 0.0)
    assert buckets.take("b", 0.0)  # another station is not affected
    assert buckets.take("c", 0.0)  # evicts "a" (least recently used)
    assert buckets.take("a", 0.0)  # a fresh bucket


def test_allow_list() -> None:
    assert address_allowed("203.0.113.7", [])
    assert address_allowed("203.0.113.7", ["203.0.113.0/24"])
    assert not address_allowed("198.51.100.1", ["203.0.113.0/24"])
    assert address_allowed("10.1.2.3", ["203.0.113.0/24", "10.0.0.0/8"])
    assert address_allowed("::ffff:203.0.113.7", ["203.0.113.7/32"])  # IPv4 through an IPv6 socket
    assert address_allowed("2001:db8::5", ["2001:db8::/32"])
    assert not address_allowed("203.0.113.7", ["2001:db8::/32"])
    assert not address_allowed("203.0.113.7", ["not-a-network"])  # a typo opens nothing
    assert not address_allowed("garbage", ["0.0.0.0/0"])


def test_connection_slots_total_and_per_ip() -> None:
    slots = ConnectionSlots(max_total=3, max_per_ip=2)
    assert slots.acquire("a") is None
    assert slots.acquire("a") is None
    assert slots.acquire("a") == "max_connections_per_ip"
    assert slots.acquire("b") is None
    assert slots.acquire("c") == "max_connections"
    slots.release("a")
    assert slots.acquire("c") is None
    assert slots.total == 3


def test_connection_slots_unlimited_per_ip_by_default() -> None:
    slots = ConnectionSlots(max_total=100)
    assert all(slots.acquire("nat") is None for _ in range(100))
    assert slots.acquire("nat") == "max_connections"
