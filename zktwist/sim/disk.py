"""A simulated disk: a FIFO of storage ops on a MemoryBackend, each done after a random delay.

The ops run with :func:`zktwist.server.peerstore.run_storage_op`, the code the
production shell runs on its storage thread, only when they complete: a
crash loses every op not yet completed.  Optionally the op at the head of the
queue reaches the platter just before the crash without ever being reported
(durable but unacknowledged), which is allowed and must be harmless.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Callable, Deque, Tuple

from zktwist.quorum.effects import AppendTxns
from zktwist.server.peerstore import run_storage_op
from zktwist.sim.events import EventQueue
from zktwist.storage.errors import StorageError
from zktwist.storage.memory import MemoryBackend


def _raise(op: Any, error: Exception) -> None:
    raise error


class DiskConfig:
    def __init__(self, min_ms: int = 1, max_ms: int = 6, slow_p: float = 0.02,
                 slow_ms: int = 60, torn_p: float = 0.3) -> None:
        self.min_ms = min_ms
        self.max_ms = max_ms
        self.slow_p = slow_p
        self.slow_ms = slow_ms
        self.torn_p = torn_p


class Disk:
    """One server's disk; ``done(op)`` is called (in order) as each op becomes durable."""

    def __init__(self, queue: EventQueue, rng: random.Random, backend: MemoryBackend,
                 config: DiskConfig) -> None:
        self.queue = queue
        self.rng = rng
        self.backend = backend
        self.config = config
        self.pending: Deque[Tuple[int, Any]] = deque()
        self.busy_until = 0
        self.generation = 0
        self.done: Callable[[Any], None] = lambda op: None
        self.failed: Callable[[Any, Exception], None] = _raise
        self.completed = 0

    def op_delay(self) -> int:
        c = self.config
        d = self.rng.randint(c.min_ms, c.max_ms)
        if c.slow_p and self.rng.random() < c.slow_p:
            d += self.rng.randint(c.slow_ms // 2, c.slow_ms)
        return d

    def submit(self, op: Any) -> None:
        t = max(self.queue.now, self.busy_until) + self.op_delay()
        self.busy_until = t
        self.pending.append((self.generation, op))
        self.queue.at(t, self._complete, self.generation)

    def _complete(self, generation: int) -> None:
        if generation != self.generation or not self.pending:
            return
        _, op = self.pending.popleft()
        try:
            run_storage_op(self.backend, op)
        except (ValueError, StorageError) as e:
            # The backend refused what the peer asked (a log that goes backwards, say):
            # production would stop the server; here it is a finding.
            self.failed(op, e)
            return
        self.completed += 1
        self.done(op)

    def crash(self) -> None:
        """Power cut: ops not completed are lost (perhaps but the head, silently durable)."""
        if self.pending and self.rng.random() < self.config.torn_p:
            _, op = self.pending[0]
            if isinstance(op, AppendTxns) and len(op.txns) > 1:
                # A prefix of the batch made it to disk.
                n = self.rng.randint(1, len(op.txns))
                op = AppendTxns(op.seq, op.txns[:n])
            run_storage_op(self.backend, op)
        self.pending.clear()
        self.generation += 1
        self.busy_until = 0
        self.backend.crash()
