"""Peak RSS and CPU seconds of the stack's processes, sampled in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import psutil

__all__ = ["Sampler", "stage_cpu"]

RSS_EVERY_S = 0.5


class Sampler(threading.Thread):
    """Peak RSS (MB) and CPU seconds since construction of each named process.

    Our own children that are not named (the load generator processes) are summed as
    ``loadgen``.
    """

    def __init__(self, pids: dict[str, int], every_s: float = RSS_EVERY_S) -> None:
        """Start counting CPU from now; call :meth:`start` to sample in the background."""
        super().__init__(daemon=True)
        self.every_s = every_s
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.cpu: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.cpu0 = {name: _cpu(p) for name, p in self.procs.items()}
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Sample until :attr:`stop_event` is set."""
        while not self.stop_event.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        """Take one sample of every process (gone ones are skipped)."""
        me = psutil.Process()
        known = {p.pid for p in self.procs.values()}
        loadgen = [c for c in me.children(recursive=True) if c.pid not in known]
        for name, proc in self.procs.items():
            try:
                self.peak[name] = max(self.peak[name], proc.memory_info().rss / 2**20)
                self.cpu[name] = _cpu(proc) - self.cpu0[name]
            except psutil.Error:
                continue
        rss = 0.0
        for child in loadgen:
            try:
                rss += child.memory_info().rss / 2**20
            except psutil.Error:
                continue
        self.peak["loadgen"] = max(self.peak.get("loadgen", 0.0), rss)


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def stage_cpu(cpu_s: Mapping[str, float], stages: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """CPU seconds per stage: the sum over the processes whose name (before any ``-N``) it lists."""
    return {
        stage: sum(v for name, v in cpu_s.items() if name.rsplit("-", 1)[0] in names or name in names)
        for stage, names in stages.items()
    }
