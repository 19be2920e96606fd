"""Read what the running pipeline is doing: stored points, dead letters, service metrics."""

from __future__ import annotations

import re

from stationflow.stack.components import http_call, influx_query

__all__ = ["count_points", "scrape_buckets", "scrape_counter", "scrape_samples"]

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LE = re.compile(r'le="(?P<le>[^"]+)"')


def count_points(influx_url: str, db: str, where: str = "time > now() - 1h") -> int:
    """Number of numeric field values stored (all measurements, ``where`` applied)."""
    total = 0
    for series in influx_query(influx_url, db, f"SELECT count(*) FROM /.*/ WHERE {where}"):  # noqa: S608 - internal clause
        columns = series["columns"]
        for row in series["values"]:
            for name, value in zip(columns, row, strict=True):
                if name != "time" and not name.endswith("_q") and isinstance(value, int | float):
                    total += int(value)
    return total


def scrape_samples(metrics_url: str, name: str, timeout: float = 2.0) -> list[float]:
    """Every sample of a Prometheus metric (one per label set) from a /metrics page."""
    text = http_call("GET", metrics_url, timeout=timeout).text
    return [
        float(match["value"])
        for match in map(_SAMPLE.match, text.splitlines())
        if match and match["name"] == name
    ]


def scrape_by_label(metrics_url: str, name: str, label: str, timeout: float = 2.0) -> dict[str, float]:
    """A Prometheus metric's samples summed per value of one of its labels (``label="x"`` → sum)."""
    text = http_call("GET", metrics_url, timeout=timeout).text
    pattern = re.compile(rf'(?:^|,){re.escape(label)}="([^"]*)"')
    sums: dict[str, float] = {}
    for match in map(_SAMPLE.match, text.splitlines()):
        if match and match["name"] == name:
            found = pattern.search(match["labels"] or "")
            key = found.group(1) if found else ""
            sums[key] = sums.get(key, 0.0) + float(match["value"])
    return sums


def scrape_counter(metrics_url: str, name: str, timeout: float = 2.0) -> float:
    """Sum of all samples of a Prometheus metric (all label sets) from a /metrics page."""
    return sum(scrape_samples(metrics_url, name, timeout), 0.0)


def scrape_buckets(metrics_url: str, name: str, timeout: float = 2.0) -> dict[float, float]:
    """A Prometheus histogram's cumulative buckets from a /metrics page: upper bound → count
    (all label sets summed; ``+Inf`` is ``math.inf``)."""
    text = http_call("GET", metrics_url, timeout=timeout).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != f"{name}_bucket":
            continue
        le = _LE.search(match["labels"] or "")
        if le is not None:
            bound = float(le["le"])  # "+Inf" parses as inf
            buckets[bound] = buckets.get(bound, 0.0) + float(match["value"])
    return buckets
