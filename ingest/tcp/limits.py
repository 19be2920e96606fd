"""Per-station and per-connection limits of the TCP collector (pure; time passed in)."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["Buckets", "ConnectionSlots", "EveryAtMost", "TokenBucket", "address_allowed"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one token per frame."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(default=float("nan"))

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        """Spend one token if there is one (refill first); False = over the limit."""
        if self.stamp == self.stamp:  # not NaN: refill for the time since the last call
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class EveryAtMost:
    """Remembers when each key last happened, so a report repeats at most every ``period_s``."""

    def __init__(self, period_s: float, max_keys: int = 100_000) -> None:
        self.period_s = period_s
        self.max_keys = max_keys
        self._last: dict[object, float] = {}

    def due(self, key: object, now: float) -> bool:
        """True (and remembered) if ``key`` did not happen within the period before ``now``."""
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            return False
        if len(self._last) > self.max_keys:
            self._last.clear()
        self._last[key] = now
        return True


class Buckets:
    """One :class:`TokenBucket` per key (station or connection), least recently used evicted."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float) -> bool:
        """Spend one token of ``key``'s bucket; False = this frame is over the limit."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)


@lru_cache(maxsize=4096)
def _networks(cidrs: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    """Parse an allow-list once; entries that are not networks are skipped (the registry validates)."""
    out: list[IpNetwork] = []
    for text in cidrs:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            continue
    return tuple(out)


def address_allowed(host: str, allow_from: Sequence[str]) -> bool:
    """True if ``allow_from`` is empty or ``host`` lies in one of its networks.

    An IPv4 peer seen through an IPv6 socket (``::ffff:a.b.c.d``) is checked as IPv4. A
    non-empty list none of whose entries parses allows nobody (a typo must not open the door).
    """
    if not allow_from:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in _networks(tuple(allow_from)))


class ConnectionSlots:
    """Count open connections overall and per source address; refuse over either limit."""

    def __init__(self, max_total: int, max_per_ip: int = 0) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip  # 0 = unlimited
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def acquire(self, host: str) -> str | None:
        """Take a slot; None when granted, else the refusal reason (``max_connections``…)."""
        if self.total >= self.max_total:
            return "max_connections"
        held = self._per_ip.get(host, 0)
        if self.max_per_ip and held >= self.max_per_ip:
            return "max_connections_per_ip"
        self.total += 1
        self._per_ip[host] = held + 1
        return None

    def release(self, host: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        self.total -= 1
        held = self._per_ip.get(host, 0) - 1
        if held > 0:
            self._per_ip[host] = held
        else:
            self._per_ip.pop(host, None)
