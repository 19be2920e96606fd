"""InfluxQL targets and annotations for the SDK (which has no InfluxDB query type), and the
``WHERE`` clauses that apply the dashboard variables.

Variables are regex-matched (``"station" =~ /^$station$/``): Grafana expands a multi-value or
"All" (``.*``) selection into a regex, and a point without the tag (a device with no basin)
still matches ``.*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

from dashboards.datasources import INFLUX

__all__ = ["InfluxAnnotation", "InfluxQL", "InfluxQLQuery", "where"]


def where(*variables: str, extra: Sequence[str] = ()) -> str:
    """``$timeFilter AND "v" =~ /^$v$/ …`` for each variable, plus ``extra`` conditions."""
    parts = ["$timeFilter", *(f'"{v}" =~ /^${v}$/' for v in variables), *extra]
    return " AND ".join(parts)


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target as Grafana's InfluxDB datasource stores it."""

    def __init__(
        self, query: str, ref_id: str = "A", alias: str = "", result_format: str = "time_series"
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.alias = alias
        self.result_format = result_format

    def to_json(self) -> dict[str, object]:
        """The panel target's JSON."""
        payload: dict[str, object] = {
            "datasource": INFLUX,
            "query": self.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": self.result_format,
        }
        if self.alias:
            payload["alias"] = self.alias
        return payload


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder of an :class:`InfluxQLQuery` (``InfluxQL(q).ref_id("B").alias("$tag_station")``)."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query)

    def build(self) -> InfluxQLQuery:
        """The query."""
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        """Grafana's query letter."""
        self._internal.ref_id = ref_id
        return self

    def alias(self, alias: str) -> Self:
        """Series name pattern (``$tag_station``, ``$col``)."""
        self._internal.alias = alias
        return self

    def table(self) -> Self:
        """Return rows as a table instead of time series."""
        self._internal.result_format = "table"
        return self


class InfluxAnnotationQuery(dashboard.AnnotationQuery):
    """An annotation from an InfluxQL query: the time of each row, ``text`` and tag columns."""

    def __init__(self, name: str, query: str, icon_color: str, tags_column: str) -> None:
        super().__init__(name=name, datasource=INFLUX, enable=True, hide=False, icon_color=icon_color)
        self.query = query
        self.tags_column = tags_column

    def to_json(self) -> dict[str, object]:
        """The annotation's JSON (the query both as ``target`` and in the older top-level form)."""
        payload = super().to_json()
        columns = {"textColumn": "text", "tagsColumn": self.tags_column, "titleColumn": ""}
        payload["target"] = {
            "query": self.query,
            "rawQuery": True,
            "refId": "Anno",
            "fromAnnotations": True,
            **columns,
        }
        payload["query"] = self.query
        payload.update(columns)
        return payload


class InfluxAnnotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    """Builder of an :class:`InfluxAnnotationQuery`."""

    def __init__(self, name: str, query: str, *, icon_color: str, tags_column: str) -> None:
        self._internal = InfluxAnnotationQuery(name, query, icon_color, tags_column)

    def build(self) -> dashboard.AnnotationQuery:
        """The annotation."""
        return self._internal
