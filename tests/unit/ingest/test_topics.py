from __future__ import annotations

import pytest

from ingest.errors import RejectedMessage
from ingest.topics import DEVICE_FILTER, SUBTOPICS, device_id_from_topic, parse_topic, shared_filter


@pytest.mark.parametrize(
    ("topic", "device_id", "subtopic"),
    [
        pytest.param("devices/air-001/readings", "air-001", "readings", id="plain"),
        pytest.param("devices/HJ212:88888880000001/hj212", "HJ212:88888880000001", "hj212", id="colon"),
        pytest.param("devices/a.b_c/senml", "a.b_c", "senml", id="dots"),
        pytest.param("devices/a/b/readings", "a", "b/readings", id="nested-subtopic"),
        pytest.param("devices/a/", "a", "", id="empty-subtopic"),
        pytest.param("devices/a/status", "a", "status", id="other"),
    ],
)
def test_parse_topic(topic: str, device_id: str, subtopic: str) -> None:
    assert parse_topic(topic) == (device_id, subtopic)
    assert device_id_from_topic(topic) == device_id


@pytest.mark.parametrize(
    ("topic", "code"),
    [
        pytest.param("devices/air-001", "bad_topic", id="short"),
        pytest.param("devices", "bad_topic", id="root"),
        pytest.param("dev/air/readings", "bad_topic", id="prefix"),
        pytest.param("/devices/air/readings", "bad_topic", id="leading-slash"),
        pytest.param("devices/-x/readings", "bad_device_id", id="leading-dash"),
        pytest.param("devices//readings", "bad_device_id", id="empty-id"),
        pytest.param("devices/" + "a" * 129 + "/readings", "bad_device_id", id="too-long"),
    ],
)
def test_bad_topics(topic: str, code: str) -> None:
    with pytest.raises(RejectedMessage) as caught:
        parse_topic(topic)
    assert caught.value.code == code
    assert caught.value.reason


def test_the_supported_subtopics() -> None:
    assert list(SUBTOPICS) == ["readings", "senml", "hj212"]


def test_shared_filter_hears_every_device_subtopic() -> None:
    assert DEVICE_FILTER == "devices/#"
    assert shared_filter("g") == "$share/g/devices/#"


def test_empty_share_group_gives_a_plain_subscription() -> None:
    assert shared_filter("") == "devices/#"
    assert shared_filter("", "devices/+/x") == "devices/+/x"
