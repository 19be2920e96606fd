"""Bulk provisioning from CSV: each data row validated and upserted on its own, failures reported.

Row numbers: the header is row 0, data rows count from 1. Cells left empty mean "not set".
``thresholds`` is ``name=value;name=value``; ``calibration`` is ``metric:scale:offset;...``.

Protocol links (HJ 212 MN, SL 651 address, their passwords) are not CSV columns: a password the
registry generates is shown once, which a bulk import cannot do per row. Set them with
``POST /devices`` or ``PATCH /devices/{id}``; importing a row for such a device keeps them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from . import crud
from .models import Device
from .schemas import DeviceCreate, StationCreate

__all__ = ["ImportResult", "import_devices", "import_stations"]

STATION_COLUMNS = ("id", "name", "kind", "lat", "lon", "region", "basin", "warning_level",
                   "guaranteed_level", "target_class", "thresholds", "public")  # fmt: skip
DEVICE_COLUMNS = ("id", "type", "station_id", "status", "expected_interval_s", "calibration")


@dataclass(slots=True)
class ImportResult:
    """Counts per outcome, the failed rows, the device ids whose record changed.

    For devices also: ``created_ids`` as ``(row, id)`` and ``status_changes`` as
    ``(row, id, old status, new status)``, for the broker accounts to follow.
    """

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)
    created_ids: list[tuple[int, str]] = field(default_factory=list)
    status_changes: list[tuple[int, str, str, str]] = field(default_factory=list)

    def drop_created(self, row: int, device_id: str, reason: str) -> None:
        """Count a created device (since removed again) as a failed row."""
        self.created -= 1
        self.changed_ids.remove(device_id)
        self.errors.append((row, reason))


class RowError(ValueError):
    """A cell that cannot be parsed."""


def _pairs(cell: str, sep: str, column: str) -> list[list[str]]:
    items = [p.strip() for p in cell.split(";") if p.strip()]
    parts = [p.split(sep) for p in items]
    for item, part in zip(items, parts, strict=True):
        if any(not x.strip() for x in part):
            raise RowError(f"{column}: cannot read '{item}'")
    return parts


def _station_row(row: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {k: v for k, v in row.items() if k != "thresholds" and v != ""}
    pairs = _pairs(row.get("thresholds") or "", "=", "thresholds")
    if any(len(p) != 2 for p in pairs):
        raise RowError("thresholds: expected name=value;name=value")
    data["thresholds"] = {k.strip(): v.strip() for k, v in pairs}
    return data


def _device_row(row: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {k: v for k, v in row.items() if k != "calibration" and v != ""}
    pairs = _pairs(row.get("calibration") or "", ":", "calibration")
    if any(len(p) != 3 for p in pairs):
        raise RowError("calibration: expected metric:scale:offset;metric:scale:offset")
    data["calibration"] = {m.strip(): {"scale": s, "offset": o} for m, s, o in pairs}
    return data


def _reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors())


def _rows(text: str, columns: tuple[str, ...], result: ImportResult) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="_extra")
    rows: list[tuple[int, dict[str, str]]] = []
    header: list[str] = []
    try:
        header = list(reader.fieldnames or [])
        unknown = sorted(set(header) - set(columns))
        if not header or "id" not in header or unknown:
            why = f"unknown column(s) {', '.join(unknown)}" if unknown else "missing column 'id'"
            result.errors.append((0, f"header: {why}; expected columns: {', '.join(columns)}"))
            return []
        for row in reader:
            rows.append((len(rows) + 1, row))
    except csv.Error as exc:
        # A syntax error stops the reader: the rows before it are still imported.
        result.errors.append(
            (len(rows) + 1 if reader.fieldnames else 0, f"CSV syntax error, reading stopped: {exc}")
        )
    return rows


def _run(
    session: Session, text: str, kind: Literal["stations", "devices"], result: ImportResult
) -> ImportResult:
    columns = STATION_COLUMNS if kind == "stations" else DEVICE_COLUMNS
    for number, row in _rows(text, columns, result):
        try:
            if "_extra" in row:
                raise RowError(f"{len(row['_extra'])} cell(s) more than the header has")
            body: BaseModel
            if kind == "stations":
                body = StationCreate.model_validate(_station_row(row))
            else:
                body = DeviceCreate.model_validate(_device_row(row))
        except (RowError, ValidationError) as exc:
            result.errors.append((number, _reason(exc) if isinstance(exc, ValidationError) else str(exc)))
            continue
        _store(session, number, body, result)
    return result


def _store(session: Session, number: int, body: BaseModel, result: ImportResult) -> None:
    with session.begin_nested():
        if isinstance(body, DeviceCreate):
            problem = crud.check_device(session, data=body, device_id=body.id)
            if problem is not None:
                result.errors.append((number, f"{problem.field}: {problem.message}"))
                return
            old = session.get(Device, body.id)
            old_status = None if old is None else old.status
            change = crud.upsert_device(session, device_id=body.id, data=body)
            changed = [body.id]
            if change == "created":
                result.created_ids.append((number, body.id))
            elif old_status is not None and old_status != body.status.value:
                result.status_changes.append((number, body.id, old_status, body.status.value))
        else:
            assert isinstance(body, StationCreate)  # noqa: S101  (narrowing for the type checker)
            change = crud.upsert_station(session, station_id=body.id, data=body)
            changed = crud.device_ids(session, station_id=body.id)
    setattr(result, change, getattr(result, change) + 1)
    if change != "unchanged":
        result.changed_ids.extend(changed)


def import_stations(session: Session, *, text: str) -> ImportResult:
    """Upsert the stations of a CSV document and commit the good rows."""
    result = _run(session, text, "stations", ImportResult())
    crud.queue_changes(session, device_ids=result.changed_ids)  # published with the commit (outbox)
    session.commit()
    return result


def import_devices(session: Session, *, text: str) -> ImportResult:
    """Upsert the devices of a CSV document and commit the good rows."""
    result = _run(session, text, "devices", ImportResult())
    crud.queue_changes(session, device_ids=result.changed_ids)  # published with the commit (outbox)
    session.commit()
    return result
