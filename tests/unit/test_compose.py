"""docker-compose.yml: valid (Debian's docker-compose, which needs no engine), no default secrets,
every variable documented in .env.example, health-gated start order, metrics Prometheus can reach.

The services themselves are started with their compose command and environment in
tests/integration/test_compose_wiring.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS = ROOT / "prometheus" / "prometheus.yml"

# Variable or setting names that hold a secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|_KEY$|PASSWD", re.IGNORECASE)
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}; $$ is an escaped dollar.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")
HEALTH_GATED = (
    "mosquitto",
    "kafka",
    "influxdb",
    "postgres",
    "registry",
    "alerts",
    "opendata",
    "grafana",
    "prometheus",
)
INIT_JOBS = ("broker-init",)
# Installed packages no service runs: the dashboards generator runs at development time and
# its JSON (grafana/dashboards) is mounted into the Grafana container.
NOT_IN_IMAGE = {"dashboards"}


def _compose_binary() -> str:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose missing: run scripts/setup.sh"
    return binary


def _config(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_compose_binary(), "-f", str(COMPOSE), "--env-file", str(env_file), "config", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The compose file as docker-compose resolves it with .env.example."""
    result = _config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The compose file as written (interpolations unresolved)."""
    config: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return config


def _strings(node: object) -> list[str]:
    """Every string value in parsed YAML (comments are not values)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def _interpolations(config: dict[str, Any]) -> list[re.Match[str]]:
    return [m for value in _strings(config) for m in INTERPOLATION.finditer(value)]


def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.lstrip().startswith("#")}


def _stationflow_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services built from this repository (the stationflow image)."""
    return {name: svc for name, svc in config["services"].items() if "build" in svc}


def test_compose_file_is_valid_with_the_example_env(resolved: dict[str, Any]) -> None:
    assert {
        "mosquitto",
        "broker-init",
        "kafka",
        "influxdb",
        "postgres",
        "grafana",
        "prometheus",
        "registry",
        "ingest",
        "tcp",
        "streams",
        "alerts",
        "opendata",
        "simulator",
    } <= set(resolved["services"])
    assert resolved["services"]["simulator"].get("profiles") == ["demo"]


def test_compose_refuses_to_start_without_an_env_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _config(empty)
    assert result.returncode != 0
    assert "set it in .env" in result.stderr


def test_no_default_secrets(raw: dict[str, Any]) -> None:
    for path in (COMPOSE, ENV_EXAMPLE, *sorted((ROOT / "grafana" / "provisioning").rglob("*.yml"))):
        assert "change-me" not in path.read_text().lower(), path
    for match in _interpolations(raw):
        name, op = match["name"], match["op"] or ""
        if SECRET_NAME.search(name):
            assert op == ":?", (
                f"${{{name}{op}{match['arg']}}}: a secret must be required (:?), never defaulted"
            )
        else:
            assert op in ("", ":?"), (
                f"${{{name}{op}{match['arg']}}}: no defaults; put the value in .env.example"
            )
    # a secret-looking setting must come from .env, never be written into the compose file
    for name, svc in raw["services"].items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        for key, value in env.items():
            if key == "<<" or not SECRET_NAME.search(key):
                continue
            assert INTERPOLATION.search(str(value)), f"{name}: {key} is written in the compose file"


def test_env_example_documents_every_variable(raw: dict[str, Any]) -> None:
    used = {m["name"] for m in _interpolations(raw)}
    documented = _env_example()
    assert used == set(documented), (
        f"undocumented: {sorted(used - set(documented))}, unused: {sorted(set(documented) - used)}"
    )
    assert all(documented.values()), "every example variable has a value"


def test_the_readme_recipe_replaces_every_placeholder(tmp_path: Path) -> None:
    """The awk line at the top of .env.example gives each REPLACE-ME variable its own random value."""
    recipe = next(line for line in ENV_EXAMPLE.read_text().splitlines() if "awk" in line)
    command, redirect = recipe.lstrip("# ").rsplit(">", 1)
    assert redirect.strip() == ".env"  # captured here instead: the test never writes the repo's .env
    assert shutil.which("awk") and shutil.which("openssl")
    result = subprocess.run(  # noqa: S602 - the documented command, as users run it
        command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    generated = tmp_path / "generated.env"
    generated.write_text(result.stdout)
    example, env = (
        _env_example(),
        dict(
            line.split("=", 1)
            for line in result.stdout.splitlines()
            if "=" in line and not line.startswith("#")
        ),
    )
    placeholders = [k for k, v in example.items() if v.startswith("REPLACE-ME")]
    assert placeholders and set(env) == set(example)
    assert not any(v.startswith("REPLACE-ME") for v in env.values())
    assert len({env[k] for k in placeholders}) == len(placeholders), "each secret its own value"
    assert _config(generated, "--quiet").returncode == 0


def test_stationflow_services_run_existing_commands(resolved: dict[str, Any]) -> None:
    from stationflow.cli import app

    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    commands |= {g.name for g in app.registered_groups if g.name}
    for name, svc in _stationflow_services(resolved).items():
        assert svc["command"][0] in commands, f"{name}: `stationflow {svc['command'][0]}` does not exist"


def test_dockerfile_copies_every_installed_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    packages -= NOT_IN_IMAGE
    copied = set(re.findall(r"^COPY (\w+) \1$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    assert packages <= copied, f"installed but not in the image: {sorted(packages - copied)}"


def test_start_order_waits_for_health(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name in HEALTH_GATED:
        assert "test" in services[name].get("healthcheck", {}), f"{name} has no healthcheck"
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            condition = spec["condition"]
            if dep in INIT_JOBS:
                assert condition == "service_completed_successfully", f"{name} → {dep}"
            else:
                assert condition == "service_healthy", f"{name} → {dep}: {condition}"
                assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"
    for job in INIT_JOBS:
        assert services[job].get("restart") == "no"


def test_kafka_keeps_its_data_on_the_volume(resolved: dict[str, Any]) -> None:
    kafka = resolved["services"]["kafka"]
    volumes = {v.split(":")[0]: v.split(":")[1] for v in kafka["volumes"]}  # name:target:mode
    targets = {target for name, target in volumes.items() if name in resolved["volumes"]}
    assert kafka["environment"]["KAFKA_LOG_DIRS"] in targets


def test_mosquitto_has_no_anonymous_clients() -> None:
    conf = (ROOT / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    settings = [line.split() for line in conf if line.strip() and not line.startswith("#")]
    assert ["allow_anonymous", "false"] in settings
    assert ["allow_anonymous", "true"] not in settings
    assert any(s[0] == "plugin" and s[1].endswith("mosquitto_dynamic_security.so") for s in settings)


def test_prometheus_scrapes_each_metrics_endpoint_on_an_open_bind(resolved: dict[str, Any]) -> None:
    """Each target is a stationflow service's port served on 0.0.0.0; no endpoint is left out."""
    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        tuple(t.split(":"))
        for job in prometheus["scrape_configs"]
        for static in job["static_configs"]
        for t in static["targets"]
    }
    served: set[tuple[str, str]] = set()
    for name, svc in _stationflow_services(resolved).items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if key.endswith("_METRICS_PORT"):
                assert env.get(key.replace("_PORT", "_BIND")) == "0.0.0.0", f"{name}: {key} on loopback"
                served.add((name, str(value)))
            elif key.endswith("_PORT") and env.get(key.replace("_PORT", "_HOST")) == "0.0.0.0":
                served.add((name, str(value)))  # an API, serving /metrics beside it
    assert targets == served


def test_grafana_gets_every_variable_its_provisioning_reads(resolved: dict[str, Any]) -> None:
    env = resolved["services"]["grafana"]["environment"]
    wanted = {
        m["name"]
        for path in (ROOT / "grafana" / "provisioning").rglob("*.yml")
        for m in INTERPOLATION.finditer(path.read_text())
    }
    assert wanted and wanted <= set(env), f"missing: {sorted(wanted - set(env))}"
    uids = {
        ds["uid"]
        for path in (ROOT / "grafana" / "provisioning" / "datasources").glob("*.yml")
        for ds in yaml.safe_load(path.read_text())["datasources"]
    }
    types = {
        ds["type"]
        for path in (ROOT / "grafana" / "provisioning" / "datasources").glob("*.yml")
        for ds in yaml.safe_load(path.read_text())["datasources"]
    }
    assert {"influxdb", "prometheus"} <= types and len(uids) >= 2
