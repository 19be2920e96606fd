"""The committed dashboards are what the code generates, and every query names a provisioned datasource."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.__main__ import main
from dashboards.render import BUILDERS, DEFAULT_DIR, check, render_all, write

ROOT = Path(__file__).parents[3]
PROVISIONING = ROOT / "grafana" / "provisioning"


def _provisioned() -> dict[str, str]:
    """uid -> type of every provisioned datasource."""
    out = {}
    for path in sorted((PROVISIONING / "datasources").glob("*.yml")):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            out[ds["uid"]] = ds["type"]
    return out


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(text) for text in render_all().values()]


def _refs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, datasource ref) of every panel, target, variable and annotation."""
    title = doc["title"]
    for panel in doc["panels"]:
        yield f"{title} / {panel['title']}", panel["datasource"]
        for target in panel["targets"]:
            yield f"{title} / {panel['title']} / {target['refId']}", target["datasource"]
    for var in doc["templating"].get("list", []):
        yield f"{title} / ${var['name']}", var["datasource"]
    for anno in doc["annotations"].get("list", []):
        yield f"{title} / annotation {anno['name']}", anno["datasource"]


def test_committed_json_is_what_the_code_generates() -> None:
    assert check() == [], "run `python -m dashboards` and commit grafana/dashboards"
    assert main(["--check"]) == 0


def test_check_reports_a_hand_edit_a_missing_and_a_stray_file(tmp_path: Path) -> None:
    write(tmp_path)
    assert check(tmp_path) == []
    flood = tmp_path / "flood.json"
    flood.write_text(flood.read_text().replace("warning_level", "warning_lvl"))
    (tmp_path / "pipeline.json").unlink()
    (tmp_path / "overview.json").write_text("{}")
    problems = check(tmp_path)
    assert any(p.startswith("flood.json: ") and "lines differ" in p for p in problems)
    assert "pipeline.json: generated, but not committed" in problems
    assert "overview.json: committed, but no dashboard generates it" in problems
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    write(tmp_path)  # regenerating repairs all three
    assert check(tmp_path) == []
    assert not (tmp_path / "overview.json").exists()


def test_generation_is_deterministic() -> None:
    assert render_all() == render_all()


def test_six_dashboards_with_fixed_unique_uids() -> None:
    docs = _dashboards()
    uids = [d["uid"] for d in docs]
    assert len(docs) == len(BUILDERS) == 6
    assert len(set(uids)) == 6 and all(u.startswith("stationflow-") for u in uids)
    assert sorted(p.name for p in DEFAULT_DIR.glob("*.json")) == sorted(render_all())


def test_every_query_names_a_provisioned_datasource_of_its_type() -> None:
    provisioned = _provisioned()
    assert set(provisioned.values()) == {"influxdb", "prometheus"}
    refs = [r for d in _dashboards() for r in _refs(d)]
    assert refs
    for where, ref in refs:
        assert ref["uid"] in provisioned, f"{where}: datasource {ref} is not provisioned"
        assert provisioned[ref["uid"]] == ref["type"], where


def test_influx_panels_filter_by_time_and_every_variable_used_is_defined() -> None:
    for doc in _dashboards():
        defined = {v["name"] for v in doc["templating"].get("list", [])}
        for panel in doc["panels"]:
            for target in panel["targets"]:
                query = target.get("query") or target["expr"]
                used = set(re.findall(r"\$(\w+)", query)) - {"timeFilter", "__interval", "__rate_interval"}
                assert used <= defined, f"{doc['title']} / {panel['title']}: {used - defined}"
                if target["datasource"]["type"] == "influxdb":
                    assert "$timeFilter" in query, f"{doc['title']} / {panel['title']}"


@pytest.mark.parametrize("stem", ["air-quality", "water-quality", "flood", "cold-chain", "device-health"])
def test_influx_dashboards_have_place_variables_and_alert_annotations(stem: str) -> None:
    doc = json.loads(render_all()[f"{stem}.json"])
    names = [v["name"] for v in doc["templating"].get("list", [])]
    assert names[0] == "region" and names[-1] == "station"
    station = doc["templating"].get("list", [])[-1]
    assert (
        station["query"].startswith("SHOW TAG VALUES FROM") and '"region" =~ /^$region$/' in station["query"]
    )
    (anno,) = doc["annotations"].get("list", [])
    assert 'FROM "alerts"' in anno["target"]["query"] and anno["target"]["textColumn"] == "text"


def test_aqi_panels_use_the_standard_category_colours() -> None:
    doc = json.loads(render_all()["air-quality.json"])
    hourly = next(p for p in doc["panels"] if p["title"].startswith("Hourly AQI"))
    steps = hourly["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["color"] for s in steps] == ["#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#99004C", "#7E0023"]
    assert [s["value"] for s in steps] == [None, 51, 101, 151, 201, 301]
    assert hourly["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line+area"


def test_flood_and_coldchain_limits() -> None:
    docs = render_all()
    flood = json.loads(docs["flood.json"])
    day = next(p for p in flood["panels"] if p["title"].startswith("Rainfall 24 h"))
    assert [s["value"] for s in day["fieldConfig"]["defaults"]["thresholds"]["steps"]][1:] == [
        0.1, 10.0, 25.0, 50.0, 100.0, 250.0,
    ]  # fmt: skip
    cold = json.loads(docs["cold-chain.json"])
    temp = cold["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in temp][1:] == [-18.0, 2.0, 8.0]
