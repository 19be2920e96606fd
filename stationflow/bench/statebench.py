"""``stationflow bench analytics``: what one device update costs once the windows are full.

The pipeline bench runs for seconds, so its devices hold minutes of windows; a station that has
reported for two days holds the open hour's minute slots and 48 closed hours of every metric,
and each of its messages costs the worker several times more. This bench measures that steady
state on the analytics code alone (no broker, no I/O): the steps the worker's ``analyse`` agent
runs per device and batch, in the same order:

* ``decode``: the device's table value → ``DeviceState`` (``statecodec.decode_device``, its
  closed hours left packed until the update needs them, as in the worker);
* ``update``: the readings applied (``device.update_device``: windows, data quality, hours
  closed, rolling signals, rules, derived lines);
* ``encode``: the state → its table value (``statecodec.encode_device``).

Each device first receives ``hours`` of minute messages (``metrics`` readings each, values that
wander as a sensor's do); that warm-up is not measured. A few distinct warmed states are made
and copied to the measured devices (warming each of a thousand devices through two days would
take minutes). Then every device receives ``messages`` more messages (``interval_s`` apart: a
minute by default; ``hours=0`` and a millisecond are the pipeline bench's new devices), one per update,
as a province's stations reporting once a minute do; CPU time (``time.process_time``) is summed
per step. The garbage collector is tuned as in the worker.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stationflow.runtime import tune_gc
from stationflow.wire import WireReading
from streams.analytics.device import AnalyticsConfig, update_device
from streams.analytics.statecodec import decode_device, encode_device

__all__ = ["StateBenchResult", "measure_states", "run_state_bench"]

AIR_METRICS = ("pm25", "pm10", "so2", "no2", "o3", "co")
TEMPLATES = 4  # distinct warmed states copied to the measured devices
START = datetime(2026, 7, 1, 0, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class StateBenchResult:
    """CPU per device update, by step, and the size of the table values."""

    devices: int
    hours: int
    metrics: int
    messages: int
    interval_s: float
    updates: int
    decode_us: float
    update_us: float
    encode_us: float
    state_bytes: float

    @property
    def total_us(self) -> float:
        return self.decode_us + self.update_us + self.encode_us

    def as_dict(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "hours": self.hours,
            "metrics": self.metrics,
            "messages": self.messages,
            "interval_s": self.interval_s,
            "updates": self.updates,
            "cpu_us_per_update": {
                "decode": round(self.decode_us, 1),
                "update": round(self.update_us, 1),
                "encode": round(self.encode_us, 1),
                "total": round(self.total_us, 1),
            },
            "cpu_us_per_reading": round(self.total_us / self.metrics, 2),
            "state_bytes_mean": round(self.state_bytes),
        }


def metric_names(count: int) -> list[str]:
    """The air station's six pollutants, then ``m7``, ``m8``… for wider devices."""
    return [*AIR_METRICS[:count], *(f"m{i + 1}" for i in range(len(AIR_METRICS), count))]


class _Sensor:
    """Values that wander (a random walk around a level), rounded to one decimal as stations send."""

    def __init__(self, names: list[str], seed: int) -> None:
        self.rnd = random.Random(seed)
        self.level = {name: 20.0 + 10.0 * i for i, name in enumerate(names)}

    def message(self, names: list[str], at: datetime) -> list[WireReading]:
        out = []
        for name in names:
            level = max(0.5, self.level[name] + self.rnd.gauss(0.0, 1.0))
            self.level[name] = level
            out.append(WireReading(metric=name, value=round(level, 1), ts=at))
        return out


def measure_states(
    *,
    devices: int,
    hours: int,
    metrics: int,
    messages: int,
    interval_s: float = 60.0,
    progress: Progress | None = None,
) -> StateBenchResult:
    """Warm ``TEMPLATES`` states through ``hours`` of minute data, then time ``messages`` more
    messages, ``interval_s`` apart, for each of ``devices`` devices (see the module docs)."""
    config = AnalyticsConfig()
    names = metric_names(metrics)
    warm_minutes = hours * 60
    task = progress.add_task("warming up", total=TEMPLATES * warm_minutes) if progress else None
    templates: list[tuple[bytes, _Sensor]] = []
    for t in range(TEMPLATES):
        sensor = _Sensor(names, seed=t)
        state = decode_device(None)
        for minute in range(warm_minutes):
            at = START + minute * MINUTE
            update_device(
                state,
                f"warm-{t}",
                sensor.message(names, at),
                record=None,
                domain="air",
                now=0.0,
                config=config,
            )
            if progress is not None and task is not None and minute % 60 == 0:
                progress.update(task, completed=t * warm_minutes + minute)
        templates.append((encode_device(state), sensor))
    if progress is not None and task is not None:
        progress.update(task, completed=TEMPLATES * warm_minutes)
    table = {f"dev-{d:05d}": templates[d % TEMPLATES][0] for d in range(devices)}
    sensors = {device: _Sensor(names, seed=1000 + d) for d, device in enumerate(table)}
    tune_gc()
    decode_s = update_s = encode_s = 0.0
    size = 0
    clock = time.process_time
    measured = progress.add_task("measuring", total=messages * devices) if progress else None
    for k in range(messages):
        at = START + warm_minutes * MINUTE + timedelta(seconds=k * interval_s)
        batch = {device: sensors[device].message(names, at) for device in table}
        for device, readings in batch.items():
            a = clock()
            state = decode_device(table[device], lazy=True)  # as the worker does
            b = clock()
            update_device(state, device, readings, record=None, domain="air", now=0.0, config=config)
            c = clock()
            value = encode_device(state)
            d = clock()
            table[device] = value
            decode_s += b - a
            update_s += c - b
            encode_s += d - c
            size += len(value)
        if progress is not None and measured is not None:
            progress.update(measured, completed=(k + 1) * devices)
    updates = messages * devices
    return StateBenchResult(
        devices=devices,
        hours=hours,
        metrics=metrics,
        messages=messages,
        interval_s=interval_s,
        updates=updates,
        decode_us=decode_s / updates * 1e6,
        update_us=update_s / updates * 1e6,
        encode_us=encode_s / updates * 1e6,
        state_bytes=size / updates,
    )


def run_state_bench(
    *, devices: int, hours: int, metrics: int, messages: int, as_json: bool, interval_s: float = 60.0
) -> int:
    """Run the steady-state analytics bench; print JSON or a table."""
    console = Console(stderr=True, quiet=as_json)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        result = measure_states(
            devices=devices,
            hours=hours,
            metrics=metrics,
            messages=messages,
            interval_s=interval_s,
            progress=progress,
        )
    if as_json:
        print(json.dumps(result.as_dict()))  # noqa: T201 - the command's output
        return 0
    table = Table(title=f"stationflow bench analytics: a device with {hours} h of minute data")
    table.add_column("step")
    table.add_column("CPU µs per update", justify="right")
    for step, us in (
        ("decode the table value", result.decode_us),
        ("update (windows, hours, signals, rules, lines)", result.update_us),
        ("encode the table value", result.encode_us),
        ("total", result.total_us),
    ):
        table.add_row(step, f"{us:,.1f}")
    table.add_row("per reading", f"{result.total_us / metrics:,.1f}")
    table.add_row("table value, bytes", f"{result.state_bytes:,.0f}")
    Console().print(table)
    Console().print(
        f"{devices:,} devices × {messages} messages of {metrics} readings = {result.updates:,} updates"
    )
    return 0
