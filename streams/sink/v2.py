"""InfluxDB 2.x / 3.x writer: line protocol to ``/api/v2/write`` through influxdb-client (async)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write_api_async import WriteApiAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from stationflow.lifetime import AsyncLifetime
from streams.sink.errors import SinkRejected, SinkUnavailable, error_for_status
from streams.sink.v1 import DEFAULT_TIMEOUT

__all__ = ["V2Writer"]

# Longest piece of an error body we copy into an exception.
_MAX_MESSAGE_CHARS = 500
# The library annotates ``write_precision`` as WritePrecision, but its members are plain str.
_NANOSECONDS = cast("WritePrecision", WritePrecision.NS)


class V2Writer(AsyncLifetime):
    """Writes line-protocol batches to one InfluxDB 2.x / 3.x bucket."""

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Remember where to write; nothing is contacted until :meth:`start`.

        :param url: base URL such as ``http://127.0.0.1:8086``.
        :param org: organisation name or id.
        :param bucket: bucket; it must exist (the token may not be allowed to create it).
        :param token: API token (``None`` for servers without auth, e.g. VictoriaMetrics).
        :param timeout: seconds for one whole request.
        """
        self._url = url.rstrip("/")
        self._org = org
        self._bucket = bucket
        self._token = token
        self._timeout = timeout
        self._client: InfluxDBClientAsync | None = None
        self._api: WriteApiAsync | None = None

    @property
    def url(self) -> str:
        """Base URL of the server, for logs."""
        return self._url

    async def start(self) -> None:
        """Open the client session (it needs a running event loop, hence not in ``__init__``)."""
        if self._client is not None:
            raise RuntimeError("V2Writer already started")
        self._client = InfluxDBClientAsync(
            url=self._url,
            token=self._token or "",  # empty: no Authorization header
            org=self._org,
            timeout=int(self._timeout * 1000),
        )
        self._api = self._client.write_api()

    async def stop(self) -> None:
        """Close the client session (idempotent)."""
        client, self._client, self._api = self._client, None, None
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]  # untyped in the library

    async def write(self, body: bytes) -> None:
        """Write one batch of nanosecond line protocol; raise SinkUnavailable / SinkRejected."""
        if self._api is None:
            raise RuntimeError("V2Writer not started")
        with _map_client_errors():
            # Returns False only for a 2xx other than 201/204: the data was accepted anyway.
            await self._api.write(
                bucket=self._bucket, org=self._org, record=body, write_precision=_NANOSECONDS
            )


@contextmanager
def _map_client_errors() -> Iterator[None]:
    """Translate influxdb-client / aiohttp exceptions into ours, once."""
    try:
        yield
    except ApiException as exc:
        raise _api_error(exc) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _api_error(exc: ApiException) -> SinkUnavailable | SinkRejected:
    """Our error for an influxdb-client ApiException (status 0: the client refused the body)."""
    message = _message(exc)
    if not exc.status:
        return SinkRejected(message, status=0, reason="client")
    return error_for_status(int(exc.status), message, retry_after=exc.retry_after)


def _message(exc: ApiException) -> str:
    """The server's error text (influxdb-client parses the JSON ``message``), shortened."""
    message = getattr(exc, "message", None) or exc.reason or "no response"
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    return str(message)[:_MAX_MESSAGE_CHARS]
