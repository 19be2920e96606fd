"""The embedded local stack: real Tansu, Mosquitto, InfluxDB and VictoriaMetrics as children."""

from stationflow.stack.components import (
    Component,
    influx_create_db,
    influx_query,
    influx_write,
    start_influxd,
    start_mosquitto,
    start_tansu,
    start_victoria_metrics,
    victoria_force_flush,
)
from stationflow.stack.ports import free_port, free_ports, wait_port
from stationflow.stack.procs import ManagedProcess, StackError

__all__ = [
    "Component",
    "ManagedProcess",
    "StackError",
    "free_port",
    "free_ports",
    "influx_create_db",
    "influx_query",
    "influx_write",
    "start_influxd",
    "start_mosquitto",
    "start_tansu",
    "start_victoria_metrics",
    "victoria_force_flush",
    "wait_port",
]
