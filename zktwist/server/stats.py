"""Server-wide counters for srvr/stat/mntr (ServerStats)."""

from __future__ import annotations


class ServerStats:
    def __init__(self) -> None:
        self.reset()
        self.connections_total = 0
        self.auth_failed = 0
        self.log_failures = 0

    def reset(self) -> None:
        self.packets_received = 0
        self.packets_sent = 0
        self.min_latency = -1
        self.max_latency = 0
        self.total_latency = 0
        self.count = 0

    def record_latency(self, ms: int) -> None:
        if self.min_latency < 0 or ms < self.min_latency:
            self.min_latency = ms
        if ms > self.max_latency:
            self.max_latency = ms
        self.total_latency += ms
        self.count += 1

    @property
    def avg_latency(self) -> float:
        return self.total_latency / self.count if self.count else 0.0
