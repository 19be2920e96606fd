"""After a rebalance Faust seeks every partition back to its committed offset, dropping what it
fetched while its flow was suspended; a partition with no commit must then go back to its
beginning (auto_offset_reset "earliest"), or the dropped records are never analysed."""

from __future__ import annotations

import logging
from pathlib import Path

import aiokafka
import pytest
from faust.types import TP

from stationflow import topics
from streams.app import create_app
from streams.settings import StreamsSettings


def _consumer(tmp_path: Path) -> tuple[object, StreamsSettings]:
    settings = StreamsSettings(
        state_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:1",  # never contacted: the consumer is built, not started
        streams_registry=False,
    )
    app = create_app(settings)
    app.finalize()
    return app, settings


async def test_partitions_without_a_committed_offset_are_read_from_their_beginning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, settings = _consumer(tmp_path)
    consumer = app.consumer  # type: ignore[attr-defined]
    clean = settings.topic(topics.CLEAN)
    changelog = sorted(app.tables.changelog_topics)[0]  # type: ignore[attr-defined]
    committed = {TP(clean, 0): 5, TP(clean, 1): None, TP(clean, 2): 0, TP(changelog, 0): None}
    seeks: list[object] = []

    async def seek_to_committed() -> dict[TP, int | None]:
        return committed

    async def seek_to_beginning(*tps: object) -> None:
        seeks.extend(tps)

    monkeypatch.setattr(consumer._thread, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer._thread, "seek_to_beginning", seek_to_beginning)
    monkeypatch.setattr(consumer, "assignment", lambda: set(committed))
    await consumer.perform_seek()
    # committed at 5: Faust's own seek; none or 0: the beginning; the changelog: table recovery's
    assert sorted((tp.topic, tp.partition) for tp in seeks) == [(clean, 1), (clean, 2)]  # type: ignore[attr-defined]
    assert all(isinstance(tp, aiokafka.TopicPartition) for tp in seeks)
    assert consumer._read_offset[TP(clean, 0)] == 5


async def test_a_failed_rewind_is_logged_and_does_not_stop_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, settings = _consumer(tmp_path)
    consumer = app.consumer  # type: ignore[attr-defined]
    clean = TP(settings.topic(topics.CLEAN), 3)

    async def seek_to_committed() -> dict[TP, int | None]:
        return {clean: None}

    async def seek_to_beginning(*_tps: object) -> None:
        raise aiokafka.errors.IllegalStateError("partition not assigned")

    monkeypatch.setattr(consumer._thread, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer._thread, "seek_to_beginning", seek_to_beginning)
    monkeypatch.setattr(consumer, "assignment", lambda: {clean})
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        await consumer.perform_seek()
    assert "seek to the beginning failed" in caplog.text and f"{clean.topic}:3" in caplog.text
