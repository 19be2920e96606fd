"""The station board: how bad a station looks, the order and filters, and the open alerts per
station counted in the real alert database (SQLite, then PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.board import BoardRow, OpenAlerts, badness, board_rows, open_alerts_by_station
from alerts.lifecycle import apply_event, resolve
from alerts.models import Alert
from stationflow.contracts import AlertState, Severity
from tests.unit.alerts.conftest import CONSOLE, T0, event


def state(station_id: str, **fields: Any) -> dict[str, Any]:
    """A station state as ``stationview.state.station_board`` gives it (only the fields named)."""
    base = {"station_id": station_id, "name": station_id, "kind": "air", "region": "445100", "offline": False}
    return base | fields


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 0),
        ({"aqi_level": 1}, 0),
        ({"aqi_level": 2}, 1),
        ({"aqi_level": 6}, 5),
        ({"offline": True}, 3),
        ({"offline": True, "aqi_level": 6}, 5),
        ({"level_state": "normal"}, 0),
        ({"level_state": "approaching"}, 2),
        ({"level_state": "above_warning"}, 4),
        ({"level_state": "above_guaranteed"}, 5),
        ({"meets_target": True, "water_class": 2}, 0),
        ({"meets_target": False, "water_class": 4}, 3),
        ({"meets_target": False, "water_class": 6}, 4),
        ({"meets_target": None, "water_class": 6}, 0),  # no target: nothing to miss
        ({"worst_severity": "info"}, 1),
        ({"worst_severity": "critical"}, 5),
        ({"worst_severity": "minor", "aqi_level": 3}, 2),
    ],
)
def test_badness_is_the_worst_of_alerts_level_aqi_water_and_offline(
    fields: dict[str, Any], expected: int
) -> None:
    assert badness(BoardRow.model_validate(state("s", **fields))) == expected


def test_rows_are_worst_first_then_by_open_alerts_then_id() -> None:
    states = [
        state("air-ok", aqi_level=1),
        state("gauge-high", kind="gauge", level_state="above_warning", margin_m=-0.4),
        state("air-dead", offline=True),
        state("air-bad", aqi_level=5),
        state("air-also-ok", aqi_level=1),
    ]
    alerts = {"air-also-ok": OpenAlerts(2, "info"), "air-dead": OpenAlerts(1, "major")}
    rows = board_rows(states, alerts)
    assert [r.station_id for r in rows] == ["air-dead", "air-bad", "gauge-high", "air-also-ok", "air-ok"]
    assert [r.badness for r in rows] == [4, 4, 4, 1, 0]
    dead = rows[0]
    assert (dead.open_alerts, dead.worst_severity, dead.offline) == (1, "major", True)
    assert rows[-1].open_alerts == 0 and rows[-1].worst_severity is None


def test_filters_by_region_basin_and_kind() -> None:
    states = [
        state("a", region="445100", basin="Han"),
        state("b", region="445100", basin="Rong", kind="gauge"),
        state("c", region="440300", basin="Han", kind="gauge"),
    ]
    ids = lambda **f: [r.station_id for r in board_rows(states, {}, **f)]  # noqa: E731
    assert ids() == ["a", "b", "c"]
    assert ids(region="445100") == ["a", "b"]
    assert ids(basin="Han") == ["a", "c"]
    assert ids(kind="gauge") == ["b", "c"]
    assert ids(region="445100", kind="gauge") == ["b"]
    assert ids(region="nowhere") == []


def test_a_dataclass_state_is_taken_by_its_attributes() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class StationState:
        station_id: str
        name: str
        kind: str
        offline: bool
        aqi: int | None

    (row,) = board_rows([StationState("air-1", "Air one", "air", True, 87)], {})
    assert (row.station_id, row.name, row.offline, row.aqi, row.badness) == (
        "air-1",
        "Air one",
        True,
        87.0,
        3,
    )


def test_open_alerts_are_counted_per_station_with_the_worst_severity(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        for alert_id, station, severity in [
            ("a:1", "gauge-1", Severity.MINOR),
            ("a:2", "gauge-1", Severity.CRITICAL),
            ("a:3", "gauge-1", Severity.MODERATE),
            ("a:4", "gauge-2", Severity.INFO),
            ("a:5", "gauge-3", Severity.MAJOR),
        ]:
            apply_event(
                s, event(alert_id=alert_id, station=station, severity=severity), now=T0, console_url=CONSOLE
            )
        s.commit()
        # one of gauge-3's is resolved by hand, gauge-2's condition clears: neither counts any more
        gauge3 = s.scalars(select(Alert).where(Alert.station_id == "gauge-3")).one()
        resolve(
            s, gauge3, by="officer", comment_text=None, now=T0 + timedelta(minutes=1), console_url=CONSOLE
        )
        cleared = event(AlertState.CLEARED, seq=2, alert_id="a:4", station="gauge-2", at=timedelta(minutes=2))
        apply_event(s, cleared, now=T0 + timedelta(minutes=2), console_url=CONSOLE)
        s.commit()
        assert open_alerts_by_station(s) == {"gauge-1": OpenAlerts(3, "critical")}
