"""Every station's latest state at a glance, for the duty console's station board (alerts/).

``station_board`` joins the registry's stations with their newest readings, hourly AQI, water
class and river level from InfluxDB. The join (:func:`board_rows`) is pure; the reads are in
:mod:`stationview.queries`. Unlike the public API the board may include hidden stations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from stationflow.registryview import RegistryView
from stationview import items, queries
from stationview.influxql import InfluxQL
from stationview.stations import StationEntry, stations_from_records

__all__ = [
    "OFFLINE_FLOOR_S",
    "OFFLINE_INTERVALS",
    "StationState",
    "board_rows",
    "is_offline",
    "station_board",
]

OFFLINE_INTERVALS = 3  # offline after 3× the devices' expected interval without a reading …
OFFLINE_MIN_S = 60.0  # … but never sooner than this (1-5 s intervals would flap with pipeline latency) …
OFFLINE_FLOOR_S = 600.0  # … or 10 min when no interval is registered
Row = dict[str, object]


class StationState(BaseModel):
    """One station's latest state (JSON-able; times are aware UTC datetimes)."""

    model_config = ConfigDict(frozen=True)

    station_id: str
    name: str
    kind: str
    region: str | None = None
    basin: str | None = None
    public: bool = False
    devices: list[str] = Field(default_factory=list)
    last_seen: datetime | None = None
    offline: bool = True
    aqi: int | None = None
    aqi_level: int | None = None
    aqi_color: str | None = None
    primary: list[str] = Field(default_factory=list)
    water_class: int | None = None
    water_label: str | None = None
    water_color: str | None = Field(default=None, description="the class's GB 3838 quality colour")
    target: int | None = None
    meets_target: bool | None = None
    level_m: float | None = None
    warning_level_m: float | None = None
    margin_m: float | None = Field(default=None, description="warning − level; negative = above warning")
    level_state: str | None = None
    level_color: str | None = Field(default=None, description="the level state's flood-signal colour")


def is_offline(last_seen_s: float | None, interval_s: int | None, now_s: float) -> bool:
    """No reading for more than 3× the expected interval, at least 60 s (10 min without an
    interval); never seen = offline."""
    if last_seen_s is None:
        return True
    limit = max(OFFLINE_MIN_S, OFFLINE_INTERVALS * interval_s) if interval_s else OFFLINE_FLOOR_S
    return now_s - last_seen_s > limit


def board_rows(
    stations: Mapping[str, StationEntry],
    *,
    seen: Mapping[str, float],
    aqi: Mapping[str, Mapping[str, object]],
    water: Mapping[str, Mapping[str, object]],
    levels: Mapping[str, Mapping[str, object]],
    now: datetime,
) -> list[StationState]:
    """The board's rows, ordered by station id (pure)."""
    out: list[StationState] = []
    for sid in sorted(stations):
        st = stations[sid]
        last = seen.get(sid)
        fields: dict[str, object] = {}
        if (row := aqi.get(sid)) is not None and (a := items.aqi_item(st, row)) is not None:
            fields |= {
                "aqi": a["aqi"],
                "aqi_level": a["level"],
                "aqi_color": a["color"],
                "primary": a["primary"],
            }
        if (row := water.get(sid)) is not None and (w := items.water_item(st, row)) is not None:
            fields |= {
                "water_class": w["class"],
                "water_label": w["label"],
                "water_color": w["color"],
                "meets_target": w["meets_target"],
            }
        if (row := levels.get(sid)) is not None and (lv := items.level_item(st, row)) is not None:
            fields |= {
                "level_m": lv["level_m"],
                "margin_m": lv["margin_m"],
                "level_state": lv["state"],
                "level_color": lv["color"],
            }
        out.append(
            StationState.model_validate(
                {
                    "station_id": sid,
                    "name": st.name,
                    "kind": st.kind,
                    "region": st.region,
                    "basin": st.basin,
                    "public": st.public,
                    "devices": list(st.devices),
                    "last_seen": None if last is None else datetime.fromtimestamp(last, now.tzinfo),
                    "offline": is_offline(last, st.expected_interval_s, now.timestamp()),
                    "target": st.target,
                    "warning_level_m": st.warning_level_m,
                    **fields,
                }
            )
        )
    return out


async def station_board(
    influx: InfluxQL, view: RegistryView, *, include_hidden: bool, now: datetime
) -> list[StationState]:
    """Every registered station (public only unless ``include_hidden``) with its latest state.

    ``now`` must be timezone-aware (it decides ``offline``). Raises ``InfluxQLError`` when
    InfluxDB cannot be read.
    """
    stations = stations_from_records(view.records(), include_coldchain=include_hidden)
    if not include_hidden:
        stations = {k: v for k, v in stations.items() if v.public}
    measurements = sorted({d for st in stations.values() for d in st.domains})
    seen, aqi, water, levels = await asyncio.gather(
        queries.last_seen(influx, measurements),
        queries.latest_aqi(influx),
        queries.latest_water(influx),
        queries.latest_levels(influx),
    )
    return board_rows(stations, seen=seen, aqi=aqi, water=water, levels=levels, now=now)
