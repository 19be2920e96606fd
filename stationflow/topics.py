"""Topic names and their explicit creation.

Tansu auto-creates a topic with its own partition count the first time a client touches
it, which breaks Faust (``PartitionsMismatch``); so every topic is created here, with its
partition count, before any service produces or consumes.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stationflow.settings import CommonSettings

__all__ = ["ALERTS", "ALERT_SYNC", "CLEAN", "DEADLETTER", "HOURLY", "RAW", "REGISTRY", "ensure_topics"]

logger = logging.getLogger(__name__)

RAW = "readings.raw"
CLEAN = "readings.clean"
DEADLETTER = "readings.deadletter"
REGISTRY = "registry"  # compacted: the latest DeviceRecord per device id
HOURLY = "analytics.hourly"  # HourlyValues, keyed by station id
ALERTS = "alerts.events"  # AlertEvent, keyed by alert id
ALERT_SYNC = "alerts.sync"  # AlertSync: the alerts the analytics hold raised, per table partition
ALL_TOPICS = (RAW, CLEAN, DEADLETTER, REGISTRY, HOURLY, ALERTS, ALERT_SYNC)
COMPACTED = frozenset({REGISTRY})


async def ensure_topics(
    settings: CommonSettings, names: tuple[str, ...] = ALL_TOPICS, changelogs: tuple[str, ...] = ()
) -> None:
    """Create the given logical topics, and compacted ``changelogs`` (full names), if missing.

    ``changelogs`` are the Faust tables' changelog topics (``<app id>-<table>-changelog``),
    which must have the partition count of the topics the tables are keyed like.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                settings.topic(n),
                settings.topic_partitions,
                1,
                topic_configs={"cleanup.policy": "compact"} if n in COMPACTED else None,
            )
            for n in names
            if settings.topic(n) not in existing
        ]
        wanted += [
            NewTopic(name, settings.topic_partitions, 1, topic_configs={"cleanup.policy": "compact"})
            for name in changelogs
            if name not in existing
        ]
        if not wanted:
            return
        try:
            await admin.create_topics(wanted)
        except TopicAlreadyExistsError:
            logger.info("topics already created by another process")
        logger.info("created topics %s", ",".join(t.name for t in wanted))
    finally:
        await admin.close()
