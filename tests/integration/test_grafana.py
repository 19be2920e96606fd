"""Every Grafana panel's InfluxQL runs on a real InfluxDB holding what the pipeline writes."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulator.fleet import default_fleet, readings
from stationflow.contracts import Reading, ReadingBatch
from stationflow.stack.components import Component, influx_query, influx_write
from streams.lineprotocol import batch_lines

DASHBOARDS = sorted((Path(__file__).parents[2] / "grafana" / "dashboards").glob("*.json"))


def _targets() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{path.stem}:{panel['title']}", target["query"]))
    return out


@pytest.fixture(scope="module")
def fleet_db(influxd: Component) -> str:
    """Two hours of the simulated fleet, written as the stream worker writes it."""
    db = "grafana_panels"
    influx_query(influxd.url, db, f'CREATE DATABASE "{db}"')
    rng = random.Random(7)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    lines: list[str] = []
    for spec in default_fleet():
        for minute in range(0, 120, 5):
            t = end - timedelta(minutes=minute)
            batch = ReadingBatch(
                device_id=spec.device_id,
                received_at=t,
                source="test",
                readings=[Reading.model_validate(r) for r in readings(spec, t, rng)],
            )
            lines.extend(batch_lines(batch))
    influx_write(influxd.url, db, "\n".join(lines))
    return db


def test_there_are_dashboards() -> None:
    assert DASHBOARDS and _targets()


@pytest.mark.parametrize(("panel", "query"), _targets(), ids=[p for p, _ in _targets()])
def test_panel_query_runs_and_returns_data(influxd: Component, fleet_db: str, panel: str, query: str) -> None:
    q = query.replace("$timeFilter", "time > now() - 3h").replace("$__interval", "5m")
    assert not re.search(r"\$\w+", q), f"unsubstituted macro in {panel}"
    series = influx_query(influxd.url, fleet_db, q)
    values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
    assert values, f"{panel} returned no data for the simulated fleet"
