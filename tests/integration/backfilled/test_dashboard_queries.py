"""Every query of every committed dashboard runs against the backfilled stack and returns data.

InfluxQL (panel targets, template variables, alert annotations) runs on the InfluxDB that
``stationflow up --backfill 48h`` filled, with Grafana's macros substituted: ``$timeFilter`` →
the last 48 h, ``$__interval`` → 5m, each variable → "All" (``.*``). Every panel target and
every variable query must succeed and return at least one row; annotation queries must
succeed (an alert-free domain may have none). With the variables set to one concrete station
of each dashboard, every panel query must still succeed (that station need not have every
measurement). PromQL runs on a VictoriaMetrics scraping the stack's /metrics endpoints, and
each expression must return a series.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stationflow.stack import Component, StackError, influx_query, start_victoria_metrics
from tests.integration.backfilled.conftest import BackfilledStack

DASHBOARD_DIR = Path(__file__).parents[3] / "grafana" / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
LAST_48H = "time > now() - 48h"
DATA_DEADLINE_S = 90.0  # beyond the two minutes of the backfill: derived points trail by a batch
SCRAPE_S = 2
PROM_DEADLINE_S = 60.0
_REGEX_SPECIAL = re.compile(r"([\\/.*+?^${}()|\[\]-])")


@dataclass(frozen=True)
class Query:
    """One query of a dashboard, named for the failure message."""

    where: str
    kind: str  # "panel", "variable", "annotation"
    text: str


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _influx(doc: dict[str, Any]) -> list[Query]:
    out = []
    for panel in doc["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] == "influxdb":
                where = f"{doc['title']} / {panel['title']} / {target['refId']}"
                out.append(Query(where, "panel", target["query"]))
    for var in doc["templating"].get("list", []):
        out.append(Query(f"{doc['title']} / ${var['name']}", "variable", var["query"]))
    for anno in doc["annotations"].get("list", []):
        out.append(
            Query(f"{doc['title']} / annotation {anno['name']}", "annotation", anno["target"]["query"])
        )
    return out


def _prom(doc: dict[str, Any]) -> list[Query]:
    return [
        Query(f"{doc['title']} / {panel['title']} / {target['refId']}", "panel", target["expr"])
        for panel in doc["panels"]
        for target in panel["targets"]
        if target["datasource"]["type"] == "prometheus"
    ]


def substitute(query: str, values: dict[str, str]) -> str:
    """Grafana's macros and the variables (regex values) substituted."""
    text = query.replace("$timeFilter", LAST_48H).replace("$__interval", "5m")
    for name, value in values.items():
        text = text.replace(f"${name}", value)
    return text


def _rows(stack: BackfilledStack, query: str) -> int:
    return sum(len(s.get("values", [])) for s in influx_query(stack.influx_url, stack.influx_db, query))


def _variables(doc: dict[str, Any]) -> list[str]:
    return [v["name"] for v in doc["templating"].get("list", [])]


def _poll(pending: dict[Query, str], run: Callable[[str], int], deadline: float) -> dict[Query, str]:
    """Run each pending query until it returns rows or the deadline passes; what is still failing."""
    while True:
        for query, text in list(pending.items()):
            try:
                if run(text) > 0:
                    del pending[query]
            except StackError as exc:  # a broken query never heals: fail at once
                return {query: f"{text}\n    error: {exc}"}
        if not pending or time.monotonic() > deadline:
            return {q: f"{t}\n    returned no rows" for q, t in pending.items()}
        time.sleep(2.0)


@pytest.fixture(scope="module")
def influx_docs() -> list[dict[str, Any]]:
    docs = [_load(p) for p in DASHBOARDS]
    assert len(docs) == 6, f"expected the six dashboards in {DASHBOARD_DIR}"
    return docs


def test_every_influx_query_returns_data_for_all_stations(
    backfilled: BackfilledStack, influx_docs: list[dict[str, Any]]
) -> None:
    pending: dict[Query, str] = {}
    annotations: list[tuple[Query, str]] = []
    for doc in influx_docs:
        values = dict.fromkeys(_variables(doc), ".*")
        for query in _influx(doc):
            text = substitute(query.text, values)
            assert not re.search(r"\$\w", text), f"{query.where}: unsubstituted macro in {text}"
            if query.kind == "annotation":
                annotations.append((query, text))
            else:
                pending[query] = text
    assert len(pending) >= 50
    failed = _poll(
        pending, lambda q: _rows(backfilled, q), time.monotonic() + backfilled.remaining() + DATA_DEADLINE_S
    )
    for query, text in annotations:  # must run; alerts of every domain are not guaranteed
        try:
            _rows(backfilled, text)
        except StackError as exc:
            failed[query] = f"{text}\n    error: {exc}"
    assert not failed, "dashboard queries failed:\n" + "\n".join(
        f"- {q.where}: {m}" for q, m in failed.items()
    )


def test_the_flood_annotation_shows_the_backfilled_storm(
    backfilled: BackfilledStack, influx_docs: list[dict[str, Any]]
) -> None:
    flood = next(d for d in influx_docs if d["uid"] == "stationflow-flood")
    (anno,) = [q for q in _influx(flood) if q.kind == "annotation"]
    text = substitute(anno.text, dict.fromkeys(_variables(flood), ".*"))
    failed = _poll(
        {anno: text},
        lambda q: _rows(backfilled, q),
        time.monotonic() + backfilled.remaining() + DATA_DEADLINE_S,
    )
    assert not failed, f"no flood or rain alert as annotation: {failed}"


def test_every_panel_query_runs_for_one_concrete_station(
    backfilled: BackfilledStack, influx_docs: list[dict[str, Any]]
) -> None:
    failed: list[str] = []
    for doc in influx_docs:
        variables = _variables(doc)
        if "station" not in variables:
            continue
        all_values = dict.fromkeys(variables, ".*")
        station_var = next(q for q in _influx(doc) if q.where.endswith("/ $station"))
        stations = [
            row[1]
            for s in influx_query(
                backfilled.influx_url, backfilled.influx_db, substitute(station_var.text, all_values)
            )
            for row in s["values"]
        ]
        assert stations, f"{doc['title']}: no station to pick"
        values = all_values | {"station": _REGEX_SPECIAL.sub(r"\\\1", sorted(stations)[0])}
        for query in _influx(doc):
            text = substitute(query.text, values)
            try:
                _rows(backfilled, text)
            except StackError as exc:
                failed.append(f"{query.where} ({values['station']}): {exc}")
    assert not failed, "\n".join(failed)


def _scrape_config(stack: BackfilledStack, path: Path) -> Path:
    """Prometheus scrape config of every /metrics endpoint of the stack."""
    targets = {
        "ingest": stack.ingest_metrics_port,
        "streams": stack.streams_metrics_port,
        "tcp": stack.tcp_metrics_port,
        "alerts": stack.alerts_port,
        "registry": stack.registry_port,
        "opendata": stack.opendata_port,
    }
    jobs = [
        {
            "job_name": job,
            "scrape_interval": f"{SCRAPE_S}s",
            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
        }
        for job, port in targets.items()
    ]
    path.write_text(json.dumps({"scrape_configs": jobs}))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def victoria(backfilled: BackfilledStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    workdir = tmp_path_factory.mktemp("victoria-scrape")
    config = _scrape_config(backfilled, workdir / "scrape.yml")
    vm = start_victoria_metrics(workdir, args=[f"-promscrape.config={config}"])
    try:
        yield vm
    finally:
        vm.stop()


def _prom_series(vm: Component, expr: str) -> int:
    text = expr.replace("$__rate_interval", "1m")
    response = httpx.get(
        f"{vm.url}/api/v1/query_range",
        params={"query": text, "start": str(time.time() - 600), "end": str(time.time()), "step": "5"},
        timeout=10,
        trust_env=False,
    )
    body = response.json()
    if response.is_error or body.get("status") != "success":
        raise StackError(f"PromQL {text!r} failed ({response.status_code}): {body.get('error')}")
    return len(body["data"]["result"])


def _send_junk(stack: BackfilledStack) -> None:
    """Bytes that are no HJ 212 frame: the TCP collector dead-letters them (the dead-letter panel's data)."""
    with socket.create_connection(("127.0.0.1", stack.hj212_port), timeout=5) as conn:
        conn.sendall(b"not a frame at all\r\n" * 3)
        time.sleep(0.5)


def test_every_prometheus_query_returns_data(backfilled: BackfilledStack, victoria: Component) -> None:
    _send_junk(backfilled)
    pending = {q: q.text for path in DASHBOARDS for q in _prom(_load(path))}
    assert len(pending) >= 10
    failed = _poll(pending, lambda q: _prom_series(victoria, q), time.monotonic() + PROM_DEADLINE_S)
    up = _prom_series(victoria, "up == 1")
    assert not failed, f"{up} targets up; PromQL without data:\n" + "\n".join(
        f"- {q.where}: {m}" for q, m in failed.items()
    )
