"""InfluxDB 1.x writer: line protocol to ``POST /write?db=…&precision=ns`` over aiohttp.

aiohttp, not httpx, on this hot path (every batch of the raw stage and the analytics is one
request). Measured against a local HTTP server, one 8 kB POST cost about 1.0 ms of CPU with
httpx 0.29 and 0.13-0.17 ms with aiohttp 3.14, and httpx left ~38 objects in reference
cycles per request (``Request``, ``URL``, ``Headers``, httpcore's pool request and events):
in the worker, whose collector runs rarely (``stationflow.runtime.tune_gc``), ~800 writes'
worth were collected at once every ~25 s, a 60-130 ms pause of the event loop that the
alert path waited through. aiohttp leaves none. (aiohttp is already the worker's: Faust's
web server and the v2 writer's influxdb-client use it.)
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from stationflow.lifetime import AsyncLifetime
from streams.sink.errors import SinkRejected, SinkUnavailable, error_for_status

__all__ = ["DEFAULT_TIMEOUT", "V1Writer", "influxql_quote"]

logger = logging.getLogger(__name__)

# A 5,000-point batch takes ~15 ms on a healthy InfluxDB 1.6; 10 s only trips when the
# server is hung or overloaded, which we then treat as an outage and spool.
DEFAULT_TIMEOUT = 10.0

# Longest piece of an error body we copy into an exception (InfluxDB echoes the bad line).
_MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True, slots=True)
class _Reply:
    """An InfluxDB answer, read in full (the connection goes back to the pool at once)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` if it is not."""
        return orjson.loads(self.body)


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
        :param timeout: seconds to connect, and seconds of silence while reading the answer;
            a whole request gets three times that (sending a large batch included).
        """
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"influx url must be http(s)://, got {url!r}")
        self._url = url.rstrip("/")
        self._db = db
        self._headers = {"Authorization": _basic_auth(username, password or "")} if username else {}
        self._timeout = aiohttp.ClientTimeout(total=3 * timeout, sock_connect=timeout, sock_read=timeout)
        self._client: aiohttp.ClientSession | None = None
        self._db_ready = False

    @property
    def url(self) -> str:
        """Base URL of the server, for logs."""
        return self._url

    async def start(self) -> None:
        """Open the HTTP client and create the database (deferred if InfluxDB is down)."""
        if self._client is not None:
            raise RuntimeError("V1Writer already started")
        # no proxy from the environment (trust_env off): the sink talks to its InfluxDB directly
        self._client = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout, trust_env=False)
        try:
            await self._ensure_database()
        except SinkRejected:
            await self.stop()  # refused (wrong credentials): nothing stays open
            raise
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
            await client.close()

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

    async def _post(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
    ) -> _Reply:
        """POST (a raw body, or a form) and translate every failure into our errors."""
        if self._client is None:
            raise RuntimeError("V1Writer not started")
        with _map_transport_errors():
            async with self._client.post(
                self._url + path, params=params, data=content if content is not None else data
            ) as response:
                body = await response.read()
                reply = _Reply(response.status, response.reason or "", response.headers, body)
        if not 200 <= reply.status < 300:
            raise error_for_status(
                reply.status, _server_message(reply), retry_after=reply.headers.get("Retry-After")
            )
        return reply


def _basic_auth(username: str, password: str) -> str:
    """HTTP basic credentials (RFC 7617, UTF-8), as aiohttp's deprecated ``BasicAuth`` made them."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def influxql_quote(identifier: str) -> str:
    """An InfluxQL double-quoted identifier."""
    escaped = identifier.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@contextmanager
def _map_transport_errors() -> Iterator[None]:
    """Turn transport failures (refused, reset, timeout) into SinkUnavailable."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _server_message(response: _Reply) -> str:
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
    text = response.body.decode("utf-8", "replace")
    return (text or response.reason)[:_MAX_MESSAGE_CHARS]


def _raise_for_statement_error(response: _Reply) -> None:
    """InfluxQL reports statement errors inside a 200 body; surface them."""
    try:
        results = response.json().get("results", [])
    except (ValueError, AttributeError):
        return
    for result in results:
        if isinstance(result, dict) and result.get("error"):
            message = str(result["error"])[:_MAX_MESSAGE_CHARS]
            raise SinkRejected(message, status=response.status, reason="query_error")
