"""An analytics-only worker waits for its registry view before analysing a device it does not know.

The raw stage let the readings through with the device's record, so the record is on the
registry topic; the analytics' own view may not have read it yet. Seen in the split-worker
flood test: a gauge registered just before it published was analysed without its station
(no warning level to cross), about one run in two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from stationflow.contracts import DeviceRecord
from stationflow.registryview import RegistryView
from streams import analyticsworker
from streams.analyticsworker import CATCH_UP_EVERY_S, AnalyticsAgents


def _record(device_id: str) -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        device_type="level-gauge",
        domain="hydro",
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


class _Follower:
    """Stands in for the registry topic: a catch-up applies what was published to it."""

    def __init__(self, view: RegistryView, *, answers: bool = True) -> None:
        self.view = view
        self.pending: list[DeviceRecord] = []
        self.catch_ups = 0
        self.answers = answers
        view._catch_up = self.catch_up

    async def catch_up(self, timeout_s: float) -> bool:
        self.catch_ups += 1
        if not self.answers:
            return False
        for record in self.pending:
            self.view.apply(record.key(), record.model_dump_json().encode())
        self.pending.clear()
        return True


def _agents(view: RegistryView) -> Any:
    return SimpleNamespace(registry=view, unknown_after_catch_up={})


async def test_a_device_registered_a_moment_ago_is_known_before_its_batch_is_analysed() -> None:
    view = RegistryView()
    follower = _Follower(view)
    view.apply(b"lvl-1", _record("lvl-1").model_dump_json().encode())
    follower.pending.append(_record("lvl-noisy"))  # on the topic, not yet in the view
    await AnalyticsAgents.know_devices(_agents(view), ["lvl-1", "lvl-noisy"])
    assert follower.catch_ups == 1
    assert view.get("lvl-noisy") is not None


async def test_known_devices_cost_no_catch_up() -> None:
    view = RegistryView()
    follower = _Follower(view)
    view.apply(b"lvl-1", _record("lvl-1").model_dump_json().encode())
    await AnalyticsAgents.know_devices(_agents(view), ["lvl-1"])
    assert follower.catch_ups == 0


async def test_a_deleted_device_waits_again_only_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    view = RegistryView()
    follower = _Follower(view)
    agents = _agents(view)
    clock = [1000.0]
    monkeypatch.setattr(analyticsworker.time, "monotonic", lambda: clock[0])
    await AnalyticsAgents.know_devices(agents, ["gone"])
    await AnalyticsAgents.know_devices(agents, ["gone"])  # the next batch, at once
    assert follower.catch_ups == 1
    clock[0] += CATCH_UP_EVERY_S
    await AnalyticsAgents.know_devices(agents, ["gone"])
    assert follower.catch_ups == 2


async def test_a_view_that_does_not_catch_up_is_logged_and_the_batch_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = RegistryView()
    _Follower(view, answers=False)
    await AnalyticsAgents.know_devices(_agents(view), ["lvl-new"])
    assert "registry view not caught up" in caplog.text and "lvl-new" in caplog.text


async def test_without_a_registry_nothing_waits() -> None:
    await AnalyticsAgents.know_devices(SimpleNamespace(registry=None, unknown_after_catch_up={}), ["x"])
