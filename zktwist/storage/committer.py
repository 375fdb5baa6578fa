"""Group commit: the txns of one reactor turn share one write and one fsync, off the reactor.

One batch is in flight at a time; the next batch forms behind it.  When a
batch is durable, ``on_durable(txns)`` runs in the reactor thread, in zxid
order; if the storage thread raised, ``on_failure(txns, failure)`` runs
instead and every txn queued behind the failed batch fails with it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, List, Tuple

from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from zktwist.core.txn import Txn, encode


class GroupCommitter:
    def __init__(self, reactor: Any, backend: Any,
                 on_durable: Callable[[List[Txn]], None],
                 on_failure: Callable[[List[Txn], Failure], None]) -> None:
        self.reactor = reactor
        self.backend = backend
        self.on_durable = on_durable
        self.on_failure = on_failure
        self.pool = ThreadPool(1, 1, name="zktwist-storage")
        self._pending: List[Txn] = []
        self._in_flight = False
        self._scheduled = False
        self.batches = 0
        self.txns = 0
        self.last_sync_ms = 0.0

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()

    @property
    def busy(self) -> bool:
        return self._in_flight or bool(self._pending)

    def submit(self, txn: Txn) -> None:
        self._pending.append(txn)
        if not self._in_flight and not self._scheduled:
            self._scheduled = True
            self.reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._in_flight or not self._pending:
            return
        batch, self._pending = self._pending, []
        records: List[Tuple[int, bytes]] = [(t.zxid, encode(t)) for t in batch]
        self._in_flight = True
        d = deferToThreadPool(self.reactor, self.pool, self._write, records)
        d.addCallbacks(self._done, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def run_serialized(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the storage thread, in order with the log writes (roll, purge)."""
        return deferToThreadPool(self.reactor, self.pool, fn, *args)

    def _write(self, records: List[Tuple[int, bytes]]) -> None:
        """Runs on the storage thread: one write and one fsync for the whole batch."""
        started = time.monotonic()
        self.backend.append_and_sync(records)
        self.last_sync_ms = (time.monotonic() - started) * 1000

    def _done(self, _: object, batch: List[Txn]) -> None:
        self._in_flight = False
        self.batches += 1
        self.txns += len(batch)
        try:
            self.on_durable(batch)
        finally:
            if self._pending:
                self._flush()

    def _failed(self, failure: Failure, batch: List[Txn]) -> None:
        self._in_flight = False
        # Later txns were prepped on top of the failed ones: they fail too.
        queued, self._pending = self._pending, []
        self.on_failure(batch + queued, failure)
