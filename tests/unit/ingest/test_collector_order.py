"""The collector hands one device's records to Kafka in arrival order, even when a send waits."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from ingest.collector import Collector
from ingest.settings import IngestSettings


class _FullBatchFirst:
    """A producer whose first send waits (its batch is full, as aiokafka's does under a burst)."""

    def __init__(self) -> None:
        self.appended: list[tuple[bytes, bytes]] = []
        self.calls = 0

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(0.02)
        self.appended.append((key or b"", value))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_records_of_one_key_keep_their_order_and_other_keys_do_not_wait() -> None:
    collector = Collector(IngestSettings(), AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))
    fake = _FullBatchFirst()
    collector.producer = fake
    sends = [collector._send_in_order("raw", b"%d" % i, b"dtu") for i in range(5)]
    other = collector._send_in_order("raw", b"x", b"other")
    await asyncio.gather(*sends, other)
    assert [v for k, v in fake.appended if k == b"dtu"] == [b"0", b"1", b"2", b"3", b"4"]
    assert fake.appended[0] == (b"other", b"x")  # another device is not held up
    assert collector._sending == {}  # no lock left behind
