"""Run the stream worker: ``python -m streams`` (or ``stationflow streams``)."""

from __future__ import annotations

import asyncio
import logging

import faust
from prometheus_client import start_http_server

from stationflow.kafka import start_with_retry
from stationflow.logs import setup_logging, threads_and_tasks
from stationflow.runtime import new_event_loop, set_switch_interval, tune_gc
from stationflow.settings import masked
from stationflow.topics import ensure_topics
from streams.analyticsworker import changelog_topics
from streams.app import create_app
from streams.settings import StreamsSettings

logger = logging.getLogger("streams")


class Worker(faust.Worker):
    """Faust's worker, whose SIGUSR1 dump names what each task waits for."""

    def _on_sigusr1(self) -> None:
        # mode's own dump prints a suspended task's outermost frame only (for the analytics
        # agent: the agent's loop, not the batch it waits for) and every frame's locals
        logger.error("SIGUSR1: this worker's threads and tasks:\n%s", threads_and_tasks())


def main() -> None:
    """Entry point: ensure topics, then run one Faust worker until SIGTERM / SIGINT."""
    settings = StreamsSettings()
    setup_logging(settings.log_level, service="streams")
    logger.info("starting streams settings=%s", masked(settings))
    changelogs = changelog_topics(settings) if settings.analytics_enabled else ()
    asyncio.run(start_with_retry("kafka topics", lambda: ensure_topics(settings, changelogs=changelogs)))
    if settings.streams_metrics_port:
        start_http_server(settings.streams_metrics_port, addr=settings.streams_metrics_bind)
    app = create_app(settings)
    tune_gc()
    set_switch_interval(settings.streams_switch_interval_ms)
    worker = Worker(app, loglevel=settings.log_level.lower(), loop=new_event_loop())
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
