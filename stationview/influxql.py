"""An async InfluxQL read client (httpx) for InfluxDB 1.x, 2.x and 3.x.

Only InfluxQL is spoken, over ``GET /query``: 1.x natively (``db=``, optional ``u``/``p`` from a
``user:password`` token), 2.x and 3.x through their v1-compatible endpoint (``db=`` = the
bucket / database, ``Authorization: Token …``). Times come back as epoch seconds (``epoch=s``),
so callers never parse RFC 3339 strings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from stationflow.settings import CommonSettings, InfluxDialect

__all__ = ["InfluxQL", "InfluxQLError", "Series", "quote_ident", "quote_string"]

logger = logging.getLogger(__name__)


class InfluxQLError(RuntimeError):
    """InfluxDB answered with an error (HTTP status or a statement error)."""


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a result: its measurement, GROUP BY tags and rows as column → value."""

    name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    rows: Sequence[Mapping[str, Any]] = ()


def quote_string(value: str) -> str:
    """An InfluxQL string literal: ``'...'`` with backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(value: str) -> str:
    """An InfluxQL identifier: ``"..."`` with backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_results(body: Mapping[str, Any]) -> list[list[Series]]:
    """The ``results`` of a /query answer as one list of series per statement (pure).

    Raises :class:`InfluxQLError` if the answer or any statement carries an error.
    """
    if "error" in body:
        raise InfluxQLError(str(body["error"]))
    out: list[list[Series]] = []
    for result in body.get("results", []):
        if "error" in result:
            raise InfluxQLError(str(result["error"]))
        statement: list[Series] = []
        for raw in result.get("series", []) or []:
            columns = list(raw.get("columns", []))
            rows = [dict(zip(columns, values, strict=False)) for values in raw.get("values", []) or []]
            statement.append(Series(raw.get("name", ""), dict(raw.get("tags") or {}), rows))
        out.append(statement)
    return out


class InfluxQL:
    """Read-only InfluxQL over HTTP; use as ``async with InfluxQL.from_settings(s) as q``."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        token: str | None = None,
        dialect: InfluxDialect = InfluxDialect.V1,
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self._params: dict[str, str] = {"db": database, "epoch": "s"}
        headers: dict[str, str] = {}
        if token and dialect is InfluxDialect.V2:
            headers["Authorization"] = f"Token {token}"
        elif token and ":" in token:  # 1.x: "user:password"
            user, _, password = token.partition(":")
            self._params |= {"u": user, "p": password}
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s, headers=headers)
        if client is not None:
            client.headers.update(headers)

    @classmethod
    def from_settings(
        cls, settings: CommonSettings, *, timeout_s: float = 10.0, client: httpx.AsyncClient | None = None
    ) -> InfluxQL:
        """A client for the InfluxDB of the common settings (v2: the bucket is the database)."""
        token = settings.influx_token.get_secret_value() if settings.influx_token else None
        v2 = settings.influx_dialect is InfluxDialect.V2
        return cls(
            settings.influx_url,
            settings.influx_bucket if v2 else settings.influx_db,
            token=token,
            dialect=settings.influx_dialect,
            timeout_s=timeout_s,
            client=client,
        )

    async def query_many(self, statements: Sequence[str]) -> list[list[Series]]:
        """Run statements in one request (joined by ``;``); one list of series per statement."""
        if not statements:
            return []
        q = ";\n".join(statements)
        try:
            answer = await self._client.get(f"{self.url}/query", params={**self._params, "q": q})
        except httpx.HTTPError as exc:
            raise InfluxQLError(f"InfluxDB unreachable at {self.url}: {exc!r}") from exc
        if answer.status_code >= 400:
            raise InfluxQLError(f"InfluxDB answered {answer.status_code}: {answer.text[:300]}")
        results = parse_results(answer.json())
        if len(results) != len(statements):
            raise InfluxQLError(f"{len(statements)} statements, {len(results)} results")
        return results

    async def query(self, statement: str) -> list[Series]:
        """Run one statement; its series."""
        return (await self.query_many([statement]))[0]

    async def aclose(self) -> None:
        """Close the HTTP client (if this object made it)."""
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
