"""The analytics run compiled only when built from today's sources (``streams.analytics.native``).

The fake packages here hold a "compiled module" that is not one (bytes no loader accepts): an
import that picks it fails, so each test sees which file Python would have loaded.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import streams.analytics
from streams.analytics import native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture
def package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Path]]:
    """A package with a source ``mod.py`` (VALUE = 1) and a broken extension ``mod`` beside it."""
    name = f"fakepkg_{request.node.name.split('[')[0][-20:]}_{id(tmp_path) % 10**6}"
    directory = tmp_path / name
    directory.mkdir()
    (directory / "__init__.py").write_text("")
    (directory / "mod.py").write_text("VALUE = 1\n")
    (directory / f"mod{SUFFIX}").write_bytes(b"not a shared object")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # finders added here go with the test
    yield name, directory
    for key in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
        del sys.modules[key]


def _manifest(directory: Path, sources: dict[str, str]) -> Path:
    path = directory / "_native.json"
    path.write_text(json.dumps({"sources": sources}))
    return path


def test_without_the_selection_the_extension_shadows_the_source(package: tuple[str, Path]) -> None:
    """What the selection guards against: Python picks the extension over the source."""
    name, _ = package
    importlib.invalidate_caches()
    with pytest.raises(ImportError):
        importlib.import_module(f"{name}.mod")


def test_a_source_changed_since_the_build_is_what_runs(package: tuple[str, Path]) -> None:
    name, directory = package
    manifest = _manifest(directory, {"mod": "0" * 64})  # built from another source
    engine = native.select(
        enabled=True, package=name, directory=directory, modules=("mod",), manifest=manifest
    )
    assert not engine.compiled and engine.name == "python"
    assert "sources changed since the build: mod" in engine.reason
    importlib.invalidate_caches()
    mod = importlib.import_module(f"{name}.mod")
    assert mod.VALUE == 1 and mod.__file__ is not None and mod.__file__.endswith("mod.py")


def test_compiled_from_todays_sources_the_extension_is_what_runs(package: tuple[str, Path]) -> None:
    name, directory = package
    manifest = _manifest(directory, native.source_digests(directory, ("mod",)))
    engine = native.select(
        enabled=True, package=name, directory=directory, modules=("mod",), manifest=manifest
    )
    assert engine.compiled and engine.name == "mypyc"
    importlib.invalidate_caches()
    with pytest.raises(ImportError):  # the (fake) extension was chosen
        importlib.import_module(f"{name}.mod")


@pytest.mark.parametrize(
    ("enabled", "manifest_text", "reason"),
    [
        (False, None, "STATIONFLOW_ANALYTICS_NATIVE=false"),
        (True, "", "no readable build manifest"),
        (True, "{not json", "no readable build manifest"),
        (True, '{"sources": ["mod"]}', "build manifest without sources"),
    ],
)
def test_turned_off_or_unverifiable_the_source_runs(
    package: tuple[str, Path], enabled: bool, manifest_text: str | None, reason: str
) -> None:
    name, directory = package
    manifest = directory / "_native.json"
    if manifest_text is None:
        _manifest(directory, native.source_digests(directory, ("mod",)))  # a good build, turned off
    elif manifest_text:
        manifest.write_text(manifest_text)
    engine = native.select(
        enabled=enabled, package=name, directory=directory, modules=("mod",), manifest=manifest
    )
    assert not engine.compiled and reason in engine.reason
    importlib.invalidate_caches()
    assert importlib.import_module(f"{name}.mod").VALUE == 1


def test_one_module_missing_from_the_build_runs_every_source(package: tuple[str, Path]) -> None:
    """The compiled modules call each other directly: a partial build is not used at all."""
    name, directory = package
    (directory / "other.py").write_text("VALUE = 2\n")
    modules = ("mod", "other")
    manifest = _manifest(directory, native.source_digests(directory, modules))
    engine = native.select(
        enabled=True, package=name, directory=directory, modules=modules, manifest=manifest
    )
    assert not engine.compiled and "compiled modules missing: other" in engine.reason
    importlib.invalidate_caches()
    assert importlib.import_module(f"{name}.mod").VALUE == 1


def test_nothing_compiled_is_python_without_a_finder(package: tuple[str, Path]) -> None:
    name, directory = package
    (directory / f"mod{SUFFIX}").unlink()
    before = list(sys.meta_path)
    engine = native.select(enabled=True, package=name, directory=directory, modules=("mod",))
    assert not engine.compiled and "not compiled" in engine.reason
    assert sys.meta_path == before


def test_setup_compiled_this_checkouts_analytics() -> None:
    """``scripts/setup.sh`` (which the test command runs first) compiles the analytics; the
    package's import chose the compiled modules, and they are the ones loaded."""
    if not native.NativeSettings().native:
        pytest.skip("STATIONFLOW_ANALYTICS_NATIVE=false: the sources run by choice")
    assert streams.analytics.ENGINE.compiled, streams.analytics.ENGINE.reason
    for module in native.MODULES:
        loaded = importlib.import_module(f"streams.analytics.{module}")
        assert loaded.__file__ is not None and loaded.__file__.endswith(SUFFIX), loaded.__file__
