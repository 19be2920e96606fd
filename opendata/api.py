"""The ``/api/v1`` routes: public stations and their latest AQI, water class, river level,
rainfall, AQI history and station history, as JSON, CSV or GeoJSON.

Only stations the registry marks public exist here: a hidden or cold-chain station id is a 404
exactly like an unknown one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import Response

from opendata.formats import geojson_bytes, to_csv
from opendata.schemas import AqiList, History, LevelList, Problem, RainList, StationList, WaterList
from stationflow.registryview import RegistryView
from stationview import items, queries
from stationview.influxql import InfluxQL
from stationview.stations import StationEntry, public_stations

__all__ = ["router"]

Format = Literal["json", "csv", "geojson"]
FormatQuery = Annotated[Format, Query(description="json (default), csv, or geojson (FeatureCollection)")]
StationQuery = Annotated[str, Query(min_length=1, max_length=128, description="a public station id")]
Item = dict[str, Any]

_ALTERNATIVES = {
    "text/csv": {"schema": {"type": "string"}},
    "application/geo+json": {"schema": {"type": "object"}},
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    429: {"model": Problem, "description": "rate limit: wait Retry-After seconds"},
    503: {"model": Problem, "description": "InfluxDB cannot be read"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such public station"}
}

router = APIRouter(prefix="/api/v1", tags=["open data"], responses=_ERRORS)


def _influx(request: Request) -> InfluxQL:
    influx: InfluxQL = request.app.state.influx
    return influx


def _stations(request: Request) -> dict[str, StationEntry]:
    view: RegistryView = request.app.state.view
    return public_stations(view.records())


def _station(request: Request, station_id: str) -> StationEntry:
    station = _stations(request).get(station_id)
    if station is None:
        # the same answer for unknown and hidden ids (and no echo of the id)
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such public station")
    return station


def _now() -> str:
    return items.iso(datetime.now(UTC).timestamp()) or ""


def _render(data: Sequence[Item], fmt: Format, name: str) -> Response:
    """The list in the asked format (JSON: ``{data, count, generated_at}``)."""
    if fmt == "csv":
        return Response(
            to_csv(data),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'inline; filename="{name}.csv"'},
        )
    if fmt == "geojson":
        return Response(geojson_bytes(data), media_type="application/geo+json")
    body = {"data": list(data), "count": len(data), "generated_at": _now()}
    return Response(orjson.dumps(body), media_type="application/json")


def _items(
    stations: Mapping[str, StationEntry],
    rows: Mapping[str, Mapping[str, Any]],
    build: Callable[[StationEntry, Mapping[str, Any]], Item | None],
) -> list[Item]:
    """One item per public station that has a row, in station id order."""
    out = []
    for sid in sorted(rows):
        station = stations.get(sid)
        if station is not None and (item := build(station, rows[sid])) is not None:
            out.append(item)
    return out


@router.get("/stations", response_model=StationList, responses={200: {"content": _ALTERNATIVES}})
async def list_stations(request: Request, format: FormatQuery = "json") -> Response:
    """The public stations with their coordinates and what they measure."""
    data = [
        {**st.describe(), "kind": st.kind, "domains": list(st.domains)}
        for _, st in sorted(_stations(request).items())
    ]
    return _render(data, format, "stations")


@router.get("/aqi/latest", response_model=AqiList, responses={200: {"content": _ALTERNATIVES}})
async def aqi_latest(request: Request, format: FormatQuery = "json") -> Response:
    """The latest hourly AQI (实时报) of every public air station: IAQI, primary pollutant,
    category in Chinese and English, colour."""
    rows = await queries.latest_aqi(_influx(request))
    return _render(_items(_stations(request), rows, items.aqi_item), format, "aqi-latest")


@router.get("/aqi/hourly", response_model=AqiList, responses={200: {"content": _ALTERNATIVES}, **_NOT_FOUND})
async def aqi_hourly(
    request: Request,
    station: StationQuery,
    hours: Annotated[int, Query(ge=1, le=720)] = 48,
    format: FormatQuery = "json",
) -> Response:
    """A public station's hourly AQI reports of the last ``hours`` hours, oldest first."""
    entry = _station(request, station)
    rows = await queries.aqi_reports(_influx(request), station, report="hourly", hours=hours)
    data = [item for row in rows if (item := items.aqi_item(entry, row)) is not None]
    return _render(data, format, f"aqi-hourly-{station}")


@router.get("/aqi/daily", response_model=AqiList, responses={200: {"content": _ALTERNATIVES}, **_NOT_FOUND})
async def aqi_daily(
    request: Request,
    station: StationQuery,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    format: FormatQuery = "json",
) -> Response:
    """A public station's daily AQI reports (日报) of the last ``days`` days, oldest first;
    ``time`` is the start of the China (UTC+8) day."""
    entry = _station(request, station)
    rows = await queries.aqi_reports(_influx(request), station, report="daily", hours=24 * (days + 1))
    data = [item for row in rows if (item := items.aqi_item(entry, row)) is not None]
    return _render(data, format, f"aqi-daily-{station}")


@router.get("/water/latest", response_model=WaterList, responses={200: {"content": _ALTERNATIVES}})
async def water_latest(request: Request, format: FormatQuery = "json") -> Response:
    """The latest GB 3838 class of every public water section, against its target class."""
    rows = await queries.latest_water(_influx(request))
    return _render(_items(_stations(request), rows, items.water_item), format, "water-latest")


@router.get("/hydro/levels", response_model=LevelList, responses={200: {"content": _ALTERNATIVES}})
async def hydro_levels(request: Request, format: FormatQuery = "json") -> Response:
    """The latest river level of every public gauge, against its warning and guaranteed levels."""
    rows = await queries.latest_levels(_influx(request))
    return _render(_items(_stations(request), rows, items.level_item), format, "hydro-levels")


@router.get("/rainfall", response_model=RainList, responses={200: {"content": _ALTERNATIVES}})
async def rainfall(request: Request, format: FormatQuery = "json") -> Response:
    """The latest 1/3/6/12/24 h rainfall sums of every public rain station, with the 24 h grade."""
    rows = await queries.latest_rainfall(_influx(request))
    return _render(_items(_stations(request), rows, items.rain_item), format, "rainfall")


@router.get(
    "/stations/{station_id}/history",
    response_model=History,
    responses={200: {"content": _ALTERNATIVES}, **_NOT_FOUND},
)
async def station_history(
    request: Request,
    station_id: Annotated[str, Path(max_length=128)],
    hours: Annotated[int, Query(ge=1, le=720)] = 48,
    format: FormatQuery = "json",
) -> Response:
    """A public station's last ``hours``: hourly values per metric (rain as hourly sums), water
    class, and (air) its hourly AQI reports. CSV is long: ``time,metric,value``."""
    entry = _station(request, station_id)
    series, aqi_rows = await queries.station_history(_influx(request), station_id, hours=hours)
    named = {m: [[items.iso(t), v] for t, v in points] for m, points in sorted(series.items())}
    aqi = [item for row in aqi_rows if (item := items.aqi_item(entry, row)) is not None]
    if aqi:
        named["aqi"] = [[a["time"], a["aqi"]] for a in aqi]
    if format == "csv":
        long = [{"time": t, "metric": m, "value": v} for m, points in named.items() for t, v in points]
        return _render(long, "csv", f"history-{station_id}")
    body = {
        "station_id": entry.station_id,
        "name": entry.name,
        "kind": entry.kind,
        "lat": entry.lat,
        "lon": entry.lon,
        "series": named,
        "aqi_hourly": aqi,
        "generated_at": _now(),
    }
    if format == "geojson":
        return Response(geojson_bytes([body]), media_type="application/geo+json")
    return Response(orjson.dumps(body), media_type="application/json")
