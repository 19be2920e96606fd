"""``python -m dashboards``: write ``grafana/dashboards/*.json``; ``--check``: exit 1 if they are stale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards.render import DEFAULT_DIR, check, write


def main(argv: list[str] | None = None) -> int:
    """Generate (default) or check the dashboards; the exit code says whether they were up to date."""
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="compare instead of writing; exit 1 on a difference"
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="dashboard folder (default: grafana/dashboards)"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.dir)
        for problem in problems:
            sys.stderr.write(f"{problem}\n")
        if problems:
            sys.stderr.write(
                "dashboards are stale: run `python -m dashboards` and commit grafana/dashboards\n"
            )
            return 1
        sys.stdout.write(f"dashboards up to date in {args.dir}\n")
        return 0
    for path in write(args.dir):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
