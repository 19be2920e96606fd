"""Compile the analytics' pure modules with mypyc, next to their sources (``scripts/setup.sh``).

    .venv/bin/python scripts/build_native.py            # build if a source changed since the last build
    .venv/bin/python scripts/build_native.py --force    # build again
    .venv/bin/python scripts/build_native.py --clean    # remove the compiled modules (Python runs them)

The modules and the manifest are :mod:`streams.analytics.native`'s: the manifest records each
source's sha256, and a worker keeps the compiled modules only while every source still matches
it. A build that fails (no C compiler, no Python headers) leaves no compiled module behind and
exits 1 with the compiler's last lines; the analytics then run as Python, as before.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "streams" / "analytics"
# the modules, the group and the manifest's place are the runtime's (one definition). Importing
# the package makes it choose an engine for this process, which only adds an import finder
# (this script imports none of the modules it compiles)
sys.path.insert(0, str(ROOT))
from streams.analytics.native import GROUP, MANIFEST, MODULES, source_digests  # noqa: E402

SHARED_LIB = f"{GROUP.rsplit('.', 1)[1]}__mypyc"  # mypyc's shared library module, in the package
SETUP = """
from mypyc.build import mypycify
from setuptools import setup

setup(
    name="stationflow-analytics-native",
    ext_modules=mypycify({sources!r}, opt_level="3", group_name={group!r}, target_dir={target!r}),
    script_args=["build_ext", "--inplace", "--build-temp", {temp!r}, "--build-lib", {lib!r}],
)
"""


def say(text: str, stream: TextIO = sys.stdout) -> None:
    stream.write(f"build_native: {text}\n")
    stream.flush()


def artefacts() -> list[Path]:
    """The compiled modules, mypyc's shared library and the manifest, as they are now."""
    found = [
        p
        for p in PACKAGE_DIR.iterdir()
        if p.suffix in (".so", ".pyd") and p.name.split(".")[0] in {*MODULES, SHARED_LIB}
    ]
    return [*found, *([MANIFEST] if MANIFEST.exists() else [])]


def clean() -> None:
    for path in artefacts():
        path.unlink()


def up_to_date() -> bool:
    try:
        recorded = json.loads(MANIFEST.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    compiled = {p.name.split(".")[0] for p in artefacts()}
    return (
        recorded.get("sources") == source_digests()
        and recorded.get("python") == sys.version.split()[0]
        and recorded.get("mypy") == _mypy_version()
        and set(MODULES) <= compiled
    )


def _mypy_version() -> str:
    from mypy.version import __version__

    return str(__version__)


def build() -> int:
    clean()
    sources = [str(Path("streams") / "analytics" / f"{m}.py") for m in MODULES]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stationflow-mypyc-") as tmp:
        script = Path(tmp) / "setup_native.py"
        text = SETUP.format(
            sources=sources,
            group=GROUP,
            target=str(Path(tmp) / "c"),
            temp=str(Path(tmp) / "o"),
            lib=str(Path(tmp) / "lib"),
        )
        script.write_text(text, encoding="utf-8")
        # run from the checkout (module names come from the sources' relative paths); the C
        # sources and objects go to the scratch directory, the extension modules in place
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, check=False
        )
    if proc.returncode != 0:
        clean()
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        say(f"mypyc failed; the analytics run as Python\n{tail}", sys.stderr)
        return 1
    manifest = {"sources": source_digests(), "python": sys.version.split()[0], "mypy": _mypy_version()}
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    say(f"compiled {len(MODULES)} analytics modules with mypyc in {time.monotonic() - started:.0f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules and the manifest")
    args = parser.parse_args()
    if args.clean:
        clean()
        say("compiled modules removed; the analytics run as Python")
        return 0
    if not args.force and up_to_date():
        say("compiled analytics up to date")
        return 0
    return build()


if __name__ == "__main__":
    sys.exit(main())
