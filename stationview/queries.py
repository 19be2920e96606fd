"""The InfluxQL reads behind the open-data API and the station board (I/O at the edge).

Every "latest" read is one statement per measurement, ``GROUP BY station ORDER BY time DESC
LIMIT 1`` over the last :data:`LATEST_WINDOW`, so the whole row of the newest point (with its
own time) comes back per station. InfluxQL only: the same on InfluxDB 1.x, 2.x and 3.x.
"""

# ruff: noqa: S608 - InfluxQL text: every value is quoted by quote_string / quote_ident, hours are ints
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stationview.influxql import InfluxQL, Series, quote_ident, quote_string

__all__ = [
    "LATEST_WINDOW",
    "aqi_reports",
    "by_station",
    "last_seen",
    "latest_aqi",
    "latest_levels",
    "latest_rainfall",
    "latest_water",
    "station_history",
]

LATEST_WINDOW = "7d"
Row = dict[str, Any]


def latest_statement(measurement: str, fields: str = "*", where: str = "") -> str:
    """The newest point per station of ``measurement`` within :data:`LATEST_WINDOW`."""
    extra = f" AND {where}" if where else ""
    return (
        f"SELECT {fields} FROM {quote_ident(measurement)} WHERE time > now() - {LATEST_WINDOW}{extra} "
        'GROUP BY "station" ORDER BY time DESC LIMIT 1'
    )


def by_station(series: Sequence[Series]) -> dict[str, Row]:
    """station tag → the first row of its series (pure)."""
    out: dict[str, Row] = {}
    for s in series:
        station = s.tags.get("station")
        if station and s.rows:
            out[station] = dict(s.rows[0])
    return out


async def latest_aqi(influx: InfluxQL) -> dict[str, Row]:
    """station → its newest hourly AQI row."""
    return by_station(await influx.query(latest_statement("aqi", where="\"report\" = 'hourly'")))


async def latest_water(influx: InfluxQL) -> dict[str, Row]:
    """station → its newest water-class row."""
    return by_station(await influx.query(latest_statement("water_quality")))


async def latest_rainfall(influx: InfluxQL) -> dict[str, Row]:
    """station → its newest rainfall-sums row."""
    return by_station(await influx.query(latest_statement("rainfall_sum")))


async def latest_levels(influx: InfluxQL) -> dict[str, Row]:
    """station → ``{time, level, rise}``: the newest level reading and the newest rise rate."""
    levels, rises = await influx.query_many(
        [
            latest_statement("hydro", '"level"'),
            latest_statement("level_trend", '"rise_per_h" AS "rise"'),
        ]
    )
    out = by_station(levels)
    for station, row in by_station(rises).items():
        if station in out:
            out[station]["rise"] = row.get("rise")
    return out


async def last_seen(influx: InfluxQL, measurements: Sequence[str]) -> dict[str, float]:
    """station → epoch seconds of its newest reading in any of the (raw) ``measurements``."""
    names = sorted(set(measurements))
    if not names:
        return {}
    results = await influx.query_many([latest_statement(m) for m in names])
    out: dict[str, float] = {}
    for series in results:
        for station, row in by_station(series).items():
            t = row.get("time")
            if isinstance(t, int | float):
                out[station] = max(out.get(station, t), t)
    return out


async def aqi_reports(influx: InfluxQL, station_id: str, *, report: str, hours: int) -> list[Row]:
    """The station's ``report`` (hourly / daily) AQI rows of the last ``hours`` hours, oldest first."""
    q = (
        f'SELECT * FROM "aqi" WHERE "station" = {quote_string(station_id)} AND "report" = '
        f"{quote_string(report)} AND time > now() - {int(hours)}h ORDER BY time ASC"
    )
    return [dict(r) for s in await influx.query(q) for r in s.rows]


async def station_history(
    influx: InfluxQL, station_id: str, *, hours: int
) -> tuple[dict[str, list[list[Any]]], list[Row]]:
    """The station's hourly values per metric (sums for rain) and water class, and its hourly AQI rows."""
    sid, span = quote_string(station_id), f"time > now() - {int(hours)}h"
    hourly, water_rows, aqi_rows = await influx.query_many(
        [
            f'SELECT "value" FROM "hourly" WHERE "station" = {sid} AND {span} GROUP BY "metric"',
            f'SELECT "class" FROM "water_quality" WHERE "station" = {sid} AND {span}',
            f'SELECT * FROM "aqi" WHERE "station" = {sid} AND "report" = \'hourly\' AND {span}',
        ]
    )
    series: dict[str, list[list[Any]]] = {}
    for s in hourly:
        metric = s.tags.get("metric")
        if metric:
            points = series.setdefault(metric, [])
            points.extend([r["time"], r["value"]] for r in s.rows if r.get("value") is not None)
    for s in water_rows:
        series["water_class"] = [[r["time"], r["class"]] for r in s.rows if r.get("class") is not None]
    for points in series.values():
        points.sort(key=lambda p: p[0])
    return series, [dict(r) for s in aqi_rows for r in s.rows]
