"""Panel helpers shared by the dashboards: time series, stats, tables, thresholds, alert annotations.

A helper takes its queries (InfluxQL or PromQL builders), names them ``A``, ``B``, … in order,
and sets size, unit and thresholds; the dashboard's builder lays panels out left to right.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dashboard_b
from grafana_foundation_sdk.builders import prometheus as prometheus_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import timeseries as timeseries_b
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode

from dashboards.datasources import INFLUX, PROMETHEUS
from dashboards.influxql import InfluxAnnotation, InfluxQL

__all__ = [
    "Query",
    "Step",
    "alerts_annotation",
    "influx",
    "prom",
    "stat",
    "table",
    "timeseries",
]

Query = InfluxQL | prometheus_b.Dataquery
Step = tuple[float | None, str]  # (from value, colour); the first step's value is None (base)
NEUTRAL: Sequence[Step] = ((None, "green"),)


def influx(query: str, alias: str = "") -> InfluxQL:
    """An InfluxQL target (``alias`` names the series, e.g. ``$tag_station``)."""
    target = InfluxQL(" ".join(query.split()))
    return target.alias(alias) if alias else target


def prom(expr: str, legend: str = "") -> prometheus_b.Dataquery:
    """A PromQL range target on the Prometheus datasource."""
    target = prometheus_b.Dataquery().expr(" ".join(expr.split())).range().datasource(PROMETHEUS)
    return target.legend_format(legend) if legend else target


def _thresholds(steps: Sequence[Step]) -> dashboard_b.ThresholdsConfig:
    return (
        dashboard_b.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=colour) for value, colour in steps])
    )


def _datasource(queries: Sequence[Query]) -> DataSourceRef:
    return PROMETHEUS if all(isinstance(q, prometheus_b.Dataquery) for q in queries) else INFLUX


def _named(queries: Sequence[Query]) -> list[Builder[Dataquery]]:
    return [q.ref_id(chr(ord("A") + i)) for i, q in enumerate(queries)]


def timeseries(
    title: str,
    queries: Sequence[Query],
    *,
    unit: str = "",
    width: int = 12,
    height: int = 8,
    steps: Sequence[Step] = NEUTRAL,
    style: common.GraphThresholdsStyleMode = common.GraphThresholdsStyleMode.OFF,
    bars: bool = False,
    description: str = "",
) -> timeseries_b.Panel:
    """A time series panel; ``steps`` drawn as lines or areas when ``style`` says so."""
    panel = (
        timeseries_b.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource(queries))
        .targets(_named(queries))
        .span(width)
        .height(height)
        .unit(unit)
        .thresholds(_thresholds(steps))
        .thresholds_style(common_b.GraphThresholdsStyleConfig().mode(style))
        .legend(common_b.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST))
        .span_nulls(True)
    )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    return panel


def stat(
    title: str,
    queries: Sequence[Query],
    *,
    unit: str = "",
    width: int = 6,
    height: int = 5,
    steps: Sequence[Step] = NEUTRAL,
    description: str = "",
) -> stat_b.Panel:
    """A stat panel of each series' last value, coloured by ``steps``."""
    return (
        stat_b.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource(queries))
        .targets(_named(queries))
        .span(width)
        .height(height)
        .unit(unit)
        .thresholds(_thresholds(steps))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def table(
    title: str,
    queries: Sequence[Query],
    *,
    width: int = 12,
    height: int = 8,
    steps: Sequence[Step] = NEUTRAL,
    description: str = "",
) -> table_b.Panel:
    """A table panel (InfluxQL targets returned as rows)."""
    named = _named([q.table() if isinstance(q, InfluxQL) else q for q in queries])
    return (
        table_b.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource(queries))
        .targets(named)
        .span(width)
        .height(height)
        .thresholds(_thresholds(steps))
    )


def alerts_annotation(name: str, rules: str, colour: str, *variables: str) -> InfluxAnnotation:
    """Alerts of the rules matching the regex ``rules`` (``alerts`` measurement) as annotations."""
    filters = " AND ".join(f'"{v}" =~ /^${v}$/' for v in variables)
    query = (
        'SELECT "text", "state", "value", "threshold", "rule", "severity", "station", "device" '
        f'FROM "alerts" WHERE $timeFilter AND "rule" =~ /{rules}/'
    )
    if filters:
        query += f" AND {filters}"
    return InfluxAnnotation(name, query, icon_color=colour, tags_column="rule,severity,state,station")
