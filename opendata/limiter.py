"""Per-client token buckets (pure: the caller passes the time).

A client may send ``burst`` requests at once and then ``rate_per_s`` per second. A refused
request learns how long until a token is back (the ``Retry-After`` of a 429), rounded up to
whole seconds. Buckets that are full again are forgotten, so memory follows active clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Decision", "RateLimiter"]


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may pass; if not, the whole seconds to wait."""

    allowed: bool
    retry_after_s: int = 0
    remaining: int = 0


class RateLimiter:
    """Token bucket per key (a client IP)."""

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = 100_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str, now: float) -> Decision:
        """Take a token for ``key`` at monotonic time ``now`` if there is one."""
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_keys:
                self.prune(now)
            return Decision(True, 0, int(tokens - 1.0))
        self._buckets[key] = (tokens, now)
        return Decision(False, max(1, math.ceil((1.0 - tokens) / self.rate)), 0)

    def prune(self, now: float) -> None:
        """Forget buckets that are full again (they would start full anyway)."""
        self._buckets = {
            k: (t, at) for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate < self.burst
        }
