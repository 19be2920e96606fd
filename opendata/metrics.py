"""Prometheus metrics of the open-data service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["CACHE", "LIMITED", "PUBLIC_STATIONS", "QUERY_ERRORS", "REQUESTS", "SECONDS"]

REQUESTS = Counter(
    "stationflow_opendata_requests_total", "Answered API requests", ["endpoint", "format", "status"]
)
SECONDS = Histogram(
    "stationflow_opendata_request_seconds",
    "Time to answer an API request (cached answers included)",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CACHE = Counter("stationflow_opendata_cache_total", "Response cache lookups", ["result"])
LIMITED = Counter("stationflow_opendata_rate_limited_total", "Requests refused with 429")
QUERY_ERRORS = Counter("stationflow_opendata_influx_errors_total", "InfluxDB reads that failed")
PUBLIC_STATIONS = Gauge("stationflow_opendata_public_stations", "Stations the registry marks public")
