"""``async with`` for objects with an explicit ``start()`` / ``stop()`` lifetime."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["AsyncLifetime"]


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
