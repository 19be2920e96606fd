"""The open-data app: ``create_app(settings)``.

Read-only, no key. Every request but ``/health`` and ``/metrics`` passes the per-client token
bucket (429 + ``Retry-After`` + a problem body when empty); ``/api/`` answers are cached per path
and query for ``opendata_cache_ttl_s``. The lifespan follows the registry topic (which stations
are public) and owns the InfluxQL client.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from opendata import metrics
from opendata.api import router
from opendata.cache import CachedAnswer, ResponseCache
from opendata.influxql import InfluxQL, InfluxQLError
from opendata.limiter import RateLimiter
from opendata.settings import OpendataSettings
from opendata.stations import public_stations
from stationflow.registryview import RegistryFollower, RegistryView

__all__ = ["READY_LINE", "client_ip", "create_app"]

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
READY_LINE = "opendata service ready"
REGISTRY_WAIT_S = 30.0  # start answering after this even if the registry topic is slow
EXEMPT = ("/health", "/metrics")


def client_ip(peer: str | None, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The client's address: the peer, or (behind a trusted proxy) the right-most untrusted
    address of ``X-Forwarded-For`` (pure)."""
    ip = peer or "unknown"
    if ip not in trusted or not forwarded_for:
        return ip
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return ip
        if hop not in trusted:
            return hop
    return ip


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/json")


def _endpoint(path: str) -> str:
    """A low-cardinality label for a path (station ids folded)."""
    if path.startswith("/api/v1/stations/") and path.endswith("/history"):
        return "/api/v1/stations/{id}/history"
    return path if path.startswith("/api/") else "other"


def create_app(
    settings: OpendataSettings, *, view: RegistryView | None = None, influx: InfluxQL | None = None
) -> FastAPI:
    """The app; ``view`` / ``influx`` given: used as they are (tests), else made by the lifespan."""
    limiter = RateLimiter(settings.opendata_rate_per_minute / 60.0, settings.opendata_burst)
    cache = ResponseCache(settings.opendata_cache_ttl_s, settings.opendata_cache_size)
    trusted = frozenset(settings.opendata_trusted_proxies)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        app.state.view = view or RegistryView()
        own_influx = influx is None
        app.state.influx = influx or InfluxQL.from_settings(
            settings, timeout_s=settings.opendata_query_timeout_s
        )
        if view is None and settings.opendata_registry:
            follower = RegistryFollower(settings, app.state.view)
            tasks.append(asyncio.create_task(follower.run(), name="registry-follower"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.state.view.ready.wait(), REGISTRY_WAIT_S)
        metrics.PUBLIC_STATIONS.set(len(public_stations(app.state.view.records())))
        logger.info(
            "%s port=%d public_stations=%d", READY_LINE, settings.opendata_port,
            len(public_stations(app.state.view.records())),
        )  # fmt: skip
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if own_influx:
                await app.state.influx.aclose()

    app = FastAPI(
        title="stationflow open data",
        version="1",
        description=(
            "Public, read-only environmental data: AQI (HJ 633), surface-water class (GB 3838), "
            "river levels against warning levels and rainfall sums of the stations the registry "
            "marks public. No key. Rate-limited per client (429 with Retry-After); answers are "
            "cached for a few seconds. Every list comes as JSON, CSV (`?format=csv`) or GeoJSON "
            "(`?format=geojson`). Times are ISO 8601 UTC."
        ),
        lifespan=lifespan,
    )
    app.include_router(router)

    @app.middleware("http")
    async def limit_and_cache(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path in EXEMPT:
            return await call_next(request)
        started = time.perf_counter()
        ip = client_ip(
            request.client.host if request.client else None, request.headers.get("x-forwarded-for"), trusted
        )
        decision = limiter.check(ip, time.monotonic())
        endpoint = _endpoint(path)
        fmt = request.query_params.get("format", "json")
        if not decision.allowed:
            metrics.LIMITED.inc()
            metrics.REQUESTS.labels(endpoint, fmt, "429").inc()
            logger.info("rate limited client=%s path=%s retry_after_s=%d", ip, path, decision.retry_after_s)
            return _problem(
                429,
                "Too Many Requests",
                f"at most {settings.opendata_rate_per_minute:g} requests per minute "
                f"(bursts of {settings.opendata_burst}); retry after {decision.retry_after_s} s",
                {"Retry-After": str(decision.retry_after_s)},
            )
        if not path.startswith("/api/"):
            return await call_next(request)
        key = cache.key(path, list(request.query_params.multi_items()))
        hit = cache.get(key)
        if hit is not None:
            metrics.CACHE.labels("hit").inc()
            response: Response = Response(hit.body, status_code=hit.status, media_type=hit.media_type)
            response.headers["X-Cache"] = "hit"
        else:
            metrics.CACHE.labels("miss").inc()
            response = await call_next(request)
            body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
            media_type = response.headers.get("content-type", "application/json")
            cache.put(key, CachedAnswer(response.status_code, body, media_type))
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            response = Response(body, status_code=response.status_code, headers=headers)
            response.headers["X-Cache"] = "miss"
        response.headers["Cache-Control"] = f"public, max-age={int(settings.opendata_cache_ttl_s)}"
        metrics.REQUESTS.labels(endpoint, fmt, str(response.status_code)).inc()
        metrics.SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(InfluxQLError)
    async def influx_down(request: Request, exc: InfluxQLError) -> JSONResponse:
        metrics.QUERY_ERRORS.inc()
        logger.warning("influx read failed path=%s reason=%s", request.url.path, exc)
        return _problem(503, "Service Unavailable", "the measurement database cannot be read right now")

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return _problem(exc.status_code, _TITLES.get(exc.status_code, "Error"), str(exc.detail))

    @app.get("/health", include_in_schema=False)
    async def health(request: Request) -> dict[str, object]:
        view_: RegistryView = request.app.state.view
        return {
            "status": "ok",
            "registry_ready": view_.ready.is_set(),
            "public_stations": len(public_stations(view_.records())),
        }

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        metrics.PUBLIC_STATIONS.set(len(public_stations(request.app.state.view.records())))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False, response_model=None)
    async def page() -> FileResponse | HTMLResponse:
        index = STATIC / "index.html"
        if index.exists():
            return FileResponse(index, media_type="text/html; charset=utf-8")
        return HTMLResponse('<p>stationflow open data: see <a href="docs">/docs</a></p>')

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


_TITLES = {404: "Not Found", 405: "Method Not Allowed", 422: "Unprocessable Content"}
