"""Token bucket (429 + Retry-After), response cache TTL, client address behind proxies."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opendata.cache import CachedAnswer, ResponseCache
from opendata.gate import client_ip
from opendata.limiter import RateLimiter


def test_burst_then_refused_with_retry_after() -> None:
    limiter = RateLimiter(rate_per_s=0.5, burst=3)  # 30 per minute
    assert [limiter.check("a", 100.0).allowed for _ in range(3)] == [True, True, True]
    refused = limiter.check("a", 100.0)
    assert not refused.allowed and refused.retry_after_s == 2  # one token takes 2 s at 0.5/s
    assert limiter.check("b", 100.0).allowed  # other clients have their own bucket
    assert not limiter.check("a", 101.0).allowed  # half a token after 1 s
    assert not limiter.check("a", 101.9).allowed  # 0.95 tokens
    assert limiter.check("a", 102.0).allowed  # 2 s after the refusal: one token
    assert limiter.check("a", 102.0).retry_after_s == 2


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    limiter = RateLimiter(rate_per_s=120 / 60, burst=1)
    assert limiter.check("x", 0.0).allowed
    decision = limiter.check("x", 0.1)  # 0.2 tokens: 0.4 s to go → 1
    assert (decision.allowed, decision.retry_after_s) == (False, 1)


@given(
    rate=st.floats(min_value=0.05, max_value=50),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=200),
)
def test_never_more_than_burst_plus_refill(rate: float, burst: int, gaps: list[float]) -> None:
    """Over any run of requests, no more pass than burst + rate × elapsed, and a refusal's
    Retry-After is enough: after waiting it the next request passes."""
    limiter = RateLimiter(rate, burst)
    now, passed = 0.0, 0
    for gap in gaps:
        now += gap
        decision = limiter.check("k", now)
        passed += decision.allowed
        if not decision.allowed:
            assert decision.retry_after_s >= 1
            waited = copy.deepcopy(limiter)
            assert waited.check("k", now + decision.retry_after_s).allowed
    assert passed <= burst + rate * now + 1e-6


def test_full_buckets_are_pruned() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=2, max_keys=10)
    for i in range(11):
        limiter.check(f"ip{i}", 0.0)
    limiter.prune(100.0)
    assert len(limiter) == 0


def test_bad_limits_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1)


def test_cache_keeps_ok_answers_for_ttl_only() -> None:
    now = [0.0]
    cache = ResponseCache(5.0, 10, timer=lambda: now[0])
    key = cache.key("/api/v1/aqi/latest", [("format", "csv"), ("a", "1")])
    assert key == cache.key("/api/v1/aqi/latest", [("a", "1"), ("format", "csv")])
    assert key != cache.key("/api/v1/aqi/latest", [("format", "json"), ("a", "1")])
    cache.put(key, CachedAnswer(200, b"x", "text/csv"))
    cache.put("err", CachedAnswer(503, b"down", "application/json"))
    now[0] = 4.9
    assert cache.get(key) == CachedAnswer(200, b"x", "text/csv") and cache.get("err") is None
    now[0] = 5.1
    assert cache.get(key) is None


def test_cache_off_with_zero_ttl() -> None:
    cache = ResponseCache(0, 10)
    cache.put("k", CachedAnswer(200, b"x", "a"))
    assert cache.get("k") is None and len(cache) == 0


@pytest.mark.parametrize(
    ("peer", "xff", "want"),
    [
        ("203.0.113.5", "198.51.100.1", "203.0.113.5"),  # untrusted peer: its header is ignored
        ("10.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.1", "198.51.100.1, 10.0.0.2", "198.51.100.1"),  # right-most untrusted hop
        ("10.0.0.1", "evil, 198.51.100.9", "198.51.100.9"),
        ("10.0.0.1", "not-an-ip", "10.0.0.1"),
        ("10.0.0.1", None, "10.0.0.1"),
        (None, None, "unknown"),
    ],
)
def test_client_ip(peer: str | None, xff: str | None, want: str) -> None:
    assert client_ip(peer, xff, frozenset({"10.0.0.1", "10.0.0.2"})) == want
