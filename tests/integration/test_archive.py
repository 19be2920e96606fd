"""The Kafka state archive on real Tansu brokers: mirror, tails, restore into a new broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stationflow.stack.archive import (
    ArchiveSettings,
    ArchiveSpec,
    ArchiveStore,
    Mirror,
    archive_tails,
    end_offsets,
    group_lag,
    restore,
)
from stationflow.stack.components import Component, start_tansu
from tests.integration.pipeline_utils import wait_for

CHANGELOG, DEAD, RAW = "app-devices-changelog", "readings.deadletter", "readings.raw"
SPEC = ArchiveSpec(changelogs=(CHANGELOG,), logs=(DEAD,), groups={"worker": (RAW,)})
FAST = ArchiveSettings(archive_flush_s=0.2)
T0 = int(time.time() * 1000) - 60_000  # record timestamps: a minute ago (inside the age bound)


async def _create(url: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=url)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(CHANGELOG, 4, 1, topic_configs={"cleanup.policy": "compact"}),
                NewTopic(DEAD, 4, 1),
                NewTopic(RAW, 4, 1),
            ]
        )
    finally:
        await admin.close()


async def _produce(url: str, records: list[tuple[str, int, bytes | None, bytes | None, int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=url, acks="all")
    await producer.start()
    try:
        for topic, partition, key, value, ts in records:
            headers = [("source", b"test")] if topic == DEAD else None
            await producer.send_and_wait(
                topic, value, key=key, partition=partition, timestamp_ms=ts, headers=headers
            )
    finally:
        await producer.stop()


async def _commit(url: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=url, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def _read(
    url: str, topic: str
) -> list[tuple[int, bytes | None, bytes | None, int, tuple[tuple[str, bytes], ...]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=url, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    out = []
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            while await consumer.position(tp) < end[tp]:
                for rec in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    out.append((rec.partition, rec.key, rec.value, rec.timestamp, tuple(rec.headers)))
    finally:
        await consumer.stop()
    return out


async def _listed_ends(url: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=url, group_id=None)
    await consumer.start()
    try:
        listed = await consumer.end_offsets([TopicPartition(topic, p) for p in range(4)])
    finally:
        await consumer.stop()
    return {tp: n for tp, n in listed.items() if n}


def test_state_topics_survive_into_a_new_broker_and_unconsumed_records_are_kept(
    tmp_path: Path,
) -> None:
    store = ArchiveStore(tmp_path / "archive")
    cleanup: Mirror | None = None
    first = start_tansu(tmp_path / "tansu-1")
    try:
        asyncio.run(_create(first.url))
        mirror = Mirror(first.url, store, SPEC, FAST, {})
        mirror.start()
        cleanup = mirror
        asyncio.run(
            _produce(
                first.url,
                [
                    (CHANGELOG, 2, b"dev-a", b"1", 10),
                    (CHANGELOG, 3, b"dev-b", b"2", 11),
                    (CHANGELOG, 2, b"dev-d", b"4", 11),
                    (CHANGELOG, 2, b"dev-a", b"3", 12),
                    (CHANGELOG, 1, b"dev-c", b"x", 13),
                    (CHANGELOG, 1, b"dev-c", None, 14),  # deleted from the table
                    *[
                        (DEAD, i % 4, f"dev-{i}".encode(), f"letter-{i}".encode(), T0 + 100 + i)
                        for i in range(6)
                    ],
                    *[(RAW, 0, b"dev-r", f"raw-{i}".encode(), T0 + 200 + i) for i in range(5)],
                ],
            )
        )
        # the mirror flushes on its own while running (what a SIGKILL would leave)
        assert wait_for(lambda: store.counts()["log"] == 6, timeout=30), store.counts()
        asyncio.run(_commit(first.url, "worker", {TopicPartition(RAW, 0): 2}))
        assert asyncio.run(group_lag(first.url, SPEC.groups)) == {"worker": 3}
        mirror.stop()
        assert mirror.error is None
        assert asyncio.run(archive_tails(first.url, store, SPEC.groups)) == 3
    finally:
        if cleanup is not None:
            cleanup.stop()
        first.stop()

    second = start_tansu(tmp_path / "tansu-2")
    try:
        asyncio.run(_create(second.url))
        ends = asyncio.run(restore(second.url, store))
        assert sorted((p, k, v) for p, k, v, _, _ in asyncio.run(_read(second.url, CHANGELOG))) == [
            (2, b"dev-a", b"3"),
            (2, b"dev-d", b"4"),
            (3, b"dev-b", b"2"),
        ]
        dead = asyncio.run(_read(second.url, DEAD))
        assert sorted((p, k, v, ts) for p, k, v, ts, _ in dead) == sorted(
            (i % 4, f"dev-{i}".encode(), f"letter-{i}".encode(), T0 + 100 + i) for i in range(6)
        )
        assert all(headers == (("source", b"test"),) for *_, headers in dead)
        assert [v for _, _, v, _, _ in asyncio.run(_read(second.url, RAW))] == [b"raw-2", b"raw-3", b"raw-4"]
        assert ends[TopicPartition(DEAD, 0)] == 2 and ends[TopicPartition(CHANGELOG, 2)] == 2
        # table entries went one per batch, so the end Tansu lists (what Faust's recovery reads
        # up to) is the real end
        assert asyncio.run(_listed_ends(second.url, CHANGELOG)) == {
            tp: n for tp, n in ends.items() if tp.topic == CHANGELOG
        }
        # tails are replayed once; the state stays archived for the next start
        assert store.counts() == {"changelog": 3, "log": 6, "tail": 0, "log_cut": 0}
        # the mirror continues from the restored end: nothing is archived twice
        mirror = Mirror(second.url, store, SPEC, FAST, ends)
        mirror.start()
        asyncio.run(_produce(second.url, [(DEAD, 0, b"dev-new", b"letter-new", T0 + 300)]))
        mirror.stop()
        assert store.counts()["log"] == 7
    finally:
        second.stop()


def test_a_mirror_follows_a_broker_started_with_components(tansu: Component) -> None:
    """The lag of a group that never committed counts the whole topic."""
    prefix = "lag-"
    raw = prefix + RAW

    async def setup() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=tansu.url)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(raw, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(setup())
    asyncio.run(_produce(tansu.url, [(raw, 1, b"k", b"v", 1), (raw, 1, b"k", b"w", 2)]))
    assert asyncio.run(group_lag(tansu.url, {"never-committed": (raw,)})) == {"never-committed": 2}
    asyncio.run(_commit(tansu.url, "never-committed", {TopicPartition(raw, 1): 2}))
    assert asyncio.run(group_lag(tansu.url, {"never-committed": (raw,)})) == {"never-committed": 0}


def test_end_offsets_count_every_record_of_a_batch(tansu: Component) -> None:
    """Tansu lists the end of a partition as its last batch's base offset + 1; the fetch is right."""
    topic = "batched-" + RAW

    async def scenario() -> tuple[dict[TopicPartition, int], dict[str, int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=tansu.url)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 2, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=tansu.url, acks="all", linger_ms=50)
        await producer.start()
        try:
            for size in (10, 5):  # two batches
                await asyncio.gather(*[await producer.send(topic, b"v", partition=0) for _ in range(size)])
        finally:
            await producer.stop()
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        await _commit(tansu.url, "batched", {tps[0]: 15})
        return await end_offsets(tansu.url, tps), await group_lag(tansu.url, {"batched": (topic,)})

    ends, lag = asyncio.run(scenario())
    assert ends == {TopicPartition(topic, 0): 15, TopicPartition(topic, 1): 0}
    assert lag == {"batched": 0}
