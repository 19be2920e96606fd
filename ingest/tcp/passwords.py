"""Station password checks off the event loop.

:class:`stationflow.passwords.PasswordCache` runs scrypt (~50 ms) the first time it sees a
(stored hash, password) pair. On the event loop that would stall every connection, so the
first check of a pair runs on one worker thread (the only user of the cache, so no locking);
the outcome is remembered here, and every later frame is answered without leaving the loop.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from stationflow.passwords import PasswordCache

__all__ = ["PasswordCheck"]


class PasswordCheck:
    """``await verify(plain, stored)`` with a bounded in-loop cache of outcomes."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._cache = PasswordCache(size)
        self._known: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check")

    async def verify(self, plain: str, stored: str) -> bool:
        """True if ``plain`` matches the stored hash."""
        key = (stored, plain)
        found = self._known.get(key)
        if found is not None:
            self._known.move_to_end(key)
            return found
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._executor, self._cache.verify, plain, stored)
        self._known[key] = ok
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return ok

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)
