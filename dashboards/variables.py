"""The region / basin / station template variables, chained (basin within region, station within both)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import QueryVariable
from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

from dashboards.datasources import INFLUX

__all__ = ["place_variables", "tag_values"]

ALL = ".*"  # "All" matches every value, and points without the tag


def tag_values(measurement: str, key: str, *within: str) -> str:
    """``SHOW TAG VALUES FROM "m" WITH KEY = "key"`` filtered by the variables ``within``."""
    query = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{key}"'
    if within:
        query += " WHERE " + " AND ".join(f'"{v}" =~ /^${v}$/' for v in within)
    return query


def _variable(name: str, label: str, query: str) -> QueryVariable:
    return (
        QueryVariable(name)
        .label(label)
        .datasource(INFLUX)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(ALL)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def place_variables(measurement: str, *, basin: bool) -> list[QueryVariable]:
    """Region, (basin,) station of the stations writing ``measurement``."""
    out = [_variable("region", "Region 区域", tag_values(measurement, "region"))]
    within = ["region"]
    if basin:
        out.append(_variable("basin", "Basin 流域", tag_values(measurement, "basin", *within)))
        within.append("basin")
    out.append(_variable("station", "Station 站点", tag_values(measurement, "station", *within)))
    return out
