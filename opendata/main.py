"""The open-data app: ``create_app(settings)``.

Read-only, no key. Every request but ``/health`` and ``/metrics`` passes the per-client token
bucket (429 + ``Retry-After`` + a problem body when empty); ``/api/`` answers are cached per path
and query for ``opendata_cache_ttl_s``. The lifespan follows the registry topic (which stations
are public) and owns the InfluxQL client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from opendata import metrics
from opendata.api import router
from opendata.cache import ResponseCache
from opendata.gate import Gate
from opendata.limiter import RateLimiter
from opendata.settings import OpendataSettings
from stationflow.lifetime import cancel_and_wait
from stationflow.registryview import RegistryFollower, RegistryView
from stationview.influxql import InfluxQL, InfluxQLError
from stationview.stations import public_stations

__all__ = ["READY_LINE", "create_app"]

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
READY_LINE = "opendata service ready"
REGISTRY_WAIT_S = 30.0  # start answering after this even if the registry topic is slow
EXEMPT = ("/health", "/metrics")


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/json")


def create_app(
    settings: OpendataSettings, *, view: RegistryView | None = None, influx: InfluxQL | None = None
) -> FastAPI:
    """The app; ``view`` / ``influx`` given: used as they are (tests), else made by the lifespan."""

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
            await cancel_and_wait(tasks, logger)
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

    app.add_middleware(
        Gate,
        limiter=RateLimiter(settings.opendata_rate_per_minute / 60.0, settings.opendata_burst),
        cache=ResponseCache(settings.opendata_cache_ttl_s, settings.opendata_cache_size),
        trusted=frozenset(settings.opendata_trusted_proxies),
        limit_text=f"at most {settings.opendata_rate_per_minute:g} requests per minute "
        f"(bursts of {settings.opendata_burst})",
    )

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
