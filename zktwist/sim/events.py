"""The event queue: simulated time in integer milliseconds, ties broken by insertion order.

Ordering by ``(time, sequence number)`` makes a run a pure function of the
seed: two events at the same millisecond always run in the order they were
scheduled, and FIFO channels can reuse the time of their previous delivery.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, List, Tuple

Event = Tuple[int, int, Callable[..., None], Tuple[Any, ...]]


class EventQueue:
    __slots__ = ("_heap", "_seq", "now", "steps")

    def __init__(self) -> None:
        self._heap: List[Event] = []
        self._seq = 0
        self.now = 0
        self.steps = 0

    def at(self, time: int, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` at simulated ``time`` (never in the past)."""
        self._seq += 1
        if time < self.now:
            time = self.now
        heapq.heappush(self._heap, (time, self._seq, fn, args))

    def after(self, delay: int, fn: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def __len__(self) -> int:
        return len(self._heap)

    def next_time(self) -> int:
        return self._heap[0][0] if self._heap else -1

    def step(self) -> bool:
        """Run the next event; False when the queue is empty."""
        if not self._heap:
            return False
        time, _, fn, args = heapq.heappop(self._heap)
        self.now = time
        self.steps += 1
        fn(*args)
        return True
