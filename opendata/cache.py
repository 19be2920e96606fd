"""The response cache: rendered answers per path + query for a few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

__all__ = ["CachedAnswer", "ResponseCache"]


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A rendered answer: status, body, media type, other headers (e.g. Content-Disposition)."""

    status: int
    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...] = ()


class ResponseCache:
    """``TTLCache`` of answers keyed by path and sorted query (``ttl_s`` 0: nothing is kept)."""

    def __init__(self, ttl_s: float, maxsize: int, timer: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._cache: TTLCache[str, CachedAnswer] | None = (
            TTLCache(maxsize=maxsize, ttl=ttl_s, timer=timer) if ttl_s > 0 else None
        )

    @staticmethod
    def key(path: str, query: list[tuple[str, str]]) -> str:
        """The cache key: ``?b=2&a=1`` and ``?a=1&b=2`` are the same answer."""
        return path + "?" + "&".join(f"{k}={v}" for k, v in sorted(query))

    def get(self, key: str) -> CachedAnswer | None:
        """The answer kept for ``key``, if still fresh."""
        return None if self._cache is None else self._cache.get(key)

    def put(self, key: str, answer: CachedAnswer) -> None:
        """Keep a successful answer."""
        if self._cache is not None and answer.status == 200:
            self._cache[key] = answer

    def __len__(self) -> int:
        return 0 if self._cache is None else len(self._cache)
