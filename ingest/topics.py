"""MQTT topic layout: ``devices/<device_id>/readings``, parsed by one compiled regex."""

from __future__ import annotations

import re

from ingest.errors import RejectedMessage
from stationflow.contracts import DEVICE_ID_PATTERN

__all__ = ["READINGS_FILTER", "device_id_from_topic", "shared_filter"]

READINGS_FILTER = "devices/+/readings"
_TOPIC = re.compile(r"^devices/(?P<device_id>[^/]*)/readings$")
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


def device_id_from_topic(topic: str) -> str:
    """Return the device id of a readings topic, or raise ``RejectedMessage('bad_topic')``."""
    match = _TOPIC.match(topic)
    if match is None:
        raise RejectedMessage("bad_topic", f"topic {topic!r} is not devices/<device_id>/readings")
    device_id = match["device_id"]
    if not _DEVICE_ID.match(device_id):
        raise RejectedMessage(
            "bad_device_id",
            f"device id {device_id!r} in the topic must be 1-128 characters of letters, digits "
            "and _ . : - and start with a letter or digit",
        )
    return device_id


def shared_filter(group: str, topic_filter: str = READINGS_FILTER) -> str:
    """MQTT v5 shared subscription filter, so several collectors split the load.

    An empty ``group`` gives the plain filter: one collector, whose subscription Mosquitto
    2.0.11 keeps across its own restart (it does not persist shared subscriptions).
    """
    return f"$share/{group}/{topic_filter}" if group else topic_filter
