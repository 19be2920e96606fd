"""Stream analytics: pure functions over readings (windows, national-standard indices, rules).

Nothing in this package does I/O; the Faust agents in ``streams.analyticsworker`` feed it and
store what it returns. Its modules run compiled by mypyc when ``scripts/setup.sh`` could build
them from today's sources, else as Python (:mod:`streams.analytics.native`, chosen here, before
any of them is imported).
"""

from streams.analytics.native import ENGINE

__all__ = ["ENGINE"]
