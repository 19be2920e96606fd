"""Readings → InfluxDB line protocol (pure).

One line per (measurement, device, timestamp): all metrics a device reported at one
instant become fields of one point, so a 5-metric message is one point, not five::

    air,device=air-001 pm25=35.2,pm10=61.0 1795248000000000000

A reading whose quality flag is not ``N`` also gets a string field ``<metric>_q`` with the
HJ 212 letter, so suspect values stay visible next to the value itself. Timestamps are
nanoseconds; the same series + timestamp overwrites, which makes replays idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

from stationflow.contracts import Quality, ReadingBatch
from streams.catalog import domain_of
from streams.normalize import Normalized, ts_ns

__all__ = ["batch_lines", "encode", "escape_key", "escape_tag"]

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_NORMAL = Quality.NORMAL


def escape_tag(value: str) -> str:
    """Escape a tag key or value."""
    return value.translate(_TAG_ESCAPES)


escape_key = escape_tag  # field keys follow the same rules as tag keys


@lru_cache(maxsize=65_536)
def _series(measurement: str, device_id: str, extra: tuple[tuple[str, str], ...]) -> str:
    tags = f"device={escape_tag(device_id)}"
    tags += "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in extra if v)
    return f"{measurement.translate(_MEASUREMENT_ESCAPES)},{tags} "


@lru_cache(maxsize=65_536)
def _field_key(metric: str) -> str:
    return escape_key(metric)


def batch_lines(
    batch: ReadingBatch | Normalized,
    extra_tags: Mapping[str, str] | tuple[tuple[str, str], ...] | None = None,
    measurement: str | None = None,
) -> list[str]:
    """Line-protocol lines for one batch (readings grouped by timestamp)."""
    if isinstance(batch, Normalized):
        readings, stamps = batch.batch.readings, batch.ts_ns
        device_id = batch.batch.device_id
    else:
        readings, stamps = batch.readings, [ts_ns(r) for r in batch.readings]
        device_id = batch.device_id
    if isinstance(extra_tags, Mapping):
        extra_tags = tuple(extra_tags.items())
    extra = tuple(sorted(extra_tags)) if extra_tags else ()
    domain = measurement or domain_of(r.metric for r in readings)
    prefix = _series(domain, device_id, extra)
    by_ts: dict[int, list[str]] = {}
    for r, ns in zip(readings, stamps, strict=True):
        fields = by_ts.get(ns)
        if fields is None:
            fields = by_ts[ns] = []
        key = _field_key(r.metric)
        fields.append(f"{key}={r.value!r}")
        if r.quality is not _NORMAL:
            fields.append(f'{key}_q="{r.quality.value}"')
    return [f"{prefix}{','.join(fields)} {ns}" for ns, fields in by_ts.items()]


def encode(lines: Iterable[str]) -> bytes:
    """Join lines into a write body."""
    return "\n".join(lines).encode()
