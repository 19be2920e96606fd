#!/usr/bin/env bash
# The project's test command (README's second command; .ci/run calls exactly this):
# set up (system packages + .venv), then format check, lint, type check, and every test
# against real Mosquitto, Tansu, InfluxDB 1.x and VictoriaMetrics started as subprocesses.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -m "not slow"   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== ruff format --check"
.venv/bin/ruff format --check .
echo "== ruff check"
.venv/bin/ruff check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  # pytest exit code 5 = no tests were collected: that is a broken test selection, not a pass.
  echo "pytest collected no tests (exit 5): treating as failure" >&2
  exit 1
fi
exit "$status"
