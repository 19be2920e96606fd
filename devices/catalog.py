"""Built-in device types, seeded at startup; metric names are the ones ``simulator/fleet.py`` emits."""

from __future__ import annotations

from stationflow.contracts import MetricSpec

__all__ = ["BUILTIN_TYPES", "BuiltinType"]


def _m(
    metric: str, unit: str, lo: float, hi: float, code: str | None = None, sl651: str | None = None
) -> MetricSpec:
    return MetricSpec(metric=metric, unit=unit, min=lo, max=hi, hj212_code=code, sl651_code=sl651)


class BuiltinType:
    """One built-in type: name, InfluxDB domain, description and metrics."""

    __slots__ = ("description", "domain", "metrics", "name")

    def __init__(self, name: str, domain: str, description: str, metrics: list[MetricSpec]) -> None:
        self.name = name
        self.domain = domain
        self.description = description
        self.metrics = metrics


# Valid ranges are physical/instrument limits (values outside are flagged T), not alarm limits.
# PM, SO2, NO2 and O3 in ug/m3 and CO in mg/m3 as ambient stations send them (protocols.md 1.10).
BUILTIN_TYPES: tuple[BuiltinType, ...] = (
    BuiltinType(
        "air-station",
        "air",
        "Ambient air monitoring station (PM, SO2, NO2, O3, CO, weather)",
        [
            _m("pm25", "ug/m3", 0, 1000, "a34004"),
            _m("pm10", "ug/m3", 0, 2000, "a34002"),
            _m("so2", "ug/m3", 0, 10000, "a21026"),
            _m("no2", "ug/m3", 0, 4000, "a21004"),
            _m("o3", "ug/m3", 0, 2000, "a05024"),
            _m("co", "mg/m3", 0, 200, "a21005"),
            _m("temperature", "degC", -50, 60, "a01001"),
            _m("humidity", "%", 0, 100, "a01002"),
        ],
    ),
    BuiltinType(
        "water-station",
        "water",
        "Automatic surface-water quality station (GB 3838 parameters)",
        [
            _m("ph", "pH", 0, 14, "w01001"),
            _m("do", "mg/L", 0, 25, "w01009"),
            _m("codmn", "mg/L", 0, 100, "w01019"),
            _m("nh3n", "mg/L", 0, 50, "w21003"),
            _m("tp", "mg/L", 0, 20, "w21011"),
            _m("temperature", "degC", -5, 45, "w01010"),
            _m("turbidity", "NTU", 0, 4000, "w01003"),
        ],
    ),
    # SL 651 elements (protocols.md 2.6): DRP is the 5-minute rainfall (the decoder takes the
    # finest-period rainfall a report carries), Z the instantaneous level, Q the flow.
    BuiltinType("rain-gauge", "hydro", "Tipping-bucket rain gauge", [_m("rain", "mm", 0, 300, sl651="DRP")]),
    BuiltinType(
        "level-gauge",
        "hydro",
        "River or reservoir level gauge with rating curve",
        [_m("level", "m", -100, 6000, sl651="Z"), _m("flow", "m3/s", 0, 500000, sl651="Q")],
    ),
    BuiltinType(
        "hydro-rtu",
        "hydro",
        "Hydrological telemetry RTU (SL 651): rain (5-min, since 08:00, total), level, flow, voltage",
        [
            _m("rain", "mm", 0, 300, sl651="DRP"),
            _m("level", "m", -100, 6000, sl651="Z"),
            _m("flow", "m3/s", 0, 500000, sl651="Q"),
            _m("voltage", "V", 0, 30, sl651="VT"),
            _m("rain_day", "mm", 0, 2000, sl651="PJ"),  # since 08:00 (the hydrological day)
            _m("rain_total", "mm", 0, 100000, sl651="PT"),  # the RTU's accumulating counter
        ],
    ),
    BuiltinType(
        "coldchain-logger",
        "coldchain",
        "Cold-chain temperature/humidity logger (fridge or freezer)",
        [_m("temperature", "degC", -80, 60), _m("humidity", "%", 0, 100)],
    ),
)
