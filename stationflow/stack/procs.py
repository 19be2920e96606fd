"""Child processes with a log file, a readiness wait and a clean stop."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal as signals
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["ManagedProcess", "StackError"]

# Readiness checks are cheap (a connect or a GET on loopback); 50 ms keeps a broker that is
# ready in milliseconds from costing a whole second per test session.
POLL_INTERVAL = 0.05
# Enough of a log to show the fatal error and what led to it without flooding a test report.
LOG_TAIL_LINES = 40
# Lines of 100-200 bytes are typical; reading this much of the end covers LOG_TAIL_LINES.
LOG_TAIL_BYTES = 64 * 1024
# After SIGKILL the kernel reaps at once; waiting longer means the process is stuck in D state.
KILL_WAIT = 5.0


class StackError(RuntimeError):
    """A local stack component could not be found, started, reached or stopped."""


class ManagedProcess:
    """A child process whose output goes to a log file, with readiness wait and clean stop."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Describe the process; nothing runs until :meth:`start`.

        :param name: short name used in errors, e.g. ``"influxd"``.
        :param argv: program and arguments (no shell).
        :param log_path: stdout and stderr are appended here (created with its parents).
        :param env: variables merged over the current environment (``None``: inherit as is).
        :param cwd: working directory of the child.
        """
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self._env = None if env is None else {**os.environ, **env}
        self._popen: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, running={self.running})"

    @property
    def pid(self) -> int | None:
        """Process id of the current (or last) run; None before the first start."""
        return None if self._popen is None else self._popen.pid

    @property
    def running(self) -> bool:
        """Whether the child has been started and has not exited."""
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last run (negative: killed by that signal); None while running."""
        return None if self._popen is None else self._popen.poll()

    def start(self) -> None:
        """Start the child in its own session so a terminal's Ctrl-C does not reach it."""
        if self.running:
            raise StackError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- stationflow: starting {shlex.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise StackError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc

    def wait_ready(self, check: Callable[[], bool], timeout: float) -> None:
        """Poll ``check`` until True; raise StackError if the child exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise StackError(
                    f"{self.name} exited with status {self.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if check():
                return
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{self.name} (pid {self.pid}) not ready after {timeout:.1f} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL)

    def log_tail(self, n: int = LOG_TAIL_LINES) -> str:
        """The last ``n`` lines of the log file ("" when there is none yet)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
                data = log.read()
        except FileNotFoundError:
            return ""
        lines = deque(data.decode(errors="replace").splitlines(), maxlen=n)
        return "\n".join(lines)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child itself (e.g. SIGHUP to reload); no-op if it is not running."""
        if self._popen is not None and self.running:
            self._popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the child's process group, wait up to ``timeout``, then SIGKILL; idempotent."""
        if self._popen is None:
            return None
        if self.running:
            self._signal_group(self._popen, signals.SIGTERM)
            try:
                return self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL the child's process group and reap it (a crash, for tests); idempotent."""
        if self._popen is None:
            return None
        if self.running:
            self._signal_group(self._popen, signals.SIGKILL)
        try:
            return self._popen.wait(KILL_WAIT)
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{self.name} (pid {self.pid}) survived SIGKILL") from exc

    @staticmethod
    def _signal_group(popen: subprocess.Popen[bytes], sig: int) -> None:
        # start_new_session made the child a group leader, so its pid is the group id; the
        # group also reaches helpers it forked. The child may exit between poll and kill.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, sig)
