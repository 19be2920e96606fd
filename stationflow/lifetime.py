"""``async with`` for objects with an explicit ``start()`` / ``stop()`` lifetime."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

__all__ = ["AsyncLifetime", "cancel_and_wait"]


class AsyncLifetime(ABC):
    """Mixin: ``async with obj:`` awaits ``start()`` on entry and ``stop()`` on exit."""

    @abstractmethod
    async def start(self) -> None:
        """Acquire resources."""

    @abstractmethod
    async def stop(self) -> None:
        """Release resources (idempotent)."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], logger: logging.Logger) -> None:
    """Cancel a service's background tasks and wait for them; a task that had already failed is
    logged with its error (not swallowed), so a crash at shutdown is still seen."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task, outcome in zip(pending, await asyncio.gather(*pending, return_exceptions=True), strict=True):
        if isinstance(outcome, Exception):
            logger.error("background task failed task=%s error=%r", task.get_name(), outcome)
