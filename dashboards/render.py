"""Build every dashboard to JSON, write it under ``grafana/dashboards/``, or check what is committed."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import air, coldchain, flood, health, pipeline, water

__all__ = ["BUILDERS", "DEFAULT_DIR", "check", "render_all", "write"]

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"
# file stem -> builder; the stem is also the dashboard's place in the folder listing
BUILDERS: Mapping[str, Callable[[], Dashboard]] = {
    "air-quality": air.build,
    "water-quality": water.build,
    "flood": flood.build,
    "cold-chain": coldchain.build,
    "device-health": health.build,
    "pipeline": pipeline.build,
}


def to_dict(dashboard: Dashboard) -> dict[str, Any]:
    """A dashboard as plain JSON data, panels numbered 1, 2, … in layout order."""
    doc: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    for number, panel in enumerate(doc.get("panels", []), start=1):
        panel["id"] = number
    return doc


def dumps(doc: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, UTF-8 kept, final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{stem}.json": dumps(to_dict(build())) for stem, build in BUILDERS.items()}


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Write every dashboard (and remove JSON files no builder makes); return the written paths."""
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render_all()
    for stale in sorted(directory.glob("*.json")):
        if stale.name not in rendered:
            stale.unlink()
    written = []
    for name, text in rendered.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check(directory: Path = DEFAULT_DIR) -> list[str]:
    """Differences between the committed JSON and what the code generates (empty when equal)."""
    rendered = render_all()
    problems: list[str] = []
    committed = {p.name for p in directory.glob("*.json")}
    for name in sorted(committed - set(rendered)):
        problems.append(f"{name}: committed, but no dashboard generates it")
    for name, text in rendered.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: generated, but not committed")
            continue
        old = path.read_text(encoding="utf-8")
        if old != text:
            diff = list(
                difflib.unified_diff(old.splitlines(), text.splitlines(), name, name, lineterm="", n=0)
            )
            changed = sum(1 for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---"))
            problems.append(f"{name}: {changed} lines differ, first: " + " | ".join(diff[2:6]))
    return problems
