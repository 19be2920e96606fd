"""The README's device-integrator walkthrough, copy-pasted into bash while `stationflow up` runs.

The fenced block under "Registering stations and devices" is taken from README.md as it is,
with only the fixed ports rewritten to the free ports this test's stack listens on (the state
dir is ``.state`` in the working directory, as for a reader). It runs with ``bash -euo
pipefail``: a key and MQTT credentials are issued, a reading published with ``mosquitto_pub``
lands in InfluxDB converted and tagged and shows in the device status, and the broker refuses
a wrong password and another device's topic.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stationflow.contracts import DeadLetter
from stationflow.stack.components import influx_query
from stationflow.stack.monitor import count_points
from stationflow.stack.ports import free_ports
from tests.integration.pipeline_utils import read_topic, wait_for
from tests.integration.test_up import _children_using

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Registering stations and devices (device integrators)"
ALERTS_SECTION = "## Alerts and the duty console (flood control, environment bureau)"
READY_WITHIN_S = 45.0  # stack up and simulated readings stored (2 busy cores)
BLOCK_TIMEOUT_S = 50.0  # the block itself waits at most ~20 s for the reading
STOP_WITHIN_S = 50.0
FIXED_PORTS = ("1883", "8080", "8086", "8090", "9212", "9651", "9464")
STATIONS_SECTION = "## Connecting stations: HJ 212, SL 651, DTUs and SenML (device integrators)"


@dataclass
class Stack:
    mqtt: int
    influx: int
    registry: int
    alerts: int
    kafka: int
    hj212: int
    sl651: int
    workdir: Path
    log: Path

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.influx}"


def readme_block(heading: str = SECTION) -> str:
    """The first ```bash block of a section; fails loudly if either is missing."""
    text = README.read_text(encoding="utf-8")
    start = text.find(f"\n{heading}\n")
    assert start >= 0, f"README.md has no section {heading!r}: the walkthrough test has nothing to run"
    end = text.find("\n## ", start + len(heading))
    section = text[start : end if end >= 0 else len(text)]
    match = re.search(r"^```bash\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert match, f"README.md section {heading!r} has no ```bash block"
    return match.group(1)


def rewrite(block: str, table: dict[str, str]) -> str:
    """Apply each rewrite, asserting it matched; then no fixed port may be left in a command."""
    for old, new in table.items():
        assert old in block, f"the README block no longer contains {old!r}: update the rewrite table"
        block = block.replace(old, new)
    for line in block.splitlines():
        command = line.split("  # ", 1)[0]
        if command.lstrip().startswith("#"):
            continue
        left = [port for port in FIXED_PORTS if re.search(rf"\b{port}\b", command)]
        assert not left, f"fixed port {left} in a README command not covered by the rewrites: {line!r}"
    return block


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """`stationflow up` as test_up.py runs it, with ``.state`` under a fresh working directory."""
    mqtt, kafka, influx, m1, m2, registry, alerts, hj212, sl651, m3, opendata = free_ports(11)
    state = tmp_path / ".state"
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "stationflow.cli", "up", "--state-dir", str(state),
             "--mqtt-port", str(mqtt), "--kafka-port", str(kafka), "--influx-port", str(influx),
             "--ingest-metrics-port", str(m1), "--streams-metrics-port", str(m2),
             "--registry-port", str(registry), "--alerts-port", str(alerts), "--interval", "1",
             "--hj212-port", str(hj212), "--sl651-port", str(sl651), "--tcp-metrics-port", str(m3),
             "--opendata-port", str(opendata),
             "--backfill", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    s = Stack(
        mqtt=mqtt,
        influx=influx,
        registry=registry,
        alerts=alerts,
        kafka=kafka,
        hj212=hj212,
        sl651=sl651,
        workdir=tmp_path,
        log=log,
    )
    try:

        def ready() -> bool:
            if up.poll() is not None:
                return True  # exited: stop waiting, reported below
            try:
                return count_points(s.influx_url, "stationflow") > 0
            except Exception:  # noqa: BLE001 - not up yet
                return False

        assert wait_for(ready, timeout=READY_WITHIN_S, interval=0.5), f"stack not ready:\n{_tail(log)}"
        assert up.poll() is None, f"stationflow up exited with {up.returncode}:\n{_tail(log)}"
        assert "stationflow is running" in log.read_text(errors="replace")
        yield s
    finally:
        if up.poll() is None:
            # SIGTERM, as a supervisor (systemd, docker stop) sends it: test_up.py covers Ctrl-C
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait(timeout=10)
        # never leave brokers behind, but fail if SIGTERM did not stop them
        left = [] if wait_for(lambda: not _children_using(state), timeout=10) else _children_using(state)
        for proc in left:
            proc.kill()
    assert not left, f"still running after SIGTERM: {left}"
    assert up.returncode == 0, _tail(log)
    assert "all processes stopped" in log.read_text(errors="replace")


def _run_block(script: str, workdir: Path, name: str) -> str:
    """Run a README block with ``bash -euo pipefail`` in ``workdir``; its output, or fail."""
    started = time.monotonic()
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        check=False,
    )
    assert run.returncode == 0, f"the README {name} block failed ({run.returncode}):\n{run.stdout}"
    assert time.monotonic() - started < BLOCK_TIMEOUT_S
    return run.stdout


def _answers(output: str) -> list[dict[str, Any]]:
    """Every line of the output that is a JSON object (the curl answers)."""
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def _one(answers: list[dict[str, Any]], key: str, output: str) -> dict[str, Any]:
    matching = [a for a in answers if key in a]
    assert len(matching) == 1, f"expected one answer with {key!r}:\n{output}"
    return matching[0]


def test_readme_integrator_walkthrough_runs_verbatim(stack: Stack) -> None:
    script = rewrite(
        readme_block(),
        {
            "API=http://127.0.0.1:8080": f"API=http://127.0.0.1:{stack.registry}",
            "curl -sG http://127.0.0.1:8086/query": f"curl -sG {stack.influx_url}/query",
            "-h 127.0.0.1 -p 1883 ": f"-h 127.0.0.1 -p {stack.mqtt} ",
        },
    )
    out = _run_block(script, stack.workdir, "integrator")
    answers = _answers(out)

    # 1. an integrator key, issued with the admin key from .state/registry-admin-key
    key = _one(answers, "token", out)
    assert key["role"] == "integrator" and key["token"].startswith("sfk_"), out
    # 2. the station, then the device with its MQTT credentials
    assert any(a.get("id") == "gauge-hj-01" and a.get("basin") == "Han" for a in answers), out
    creds = _one(answers, "mqtt", out)["mqtt"]
    assert creds["username"] == "river-hj-01" and len(creds["password"]) >= 16, out
    assert (creds["host"], creds["port"]) == ("127.0.0.1", stack.mqtt), "the answer names the real broker"
    assert creds["topic"] == "devices/river-hj-01/readings"
    # 3. the reading in InfluxDB: 1290 cm stored as 12.9 m in hydro, with station/region/basin tags
    (series,) = _one(answers, "results", out)["results"][0]["series"]
    assert series["name"] == "hydro"
    rows = [dict(zip(series["columns"], values, strict=True)) for values in series["values"]]
    assert len(rows) == 1, rows
    assert rows[0]["level"] == pytest.approx(12.9)
    assert {k: rows[0][k] for k in ("device", "station", "region", "basin")} == {
        "device": "river-hj-01",
        "station": "gauge-hj-01",
        "region": "445100",
        "basin": "Han",
    }
    # 4. the device status: seen, one reading, nothing rejected
    status = _one(answers, "device_id", out)
    assert status["device_id"] == "river-hj-01" and status["last_seen"], status
    assert (status["readings_last_hour"], status["rejected_last_hour"]) == (1, 0), status
    # 5. the broker refused the wrong password at connect and the foreign topic at PUBACK
    assert "Connection error: Not authorized" in out and "refused, exit status 135" in out, out
    assert "Warning: Publish 1 failed: Not authorized." in out, out

    # The refused publish to river-001's topic never reaches the pipeline: once a later reading
    # of the simulated river-001 is stored, none of its stored levels is the walkthrough's 12.9.
    after = time.time_ns()
    newer = f"SELECT count(level) FROM hydro WHERE device = 'river-001' AND time > {after}"  # noqa: S608 - an int
    assert wait_for(lambda: bool(influx_query(stack.influx_url, "stationflow", newer)), timeout=30)
    forged = "SELECT count(level) FROM hydro WHERE device = 'river-001' AND level = 12.9"
    assert not influx_query(stack.influx_url, "stationflow", forged)

    # --- the alerts block, right after, on the same stack ---------------------------------
    script = rewrite(
        readme_block(ALERTS_SECTION),
        {
            "ALERTS=http://127.0.0.1:8090": f"ALERTS=http://127.0.0.1:{stack.alerts}",
            "-h 127.0.0.1 -p 1883 ": f"-h 127.0.0.1 -p {stack.mqtt} ",
        },
    )
    out = _run_block(script, stack.workdir, "alerts")
    answers = _answers(out)
    groups = [a for a in answers if "members" in a]
    assert [g["name"] for g in groups] == ["flood-duty", "flood-chief"], out
    assert _one(answers, "ack_timeout_s", out)["groups"] == ["flood-duty", "flood-chief"]
    alert = next(a for a in answers if a.get("alert_id") == "flood.level:device:river-hj-01")
    assert (alert["status"], alert["severity"], alert["station_id"]) == ("open", "major", "gauge-hj-01"), out
    assert alert["value"] == pytest.approx(14.2) and alert["threshold"] == pytest.approx(14.0)
    notes = {a["channel"]: a for a in answers if "channel" in a and "attempts" in a}
    assert notes["mqtt"]["status"] == "sent", out
    assert notes["webhook"]["status"] == "pending" and "unreachable" in notes["webhook"]["last_error"], out
    acked = next(a for a in answers if a.get("status") == "acknowledged")
    assert (acked["acknowledged_by"], acked["ack_comment"]) == ("officer Li", "patrol sent to the levee")
    silence = _one(answers, "reason", out)
    assert (silence["station_id"], silence["created_by"]) == ("gauge-hj-01", "officer Li")
    # whether the first event came before the policy depends on when the service joined its group
    history = next(line for line in out.splitlines() if line.startswith("event → "))
    assert history.endswith("event → notified → acknowledged") and history.count("event") == 2, out

    # --- the stations block (HJ 212, SL 651, DTU, SenML), on the same stack ---------------
    _stations_block(stack)


def _stations_block(stack: Stack) -> None:
    """The stations block: an HJ 212 station and an SL 651 RTU over TCP, a DTU and a SenML device."""
    script = rewrite(
        readme_block(STATIONS_SECTION),
        {
            "API=http://127.0.0.1:8080": f"API=http://127.0.0.1:{stack.registry}",
            "curl -sG http://127.0.0.1:8086/query": f"curl -sG {stack.influx_url}/query",
            "-h 127.0.0.1 -p 1883 ": f"-h 127.0.0.1 -p {stack.mqtt} ",
            "--port 9212": f"--port {stack.hj212}",
            "--port 9651": f"--port {stack.sl651}",
            ".venv/bin/python": sys.executable,
        },
    )
    out = _run_block(script, stack.workdir, "stations")
    answers = _answers(out)
    # the HJ 212 station: registered with a generated password, answered 9014 for its MN
    logger = next(a for a in answers if a.get("id") == "aq-futian-logger")
    assert logger["hj212"]["password_set"] and len(logger["hj212_password"]) == 6, out
    assert "hj212_password" not in json.dumps(logger["hj212"]), "the link never shows the password"
    replies = [line for line in out.splitlines() if line.startswith("< ##")]
    assert any("CN=9014" in r and "MN=440304A0000000000000F001" in r for r in replies), out
    assert "no reply, exit status 1" in out, out  # the wrong password got no 9014
    # the SL 651 RTU: confirmed (downlink, same function 32, end EOT)
    [confirm] = [line for line in out.splitlines() if line.startswith("< 7E 7E")]
    raw = bytes.fromhex(confirm[2:])
    assert raw[2:8] == bytes.fromhex("005110746101") and raw[10] == 0x32 and raw[11] >> 4 == 8, out
    assert raw[-3] == 0x04, out
    # InfluxDB: one reading per HJ 212 frame, two SenML samples, the RTU's stage and voltage
    result = _one(answers, "results", out)["results"]
    counts = {s["tags"]["device"]: s["values"][0][1] for s in result[0]["series"]}
    assert counts == {"aq-dtu-7": 1, "aq-futian-logger": 1, "aq-senml-2": 2}, out
    (hydro,) = result[1]["series"]
    [[_, level, voltage]] = hydro["values"]
    assert level >= 19.9 and 12.2 <= voltage <= 13.7, hydro
    # the refusals are in the dead-letter topic with their codes
    codes = _dead_letter_codes(stack)
    assert {"hj212_bad_password", "unknown_subtopic"} <= codes, codes


def _dead_letter_codes(stack: Stack) -> set[str]:
    """Codes of the dead letters on the stack's Kafka topic, once both expected ones are there."""
    wanted = {"hj212_bad_password", "unknown_subtopic"}

    def codes_of(values: list[bytes]) -> set[str]:
        return {DeadLetter.model_validate_json(v).code for v in values}

    values = read_topic(
        f"127.0.0.1:{stack.kafka}", "readings.deadletter", until=lambda v: wanted <= codes_of(v), timeout=30
    )
    return codes_of(values)
