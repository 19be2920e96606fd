"""MQTT topic layout: ``devices/<device_id>/<subtopic>``, parsed by one compiled regex.

The collector subscribes to every device subtopic (``devices/#``); the subtopic says what the
payload is (``SUBTOPICS``). Anything else is dead-lettered as ``unknown_subtopic`` by the router,
so a device publishing to a wrong topic sees why in the dead-letter topic instead of losing
its messages.
"""

from __future__ import annotations

import re

from ingest.errors import RejectedMessage
from stationflow.contracts import DEVICE_ID_PATTERN
from stationflow.wire import strict_end

__all__ = ["DEVICE_FILTER", "SUBTOPICS", "device_id_from_topic", "parse_topic", "shared_filter"]

# Subtopic → what the payload is: the native JSON, a SenML pack, one HJ 212 frame (DTU gateways).
SUBTOPICS: dict[str, str] = {
    "readings": "native stationflow JSON",
    "senml": "SenML JSON pack (RFC 8428)",
    "hj212": "one HJ 212 frame (data logger / DTU)",
}
DEVICE_FILTER = "devices/#"
_TOPIC = re.compile(r"^devices/(?P<device_id>[^/]*)/(?P<subtopic>.*)$", re.DOTALL)
_DEVICE_ID = re.compile(strict_end(DEVICE_ID_PATTERN))


def parse_topic(topic: str) -> tuple[str, str]:
    """``(device_id, subtopic)`` of a ``devices/<device_id>/<subtopic>`` topic.

    Raises ``RejectedMessage('bad_topic')`` for any other topic and ``'bad_device_id'`` for an
    invalid id. The subtopic is returned as is (it may be empty or have several levels).
    """
    match = _TOPIC.match(topic)
    if match is None:
        raise RejectedMessage(
            "bad_topic", f"topic {topic[:200]!r} is not devices/<device_id>/<{'|'.join(SUBTOPICS)}>"
        )
    device_id = match["device_id"]
    if not _DEVICE_ID.match(device_id):
        raise RejectedMessage(
            "bad_device_id",
            f"device id {device_id[:200]!r} in the topic must be 1-128 characters of letters, digits "
            "and _ . : - and start with a letter or digit",
        )
    return device_id, match["subtopic"]


def device_id_from_topic(topic: str) -> str:
    """The device id of a ``devices/<device_id>/…`` topic, or raise ``RejectedMessage``."""
    return parse_topic(topic)[0]


def shared_filter(group: str, topic_filter: str = DEVICE_FILTER) -> str:
    """MQTT v5 shared subscription filter, so several collectors split the load.

    An empty ``group`` gives the plain filter: one collector, whose subscription Mosquitto
    2.0.11 keeps across its own restart (it does not persist shared subscriptions).
    """
    return f"$share/{group}/{topic_filter}" if group else topic_filter
