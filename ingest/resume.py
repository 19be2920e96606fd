"""When the collector should resume its MQTT session because the broker dropped messages.

Mosquitto 2.0.11 (Debian 12's broker) can strand QoS 1 messages in a live session: measured
in the QoS 0 flood test, after the broker had dropped QoS 0 messages towards the collector
(its outgoing queue at ``max_queued_messages``; "Outgoing messages are being dropped" in its
log), a few dozen QoS 1 messages it had acknowledged to their devices were never sent to
the connected collector, 90 s and more after the flood. A reconnect of the same session
delivered every one of them: on a reconnect the broker resends all it holds in flight.
Upstream (eclipse/mosquitto#2362, answered "various fixes around inflight quota management
in 2.0.13") knows the defect.

So the collector watches the broker's drop counter (``$SYS/broker/publish/messages/dropped``)
and, once it rose and then stayed still for ``quiet_s`` (the flood is over), or ``max_wait_s``
after the first rise while drops go on, resumes its session. Duplicates that a resume
may cause are removed downstream (the worker's recent-keys check, InfluxDB's overwrite).

Pure logic: the caller passes the counter's values and the time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DropWatch"]


@dataclass(slots=True)
class DropWatch:
    """Follows the broker's drop counter; says when a session resume is due."""

    quiet_s: float = 5.0
    max_wait_s: float = 60.0
    _last: int | None = None
    _first_rise: float | None = None  # first rise not yet answered by a resume
    _last_rise: float | None = None

    def observe(self, dropped: int, now: float) -> bool:
        """Take a value of the counter; True if it rose since the previous value.

        The first value is only a baseline (drops before the collector connected stranded
        nothing of its session: its connect resends what the broker holds), and so is a
        value below the previous one (the broker restarted and counts from zero).
        """
        previous, self._last = self._last, dropped
        if previous is None or dropped <= previous:
            return False
        self._last_rise = now
        if self._first_rise is None:
            self._first_rise = now
        return True

    def due(self, now: float) -> bool:
        """True if a resume is due: drops were seen and then stopped, or went on too long."""
        if self._first_rise is None or self._last_rise is None:
            return False
        return now - self._last_rise >= self.quiet_s or now - self._first_rise >= self.max_wait_s

    def resumed(self) -> None:
        """The session was resumed: drops seen so far are answered."""
        self._first_rise = self._last_rise = None

    @property
    def dropped(self) -> int | None:
        """The counter's last value (None before the first)."""
        return self._last
