"""InfluxDB 1.x writer: line protocol to ``POST /write?db=…&precision=ns`` over httpx."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from stationflow.lifetime import AsyncLifetime
from streams.sink.errors import SinkRejected, SinkUnavailable, error_for_status

__all__ = ["DEFAULT_TIMEOUT", "V1Writer", "influxql_quote"]

logger = logging.getLogger(__name__)

# A 5,000-point batch takes ~15 ms on a healthy InfluxDB 1.6; 10 s only trips when the
# server is hung or overloaded, which we then treat as an outage and spool.
DEFAULT_TIMEOUT = 10.0

# Longest piece of an error body we copy into an exception (InfluxDB echoes the bad line).
_MAX_MESSAGE_CHARS = 500


class V1Writer(AsyncLifetime):
    """Writes line-protocol batches to one InfluxDB 1.x database."""

    def __init__(
        self,
        url: str,
        db: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Remember where to write; nothing is contacted until :meth:`start`.

        :param url: base URL such as ``http://127.0.0.1:8086``.
        :param db: database; created on start (or on the first write if InfluxDB was down).
        :param username: optional user (HTTP basic auth), with ``password``.
        :param timeout: seconds for connect, read and write of one request.
        """
        if httpx.URL(url).scheme not in ("http", "https"):
            raise ValueError(f"influx url must be http(s)://, got {url!r}")
        self._url = url.rstrip("/")
        self._db = db
        self._auth = httpx.BasicAuth(username, password or "") if username else None
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._db_ready = False

    @property
    def url(self) -> str:
        """Base URL of the server, for logs."""
        return self._url

    async def start(self) -> None:
        """Open the HTTP client and create the database (deferred if InfluxDB is down)."""
        if self._client is not None:
            raise RuntimeError("V1Writer already started")
        self._client = httpx.AsyncClient(base_url=self._url, auth=self._auth, timeout=self._timeout)
        try:
            await self._ensure_database()
        except SinkUnavailable as exc:
            logger.warning(
                "influx unreachable at start, will create database on first write url=%s db=%s reason=%s",
                self._url,
                self._db,
                exc.message,
            )

    async def stop(self) -> None:
        """Close the HTTP client (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def write(self, body: bytes) -> None:
        """Write one batch of nanosecond line protocol; raise SinkUnavailable / SinkRejected."""
        if not self._db_ready:
            await self._ensure_database()
        await self._post("/write", params={"db": self._db, "precision": "ns"}, content=body)

    async def _ensure_database(self) -> None:
        """``CREATE DATABASE`` (a no-op if it exists); a user without admin rights may skip it."""
        try:
            response = await self._post("/query", data={"q": f"CREATE DATABASE {influxql_quote(self._db)}"})
            _raise_for_statement_error(response)
        except SinkRejected as exc:
            if exc.status != 403:
                raise
            logger.warning(
                "influx user may not create databases, assuming it exists url=%s db=%s reason=%s",
                self._url,
                self._db,
                exc.message,
            )
        self._db_ready = True

    async def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST and translate every failure into our errors."""
        if self._client is None:
            raise RuntimeError("V1Writer not started")
        with _map_transport_errors():
            response = await self._client.post(path, **kwargs)
        if not response.is_success:
            raise error_for_status(
                response.status_code,
                _server_message(response),
                retry_after=response.headers.get("Retry-After"),
            )
        return response


def influxql_quote(identifier: str) -> str:
    """An InfluxQL double-quoted identifier."""
    escaped = identifier.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@contextmanager
def _map_transport_errors() -> Iterator[None]:
    """Turn httpx transport failures (refused, reset, timeout) into SinkUnavailable."""
    try:
        yield
    except httpx.RequestError as exc:
        raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _server_message(response: httpx.Response) -> str:
    """The error InfluxDB reported: JSON ``error``, the ``X-Influxdb-Error`` header, or the body."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])[:_MAX_MESSAGE_CHARS]
    header = response.headers.get("X-Influxdb-Error")
    if header:
        return str(header)[:_MAX_MESSAGE_CHARS]
    return (response.text or response.reason_phrase)[:_MAX_MESSAGE_CHARS]


def _raise_for_statement_error(response: httpx.Response) -> None:
    """InfluxQL reports statement errors inside a 200 body; surface them."""
    try:
        results = response.json().get("results", [])
    except (ValueError, AttributeError):
        return
    for result in results:
        if isinstance(result, dict) and result.get("error"):
            message = str(result["error"])[:_MAX_MESSAGE_CHARS]
            raise SinkRejected(message, status=response.status_code, reason="query_error")
