"""Running the ``stationflow`` CLI as a user does, from the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_cli_json(*args: str, timeout: float) -> Any:
    """Run ``python -m stationflow.cli ARGS`` and return its JSON output (stdout).

    Fails the test with the tail of stderr when the command exits non-zero.
    """
    done = subprocess.run(
        [sys.executable, "-m", "stationflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)
