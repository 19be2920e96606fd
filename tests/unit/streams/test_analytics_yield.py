"""The analytics hand the event loop over within a batch, between devices.

The raw stage runs on the worker's event loop too. Measured in the alert bench, 10,000
readings/s from 200 devices on a slow machine: an analytics batch of 200 devices took
50-335 ms of CPU, and while it ran the raw stage could not fetch, prepare or emit anything.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from streams.analyticsworker import YIELD_EVERY_S, AnalyticsAgents


class _Busy:
    """An agents object whose device update burns CPU for ``cost_s`` without awaiting."""

    def __init__(self, cost_s: float) -> None:
        self.cost_s = cost_s
        self.order: list[str] = []

    async def _analyse_device(self, device_id: str, docs: Any, now: float, lines: Any, futures: Any) -> None:
        end = time.perf_counter() + self.cost_s
        while time.perf_counter() < end:
            pass
        self.order.append(device_id)


async def _run(devices: int, cost_s: float) -> tuple[_Busy, list[int]]:
    """Run a batch of ``devices`` while another task records how many devices were done each
    time it got the loop."""
    agents = _Busy(cost_s)
    seen: list[int] = []
    stop = asyncio.Event()

    async def other_task() -> None:
        while not stop.is_set():
            seen.append(len(agents.order))
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)  # it runs once before the batch
    by_device: dict[str, Any] = {f"d{i}": [] for i in range(devices)}
    await AnalyticsAgents.analyse_devices(
        SimpleNamespace(_analyse_device=agents._analyse_device), by_device, 0.0, [], []
    )  # type: ignore[arg-type]
    stop.set()
    await other
    return agents, seen


async def test_other_tasks_run_between_devices_of_a_long_batch() -> None:
    # 40 devices of 1 ms each: 40 ms of CPU, about 8 turns at 5 ms (at least 3 asked)
    assert YIELD_EVERY_S <= 0.01
    agents, seen = await _run(40, 0.001)
    assert agents.order == [f"d{i}" for i in range(40)]  # every device, in the batch's order
    during = {n for n in seen if 0 < n < 40}  # the other task ran with the batch part done
    assert len(during) >= 3


async def test_a_short_batch_is_not_interrupted() -> None:
    # 20 devices of nothing: well under YIELD_EVERY_S, no reason to hand the loop over
    agents, seen = await _run(20, 0.0)
    assert len(agents.order) == 20
    assert not [n for n in seen if 0 < n < 20]
