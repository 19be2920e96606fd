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

from stationflow.contracts import Quality, ReadingBatch
from streams.catalog import domain_of
from streams.normalize import ts_ns

__all__ = ["batch_lines", "escape_key", "escape_tag"]

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})


def escape_tag(value: str) -> str:
    """Escape a tag key or value."""
    return value.translate(_TAG_ESCAPES)


escape_key = escape_tag  # field keys follow the same rules as tag keys


def batch_lines(batch: ReadingBatch, extra_tags: Mapping[str, str] | None = None) -> list[str]:
    """Line-protocol lines for one batch (readings grouped by timestamp)."""
    measurement = domain_of(r.metric for r in batch.readings).translate(_MEASUREMENT_ESCAPES)
    tags = f"device={escape_tag(batch.device_id)}"
    if extra_tags:
        tags += "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(extra_tags.items()) if v)
    by_ts: dict[int, list[str]] = {}
    for r in batch.readings:
        fields = by_ts.setdefault(ts_ns(r), [])
        key = escape_key(r.metric)
        fields.append(f"{key}={r.value!r}")
        if r.quality is not Quality.NORMAL:
            fields.append(f'{key}_q="{r.quality.value}"')
    return [f"{measurement},{tags} {','.join(fields)} {ns}" for ns, fields in by_ts.items()]


def encode(lines: Iterable[str]) -> bytes:
    """Join lines into a write body."""
    return "\n".join(lines).encode()
