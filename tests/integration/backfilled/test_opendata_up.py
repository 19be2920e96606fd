"""Show (issue 11): under ``stationflow up`` the open-data API answers, within two minutes of
start, the latest hourly AQI of every public air station (the registry's list) and no hidden
station appears in any list, in any format."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.integration.backfilled.conftest import BackfilledStack

LISTS = (
    "/api/v1/stations",
    "/api/v1/aqi/latest",
    "/api/v1/water/latest",
    "/api/v1/hydro/levels",
    "/api/v1/rainfall",
)
LATEST_AQI = (
    'SELECT * FROM "aqi" WHERE "report" = \'hourly\' AND time > now() - 7d '
    'GROUP BY "station" ORDER BY time DESC LIMIT 1'
)


def _registry_stations(stack: BackfilledStack) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{stack.registry_url}/stations",
        headers={"X-API-Key": stack.registry_key},
        params={"limit": 1000},
        timeout=10,
    )
    answer.raise_for_status()
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def _influx_latest(stack: BackfilledStack) -> dict[str, tuple[str, int]]:
    """station → (time, aqi) of its newest hourly AQI, straight from InfluxDB."""
    answer = httpx.get(
        f"{stack.influx_url}/query", params={"db": stack.influx_db, "q": LATEST_AQI, "epoch": "s"}, timeout=10
    )
    out = {}
    for series in answer.json()["results"][0].get("series", []):
        row = dict(zip(series["columns"], series["values"][0], strict=True))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["time"]))
        out[series["tags"]["station"]] = (stamp, int(row["aqi"]))
    return out


def _api_latest(stack: BackfilledStack) -> dict[str, dict[str, Any]] | None:
    try:
        answer = httpx.get(f"{stack.opendata_url}/api/v1/aqi/latest", timeout=10)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    return {item["station_id"]: item for item in answer.json()["data"]}


def test_latest_aqi_of_every_public_air_station_and_no_hidden_one(backfilled: BackfilledStack) -> None:
    stations = _registry_stations(backfilled)
    public_air = {s["id"] for s in stations if s["public"] and s["kind"] == "air"}
    hidden = {s["id"] for s in stations if not s["public"]}
    assert public_air, "the fleet has no public air station"
    assert hidden, "the fleet has no hidden station to check against"

    deadline = time.monotonic() + backfilled.remaining()
    api: dict[str, dict[str, Any]] | None = None
    influx: dict[str, tuple[str, int]] = {}
    while time.monotonic() < deadline:
        api, influx = _api_latest(backfilled), _influx_latest(backfilled)
        if (
            api is not None
            and public_air <= set(api)
            and all((api[s]["time"], api[s]["aqi"]) == influx.get(s) for s in public_air)
        ):
            break
        time.sleep(1.0)
    assert api is not None, f"open-data API not answering:\n{backfilled.output()[-3000:]}"
    missing = public_air - set(api)
    assert not missing, f"public air stations without latest AQI: {sorted(missing)}"
    stale = {
        s: ((api[s]["time"], api[s]["aqi"]), influx.get(s))
        for s in public_air
        if (api[s]["time"], api[s]["aqi"]) != influx.get(s)
    }
    assert not stale, f"API (time, aqi) differs from InfluxDB's latest: {stale}"
    for sid in public_air:
        item = api[sid]
        assert 1 <= item["level"] <= 6 and item["category_zh"] and item["category_en"]
        assert item["color"].startswith("#") and item["iaqi"], item

    with httpx.Client(base_url=backfilled.opendata_url, timeout=10) as http:
        for path in LISTS:
            for fmt in ("json", "csv", "geojson"):
                answer = http.get(path, params={"format": fmt})
                assert answer.status_code == 200, (path, fmt, answer.text[:200])
                leaked = sorted(h for h in hidden if h in answer.text)
                assert not leaked, f"hidden stations in {path}?format={fmt}: {leaked}"
        for sid in hidden:
            assert http.get(f"/api/v1/stations/{sid}/history").status_code == 404
