"""Stations as the open-data service sees them, built from the registry's device records (pure).

A station exists here once a device record names it. Its description comes from the newest
record (records of one station can differ for a moment while a change is republished). Cold
chain never appears: neither stations of kind ``coldchain`` nor the ``coldchain`` domain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stationflow.contracts import DeviceRecord
from streams.analytics import water

__all__ = ["HIDDEN_KINDS", "StationEntry", "public_stations", "stations_from_records"]

HIDDEN_KINDS = frozenset({"coldchain"})
HIDDEN_DOMAINS = frozenset({"coldchain"})


@dataclass(frozen=True, slots=True)
class StationEntry:
    """A station with its devices, the domains they measure and its levels / target class."""

    station_id: str
    name: str
    kind: str
    lat: float | None
    lon: float | None
    region: str | None
    basin: str | None
    public: bool
    domains: tuple[str, ...]
    devices: tuple[str, ...]
    expected_interval_s: int | None  # the shortest of its devices' intervals
    warning_level_m: float | None
    guaranteed_level_m: float | None
    target: int | None  # GB 3838 target class 1..5

    def describe(self) -> dict[str, object]:
        """The fields every open-data item starts with."""
        return {
            "station_id": self.station_id,
            "name": self.name,
            "lat": self.lat,
            "lon": self.lon,
            "region": self.region,
            "basin": self.basin,
        }


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def stations_from_records(
    records: Iterable[DeviceRecord], *, include_coldchain: bool = False
) -> dict[str, StationEntry]:
    """station id → entry, over every record with a station (public or not).

    Cold chain is left out unless ``include_coldchain`` (the duty console's board shows it).
    """
    hidden_kinds = frozenset() if include_coldchain else HIDDEN_KINDS
    hidden_domains = frozenset() if include_coldchain else HIDDEN_DOMAINS
    grouped: dict[str, list[DeviceRecord]] = {}
    for record in records:
        if record.station is not None:
            grouped.setdefault(record.station.station_id, []).append(record)
    out: dict[str, StationEntry] = {}
    for station_id, group in grouped.items():
        newest = max(group, key=lambda r: r.updated_at)
        info = newest.station
        assert info is not None  # noqa: S101 - grouped by station
        kind = str(info.attributes.get("kind", "other"))
        domains = tuple(sorted({r.domain for r in group} - hidden_domains))
        if kind in hidden_kinds or not domains:
            continue
        intervals = [r.expected_interval_s for r in group if r.expected_interval_s]
        out[station_id] = StationEntry(
            station_id=station_id,
            name=info.name,
            kind=kind,
            lat=info.lat,
            lon=info.lon,
            region=info.region,
            basin=info.basin,
            public=info.public,
            domains=domains,
            devices=tuple(sorted(r.device_id for r in group)),
            expected_interval_s=min(intervals) if intervals else None,
            warning_level_m=_number(
                info.attributes.get("warning_level", newest.thresholds.get("warning_level"))
            ),
            guaranteed_level_m=_number(
                info.attributes.get("guaranteed_level", newest.thresholds.get("guaranteed_level"))
            ),
            target=water.class_number(info.attributes.get("target_class")),
        )
    return out


def public_stations(records: Iterable[DeviceRecord]) -> dict[str, StationEntry]:
    """Only the stations the registry marks public (what the open-data API may show)."""
    return {k: v for k, v in stations_from_records(records).items() if v.public}
