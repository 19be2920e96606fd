"""Put device records straight on the registry topic, as the registry's relay would: the benches
start no registry service, so their stacks learn their devices from here."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from stationflow import topics
from stationflow.contracts import DeviceRecord
from stationflow.settings import CommonSettings

__all__ = ["publish_records"]


async def publish_records(settings: CommonSettings, records: list[DeviceRecord]) -> None:
    """Create the topics and put every record on the registry topic (acknowledged)."""
    await topics.ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        topic = settings.topic(topics.REGISTRY)
        sends = [await producer.send(topic, key=r.key(), value=r.model_dump_json().encode()) for r in records]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
