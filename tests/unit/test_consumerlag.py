"""The lag arithmetic and which groups the worker watches."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY

from stationflow.consumerlag import ConsumerLagMonitor, GroupTopics, StallTracker, lag
from streams.app import lag_watches
from streams.settings import StreamsSettings

A0, A1, A2 = (TopicPartition("a", p) for p in range(3))


def test_lag_is_end_minus_committed_never_negative_uncommitted_from_zero() -> None:
    assert lag({A0: 15, A1: 7, A2: 3}, {A0: 4, A1: 9}) == {A0: 11, A1: 0, A2: 3}
    assert lag({}, {A0: 1}) == {}


def test_worker_watches_its_raw_group_and_the_faust_group() -> None:
    settings = StreamsSettings(topic_prefix="p.", streams_app_id="w")
    (raw, faust) = lag_watches(settings)
    assert raw.group == "w.raw" and raw.topics == ("p.readings.raw",)
    assert faust.group == "w" and faust.topics == ("p.readings.clean", "p.analytics.hourly")
    assert len(lag_watches(StreamsSettings(analytics_enabled=False))) == 1


def test_a_partition_stalls_when_records_wait_and_its_offset_stands_still_for_stall_s() -> None:
    t = StallTracker(stall_s=60)
    assert t.update({A0: 5, A1: 0}, {A0: 10}, now=0) == {}
    assert t.update({A0: 5, A1: 0}, {A0: 10}, now=59) == {}
    assert t.update({A0: 5, A1: 0}, {A0: 10}, now=60) == {A0: 60}
    assert t.update({A0: 9, A1: 0}, {A0: 10}, now=75) == {A0: 75}  # more waiting, still stalled


def test_a_consumer_behind_but_committing_is_not_stalled() -> None:
    t = StallTracker(stall_s=60)
    for minute in range(10):
        assert t.update({A0: 1000}, {A0: 100 * minute}, now=60.0 * minute) == {}


def test_nothing_waiting_is_never_stalled_and_restarts_the_clock() -> None:
    t = StallTracker(stall_s=60)
    assert t.update({A0: 0, A1: 3}, {A1: 0}, now=0) == {}  # A1 never committed: counts from 0
    assert t.update({A0: 0, A1: 3}, {}, now=100) == {A1: 100}
    assert t.update({A0: 0, A1: 0}, {A1: 3}, now=110) == {}  # caught up
    assert t.update({A0: 0, A1: 2}, {A1: 3}, now=120) == {}  # new records: a fresh clock
    assert t.update({A0: 0, A1: 2}, {A1: 3}, now=181) == {A1: 61}


async def test_a_broker_outage_does_not_count_as_a_stall() -> None:
    """Nobody can commit while the broker is away: the stillness before it does not count after."""
    monitor = ConsumerLagMonitor("unused:9092", [GroupTopics("g-outage", ("a",))], stall_s=0.2)
    answers: list[Any] = [({A0: 5}, {A0: 1}), KafkaConnectionError(), ({A0: 5}, {A0: 1}), ({A0: 5}, {A0: 1})]

    async def measure(*_: Any) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    monitor._measure = measure  # type: ignore[method-assign]

    def stalled() -> float | None:
        return REGISTRY.get_sample_value(
            "stationflow_consumer_stalled_partitions", {"group": "g-outage", "topic": "a"}
        )

    await monitor.refresh(None, None)  # type: ignore[arg-type]
    await asyncio.sleep(0.25)
    await monitor.refresh(None, None)  # type: ignore[arg-type]  # the broker away
    await monitor.refresh(None, None)  # type: ignore[arg-type]  # back: the clock starts again
    assert stalled() == 0
    await asyncio.sleep(0.25)
    await monitor.refresh(None, None)  # type: ignore[arg-type]
    assert stalled() == 1  # still for stall_s since the broker came back


async def test_a_new_stall_logs_this_process_threads_and_tasks_once(caplog: Any) -> None:
    """The first stalled partition of a group: every thread's stack and asyncio task in the log
    (what a stopped consumer in this process waits for); not again while it stays stalled."""
    monitor = ConsumerLagMonitor("unused:9092", [GroupTopics("g-dump", ("a",))], stall_s=0.1)

    async def measure(*_: Any) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        return {A0: 5}, {A0: 1}

    monitor._measure = measure  # type: ignore[method-assign]
    waiting = asyncio.create_task(asyncio.Event().wait(), name="a-consumer-waiting-forever")

    def dumps() -> list[str]:
        return [r.getMessage() for r in caplog.records if "this process's tasks" in r.getMessage()]

    try:
        await monitor.refresh(None, None)  # type: ignore[arg-type]
        assert dumps() == []  # still, but not for stall_s yet
        await asyncio.sleep(0.15)
        await monitor.refresh(None, None)  # type: ignore[arg-type]
        (dump,) = dumps()
        assert "group=g-dump" in dump
        assert "--- thread MainThread" in dump
        assert "--- task a-consumer-waiting-forever" in dump and "Event.wait" in dump
        await asyncio.sleep(0.15)
        await monitor.refresh(None, None)  # type: ignore[arg-type]
        assert len(dumps()) == 1  # the same stall: no second dump
    finally:
        waiting.cancel()
