"""Which engine runs the analytics: their modules compiled by mypyc, or their Python sources.

``scripts/build_native.py`` (``scripts/setup.sh`` runs it) compiles :data:`MODULES` with mypyc
into C extension modules next to their sources, and writes :data:`MANIFEST`: the sha256 of
each source it compiled. The compiled modules are the same code, type-checked at run time, and
about 1.5x faster per device update (``stationflow bench analytics``).

Python imports an extension module before a source of the same name, so a source edited after
the build would be shadowed by its stale compiled self. :func:`select` (run by the package's
``__init__`` before any of these modules is imported) keeps the compiled modules only when the
manifest matches every source and ``STATIONFLOW_ANALYTICS_NATIVE`` is not ``false``; otherwise
it puts a finder first on ``sys.meta_path`` that loads the sources. The compiled modules call
each other directly, so it is all of them or none.

This module reads files at import, once; it is never compiled itself.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ENGINE", "GROUP", "MANIFEST", "MODULES", "PACKAGE", "Engine", "select", "source_digests"]

PACKAGE = "streams.analytics"
HERE = Path(__file__).resolve().parent
# the pure modules a device update runs through (not this one, not ``__init__``)
MODULES = (
    "aqi",
    "coldchain",
    "device",
    "flood",
    "packs",
    "rain",
    "rules",
    "statecodec",
    "station",
    "validity",
    "water",
)
GROUP = f"{PACKAGE}._native"  # mypyc's shared library: ``_native__mypyc`` in this package
MANIFEST = HERE / "_native.json"


class NativeSettings(BaseSettings):
    """``STATIONFLOW_ANALYTICS_NATIVE=false`` runs the sources even when compiled ones are built."""

    model_config = SettingsConfigDict(env_prefix="STATIONFLOW_ANALYTICS_", extra="ignore")

    native: bool = True


@dataclass(frozen=True, slots=True)
class Engine:
    """What :func:`select` chose, and why (logged by the worker, shown by the bench)."""

    compiled: bool
    reason: str

    @property
    def name(self) -> str:
        return "mypyc" if self.compiled else "python"


def source_digests(directory: Path = HERE, modules: Sequence[str] = MODULES) -> dict[str, str]:
    """sha256 of each module's source (what the manifest records at build time)."""
    return {m: hashlib.sha256((directory / f"{m}.py").read_bytes()).hexdigest() for m in modules}


def _compiled(directory: Path, module: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = directory / f"{module}{suffix}"
        if path.exists():
            return path
    return None


class SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds ``package.<module>`` in its ``.py`` source, before the path finder sees an extension."""

    def __init__(self, package: str, directory: Path, modules: Sequence[str]) -> None:
        self.package, self.directory = package, directory
        self.names = {f"{package}.{m}": m for m in modules}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        module = self.names.get(fullname)
        if module is None:
            return None
        return importlib.util.spec_from_file_location(fullname, self.directory / f"{module}.py")


def select(
    *,
    enabled: bool,
    package: str = PACKAGE,
    directory: Path = HERE,
    modules: Sequence[str] = MODULES,
    manifest: Path | None = None,
) -> Engine:
    """Keep the compiled modules if they are there, wanted and built from today's sources;
    otherwise make imports of ``modules`` load their sources. Call before importing them."""
    manifest = manifest if manifest is not None else directory / MANIFEST.name
    built = [m for m in modules if _compiled(directory, m) is not None]
    if not built:
        return Engine(False, "not compiled (scripts/build_native.py)")
    if not enabled:
        engine = Engine(False, "STATIONFLOW_ANALYTICS_NATIVE=false")
    else:
        engine = _check(manifest, directory, modules, built)
    if not engine.compiled and not any(
        isinstance(f, SourcesFirst) and f.package == package for f in sys.meta_path
    ):
        sys.meta_path.insert(0, SourcesFirst(package, directory, modules))
    return engine


def _check(manifest: Path, directory: Path, modules: Sequence[str], built: Sequence[str]) -> Engine:
    if len(built) < len(modules):
        missing = sorted(set(modules) - set(built))
        return Engine(False, f"compiled modules missing: {','.join(missing)}")
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["sources"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Engine(False, f"no readable build manifest ({type(exc).__name__}): compiled modules ignored")
    if not isinstance(recorded, dict):
        return Engine(False, "build manifest without sources: compiled modules ignored")
    changed = sorted(
        m for m, digest in source_digests(directory, modules).items() if recorded.get(m) != digest
    )
    if changed:
        return Engine(False, f"sources changed since the build: {','.join(changed)} (run scripts/setup.sh)")
    return Engine(True, "compiled from today's sources")


ENGINE = select(enabled=NativeSettings().native)
