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

Hourly values are kept **exact** (``Fraction``: the device's exact sum / count, see
``HourlyValues.sums``), and so are the 8-h and 24-h means built from them, so the GB/T 8170
rounding and the IAQI ceiling depend only on the data, never on float summation order.

The daily O3 value is the maximum 8-h average of HJ 663-2013: the largest 8-h moving average
ending 08:00…24:00 of the natural day in China time (17 windows, each inside the day), each
window valid with >= 6 hourly values (GB 3095 Table 4), the daily value valid with >= 14 valid
windows (HJ 663-2013 practice, spec §2.3); see ``validity.daily_max_8h``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

from stationflow.contracts import AlertEvent, HourlyValues
from streams.analytics import aqi as aqi_mod
from streams.analytics import validity
from streams.analytics import water as water_mod
from streams.analytics.packs import rules_for_station
from streams.analytics.rules import RuleState, Subject, evaluate, resolve_levels
from streams.lineprotocol import escape_string
from streams.lineprotocol import escape_tag as _esc

__all__ = ["AQI_METRICS", "StationOutput", "StationState", "station_tags", "update_station"]

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
    """A station's exact hourly means (per hour start, per metric) and its rules' state."""

    hours: dict[int, dict[str, Fraction]] = field(default_factory=dict)
    rules: dict[str, list[Any]] = field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        """JSON-able form (hourly means as exact ``"p/q"`` strings)."""
        return {
            "hours": {str(h): {m: str(x) for m, x in v.items()} for h, v in self.hours.items()},
            "rules": self.rules,
        }

    @classmethod
    def load(cls, doc: Mapping[str, Any] | None) -> StationState:
        """Inverse of :meth:`dump` (a float from an older state is taken at its repr)."""
        if not doc:
            return cls()
        hours = {int(h): {m: _fraction(x) for m, x in v.items()} for h, v in doc["hours"].items()}
        return cls(hours=hours, rules=dict(doc.get("rules", {})))


def _fraction(value: str | float) -> Fraction:
    return Fraction(value) if isinstance(value, str) else Fraction(repr(float(value)))


def exact_means(hv: HourlyValues) -> dict[str, Fraction]:
    """The device-hour's exact means: ``sums / counts`` where given, else the float's repr."""
    out: dict[str, Fraction] = {}
    for metric, mean in hv.means.items():
        total, count = hv.sums.get(metric), hv.counts.get(metric)
        out[metric] = Fraction(total) / count if total is not None and count else _fraction(mean)
    return out


@dataclass(slots=True)
class StationOutput:
    """Lines to store and alert events to send."""

    lines: list[str] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    hourly_aqi: aqi_mod.AqiResult | None = None
    daily_aqi: aqi_mod.AqiResult | None = None
    water: water_mod.WaterClassResult | None = None


def _ns(ts: float) -> int:
    return int(ts) * 1_000_000_000


def _mean(values: list[Fraction], need: int) -> Fraction | None:
    return validity.exact_mean(values, need)


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
    merged.update(exact_means(hv))
    oldest = max(state.hours) - KEEP_HOURS * HOUR
    state.hours = {h: v for h, v in state.hours.items() if h >= oldest}
    out = StationOutput()
    tags = station_tags(subject)
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
    target = water_mod.class_number(attributes.get("target_class"))
    water_values = {WATER_METRICS[m]: float(v) for m, v in merged.items() if m in WATER_METRICS}
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
        label, deciding = escape_string(wc.label), escape_string(",".join(wc.deciding))
        fields = f"class={wc.klass}i,label={label},deciding={deciding}"
        if target is not None:
            fields += f",target_class={target}i"
        out.lines.append(f"water_quality,{tags} {fields} {_ns(hour)}")
    # the registry stores the target class as "I".."V": the rule compares it as a number
    rule_attrs = {**attributes, "target_class": target} if target is not None else attributes
    for rule in rules_for_station(hv.domain):
        value = signals.get(rule.signal)
        if value is None:
            continue
        rs = RuleState.load(state.rules.get(rule.id))
        event = evaluate(rule, resolve_levels(rule, rule_attrs, overrides), rs, value, hour + HOUR, subject)
        state.rules[rule.id] = rs.dump()
        if event is not None:
            out.events.append(event)
    return out


def station_tags(subject: Subject) -> str:
    """``station=…`` plus the station's region and basin (when known), so dashboards filter by them."""
    tags = f"station={_esc(subject.id)}"
    for key, value in (("region", subject.region), ("basin", subject.basin)):
        if value:
            tags += f",{key}={_esc(value)}"
    return tags


def _series(state: StationState, metric: str, hours: range) -> list[Fraction]:
    return [v[metric] for h in hours if (v := state.hours.get(h)) is not None and metric in v]


def _slots(state: StationState, metric: str, hours: range) -> list[Fraction | None]:
    return [state.hours.get(h, {}).get(metric) for h in hours]


def _o3_8h(state: StationState, end_hour: int) -> Fraction | None:
    """O3 8 h moving mean ending with ``end_hour`` (≥ 6 valid hours of 8)."""
    return _mean(_series(state, "o3", range(end_hour - 7 * HOUR, end_hour + 1, HOUR)), 6)


def _hourly_aqi(state: StationState, hour: int) -> aqi_mod.AqiResult | None:
    now = state.hours.get(hour, {})
    conc: dict[str, Fraction | None] = {}
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
    conc: dict[str, Fraction | None] = {}
    for metric, key in AQI_METRICS.items():
        if metric == "o3":
            continue
        conc[f"{key}_24h"] = validity.daily_mean(_slots(state, metric, hours))
    # HJ 663-2013: the 17 windows ending 08:00…24:00 of the day (not reaching into the previous
    # evening), >= 6 valid hours each, >= 14 valid windows for a daily value
    conc["o3_8h"] = validity.daily_max_8h(_slots(state, "o3", hours))
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
        parts.append(f"category={escape_string(category.name_en)}")
        parts.append(f"category_zh={escape_string(category.name_cn)}")
    parts.append(f"primary={escape_string(','.join(result.primary_pollutants))}")
    parts.append(f"standard={escape_string(result.standard.value)}")
    parts += [f"iaqi_{k}={v}i" for k, v in result.iaqi.items()]
    return ",".join(parts)
