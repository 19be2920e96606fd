"""docker-compose.yml is valid (checked by Debian's docker-compose, which needs no engine)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_compose_file_is_valid() -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose missing: run scripts/setup.sh"
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert {
        "mosquitto",
        "kafka",
        "influxdb",
        "grafana",
        "prometheus",
        "registry",
        "ingest",
        "streams",
        "alerts",
    } <= services
