"""The house's floors, read from the imports of every module (ast, nothing imported).

- ``stationflow/`` (but ``cli.py``, ``stack/`` and ``bench/``) is the ground floor: contracts,
  settings and Kafka helpers every service uses; it imports no service.
- The top floor (``stationflow.stack``, ``stationflow.bench``, ``stationflow.cli``) stands on
  every service; no service imports it.
- Services import each other only through the shared read side (``stationview``) and the pure
  analytics (``streams.analytics``).
- Decoders and analytics are pure: no broker, database, HTTP or event-loop library.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "streams", "alerts", "devices", "opendata", "stationview", "simulator", "dashboards")
TOP_FLOOR = ("stationflow.stack", "stationflow.bench", "stationflow.cli")
SHARED = ("stationview", "streams.analytics")
PURE = ("ingest/decoders", "streams/analytics")
IO_LIBRARIES = frozenset(
    {
        "aiokafka",
        "aiomqtt",
        "aiosqlite",
        "asyncio",
        "faust",
        "fastapi",
        "gmqtt",
        "httpx",
        "influxdb_client",
        "mode",
        "paho",
        "psycopg",
        "requests",
        "socket",
        "sqlalchemy",
        "urllib",
        "uvicorn",
    }
)


def _modules(*patterns: str) -> list[Path]:
    found = sorted({p for pattern in patterns for p in ROOT.glob(pattern)})
    assert found, f"no module matches {patterns}: the test would pass on nothing"
    return found


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Absolute imports of a module (``import a.b`` and ``from a.b import c``), with lines."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def _where(path: Path, line: int, module: str) -> str:
    return f"{path.relative_to(ROOT)}:{line} imports {module}"


def test_the_ground_floor_imports_no_service() -> None:
    ground = [p for p in _modules("stationflow/*.py") if p.name != "cli.py"]
    wrong = [_where(p, ln, m) for p in ground for m, ln in _imports(p) if _within(m, SERVICES)]
    assert not wrong, wrong


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_top_floor_and_no_other_service_but_the_shared_ones(service: str) -> None:
    wrong = []
    for path in _modules(f"{service}/**/*.py"):
        for module, line in _imports(path):
            across = _within(module, SERVICES) and not _within(module, (service, *SHARED))
            if across or _within(module, TOP_FLOOR):
                wrong.append(_where(path, line, module))
    assert not wrong, wrong


def _file_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _io_imports(path: Path) -> list[str]:
    return [_where(path, ln, m) for m, ln in _imports(path) if m.split(".")[0] in IO_LIBRARIES]


def test_decoders_and_analytics_are_pure() -> None:
    """No I/O library in a pure module, nor in a module of the project it imports."""
    wrong = []
    for path in _modules(*(f"{p}/*.py" for p in PURE)):
        wrong += _io_imports(path)
        for module, _ in _imports(path):
            imported = _file_of(module) if _within(module, (*SERVICES, "stationflow")) else None
            if imported is not None:
                wrong += _io_imports(imported)
    assert not wrong, sorted(set(wrong))


def test_the_checks_see_a_forbidden_import(tmp_path: Path) -> None:
    """The reader finds both import forms (so a violation cannot slip past it)."""
    module = tmp_path / "m.py"
    module.write_text("import aiokafka.producer\nfrom alerts.api import app\nfrom . import sibling\n")
    assert list(_imports(module)) == [("aiokafka.producer", 1), ("alerts.api", 2)]
