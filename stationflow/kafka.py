"""Small Kafka helpers shared by the services (no service logic)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaConnectionError, KafkaError

__all__ = ["start_with_retry"]

logger = logging.getLogger(__name__)

# Services may start before the broker in `stationflow up` or under an orchestrator;
# keep trying for a minute, then fail loudly so the supervisor sees it.
START_DEADLINE_S = 60.0
START_RETRY_S = 1.0


async def start_with_retry(what: str, start: Callable[[], Awaitable[None]]) -> None:
    """Await ``start()`` until it succeeds or ``START_DEADLINE_S`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_DEADLINE_S
    while True:
        try:
            await start()
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if loop.time() > deadline:
                raise
            logger.warning("waiting for kafka what=%s reason=%r", what, exc)
            await asyncio.sleep(START_RETRY_S)
