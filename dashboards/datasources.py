"""The two datasources every dashboard refers to, by the fixed uids ``grafana/provisioning`` gives them."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import DataSourceRef

__all__ = ["INFLUX", "INFLUX_UID", "PROMETHEUS", "PROMETHEUS_UID", "UIDS"]

INFLUX_UID = "stationflow-influx"
PROMETHEUS_UID = "stationflow-prometheus"
INFLUX = DataSourceRef(type_val="influxdb", uid=INFLUX_UID)
PROMETHEUS = DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
UIDS = {INFLUX_UID: "influxdb", PROMETHEUS_UID: "prometheus"}
