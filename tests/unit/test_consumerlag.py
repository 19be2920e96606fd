"""The lag arithmetic and which groups the worker watches."""

from __future__ import annotations

from aiokafka import TopicPartition

from stationflow.consumerlag import lag
from streams.app import lag_watches
from streams.settings import StreamsSettings

A0, A1, A2 = (TopicPartition("a", p) for p in range(3))


def test_lag_is_end_minus_committed_never_negative_uncommitted_from_zero() -> None:
    assert lag({A0: 15, A1: 7, A2: 3}, {A0: 4, A1: 9}) == {A0: 11, A1: 0, A2: 3}
    assert lag({}, {A0: 1}) == {}


def test_worker_watches_its_raw_group_and_the_faust_group() -> None:
    settings = StreamsSettings(topic_prefix="p.", streams_app_id="w")
    (raw, faust) = lag_watches(settings)
    assert raw.group == "w.raw" and raw.topics == ("p.readings.raw",)
    assert faust.group == "w" and faust.topics == ("p.readings.clean", "p.analytics.hourly")
    assert len(lag_watches(StreamsSettings(analytics_enabled=False))) == 1
