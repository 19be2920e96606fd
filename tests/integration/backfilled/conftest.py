"""One ``stationflow up`` with its default 48 h backfill, shared by every test in this folder.

The Show list of issue 11 is checked against this one running stack: the first-minutes
checks, every dashboard panel query, the open-data API, the public page in Chromium and the
console's station board. ``stack.started`` is the monotonic time ``up`` was launched, so a
test can hold the stack to "within two minutes of start".
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stationflow.stack.ports import free_ports
from tests.integration.pipeline_utils import wait_for

FIRST_MINUTES_S = 120.0  # issue 11: everything of the backfill is there within two minutes of start


@dataclass(frozen=True)
class BackfilledStack:
    """Where the backfilled ``stationflow up`` listens, and how to read its log."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    log: Path
    started: float  # time.monotonic() when `up` was launched
    mqtt_port: int
    kafka_port: int
    influx_port: int
    registry_port: int
    alerts_port: int
    opendata_port: int
    ingest_metrics_port: int
    streams_metrics_port: int
    tcp_metrics_port: int
    hj212_port: int
    sl651_port: int

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.influx_port}"

    influx_db: str = "stationflow"

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

    @property
    def alerts_url(self) -> str:
        return f"http://127.0.0.1:{self.alerts_port}"

    @property
    def opendata_url(self) -> str:
        return f"http://127.0.0.1:{self.opendata_port}"

    @property
    def registry_key(self) -> str:
        return (self.state_dir / "registry-admin-key").read_text().strip()

    @property
    def alerts_key(self) -> str:
        return (self.state_dir / "alerts-admin-key").read_text().strip()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def remaining(self) -> float:
        """Seconds left of the two minutes since start (never below 1)."""
        return max(1.0, FIRST_MINUTES_S - (time.monotonic() - self.started))


@pytest.fixture(scope="package")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackfilledStack]:
    """``stationflow up`` on free ports with the default 48 h backfill; stopped with Ctrl-C after."""
    root = tmp_path_factory.mktemp("backfilled")
    ports = free_ports(11)
    (mqtt, kafka, influx, registry, alerts, opendata, m_ingest, m_streams, m_tcp, hj212, sl651) = ports
    log = root / "up.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stationflow.cli", "up", "--state-dir", str(root / "state"),
             "--mqtt-port", str(mqtt), "--kafka-port", str(kafka), "--influx-port", str(influx),
             "--registry-port", str(registry), "--alerts-port", str(alerts),
             "--opendata-port", str(opendata),
             "--ingest-metrics-port", str(m_ingest), "--streams-metrics-port", str(m_streams),
             "--tcp-metrics-port", str(m_tcp), "--hj212-port", str(hj212), "--sl651-port", str(sl651),
             "--backfill", "48h", "--interval", "5"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    stack = BackfilledStack(
        proc, root / "state", log, started, mqtt, kafka, influx, registry, alerts, opendata,
        m_ingest, m_streams, m_tcp, hj212, sl651,
    )  # fmt: skip
    try:
        running = wait_for(
            lambda: "stationflow is running" in stack.output() or proc.poll() is not None,
            timeout=FIRST_MINUTES_S,
            interval=0.5,
        )
        assert running and proc.poll() is None, f"`stationflow up` did not start:\n{stack.output()[-4000:]}"
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
