"""stationflow_consumer_lag against a real Tansu: end offset (records sent in batches, which
Tansu's ListOffsets gets wrong) minus the group's committed offset, per partition."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from stationflow.consumerlag import ConsumerLagMonitor, GroupTopics
from stationflow.settings import CommonSettings
from stationflow.stack import Component
from stationflow.topics import ensure_topics

SENT = {0: 15, 1: 7}  # records per partition, sent as batches of up to 10


def _gauge(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "stationflow_consumer_lag", {"group": group, "topic": topic, "partition": str(partition)}
    )


async def _produce(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        for partition, count in SENT.items():
            for start in range(0, count, 10):
                futures = [
                    await producer.send(topic, f"r{i}".encode(), partition=partition)
                    for i in range(start, min(count, start + 10))
                ]
                await producer.flush()
                for future in futures:
                    await future
    finally:
        await producer.stop()


async def _commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def test_lag_is_true_end_minus_committed_per_partition(tansu: Component, topic_prefix: str) -> None:
    settings = CommonSettings(kafka_bootstrap=tansu.url, topic_prefix=topic_prefix, topic_partitions=2)
    topic = settings.topic("readings.raw")
    await ensure_topics(settings, names=("readings.raw",))
    await _produce(tansu.url, topic)
    group = f"{topic_prefix}workers"
    idle = f"{topic_prefix}idle"  # never committed: the whole partition is behind
    await _commit(tansu.url, group, {TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 7})

    monitor = ConsumerLagMonitor(tansu.url, [GroupTopics(group, (topic,)), GroupTopics(idle, (topic,))])
    consumer = AIOKafkaConsumer(bootstrap_servers=tansu.url, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.url)
    await consumer.start()
    await admin.start()
    try:
        await monitor.refresh(consumer, admin)
        assert _gauge(group, topic, 0) == 11  # 15 sent (batches of 10 + 5), 4 committed
        assert _gauge(group, topic, 1) == 0
        assert _gauge(idle, topic, 0) == 15 and _gauge(idle, topic, 1) == 7

        await _commit(tansu.url, group, {TopicPartition(topic, 0): 15})
        await monitor.refresh(consumer, admin)
        assert _gauge(group, topic, 0) == 0
    finally:
        await admin.close()
        await consumer.stop()


def _stalled(group: str, topic: str) -> float | None:
    return REGISTRY.get_sample_value(
        "stationflow_consumer_stalled_partitions", {"group": group, "topic": topic}
    )


async def test_a_group_whose_offsets_stand_still_with_records_waiting_is_reported_stalled(
    tansu: Component, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = CommonSettings(kafka_bootstrap=tansu.url, topic_prefix=topic_prefix, topic_partitions=2)
    topic = settings.topic("readings.clean")
    await ensure_topics(settings, names=("readings.clean",))
    await _produce(tansu.url, topic)
    group = f"{topic_prefix}analytics"  # its consumer is gone: it committed 4 of 15 and 7 of 7
    await _commit(tansu.url, group, {TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 7})

    monitor = ConsumerLagMonitor(tansu.url, [GroupTopics(group, (topic,))], stall_s=1.0)
    consumer = AIOKafkaConsumer(bootstrap_servers=tansu.url, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.url)
    await consumer.start()
    await admin.start()
    try:
        with caplog.at_level(logging.INFO, logger="stationflow.consumerlag"):
            await monitor.refresh(consumer, admin)
            assert _stalled(group, topic) == 0  # behind, but not for long yet
            await asyncio.sleep(1.2)
            await monitor.refresh(consumer, admin)
            assert _stalled(group, topic) == 1  # partition 0; partition 1 has nothing waiting
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            (line,) = [m for m in errors if m.startswith("consumer stalled: ")]
            assert f"group={group}" in line and f"partitions={topic}:0 " in line and "waiting=11" in line
            (dump,) = [m for m in errors if "this process's tasks" in m]  # what this process awaits
            assert f"group={group}," in dump and "--- thread MainThread" in dump

            await _commit(tansu.url, group, {TopicPartition(topic, 0): 15})  # it moves again
            await monitor.refresh(consumer, admin)
            assert _stalled(group, topic) == 0
            assert any(
                f"consumer moving again group={group} partitions={topic}:0" in r.getMessage()
                for r in caplog.records
            )
    finally:
        await admin.close()
        await consumer.stop()
