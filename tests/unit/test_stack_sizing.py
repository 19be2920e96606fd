"""How many stream workers the local stack runs, and how `up` looks after several."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stationflow.stack import sizing
from stationflow.stack.pipeline import Pipeline, service_name
from stationflow.stack.sizing import default_workers
from stationflow.stack.up import restart_exited, worker_metrics


@pytest.mark.parametrize(("cores", "partitions", "expected"), [(1, 4, 1), (2, 4, 2), (8, 4, 4), (3, 2, 2)])
def test_one_worker_per_core_and_never_more_than_partitions(
    monkeypatch: pytest.MonkeyPatch, cores: int, partitions: int, expected: int
) -> None:
    monkeypatch.setattr(sizing.os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    assert default_workers(partitions) == expected


def test_the_partitions_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sizing.os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    monkeypatch.setenv("STATIONFLOW_TOPIC_PARTITIONS", "3")
    assert default_workers() == 3


def test_the_banner_lists_every_workers_metrics(tmp_path: Path) -> None:
    p = Pipeline(
        tmp_path, metrics_ports={"ingest": 9461, "streams": 9462, "streams-2": 40001, "tcp_metrics": 9464}
    )
    assert worker_metrics(p) == "http://127.0.0.1:9462/metrics, http://127.0.0.1:40001/metrics (2 workers)"
    one = Pipeline(tmp_path, metrics_ports={"streams": 9462})
    assert worker_metrics(one) == "http://127.0.0.1:9462/metrics (worker)"


@dataclass
class _Proc:
    running: bool
    returncode: int | None = None


@dataclass
class _Stack:
    """The part of a Pipeline that `restart_exited` uses: its services, and start()."""

    services: dict[str, Any]
    started: list[tuple[str, int]] = field(default_factory=list)

    def start(self, kind: str, *, instance: int = 1, wait: bool = True) -> None:
        assert wait is False
        self.started.append((kind, instance))
        self.services[service_name(kind, instance)] = _Proc(running=True)


def test_an_exited_second_worker_is_started_again_as_the_second() -> None:
    stack = _Stack(
        {
            "streams": _Proc(running=True),
            "streams-2": _Proc(running=False, returncode=-9),
            "ingest": _Proc(running=False, returncode=1),
            "devices": _Proc(running=True),
        }
    )
    assert restart_exited(stack) == 2  # type: ignore[arg-type]
    assert sorted(stack.started) == [("ingest", 1), ("streams", 2)]
    assert restart_exited(stack) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "instance"), [("streams", 1), ("streams", 2), ("ingest", 3), ("alerts", 1)])
def test_a_service_name_reads_back_as_its_kind_and_instance(kind: str, instance: int) -> None:
    from stationflow.stack.pipeline import kind_and_instance, kind_of

    assert kind_and_instance(service_name(kind, instance)) == (kind, instance)
    assert kind_of(service_name(kind, instance)) == kind
    assert kind_and_instance("tansu") == ("tansu", 1)
