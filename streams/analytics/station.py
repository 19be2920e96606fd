"""Per-station hourly indices from the devices' closed hours (pure).

The station stage receives ``HourlyValues`` (one device-hour, keyed by station) and keeps,
per station, the last 48 hourly means of every metric. Each new hour yields:

- **AQI 实时报** (hourly): HJ 633-2026 from 2026-03-01, HJ 633-2012 before, from the 1 h
  means, the O3 8 h moving mean (≥ 6 of 8 hours) and, under 2012, the PM 24 h moving means
  (≥ 20 of 24 hours);
- **AQI 日报** (daily), when the last hour of a natural day in China time (UTC+8) arrives:
  24 h means (≥ 20 hourly values), O3 daily max 8 h mean and (2012) max 1 h value;
- **water class** per GB 3838-2002 (single factor, worst parameter decides) and the
  parameter(s) that decided it.

All of it is recomputed from stored hourly values, so a device-hour that arrives twice
(replay) or late (a second device at the same station) rewrites the same InfluxDB points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from stationflow.contracts import AlertEvent, HourlyValues
from streams.analytics import aqi as aqi_mod
from streams.analytics import validity
from streams.analytics import water as water_mod
from streams.analytics.packs import rules_for_station
from streams.analytics.rules import RuleState, Subject, evaluate, resolve_levels

__all__ = ["AQI_METRICS", "StationOutput", "StationState", "update_station"]

HOUR = 3600
KEEP_HOURS = 48
CHINA = timezone(timedelta(hours=8))
# Registry metric name → AQI pollutant key.
AQI_METRICS = {"so2": "so2", "no2": "no2", "pm10": "pm10", "pm25": "pm2_5", "co": "co", "o3": "o3"}
# Registry metric name → GB 3838 parameter key (streams.analytics.water).
WATER_METRICS = {
    "ph": "ph",
    "do": "do",
    "codmn": "codmn",
    "cod": "cod",
    "bod5": "bod5",
    "nh3n": "nh3_n",
    "tp": "tp",
    "tn": "tn",
}


@dataclass(slots=True)
class StationState:
    """A station's hourly means (per hour start, per metric) and its rules' state."""

    hours: dict[int, dict[str, float]] = field(default_factory=dict)
    rules: dict[str, list[Any]] = field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"hours": {str(h): v for h, v in self.hours.items()}, "rules": self.rules}

    @classmethod
    def load(cls, doc: Mapping[str, Any] | None) -> StationState:
        """Inverse of :meth:`dump`."""
        if not doc:
            return cls()
        return cls(hours={int(h): dict(v) for h, v in doc["hours"].items()}, rules=dict(doc.get("rules", {})))


@dataclass(slots=True)
class StationOutput:
    """Lines to store and alert events to send."""

    lines: list[str] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    hourly_aqi: aqi_mod.AqiResult | None = None
    daily_aqi: aqi_mod.AqiResult | None = None
    water: water_mod.WaterClassResult | None = None


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _ns(ts: float) -> int:
    return int(ts) * 1_000_000_000


def _mean(values: list[float], need: int) -> float | None:
    return validity.mean_if_valid(values, need)


def update_station(
    state: StationState,
    hv: HourlyValues,
    *,
    subject: Subject,
    attributes: Mapping[str, float | str],
    overrides: Mapping[str, float],
) -> StationOutput:
    """Merge one device-hour into the station and compute the hour's indices."""
    hour = int(hv.hour.timestamp())
    merged = state.hours.setdefault(hour, {})
    merged.update(hv.means)
    oldest = max(state.hours) - KEEP_HOURS * HOUR
    state.hours = {h: v for h, v in state.hours.items() if h >= oldest}
    out = StationOutput()
    tags = f"station={_esc(subject.id)}"
    signals: dict[str, float] = {}
    if hv.domain == "air" or any(m in AQI_METRICS for m in hv.means):
        result = _hourly_aqi(state, hour)
        if result is not None and result.aqi is not None:
            out.hourly_aqi = result
            signals["aqi"] = float(result.aqi)
            out.lines.append(f"aqi,{tags},report=hourly {_aqi_fields(result)} {_ns(hour)}")
        end_china = datetime.fromtimestamp(hour + HOUR, CHINA)
        if end_china.hour == 0:  # the hour just merged ends a natural day in China time
            day = (end_china - timedelta(days=1)).date()
            daily = _daily_aqi(state, day)
            if daily is not None and daily.aqi is not None:
                out.daily_aqi = daily
                start = datetime(day.year, day.month, day.day, tzinfo=CHINA).timestamp()
                out.lines.append(f"aqi,{tags},report=daily {_aqi_fields(daily)} {_ns(start)}")
    water_values = {WATER_METRICS[m]: v for m, v in merged.items() if m in WATER_METRICS}
    wc: water_mod.WaterClassResult | None = None
    if water_values:
        lake = str(attributes.get("water_body", "")).lower() in ("lake", "reservoir")
        try:
            wc = water_mod.water_class(water_values, lake=lake)
        except ValueError:  # only parameters that do not decide a class (e.g. TN alone)
            wc = None
    if water_values and wc is not None:
        out.water = wc
        signals["water.class"] = float(wc.klass)
        deciding = ",".join(wc.deciding)
        out.lines.append(
            f'water_quality,{tags} class={wc.klass}i,label="{wc.label}",deciding="{deciding}" {_ns(hour)}'
        )
    for rule in rules_for_station(hv.domain):
        value = signals.get(rule.signal)
        if value is None:
            continue
        rs = RuleState.load(state.rules.get(rule.id))
        event = evaluate(rule, resolve_levels(rule, attributes, overrides), rs, value, hour + HOUR, subject)
        state.rules[rule.id] = rs.dump()
        if event is not None:
            out.events.append(event)
    return out


def _series(state: StationState, metric: str, hours: range) -> list[float]:
    return [v[metric] for h in hours if (v := state.hours.get(h)) is not None and metric in v]


def _o3_8h(state: StationState, end_hour: int) -> float | None:
    """O3 8 h moving mean ending with ``end_hour`` (≥ 6 valid hours of 8)."""
    return _mean(_series(state, "o3", range(end_hour - 7 * HOUR, end_hour + 1, HOUR)), 6)


def _hourly_aqi(state: StationState, hour: int) -> aqi_mod.AqiResult | None:
    now = state.hours.get(hour, {})
    conc: dict[str, float | None] = {}
    for metric, key in AQI_METRICS.items():
        if metric in now:
            conc[f"{key}_1h"] = now[metric]
    for metric, key in (("pm10", "pm10"), ("pm25", "pm2_5"), ("so2", "so2")):
        conc[f"{key}_24h"] = _mean(_series(state, metric, range(hour - 23 * HOUR, hour + 1, HOUR)), 20)
    conc["o3_8h"] = _o3_8h(state, hour)
    if not any(v is not None for v in conc.values()):
        return None
    return aqi_mod.hourly_aqi(conc, datetime.fromtimestamp(hour, UTC))  # the standard of the hour's start


def _daily_aqi(state: StationState, day: date) -> aqi_mod.AqiResult | None:
    start = int(datetime(day.year, day.month, day.day, tzinfo=CHINA).timestamp())
    hours = range(start, start + 24 * HOUR, HOUR)
    conc: dict[str, float | None] = {}
    for metric, key in AQI_METRICS.items():
        if metric == "o3":
            continue
        conc[f"{key}_24h"] = _mean(_series(state, metric, hours), 20)
    o3_8h = [v for h in hours if (v := _o3_8h(state, h)) is not None]
    conc["o3_8h"] = max(o3_8h) if len(o3_8h) >= 14 else None
    o3_1h = _series(state, "o3", hours)
    conc["o3_1h"] = max(o3_1h) if len(o3_1h) >= 20 else None
    if not any(v is not None for v in conc.values()):
        return None
    return aqi_mod.daily_aqi(conc, day)


def _aqi_fields(result: aqi_mod.AqiResult) -> str:
    parts = [f"aqi={result.aqi}i"]
    category = result.category
    if category is not None:
        parts.append(f"level={category.level}i")
        parts.append(f'category="{category.name_en}"')
        parts.append(f'category_zh="{category.name_cn}"')
    parts.append(f'primary="{",".join(result.primary_pollutants)}"')
    parts.append(f'standard="{result.standard.value}"')
    parts += [f"iaqi_{k}={v}i" for k, v in result.iaqi.items()]
    return ",".join(parts)
