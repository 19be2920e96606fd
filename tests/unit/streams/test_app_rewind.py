"""After a rebalance Faust seeks every partition back to its committed offset, dropping what it
fetched while its flow was suspended; a partition with no commit must then go back to its
beginning (auto_offset_reset "earliest"), or the dropped records are never analysed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiokafka
import pytest
from faust.types import TP

from stationflow import topics
from streams.app import create_app
from streams.settings import StreamsSettings


def _app(tmp_path: Path) -> tuple[Any, StreamsSettings]:
    settings = StreamsSettings(
        state_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:1",  # never contacted: the consumer is built, not started
        streams_registry=False,
    )
    app = create_app(settings)
    app.finalize()
    return app, settings


def _seeking(
    monkeypatch: pytest.MonkeyPatch,
    consumer: Any,
    committed: dict[TP, int | None],
    seek_to_beginning: Callable[..., Awaitable[None]],
) -> None:
    """The consumer's thread answers ``committed`` and seeks with ``seek_to_beginning``."""

    async def seek_to_committed() -> dict[TP, int | None]:
        return committed

    monkeypatch.setattr(consumer._thread, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer._thread, "seek_to_beginning", seek_to_beginning)
    monkeypatch.setattr(consumer, "assignment", lambda: set(committed))


async def test_partitions_without_a_committed_offset_are_read_from_their_beginning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, settings = _app(tmp_path)
    consumer = app.consumer
    clean = settings.topic(topics.CLEAN)
    changelog = sorted(app.tables.changelog_topics)[0]
    committed = {TP(clean, 0): 5, TP(clean, 1): None, TP(clean, 2): 0, TP(changelog, 0): None}
    seeks: list[Any] = []

    async def seek_to_beginning(*tps: Any) -> None:
        seeks.extend(tps)

    _seeking(monkeypatch, consumer, committed, seek_to_beginning)
    await consumer.perform_seek()
    # committed at 5: Faust's own seek; none or 0: the beginning; the changelog: table recovery's
    assert sorted((tp.topic, tp.partition) for tp in seeks) == [(clean, 1), (clean, 2)]
    assert all(isinstance(tp, aiokafka.TopicPartition) for tp in seeks)
    assert consumer._read_offset[TP(clean, 0)] == 5


async def test_a_failed_rewind_is_logged_and_does_not_stop_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, settings = _app(tmp_path)
    consumer = app.consumer
    clean = TP(settings.topic(topics.CLEAN), 3)

    async def seek_to_beginning(*_tps: Any) -> None:
        raise aiokafka.errors.IllegalStateError("partition not assigned")

    _seeking(monkeypatch, consumer, {clean: None}, seek_to_beginning)
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        await consumer.perform_seek()
    assert "seek to the beginning failed" in caplog.text and f"{clean.topic}:3" in caplog.text
