"""``/import/stations`` and ``/import/devices``: CSV bulk provisioning (multipart upload or text/csv)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from devices import importer
from devices.api.deps import IntegratorKey, OutboxDep, ProvisionerDep, SessionDep
from devices.provisioning import IssuedPassword
from devices.schemas import ERRORS, Message, Responses

router = APIRouter(prefix="/import", tags=["import"], responses=ERRORS)

MAX_BYTES = 20 * 1024 * 1024  # a generous bound: 100k devices are about 6 MB
CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}
BAD_BODY: Responses = {400: {"model": Message, "description": "no CSV document in the request"}}


class RowFailure(BaseModel):
    """One refused row: 1-based data row number (0 = the header) and the reason."""

    row: int
    reason: str


class IssuedCredentials(BaseModel):
    """The MQTT password of a device the import created (login: its id), shown only here."""

    device_id: str
    password: str


class ImportReport(BaseModel):
    """What an import did; good rows are committed even when others fail."""

    created: int
    updated: int
    unchanged: int
    failed: int
    errors: list[RowFailure] = Field(description="row 0 is the header, data rows count from 1")
    credentials: list[IssuedCredentials] = Field(
        default_factory=list,
        description="MQTT passwords of the devices created (empty when provisioning is off)",
    )


async def _csv_text(request: Request) -> str:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "multipart upload needs a 'file' part")
        raw = await upload.read(MAX_BYTES + 1)
    else:
        raw = await request.body()
    if len(raw) > MAX_BYTES:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"CSV larger than {MAX_BYTES} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"CSV is not UTF-8: {exc}") from exc


def _report(result: importer.ImportResult, issued: list[IssuedPassword] | None = None) -> ImportReport:
    return ImportReport(
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
        failed=len(result.errors),
        errors=[RowFailure(row=r, reason=why) for r, why in sorted(result.errors, key=lambda e: e[0])],
        credentials=[IssuedCredentials(device_id=i.device_id, password=i.password) for i in issued or []],
    )


@router.post("/stations", openapi_extra=CSV_BODY, responses=BAD_BODY)
async def import_stations(
    request: Request, session: SessionDep, outbox: OutboxDep, _key: IntegratorKey
) -> ImportReport:
    """Upsert stations from CSV (columns: see ``devices.importer.STATION_COLUMNS``)."""
    text = await _csv_text(request)
    result = await run_in_threadpool(lambda: importer.import_stations(session, text=text))
    await outbox.published()
    return _report(result)


@router.post("/devices", openapi_extra=CSV_BODY, responses=BAD_BODY)
async def import_devices(
    request: Request,
    session: SessionDep,
    outbox: OutboxDep,
    provisioner: ProvisionerDep,
    _key: IntegratorKey,
) -> ImportReport:
    """Upsert devices from CSV (columns: ``importer.DEVICE_COLUMNS``); new ones get MQTT credentials."""
    text = await _csv_text(request)
    result = await run_in_threadpool(lambda: importer.import_devices(session, text=text))
    issued = await provisioner.follow_import(session, result)
    await outbox.published()
    return _report(result, issued)
