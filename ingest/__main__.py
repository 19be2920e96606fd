"""Run the MQTT collector: ``python -m ingest`` (or ``stationflow ingest``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaProducer
from prometheus_client import start_http_server

from ingest.collector import Collector
from ingest.settings import IngestSettings
from stationflow.kafka import CachingPartitioner, start_with_retry
from stationflow.logs import setup_logging
from stationflow.runtime import new_event_loop, tune_gc
from stationflow.settings import masked
from stationflow.topics import ensure_topics

logger = logging.getLogger("ingest")

MAX_KAFKA_BATCH_BYTES = 512 * 1024


async def run(settings: IngestSettings) -> None:
    """Start the producer and the collector; stop cleanly on SIGTERM / SIGINT."""
    logger.info("starting ingest settings=%s", masked(settings))
    await start_with_retry("kafka topics", lambda: ensure_topics(settings))
    if settings.ingest_metrics_port:
        start_http_server(settings.ingest_metrics_port, addr=settings.ingest_metrics_bind)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=settings.ingest_kafka_linger_ms,
        max_batch_size=MAX_KAFKA_BATCH_BYTES,
        client_id=settings.ingest_client_id,
        partitioner=CachingPartitioner(),
    )
    async with AsyncExitStack() as stack:
        await start_with_retry("kafka producer", producer.start)
        stack.push_async_callback(producer.stop)
        await Collector(settings, producer).run(stop)
    logger.info("ingest stopped")


def main() -> None:
    """Entry point."""
    settings = IngestSettings()
    setup_logging(settings.log_level, service="ingest")
    tune_gc()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run(settings))


if __name__ == "__main__":
    main()
