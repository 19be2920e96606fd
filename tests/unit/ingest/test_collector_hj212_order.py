"""HJ 212 on MQTT: a device's frames reach their bundle in the order they arrived, whatever
``prepare`` waited for (the registry, a catch-up, a password check), and other devices do not
wait for that device. No broker needed: the collector's own handler, tasks as gmqtt starts them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from ingest.collector import Collector
from ingest.settings import IngestSettings


def _collector(monkeypatch: pytest.MonkeyPatch) -> tuple[Collector, list[bytes]]:
    """A collector whose raw records are recorded (in the order they were queued) and delivered."""
    collector = Collector(IngestSettings(), AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))
    queued: list[bytes] = []

    def add(key: bytes, value: bytes) -> asyncio.Future[None]:
        queued.append(value)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    monkeypatch.setattr(collector.bundler, "add", add)
    monkeypatch.setattr(
        collector, "route", lambda topic, payload, _at: (collector.raw_topic, topic.encode(), payload)
    )
    return collector, queued


def _deliver(collector: Collector, topic: str, payload: bytes) -> asyncio.Task[Any]:
    """One message as gmqtt hands it over: a task of its own, started in arrival order."""
    return asyncio.create_task(collector._on_message(collector.client, topic, payload, 1, {}))


async def test_a_frame_that_need_not_wait_does_not_pass_the_earlier_ones_still_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector, queued = _collector(monkeypatch)
    known = asyncio.Event()  # the device's record reached the collector's registry view

    async def prepare(device_id: str, payload: bytes) -> None:
        if not known.is_set():  # as Hj212Registry.prepare: not found yet, so catch up first
            await known.wait()
            await asyncio.sleep(0.01)  # the catch-up ends a little after the record arrived

    monkeypatch.setattr(collector.hj212, "prepare", prepare)
    topic = "devices/air-dtu-001/hj212"
    first = [_deliver(collector, topic, f"minute {i}".encode()) for i in range(5)]
    await asyncio.sleep(0.01)
    known.set()
    await asyncio.sleep(0)
    later = [_deliver(collector, topic, f"minute {i}".encode()) for i in range(5, 10)]
    await asyncio.gather(*first, *later)

    assert queued == [f"minute {i}".encode() for i in range(10)]
    assert not collector.hj212._turns  # nobody waits: the device's turn is dropped


async def test_a_device_waiting_for_its_record_does_not_hold_up_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector, queued = _collector(monkeypatch)
    release = asyncio.Event()

    async def prepare(device_id: str, payload: bytes) -> None:
        if device_id == "slow-dtu":
            await release.wait()

    monkeypatch.setattr(collector.hj212, "prepare", prepare)
    slow = _deliver(collector, "devices/slow-dtu/hj212", b"slow")
    fast = [_deliver(collector, "devices/fast-dtu/hj212", f"fast {i}".encode()) for i in range(3)]
    json = _deliver(collector, "devices/river-001/readings", b"json")
    await asyncio.gather(*fast, json)
    assert queued == [b"fast 0", b"fast 1", b"fast 2", b"json"]
    assert not slow.done()
    release.set()
    await slow
    assert queued[-1] == b"slow"


async def test_a_frame_whose_prepare_fails_still_gives_the_next_its_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector, queued = _collector(monkeypatch)

    async def prepare(device_id: str, payload: bytes) -> None:
        await asyncio.sleep(0)
        if payload == b"broken":
            raise RuntimeError("registry lookup failed")  # logged; routing still decides

    monkeypatch.setattr(collector.hj212, "prepare", prepare)
    topic = "devices/air-dtu-001/hj212"
    tasks = [_deliver(collector, topic, p) for p in (b"a", b"broken", b"c")]
    await asyncio.gather(*tasks)
    assert queued == [b"a", b"broken", b"c"]
    assert not collector.hj212._turns
