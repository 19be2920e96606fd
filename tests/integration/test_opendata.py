"""The open-data service as a process against real Tansu (registry topic) and InfluxDB 1.x.

Hidden stations never appear in any endpoint or format (hypothesis over station sets and
flags, and a station hidden after it was public); a hidden station id answers exactly like an
unknown one; the rate limit answers 429 with Retry-After and a problem body; the OpenAPI
document lists every endpoint and every operation conforms to it (schemathesis).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stationflow.bench.opendatabench import KIND_DOMAINS, bench_station
from stationflow.bench.registrytopic import publish_records
from stationflow.contracts import DeviceRecord
from stationflow.settings import CommonSettings
from stationflow.stack import Component
from stationflow.stack.components import influx_create_db, influx_write
from stationflow.stack.pipeline import Endpoints, service_env, start_service
from stationflow.stack.ports import free_port
from stationflow.stack.procs import ManagedProcess
from tests.integration.pipeline_utils import wait_for

LISTS = (
    "/api/v1/stations",
    "/api/v1/aqi/latest",
    "/api/v1/water/latest",
    "/api/v1/hydro/levels",
    "/api/v1/rainfall",
)
FORMATS = ("json", "csv", "geojson")
ENDPOINTS = {
    "/api/v1/stations",
    "/api/v1/aqi/latest",
    "/api/v1/aqi/hourly",
    "/api/v1/aqi/daily",
    "/api/v1/water/latest",
    "/api/v1/hydro/levels",
    "/api/v1/rainfall",
    "/api/v1/stations/{station_id}/history",
}
LATEST_OF = {"air": "/api/v1/aqi/latest", "water": "/api/v1/water/latest",
             "gauge": "/api/v1/hydro/levels", "rain": "/api/v1/rainfall"}  # fmt: skip


@dataclass
class Service:
    """A running open-data service and where its data comes from."""

    url: str
    settings: CommonSettings
    influx_url: str
    influx_db: str
    proc: ManagedProcess

    def publish(self, records: list[DeviceRecord], lines: list[str]) -> None:
        asyncio.run(publish_records(self.settings, records))
        if lines:
            influx_write(self.influx_url, self.influx_db, "\n".join(lines))


@contextlib.contextmanager
def _start(
    tansu: Component, influxd: Component, influx_db: str, prefix: str, tmp_path: Path, **extra: str
) -> Iterator[Service]:
    port = free_port()
    endpoints = Endpoints(
        kafka=tansu.url, mqtt_host="127.0.0.1", mqtt_port=1, influx_url=influxd.url, influx_db=influx_db
    )
    env = service_env(
        endpoints,
        state_dir=tmp_path,
        topic_prefix=prefix,
        extra={"STATIONFLOW_OPENDATA_PORT": str(port), **extra},
    )
    settings = CommonSettings(kafka_bootstrap=tansu.url, topic_prefix=prefix)
    asyncio.run(publish_records(settings, []))  # the topics exist before the service follows them
    proc = start_service("opendata", env=env, log_path=tmp_path / "opendata.log")
    try:
        yield Service(f"http://127.0.0.1:{port}", settings, influxd.url, influx_db, proc)
    finally:
        proc.stop()


UNLIMITED = {
    "STATIONFLOW_OPENDATA_RATE_PER_MINUTE": "1e9",
    "STATIONFLOW_OPENDATA_BURST": "1000000000",
    "STATIONFLOW_OPENDATA_CACHE_TTL_S": "0",
}


@pytest.fixture
def service(
    tansu: Component, influxd: Component, influx_db: str, topic_prefix: str, tmp_path: Path
) -> Iterator[Service]:
    """An open-data service without rate limit or cache (changes are seen at once)."""
    with _start(tansu, influxd, influx_db, topic_prefix, tmp_path, **UNLIMITED) as svc:
        yield svc


def _ids_listed(service: Service, prefix: str) -> set[str]:
    # a query of its own each time: with a cache TTL, an answer from before the station arrived
    # would be served again until it expires (the cached test's 30 s, its whole wait, in CI)
    bust = {"poll": str(time.monotonic_ns())}
    data = httpx.get(f"{service.url}/api/v1/stations", params=bust, timeout=5).json()["data"]
    return {d["station_id"] for d in data if d["station_id"].startswith(prefix)}


def _every_answer(service: Service, station_ids: list[str]) -> list[tuple[str, httpx.Response]]:
    out = []
    with httpx.Client(base_url=service.url, timeout=10) as http:
        for path in LISTS:
            for fmt in FORMATS:
                out.append((f"{path}?format={fmt}", http.get(path, params={"format": fmt})))
        for sid in station_ids:
            for path, params in (
                ("/api/v1/aqi/hourly", {"station": sid}),
                ("/api/v1/aqi/daily", {"station": sid}),
                (f"/api/v1/stations/{sid}/history", {}),
            ):
                for fmt in FORMATS:
                    out.append(
                        (f"{path}?{params}&format={fmt}", http.get(path, params={**params, "format": fmt}))
                    )
    return out


STATION_SETS = st.lists(
    st.tuples(st.sampled_from(sorted(KIND_DOMAINS)), st.booleans()), min_size=1, max_size=8
)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(stations=STATION_SETS)
def test_hidden_stations_never_appear(service: Service, stations: list[tuple[str, bool]]) -> None:
    prefix = f"h{uuid.uuid4().hex[:8]}-"  # every example its own stations
    now = datetime.now(UTC)
    records: list[DeviceRecord] = []
    lines: list[str] = []
    public: list[tuple[str, str]] = []
    hidden: list[tuple[str, str]] = []
    for i, (kind, is_public) in enumerate(stations, start=1):
        sid = f"{prefix}{kind}-{i}"
        record, rows = bench_station(sid, kind, i, public=is_public, now=now)
        records.append(record)
        lines.extend(rows)
        (public if is_public else hidden).append((sid, kind))
    service.publish(records, lines)
    want = {sid for sid, _ in public}
    assert wait_for(lambda: _ids_listed(service, prefix) == want, timeout=30), _ids_listed(service, prefix)

    answers = _every_answer(service, [sid for sid, _ in public + hidden])
    for label, answer in answers:
        for sid, _ in hidden:
            assert sid not in answer.text, f"hidden {sid} in {label}"
        if any(sid in label for sid, _ in hidden):
            assert answer.status_code == 404, label
            assert answer.json()["detail"] == "no such public station", label
        else:
            assert answer.status_code == 200, (label, answer.text[:300])
    for sid, kind in public:  # and every public one is in its latest list, in every format
        for fmt in FORMATS:
            body = httpx.get(f"{service.url}{LATEST_OF[kind]}", params={"format": fmt}, timeout=5).text
            assert sid in body, (sid, kind, fmt)


def test_hidden_and_unknown_answer_alike_and_a_public_station_can_be_hidden(service: Service) -> None:
    now = datetime.now(UTC)
    record, lines = bench_station("flip-air-1", "air", 3, public=True, now=now)
    service.publish([record], lines)
    assert wait_for(lambda: _ids_listed(service, "flip-") == {"flip-air-1"}, timeout=30)
    assert "flip-air-1" in httpx.get(f"{service.url}/api/v1/aqi/latest?format=geojson").text

    hidden = record.model_copy(update={"station": record.station.model_copy(update={"public": False})})  # type: ignore[union-attr]
    service.publish([hidden], [])
    assert wait_for(lambda: _ids_listed(service, "flip-") == set(), timeout=30)
    for path in ("/api/v1/stations/{}/history", "/api/v1/aqi/hourly?station={}"):
        gone = httpx.get(service.url + path.format("flip-air-1"))
        unknown = httpx.get(service.url + path.format("no-such-station"))
        assert gone.status_code == unknown.status_code == 404
        assert gone.json() == {
            **unknown.json(),
            "detail": unknown.json()["detail"].replace("no-such-station", "flip-air-1"),
        }
    for path in LISTS:
        assert "flip-air-1" not in httpx.get(service.url + path, params={"format": "csv"}).text


def test_rate_limit_answers_429_with_retry_after(
    tansu: Component, influxd: Component, influx_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    limited = {"STATIONFLOW_OPENDATA_RATE_PER_MINUTE": "6", "STATIONFLOW_OPENDATA_BURST": "3"}
    with (
        _start(tansu, influxd, influx_db, topic_prefix, tmp_path, **limited) as svc,
        httpx.Client(base_url=svc.url, timeout=5) as http,
    ):
        codes = [http.get("/api/v1/stations").status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        refused = http.get("/api/v1/aqi/latest")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "10"  # one token at 6 per minute
        problem = refused.json()
        assert problem["status"] == 429 and problem["title"] == "Too Many Requests"
        assert "retry after 10 s" in problem["detail"]
        # the page's own files, health and metrics do not spend tokens: a second visit still loads
        assert http.get("/").status_code == 200
        assert http.get("/static/js/app.js").status_code == 200
        assert http.get("/health").status_code == 200
        assert http.get("/api/v1/stations").status_code == 429
        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        assert "stationflow_opendata_rate_limited_total 2.0" in metrics.text


def test_openapi_lists_every_endpoint_and_operations_conform(service: Service) -> None:
    answer = httpx.get(f"{service.url}/openapi.json")
    assert answer.status_code == 200
    doc = answer.json()
    assert set(doc["paths"]) == ENDPOINTS
    assert httpx.get(f"{service.url}/docs").status_code == 200
    for path in ENDPOINTS:
        assert "429" in doc["paths"][path]["get"]["responses"], path

    now = datetime.now(UTC)
    records, lines = zip(
        *(bench_station(f"sch-{k}-1", k, 2, public=True, now=now) for k in KIND_DOMAINS), strict=True
    )
    service.publish(list(records), [line for rows in lines for line in rows])
    assert wait_for(lambda: len(_ids_listed(service, "sch-")) == len(KIND_DOMAINS), timeout=30)

    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    schema.config.update(base_url=service.url)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == len(ENDPOINTS)
    for operation in operations:

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def conforms(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(checks=checks)

        conforms()


def test_answers_are_cached_per_path_and_query(
    tansu: Component, influxd: Component, influx_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    cached = {"STATIONFLOW_OPENDATA_RATE_PER_MINUTE": "1e9", "STATIONFLOW_OPENDATA_BURST": "1000000",
              "STATIONFLOW_OPENDATA_CACHE_TTL_S": "30"}  # fmt: skip
    with _start(tansu, influxd, influx_db, topic_prefix, tmp_path, **cached) as svc:
        record, lines = bench_station("cache-air-1", "air", 1, public=True, now=datetime.now(UTC))
        svc.publish([record], lines)
        assert wait_for(lambda: _ids_listed(svc, "cache-") == {"cache-air-1"}, timeout=30)
        with httpx.Client(base_url=svc.url, timeout=5) as http:
            first = http.get("/api/v1/aqi/latest", params={"format": "csv"})
            again = http.get("/api/v1/aqi/latest", params={"format": "csv"})
            other = http.get("/api/v1/aqi/latest", params={"format": "geojson"})
        assert (first.headers["x-cache"], again.headers["x-cache"], other.headers["x-cache"]) == (
            "miss",
            "hit",
            "miss",
        )
        assert again.content == first.content and "cache-air-1" in again.text
        assert again.headers["content-type"].startswith("text/csv")
        assert again.headers["content-disposition"] == first.headers["content-disposition"]
        assert again.headers["cache-control"] == "public, max-age=30"


def test_influxdb_down_is_a_503_problem_and_not_cached(
    tansu: Component, influxd_factory: Callable[[], Component], topic_prefix: str, tmp_path: Path
) -> None:
    private = influxd_factory()
    influx_create_db(private.url, "od")
    settings = {"STATIONFLOW_OPENDATA_CACHE_TTL_S": "30", "STATIONFLOW_OPENDATA_QUERY_TIMEOUT_S": "2"}
    with _start(tansu, private, "od", topic_prefix, tmp_path, **settings) as svc:
        assert httpx.get(f"{svc.url}/api/v1/water/latest", timeout=10).status_code == 200
        private.stop()
        down = httpx.get(f"{svc.url}/api/v1/aqi/latest", timeout=10)
        assert down.status_code == 503
        assert down.json() == {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "the measurement database cannot be read right now",
        }
        again = httpx.get(f"{svc.url}/api/v1/aqi/latest", timeout=10)
        assert again.status_code == 503 and again.headers["x-cache"] == "miss"
        assert "stationflow_opendata_influx_errors_total 2.0" in httpx.get(f"{svc.url}/metrics").text
