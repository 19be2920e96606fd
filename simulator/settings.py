"""Settings of ``stationflow simulate`` (and the backfill default of ``stationflow up``)."""

from __future__ import annotations

from pydantic import SecretStr

from stationflow.settings import CommonSettings

__all__ = ["SimulatorSettings", "parse_address"]


class SimulatorSettings(CommonSettings):
    """The broker (``STATIONFLOW_MQTT_*``), the registry to register the fleet with, the backfill.

    ``backfill`` (``STATIONFLOW_BACKFILL``): history to publish before going live, e.g. ``48h``;
    ``0`` disables; unset means ``48h`` under ``stationflow up`` and ``0`` for ``simulate``.
    ``simulator_hj212`` / ``simulator_sl651`` (``host:port``): the TCP collector the simulated
    HJ 212 loggers and SL 651 RTUs connect to; unset, ``simulate`` runs the MQTT devices only.
    """

    registry_url: str = "http://127.0.0.1:8080"
    registry_admin_key: SecretStr | None = None
    backfill: str | None = None
    simulator_hj212: str | None = None
    simulator_sl651: str | None = None


def parse_address(text: str | None) -> tuple[str, int] | None:
    """``host:port`` → (host, port); None stays None."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    return host, int(port)
