"""The duty console's station board: every station's latest state (from InfluxDB and the
registry, by ``stationview.state.station_board``) with its open alerts (from the alert database),
worst first.

The ranking is a pure function (:func:`badness`), so the order is table-tested without servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alerts import metrics
from alerts.models import Alert
from stationview.state import StationState

__all__ = [
    "BoardRow",
    "OpenAlerts",
    "StationBoard",
    "StationBoardOut",
    "badness",
    "board_rows",
    "open_alerts_by_station",
]

SEVERITY_BADNESS = {"critical": 5, "major": 4, "moderate": 3, "minor": 2, "info": 1}
LEVEL_BADNESS = {"above_guaranteed": 5, "above_warning": 4, "approaching": 2}
OFFLINE_BADNESS = 3


class BoardRow(StationState):
    """One station on the board: its latest state and its open alerts."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    open_alerts: int = Field(default=0, description="open or acknowledged alerts at this station")
    worst_severity: str | None = Field(default=None, description="most severe of those alerts")
    badness: int = Field(default=0, description="0 (all well) … 5: the board's sort key, worst first")


class StationBoardOut(BaseModel):
    """The board: rows worst first, and how often the console should refresh it."""

    data: list[BoardRow]
    count: int
    generated_at: datetime
    refresh_s: float


@dataclass(frozen=True, slots=True)
class OpenAlerts:
    """The open (or acknowledged) alerts of one station."""

    count: int
    worst: str | None


def open_alerts_by_station(session: Session) -> dict[str, OpenAlerts]:
    """station id → count and worst severity of its unresolved alerts."""
    rows = session.execute(
        select(Alert.station_id, Alert.severity, func.count())
        .where(Alert.status != "resolved", Alert.station_id.is_not(None))
        .group_by(Alert.station_id, Alert.severity)
    ).all()
    out: dict[str, OpenAlerts] = {}
    for station, severity, n in rows:
        if station is None:
            continue
        seen = out.get(station, OpenAlerts(0, None))
        worse = _rank(severity) > _rank(seen.worst)
        out[station] = OpenAlerts(seen.count + n, severity if worse else seen.worst)
    return out


def _rank(severity: str | None) -> int:
    return SEVERITY_BADNESS.get(severity or "", 0)


def badness(row: BoardRow) -> int:
    """How bad a station looks, 0 (all well) to 5: the worst of its alerts, level, AQI, water
    class against target and being offline."""
    scores = [
        _rank(row.worst_severity),
        LEVEL_BADNESS.get(row.level_state or "", 0),
        max(0, (row.aqi_level or 0) - 1),  # level 1 (excellent) 0 … level 6 (severe) 5
        OFFLINE_BADNESS if row.offline else 0,
    ]
    if row.meets_target is False:
        scores.append(4 if (row.water_class or 0) >= 6 else 3)
    return max(scores)


def _matches(row: BoardRow, filters: Mapping[str, str | None]) -> bool:
    return all(value is None or getattr(row, name) == value for name, value in filters.items())


def board_rows(
    states: Iterable[Any],
    alerts: Mapping[str, OpenAlerts],
    *,
    region: str | None = None,
    basin: str | None = None,
    kind: str | None = None,
) -> list[BoardRow]:
    """The station states (``StationState`` or objects/dicts with its fields) merged with their open
    alerts, filtered by region/basin/kind, worst first (then most alerts, then station id)."""
    rows: list[BoardRow] = []
    filters = {"region": region, "basin": basin, "kind": kind}
    for state in states:
        row = BoardRow.model_validate(state)
        if not _matches(row, filters):
            continue
        found = alerts.get(row.station_id, OpenAlerts(0, None))
        row = row.model_copy(update={"open_alerts": found.count, "worst_severity": found.worst})
        rows.append(row.model_copy(update={"badness": badness(row)}))
    rows.sort(key=lambda r: (-r.badness, -r.open_alerts, r.station_id))
    return rows


StatesLoader = Callable[[datetime], Awaitable[Iterable[Any]]]


class StationBoard:
    """Builds the board on request: station states from ``load_states(now)`` (InfluxDB and the
    registry view) and open alerts from the alert database (on a worker thread)."""

    def __init__(
        self, load_states: StatesLoader, sessions: sessionmaker[Session], *, refresh_s: float
    ) -> None:
        self._load_states = load_states
        self._sessions = sessions
        self.refresh_s = refresh_s

    def _open_alerts(self) -> dict[str, OpenAlerts]:
        with self._sessions() as session:
            return open_alerts_by_station(session)

    async def snapshot(
        self, *, region: str | None = None, basin: str | None = None, kind: str | None = None
    ) -> StationBoardOut:
        """The board now, filtered, worst first."""
        now = datetime.now(UTC)
        with metrics.BOARD_SECONDS.time():
            states, alerts = await asyncio.gather(
                self._load_states(now), asyncio.to_thread(self._open_alerts)
            )
        rows = board_rows(states, alerts, region=region, basin=basin, kind=kind)
        return StationBoardOut(data=rows, count=len(rows), generated_at=now, refresh_s=self.refresh_s)
