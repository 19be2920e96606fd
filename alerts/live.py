"""Live updates for the duty console: every change of an alert is pushed to SSE listeners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["Broadcaster"]


class Broadcaster:
    """Fan-out of alert ids that changed; callable from any thread."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[int]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the listeners live on."""
        self._loop = loop

    def publish(self, alert: int) -> None:
        """Tell every listener that alert ``alert`` changed (thread-safe, never blocks)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._fan_out, alert)

    def _fan_out(self, alert: int) -> None:
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(alert)

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[int]]:
        """A queue receiving changed alert ids until the context exits."""
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1000)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
