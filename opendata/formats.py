"""Rendering of item lists as CSV (``csv`` module) and GeoJSON (pure)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = ["geojson_bytes", "to_csv", "to_geojson"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(_cell(v) for v in value)
    if isinstance(value, Mapping):
        return ";".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def to_csv(items: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Items as CSV with a header; lists joined by ``;``, mappings as ``k=v;k=v``, None empty.

    ``columns`` defaults to the keys in order of first appearance over all items.
    """
    if columns is None:
        seen: dict[str, None] = {}
        for item in items:
            seen.update(dict.fromkeys(item))
        columns = list(seen)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for item in items:
        writer.writerow([_cell(item.get(c)) for c in columns])
    return out.getvalue()


def to_geojson(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A FeatureCollection of Points ``[lon, lat]``; properties are the item's fields.

    Items without both coordinates are left out.
    """
    features = [
        {
            "type": "Feature",
            "id": item.get("station_id"),
            "geometry": {"type": "Point", "coordinates": [item["lon"], item["lat"]]},
            "properties": dict(item),
        }
        for item in items
        if isinstance(item.get("lat"), int | float) and isinstance(item.get("lon"), int | float)
    ]
    return {"type": "FeatureCollection", "features": features}


def geojson_bytes(items: Sequence[Mapping[str, Any]]) -> bytes:
    """:func:`to_geojson` serialised (UTF-8, no ASCII escapes)."""
    return orjson.dumps(to_geojson(items))
