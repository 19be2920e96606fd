"""The threads-and-tasks dump a stalled consumer leaves in the log: the whole await chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from stationflow.logs import await_chain, threads_and_tasks


async def _batches(ready: asyncio.Event) -> AsyncIterator[int]:
    while True:
        await ready.wait()
        yield 1


async def _agent(ready: asyncio.Event) -> None:
    async for _ in _batches(ready):
        pass


async def test_a_task_in_async_for_shows_the_generator_and_what_it_waits_for() -> None:
    ready = asyncio.Event()
    task = asyncio.create_task(_agent(ready), name="agent-under-test")
    await asyncio.sleep(0)
    try:
        chain = await_chain(task.get_coro())
        assert [line.rsplit(" in ", 1)[-1] for line in chain[:3]] == ["_agent", "_batches", "Event.wait"]
        assert chain[-1] == "  waiting for a future"
        dump = threads_and_tasks()
        assert "--- thread MainThread" in dump
        assert "--- task agent-under-test of thread MainThread\n" + "\n".join(chain) in dump
    finally:
        task.cancel()


def test_outside_a_loop_the_dump_has_this_thread_without_tasks() -> None:
    dump = threads_and_tasks()
    assert "--- thread MainThread" in dump and "of thread MainThread" not in dump
