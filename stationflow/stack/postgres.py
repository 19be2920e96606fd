"""A throwaway PostgreSQL server for tests: ``initdb`` plus ``postgres`` on a free loopback port.

Debian keeps the server binaries in ``/usr/lib/postgresql/<version>/bin`` (package
``postgresql``), off PATH. PostgreSQL refuses to run as root, so when we are root the server
runs as the ``postgres`` system user (``setpriv``, which execs in place: the managed pid is the
postmaster itself) with its data in a private temp dir that user owns; otherwise it runs as
the current user under ``workdir``. Trust authentication on 127.0.0.1 only, no durability
(``fsync=off``): a test server, never a real one.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from stationflow.stack.components import Component
from stationflow.stack.ports import LOOPBACK, free_port
from stationflow.stack.procs import ManagedProcess, StackError

__all__ = [
    "PostgresServer",
    "create_database",
    "drop_database",
    "find_postgres_bindir",
    "start_postgres",
]

# Debian/Ubuntu layout; the newest version wins when several are installed.
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
# The unprivileged account the server runs as when we are root (created by the Debian package).
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
# initdb of an empty cluster takes 1-3 s; the margin is for a loaded CI runner.
INITDB_TIMEOUT = 120.0
# Crash recovery of a test-sized cluster is quick; startup without it takes well under a second.
POSTGRES_READY_TIMEOUT = 60.0
# A fast shutdown (SIGINT) disconnects clients and writes one small checkpoint.
FAST_SHUTDOWN_TIMEOUT = 10.0
# pg_isready itself waits this long for an answer; the poll loop retries.
PROBE_TIMEOUT_S = 1
PROBE_RUN_TIMEOUT = 5.0
# Durability off: nothing here survives the test session anyway, and it makes CREATE DATABASE
# and commits an order of magnitude cheaper.
SERVER_SETTINGS = {
    "listen_addresses": LOOPBACK,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "log_checkpoints": "off",  # the log is for startup failures and real problems
}
# Names we create databases under: no quoting surprises, within PostgreSQL's 63-byte limit.
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(eq=False, kw_only=True)
class PostgresServer(Component):
    """A running PostgreSQL test server; :meth:`sqlalchemy_url` is how clients reach it."""

    datadir: Path
    socket_dir: Path
    # The temp dir owned by the unprivileged user (None when we are not root), removed by close().
    private_dir: Path | None = None

    def sqlalchemy_url(self, database: str = "postgres") -> str:
        """``postgresql+psycopg://postgres@127.0.0.1:P/<database>`` (trust auth: no password)."""
        return f"postgresql+psycopg://{self.username}@{self.host}:{self.port}/{database}"

    def stop(self, timeout: float = FAST_SHUTDOWN_TIMEOUT) -> int | None:
        """Fast shutdown (SIGINT: clients are disconnected, not waited for), then SIGTERM/SIGKILL."""
        if self.proc.running:
            self.proc.signal(signal.SIGINT)
            deadline = time.monotonic() + timeout
            while self.proc.running and time.monotonic() < deadline:
                time.sleep(0.02)
        return self.proc.stop(timeout)

    def close(self) -> None:
        """Stop the server and delete the private data dir (if any); the server is gone for good."""
        self.stop()
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (Debian's versioned dir, else PATH)."""

    def version(bindir: Path) -> tuple[int, ...]:  # /usr/lib/postgresql/15/bin -> (15,)
        return tuple(int(p) for p in re.findall(r"\d+", bindir.parent.name))

    found = [Path(d) for d in glob.glob(DEBIAN_BINDIRS)]  # noqa: PTH207  (a glob from the root)
    found = [d for d in found if (d / "postgres").is_file() and (d / "initdb").is_file()]
    if found:
        return max(found, key=version)
    postgres, initdb = shutil.which("postgres"), shutil.which("initdb")
    if postgres and initdb and Path(postgres).parent == Path(initdb).parent:
        return Path(postgres).parent
    raise StackError(
        "PostgreSQL server binaries (initdb, postgres) not found in "
        f"{DEBIAN_BINDIRS} or on PATH: run `bash scripts/setup.sh` (Debian: apt-get install postgresql)"
    )


def _privilege_drop() -> tuple[list[str], pwd.struct_passwd | None]:
    """The argv prefix that runs a command as the unprivileged user, and that user (root only)."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam(SYSTEM_USER)
    except KeyError as exc:
        raise StackError(
            f"running as root and there is no `{SYSTEM_USER}` user to run PostgreSQL as "
            "(it refuses root): install the Debian package `postgresql`, or run as another user"
        ) from exc
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise StackError("running as root and `setpriv` is missing (Debian: apt-get install util-linux)")
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    return prefix, user


def start_postgres(workdir: Path, port: int | None = None) -> PostgresServer:
    """``initdb`` a fresh cluster and start ``postgres`` on 127.0.0.1 (plus a unix socket).

    The log is ``workdir/postgres.log``; the data dir is ``workdir/data``, or, when we are root,
    a private temp dir owned by the ``postgres`` user (it cannot enter pytest's 0700 temp tree).
    Use the result as a context manager, or call :meth:`PostgresServer.close`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    bindir = find_postgres_bindir()
    prefix, user = _privilege_drop()
    private_dir: Path | None = None
    if user is None:
        base = workdir
    else:
        private_dir = base = Path(tempfile.mkdtemp(prefix="stationflow-postgres-"))
        os.chown(base, user.pw_uid, user.pw_gid)
    try:
        return _start(bindir, prefix, workdir, base, port or free_port(), private_dir, user)
    except BaseException:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)
        raise


def _start(
    bindir: Path,
    prefix: list[str],
    workdir: Path,
    base: Path,
    port: int,
    private_dir: Path | None,
    user: pwd.struct_passwd | None,
) -> PostgresServer:
    datadir = base / "data"
    log_path = workdir / "postgres.log"
    # The children start in ``base``: PostgreSQL resolves its own path from the working dir, and
    # the unprivileged user cannot enter the caller's (possibly 0700) one.
    env = {"LC_ALL": "C", "TZ": "UTC"} if user is None else {"LC_ALL": "C", "TZ": "UTC", "HOME": user.pw_dir}
    initdb = [
        *prefix,
        str(bindir / "initdb"),
        f"--pgdata={datadir}",
        f"--username={SUPERUSER}",
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
    ]
    with log_path.open("ab") as log:
        log.write(f"--- stationflow: {' '.join(initdb)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                initdb,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=base,
                env={**os.environ, **env},
                timeout=INITDB_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StackError(f"initdb failed: {exc}") from exc
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise StackError(f"initdb exited with {result.returncode}; log {log_path}:\n" + "\n".join(tail))

    argv = [*prefix, str(bindir / "postgres"), "-D", str(datadir), "-p", str(port)]
    argv += ["-c", f"unix_socket_directories={base}"]
    for name, value in SERVER_SETTINGS.items():
        argv += ["-c", f"{name}={value}"]
    proc = ManagedProcess("postgres", argv, log_path=log_path, env=env, cwd=base)
    server = PostgresServer(
        name="postgres",
        host=LOOPBACK,
        port=port,
        proc=proc,
        workdir=workdir,
        ready=_pg_isready(bindir, port),
        ready_timeout=POSTGRES_READY_TIMEOUT,
        scheme="postgresql",
        username=SUPERUSER,
        datadir=datadir,
        socket_dir=base,
        private_dir=private_dir,
    )
    server.start()
    return server


def _pg_isready(bindir: Path, port: int) -> Callable[[], bool]:
    # An open port is not enough: during startup the server accepts and then refuses
    # ("the database system is starting up"); pg_isready exits 0 only once logins work.
    argv = [str(bindir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port), "-U", SUPERUSER]
    argv += ["-d", "postgres", "-t", str(PROBE_TIMEOUT_S)]

    def check() -> bool:
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_RUN_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    return check


def _admin(server_url: str, statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block: autocommit.
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def _db_name(name: str) -> str:
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"database name {name!r} must match {_DB_NAME_RE.pattern}")
    return name


def _with_database(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + "/" + name


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server at ``server_url``; return the new database's URL."""
    _admin(server_url, f'CREATE DATABASE "{_db_name(name)}"')
    return _with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name``, disconnecting whoever is still connected (a no-op if it is gone)."""
    _admin(server_url, f'DROP DATABASE IF EXISTS "{_db_name(name)}" WITH (FORCE)')
