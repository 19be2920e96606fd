"""Which InfluxDB measurement (domain) a device message belongs to.

A registered device's domain comes from its registry record (``DeviceRecord.domain``, which
the worker's view follows). For a device the view does not know, and where a caller names no
measurement, the domain is inferred from the metric names in a message: the first
domain-specific metric decides; messages with only generic metrics (temperature, humidity,
…) land in ``sensor``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DOMAIN_METRICS", "GENERIC_DOMAIN", "domain_of"]

GENERIC_DOMAIN = "sensor"

DOMAIN_METRICS: dict[str, frozenset[str]] = {
    "air": frozenset({"pm25", "pm10", "so2", "no2", "co", "o3", "nox", "tsp", "wind_speed"}),
    "water": frozenset({"ph", "do", "codmn", "cod", "nh3n", "tp", "tn", "turbidity", "conductivity", "chla"}),
    "hydro": frozenset({"rain", "level", "flow", "velocity"}),
    "coldchain": frozenset({"door", "shipment_temp"}),
}

_BY_METRIC = {m: d for d, metrics in DOMAIN_METRICS.items() for m in metrics}


def domain_of(metrics: Iterable[str]) -> str:
    """Measurement for a message made of these metrics."""
    for metric in metrics:
        domain = _BY_METRIC.get(metric)
        if domain is not None:
            return domain
    return GENERIC_DOMAIN
