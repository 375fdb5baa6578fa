"""Group commit: the txns of one reactor turn share one write and one fsync, off the reactor.

One batch is in flight at a time; the next batch forms behind it.  When a
batch is durable, ``on_durable(txns)`` runs in the reactor thread, in zxid
order; if the storage thread raised, ``on_failure(txns, failure)`` runs
instead and every txn queued behind the failed batch fails with it.

The next batch's write starts *before* the durable batch is applied, so its
fsync (which releases the GIL) overlaps the reactor's apply-and-reply work --
unless ``hold_next(n)`` says the apply of these ``n`` txns will queue work on
the storage thread (a snapshot's log roll) that must come first.

The storage thread is a plain thread fed by a ``SimpleQueue``; results come
back with ``reactor.callFromThread`` (no Deferred per batch).
"""

from __future__ import annotations

import threading
import time
from queue import SimpleQueue
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from zktwist.core.txn import Txn, encode


class StorageThread:
    """One worker thread running calls in order (the part of ThreadPool the committer uses)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: "SimpleQueue[Optional[Tuple[Callable[..., None], Callable[..., Any], tuple]]]" = \
            SimpleQueue()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Run what is queued, then end the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def callInThreadWithCallback(self, onResult: Callable[[bool, Any], None],
                                 func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` on the thread, then ``onResult(True, result)`` or
        ``onResult(False, Failure)`` there (as ThreadPool does)."""
        self._queue.put((onResult, func, args))

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            on_result, func, args = item
            try:
                result = func(*args)
            except BaseException:
                on_result(False, Failure())
            else:
                on_result(True, result)
            del item, on_result, func, args


class BatchingStorage:
    """The part of group commit both servers share: one storage thread, work handed
    over during a reactor turn becomes one batch, one batch in flight at a time.

    Subclasses keep ``_pending`` filled, call :meth:`_schedule`, and implement
    ``_flush`` (take ``_pending``, set ``_in_flight``, hand the batch to ``pool``).
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.pool: Any = StorageThread("zktwist-storage")
        self._pending: List[Any] = []
        self._in_flight = False
        self._scheduled = False
        self.batches = 0
        self.last_sync_ms = 0.0

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()

    @property
    def busy(self) -> bool:
        return self._in_flight or bool(self._pending)

    def _schedule(self) -> None:
        """Flush at the end of this reactor turn, unless a batch is on the thread (then its
        completion flushes): that wait is the group in group commit."""
        if not self._in_flight and not self._scheduled:
            self._scheduled = True
            self.reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        raise NotImplementedError

    def run_serialized(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the storage thread, in order with the batches handed over (a Deferred)."""
        return deferToThreadPool(self.reactor, self.pool, fn, *args)


class GroupCommitter(BatchingStorage):
    def __init__(self, reactor: Any, backend: Any,
                 on_durable: Callable[[List[Txn]], None],
                 on_failure: Callable[[List[Txn], Failure], None],
                 hold_next: Optional[Callable[[int], bool]] = None) -> None:
        super().__init__(reactor)
        self.backend = backend
        self.on_durable = on_durable
        self.on_failure = on_failure
        self.hold_next = hold_next
        self.txns = 0

    def submit(self, txn: Txn) -> None:
        self._pending.append(txn)
        self._schedule()

    def _flush(self) -> None:
        self._scheduled = False
        if self._in_flight or not self._pending:
            return
        batch, self._pending = self._pending, []
        records: List[Tuple[int, bytes]] = [(t.zxid, encode(t)) for t in batch]
        self._in_flight = True
        call_from_thread = self.reactor.callFromThread
        finished = self._finished

        def on_result(ok: bool, result: Any) -> None:
            call_from_thread(finished, ok, result, batch)

        self.pool.callInThreadWithCallback(on_result, self._write, records)

    def _write(self, records: List[Tuple[int, bytes]]) -> float:
        """Runs on the storage thread: one write and one fsync for the whole batch."""
        started = time.monotonic()
        self.backend.append_and_sync(records)
        return (time.monotonic() - started) * 1000

    def _finished(self, ok: bool, result: Any, batch: List[Txn]) -> None:
        self._in_flight = False
        if not ok:
            self._failed(result, batch)
            return
        self.last_sync_ms = result
        self.batches += 1
        self.txns += len(batch)
        if self._pending and (self.hold_next is None or not self.hold_next(len(batch))):
            self._flush()  # the next write overlaps this batch's apply
        try:
            self.on_durable(batch)
        finally:
            if self._pending and not self._in_flight:
                self._flush()

    def _failed(self, failure: Failure, batch: List[Txn]) -> None:
        # Later txns were prepped on top of the failed ones: they fail too.
        queued, self._pending = self._pending, []
        self.on_failure(batch + queued, failure)
