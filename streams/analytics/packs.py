"""Built-in rule packs, per domain (device type), overridable per station from the registry.

Thresholds name their source: a number from a standard (GB 3095-2012 Grade II 24 h limits,
HJ 633 AQI categories, the CMA rainstorm-signal criteria, GB/T 28592-2012 rain grades) or a
station attribute (``warning_level`` 警戒水位, ``guaranteed_level`` 保证水位,
``historical_max_level``, ``target_class``). Any level can be overridden per station by a
registry threshold named ``<rule id>.<severity>`` (and ``….clear`` for its clear level),
e.g. ``{"flood.rise.minor": 0.3}``.
"""

from __future__ import annotations

from stationflow.contracts import Severity
from streams.analytics.rules import Level, Rule

__all__ = [
    "DEVICE_PACKS",
    "HEALTH_PACK",
    "NODATA_RULE",
    "STATION_PACKS",
    "rules_for_device",
    "rules_for_station",
]

S = Severity

FLOOD_PACK: tuple[Rule, ...] = (
    # MWR water-regime signals (protocols.md §3): blue = approaching the warning level,
    # yellow = at/above it, orange = at/above the guaranteed level, red = at/above the
    # historical maximum. 5 cm hysteresis and 15 min below before stepping down.
    Rule(
        id="flood.level",
        kind="threshold",
        domain="hydro",
        signal="level",
        unit="m",
        title="River level",
        title_zh="水位预警",
        levels=(
            Level(S.MINOR, "warning_level", offset=-0.5, hysteresis=0.05),
            Level(S.MODERATE, "warning_level", hysteresis=0.05),
            Level(S.MAJOR, "guaranteed_level", hysteresis=0.05),
            Level(S.CRITICAL, "historical_max_level", hysteresis=0.05),
        ),
        clear_after_s=900,
    ),
    Rule(
        id="flood.rise",
        kind="rate",
        domain="hydro",
        signal="level.rise_per_h",
        unit="m/h",
        window="1h",
        title="Fast level rise",
        title_zh="水位快速上涨",
        levels=(Level(S.MINOR, 0.5, hysteresis=0.1), Level(S.MODERATE, 1.0, hysteresis=0.1)),
        clear_after_s=1800,
    ),
    # CMA rainstorm warning signals: blue ≥50 mm/12 h, yellow ≥50/6 h, orange ≥50/3 h,
    # red ≥100/3 h; the signal value is the grade 1..4 (streams.analytics.rain).
    Rule(
        id="rain.storm_signal",
        kind="window",
        domain="hydro",
        signal="rain.storm_signal",
        title="Rainstorm warning signal",
        title_zh="暴雨预警信号",
        levels=(
            Level(S.MINOR, 1, hysteresis=0.5),
            Level(S.MODERATE, 2, hysteresis=0.5),
            Level(S.MAJOR, 3, hysteresis=0.5),
            Level(S.CRITICAL, 4, hysteresis=0.5),
        ),
        clear_after_s=1800,
    ),
    # GB/T 28592-2012 24 h grades: 暴雨 ≥50, 大暴雨 ≥100, 特大暴雨 ≥250 mm.
    Rule(
        id="rain.grade_24h",
        kind="window",
        domain="hydro",
        signal="rain.sum_24h",
        unit="mm",
        window="24h",
        title="Rainstorm (24 h total)",
        title_zh="24小时暴雨",
        levels=(Level(S.MINOR, 50.0), Level(S.MODERATE, 100.0), Level(S.MAJOR, 250.0)),
        clear_after_s=0,
    ),
)

AIR_DEVICE_PACK: tuple[Rule, ...] = (
    # GB 3095-2012 Grade II 24 h limits: PM2.5 75, PM10 150 µg/m³.
    Rule(
        id="air.pm25_24h",
        kind="window",
        domain="air",
        signal="pm25.mean_24h",
        unit="µg/m³",
        window="24h",
        title="PM2.5 24 h mean over the GB 3095 limit",
        title_zh="PM2.5日均值超标",
        levels=(Level(S.MINOR, 75.0, hysteresis=5.0),),
    ),
    Rule(
        id="air.pm10_24h",
        kind="window",
        domain="air",
        signal="pm10.mean_24h",
        unit="µg/m³",
        window="24h",
        title="PM10 24 h mean over the GB 3095 limit",
        title_zh="PM10日均值超标",
        levels=(Level(S.MINOR, 150.0, hysteresis=10.0),),
    ),
    # Sustained heavy PM2.5: 1 h mean ≥115 (AQI 151, 中度污染) for 2 h; clears after 1 h
    # under 75 (the 24 h limit).
    Rule(
        id="air.pm25_sustained",
        kind="sustained",
        domain="air",
        signal="pm25.mean_1h",
        unit="µg/m³",
        window="1h",
        title="Sustained PM2.5 pollution",
        title_zh="PM2.5持续污染",
        levels=(Level(S.MODERATE, 115.0, clear_at=75.0),),
        raise_after_s=7200,
        clear_after_s=3600,
    ),
)

COLDCHAIN_PACK: tuple[Rule, ...] = (
    # An excursion beyond the allowed time (standards.md §4.3; default 30 min, override
    # ``coldchain.excursion.moderate``); twice as long is major.
    Rule(
        id="coldchain.excursion",
        kind="sustained",
        domain="coldchain",
        signal="coldchain.excursion_s",
        unit="s",
        title="Temperature excursion beyond the allowed time",
        title_zh="冷链温度超限超时",
        levels=(Level(S.MODERATE, 1800.0, clear_at=0.5), Level(S.MAJOR, 3600.0, clear_at=0.5)),
    ),
)

HEALTH_PACK: tuple[Rule, ...] = (
    Rule(
        id="health.stuck",
        kind="sustained",
        domain="health",
        signal="dq.flat_intervals",
        title="Sensor stuck (flatline)",
        title_zh="传感器数值不变（疑似故障）",
        levels=(Level(S.MINOR, 30.0, clear_at=0.5),),
    ),
    Rule(
        id="health.out_of_range",
        kind="threshold",
        domain="health",
        signal="dq.out_of_range",
        title="Value outside the sensor's valid range",
        title_zh="数据超出有效范围",
        levels=(Level(S.MINOR, 1.0, clear_at=0.5),),
        clear_after_s=600,
    ),
)

NODATA_RULE = Rule(
    id="health.offline",
    kind="nodata",
    domain="health",
    signal="silence_s",
    unit="s",
    title="No data",
    title_zh="设备离线（无数据）",
    levels=(Level(S.MINOR, 0.0),),
)

DEVICE_PACKS: dict[str, tuple[Rule, ...]] = {
    "hydro": FLOOD_PACK,
    "air": AIR_DEVICE_PACK,
    "coldchain": COLDCHAIN_PACK,
}

STATION_PACKS: dict[str, tuple[Rule, ...]] = {
    "air": (
        # HJ 633 categories: 轻度污染 101–150, 中度 151–200, 重度 201–300, 严重 >300.
        Rule(
            id="air.aqi",
            kind="index",
            domain="air",
            signal="aqi",
            window="1h",
            title="Air quality index",
            title_zh="空气质量指数",
            levels=(
                Level(S.MINOR, 101.0),
                Level(S.MODERATE, 151.0),
                Level(S.MAJOR, 201.0),
                Level(S.CRITICAL, 301.0),
            ),
        ),
    ),
    "water": (
        # GB 3838-2002: the section's class worse than its target class (1..6, 6 = 劣V).
        Rule(
            id="water.class",
            kind="index",
            domain="water",
            signal="water.class",
            window="1h",
            title="Water quality worse than the section's target class",
            title_zh="水质劣于目标类别",
            levels=(Level(S.MODERATE, "target_class", offset=1.0, hysteresis=0.5),),
        ),
    ),
}


def rules_for_device(domain: str) -> tuple[Rule, ...]:
    """The rules evaluated on a device's readings and rolling signals."""
    return DEVICE_PACKS.get(domain, ()) + HEALTH_PACK


def rules_for_station(domain: str) -> tuple[Rule, ...]:
    """The rules evaluated on a station's hourly indices."""
    return STATION_PACKS.get(domain, ())
