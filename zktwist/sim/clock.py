"""Per-server clocks with an offset and a drift, as the peer sees time.

The peer only ever gets its *local* ``now``; timers it needs (ticks) are
scheduled in local time and converted to simulated time, so a fast clock
ticks more often and measures timeouts short, as a real drifting clock does.
"""

from __future__ import annotations


class Clock:
    __slots__ = ("offset", "drift_ppm")

    def __init__(self, offset: int = 0, drift_ppm: int = 0) -> None:
        if drift_ppm <= -1_000_000:
            raise ValueError("a clock cannot run backwards")
        self.offset = offset
        self.drift_ppm = drift_ppm

    def local(self, sim_ms: int) -> int:
        """Local milliseconds at simulated time ``sim_ms`` (monotonic)."""
        return self.offset + sim_ms + (sim_ms * self.drift_ppm) // 1_000_000

    def sim_delay(self, local_ms: int) -> int:
        """How much simulated time passes while this clock advances ``local_ms`` (at least 1)."""
        return max(1, (local_ms * 1_000_000) // (1_000_000 + self.drift_ppm))
