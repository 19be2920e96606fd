"""The station board route of the duty console: ``GET /stations/board`` (only when the
service follows the registry, ``STATIONFLOW_ALERTS_REGISTRY``)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from alerts.auth import ReaderKey, RuntimeDep
from alerts.board import StationBoardOut
from stationview.influxql import InfluxQLError

__all__ = ["router"]

logger = logging.getLogger(__name__)
router = APIRouter(tags=["stations"])
Filter = Annotated[str | None, Query(max_length=64)]


@router.get("/stations/board", responses={502: {"description": "InfluxDB could not be read"}})
async def station_board(
    rt: RuntimeDep, _key: ReaderKey, region: Filter = None, basin: Filter = None, kind: Filter = None
) -> StationBoardOut:
    """Every station (public or hidden) with its latest state and open alerts, worst first;
    filtered by region, basin and kind when given."""
    if rt.board is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "station board off: the registry is not followed")
    try:
        return await rt.board.snapshot(region=region, basin=basin, kind=kind)
    except InfluxQLError as exc:
        logger.warning("station board failed reason=%s", exc)
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"station board: {exc}") from exc
