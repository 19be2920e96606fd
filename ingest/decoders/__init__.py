"""Payload decoders: pure functions ``bytes -> list[Reading]`` with no I/O.

Dispatch is a dict from format name to decoder; every decoder raises
``ingest.errors.RejectedMessage`` with a code and a reason for bad input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ingest.decoders import native_json, senml
from ingest.decoders.native_json import JsonReading
from stationflow.contracts import Reading

__all__ = ["DECODERS", "Decoder"]


class Decoder(Protocol):
    """Decode one device message; ``received_at`` serves formats without their own clock."""

    def __call__(
        self, payload: bytes, *, device_id: str, received_at: datetime
    ) -> list[Reading] | list[JsonReading]:
        """The readings (models, or native JSON's fast-path structs); or raise ``RejectedMessage``."""
        ...


DECODERS: dict[str, Decoder] = {
    "json": native_json.decode,
    "senml": senml.decode,
}
