"""Run the TCP collector: ``python -m ingest.tcp`` (HJ 212 and SL 651 listeners, one process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaProducer
from prometheus_client import start_http_server

from ingest.tcp.hj212 import Hj212Handler
from ingest.tcp.kafkaout import KafkaOut
from ingest.tcp.server import Context, ProtocolHandler, TcpCollector
from ingest.tcp.settings import TcpSettings
from ingest.tcp.sl651 import Sl651Handler
from stationflow.kafka import CachingPartitioner, start_with_retry
from stationflow.logs import setup_logging
from stationflow.registryview import RegistryFollower, RegistryView
from stationflow.runtime import new_event_loop, tune_gc
from stationflow.settings import masked
from stationflow.topics import ensure_topics

logger = logging.getLogger("ingest.tcp")

MAX_KAFKA_BATCH_BYTES = 512 * 1024


def handlers(ctx: Context) -> list[ProtocolHandler]:
    """The enabled listeners (a port of 0 disables one)."""
    out: list[ProtocolHandler] = []
    if ctx.settings.hj212_port:
        out.append(Hj212Handler(ctx))
    if ctx.settings.sl651_port:
        out.append(Sl651Handler(ctx))
    return out


async def _wait_ready(view: RegistryView, follower: asyncio.Task[None], stop: asyncio.Event) -> bool:
    """Wait for the registry view (True), a stop request or the follower's failure (False)."""
    ready = asyncio.create_task(view.ready.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({ready, stopped, follower}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
        stopped.cancel()
    if follower.done():
        follower.result()  # raises the follower's error
    return view.ready.is_set()


async def run(settings: TcpSettings) -> None:
    """Read the registry, listen, and serve until SIGTERM / SIGINT (or Kafka fails)."""
    logger.info("starting tcp collector settings=%s", masked(settings))
    await start_with_retry("kafka topics", lambda: ensure_topics(settings))
    if settings.tcp_metrics_port:
        start_http_server(settings.tcp_metrics_port, addr=settings.tcp_metrics_bind)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=settings.tcp_kafka_linger_ms,
        max_batch_size=MAX_KAFKA_BATCH_BYTES,
        client_id=settings.tcp_client_id,
        partitioner=CachingPartitioner(),
    )
    view = RegistryView()
    async with AsyncExitStack() as stack:
        await start_with_retry("kafka producer", producer.start)
        stack.push_async_callback(producer.stop)
        follower = asyncio.create_task(RegistryFollower(settings, view).run())
        try:
            if await _wait_ready(view, follower, stop):
                ctx = Context(settings, KafkaOut(producer), view)
                collector = TcpCollector(ctx, handlers(ctx))
                await collector.start()
                await collector.run(stop)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower
    logger.info("tcp collector stopped")


def main() -> None:
    """Entry point."""
    settings = TcpSettings()
    setup_logging(settings.log_level, service="tcp")
    tune_gc()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run(settings))


if __name__ == "__main__":
    main()
