"""Points InfluxDB refused, as the worker keeps them on disk; and ``stationflow rejected``.

The worker (``streams.sink.rejected.RejectedStore``) appends one JSON object per refused point
to ``<state dir>/streams/<n>/<spool>/rejected/points.jsonl`` (older records in
``points.1.jsonl``); this module is the record's shape and the reader behind the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from stationflow.settings import CommonSettings

__all__ = ["OLDER_FILE", "REJECTED_FILE", "RejectedPoint", "read_rejected", "rejected_files", "show_rejected"]

REJECTED_FILE = "points.jsonl"
OLDER_FILE = "points.1.jsonl"


class RejectedPoint(BaseModel):
    """One point InfluxDB refused."""

    time: datetime
    device: str | None  # the point's ``device`` tag (``station`` for station-level points)
    measurement: str
    status: int  # InfluxDB's HTTP status
    reason: str  # InfluxDB's own words
    line: str  # the line-protocol line as sent


def rejected_files(state_dir: Path) -> list[Path]:
    """Every rejected-points file under a state directory (all workers and sinks), oldest first."""
    found = []
    for path in sorted(state_dir.glob(f"**/rejected/{REJECTED_FILE}")):
        older = path.with_name(OLDER_FILE)
        found.extend([older, path] if older.exists() else [path])
    return found


def read_rejected(paths: Iterable[Path], *, device: str | None = None) -> Iterator[RejectedPoint]:
    """Records from ``paths`` (optionally one device's); lines that do not parse are skipped."""
    for path in paths:
        try:
            raw_lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            continue
        for raw in raw_lines:
            try:
                point = RejectedPoint.model_validate_json(raw)
            except ValidationError:
                continue
            if device is None or point.device == device:
                yield point


def show_rejected(
    *, state_dir: Path | None, device: str | None, limit: int, as_json: bool, console: Console | None = None
) -> int:
    """Print the last ``limit`` refused points (all, or one device's); returns how many matched."""
    root = state_dir if state_dir is not None else CommonSettings().state_dir
    out = console or Console()
    # a point refused again after a replay (a worker killed before its Kafka commit) is one point
    latest = {p.line: p for p in read_rejected(rejected_files(root), device=device)}
    points = sorted(latest.values(), key=lambda p: p.time)
    shown = points[-limit:] if limit > 0 else points
    if as_json:
        for point in shown:
            print(point.model_dump_json())  # noqa: T201  (machine-readable output, no markup)
        return len(points)
    table = Table(title=f"points InfluxDB refused under {root} (last {limit} of {len(points)})")
    for col in ("refused (UTC)", "device", "measurement", "reason", "line"):
        table.add_column(col, overflow="fold")
    for point in shown:
        table.add_row(
            point.time.strftime("%Y-%m-%d %H:%M:%S"),
            point.device or "-",
            point.measurement,
            point.reason,
            point.line,
        )
    out.print(table)
    return len(points)
