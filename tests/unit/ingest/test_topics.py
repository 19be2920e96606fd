from __future__ import annotations

import pytest

from ingest.errors import RejectedMessage
from ingest.topics import device_id_from_topic, shared_filter


@pytest.mark.parametrize(
    ("topic", "device_id"),
    [
        pytest.param("devices/air-001/readings", "air-001", id="plain"),
        pytest.param("devices/HJ212:88888880000001/readings", "HJ212:88888880000001", id="colon"),
        pytest.param("devices/a.b_c/readings", "a.b_c", id="dots"),
    ],
)
def test_device_id_from_topic(topic: str, device_id: str) -> None:
    assert device_id_from_topic(topic) == device_id


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param("devices/air-001", id="short"),
        pytest.param("devices/a/b/readings", id="nested"),
        pytest.param("dev/air/readings", id="prefix"),
        pytest.param("devices/-x/readings", id="leading-dash"),
        pytest.param("devices/" + "a" * 129 + "/readings", id="too-long"),
    ],
)
def test_bad_topics(topic: str) -> None:
    with pytest.raises(RejectedMessage):
        device_id_from_topic(topic)


def test_shared_filter() -> None:
    assert shared_filter("g") == "$share/g/devices/+/readings"


def test_empty_share_group_gives_a_plain_subscription() -> None:
    assert shared_filter("") == "devices/+/readings"
    assert shared_filter("", "devices/+/x") == "devices/+/x"
