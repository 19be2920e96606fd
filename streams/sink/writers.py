"""The ``Writer`` seam between the buffered sink and an InfluxDB dialect, and its factory."""

from __future__ import annotations

from typing import Protocol

from stationflow.settings import CommonSettings, InfluxDialect
from streams.sink.v1 import V1Writer
from streams.sink.v2 import V2Writer

__all__ = ["Writer", "make_writer"]


class Writer(Protocol):
    """Sends one line-protocol batch; raises only SinkUnavailable or SinkRejected on failure."""

    @property
    def url(self) -> str:
        """Base URL of the server, for logs."""
        ...

    async def start(self) -> None:
        """Open connections; must not fail just because the server is down."""
        ...

    async def stop(self) -> None:
        """Close connections (idempotent)."""
        ...

    async def write(self, body: bytes) -> None:
        """Write one batch of nanosecond-precision line protocol."""
        ...


def make_writer(settings: CommonSettings) -> Writer:
    """The writer for ``settings.influx_dialect`` (v1: ``/write?db=``, v2: influxdb-client)."""
    token = settings.influx_token.get_secret_value() if settings.influx_token else None
    if settings.influx_dialect is InfluxDialect.V2:
        return V2Writer(settings.influx_url, settings.influx_org, settings.influx_bucket, token)
    username, password = _v1_credentials(token)
    return V1Writer(settings.influx_url, settings.influx_db, username=username, password=password)


def _v1_credentials(token: str | None) -> tuple[str | None, str | None]:
    """Split the v1 ``user:password`` token; no token means no auth."""
    if not token:
        return None, None
    username, sep, password = token.partition(":")
    if not sep or not username:
        raise ValueError("influx_token for the v1 dialect must be 'user:password'")
    return username, password
