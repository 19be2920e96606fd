from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from stationflow.kafka import CachingPartitioner


def test_same_partitions_as_the_default_partitioner() -> None:
    cached = CachingPartitioner(max_keys=10)
    parts = [0, 1, 2, 3]
    for _ in range(2):  # second round served from the cache (and after a cache reset)
        for i in range(50):
            key = f"device-{i}".encode()
            assert cached(key, parts, parts) == DefaultPartitioner()(key, parts, parts)


def test_partition_count_change_is_not_served_stale() -> None:
    cached = CachingPartitioner()
    key = b"river-07"
    assert cached(key, [0, 1], [0, 1]) == DefaultPartitioner()(key, [0, 1], [0, 1])
    six = list(range(6))
    assert cached(key, six, six) == DefaultPartitioner()(key, six, six)
