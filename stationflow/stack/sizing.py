"""How many processes the local stack runs when not told (no I/O beyond asking the OS)."""

from __future__ import annotations

import os

from stationflow.settings import CommonSettings

__all__ = ["default_workers"]


def default_workers(partitions: int | None = None) -> int:
    """How many stream workers the stack runs unless told: one per core this process may use,
    at most one per partition of the topics (a further worker would be given none).

    A Faust worker runs its raw stage and its analytics on one core (one event loop, one GIL).
    With a single worker on two cores, a backlog of 10,000 devices' messages left the worker
    analysing alone for seconds while the other core idled; two workers share the partitions,
    and the analytics-on throughput rose by 15-25 % (README, *Scaling out*).
    """
    if partitions is None:
        partitions = CommonSettings().topic_partitions
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, partitions))
