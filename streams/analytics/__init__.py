"""Stream analytics: pure functions over readings (windows, national-standard indices, rules).

Nothing in this package does I/O; the Faust agents in ``streams.analytics_app`` feed it and
store what it returns.
"""
