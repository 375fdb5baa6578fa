"""Recovery from snapshot + log, and fuzzy snapshots taken while the server keeps serving.

A snapshot is started at the last applied zxid ``Z`` and written in slices:
each reactor turn serializes a bounded number of nodes (a few ms), and the
bytes go to disk on a snapshot thread while writes continue.  The result is
fuzzy -- it may contain changes after ``Z`` -- which is safe because recovery
replays every logged txn after ``Z`` and replaying a txn whose effect is
already there is harmless (``ZooKeeperCore.apply`` tolerates it, as
Apache ZooKeeper's DataTree does).
"""

from __future__ import annotations

import contextlib
import gc
import random
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from zktwist.core.database import ZooKeeperCore
from zktwist.core.txn import decode
from zktwist.storage.errors import CorruptLogError, StorageError

log = Logger()


def _epoch(zxid: int) -> int:
    return zxid >> 32


def recover(core: ZooKeeperCore, backend: Any, now_ms: int,
            timings: Optional[Dict[str, int]] = None) -> Tuple[int, int]:
    """Load the newest valid snapshot, then replay every later txn.

    Returns ``(snapshot zxid, txns replayed)``.  A damaged snapshot is skipped
    for an older one (with a log line); a gap in the log after the snapshot
    refuses to start rather than come up with a shorter history.  ``timings``,
    if given, gets what :func:`~zktwist.server.stats.record_recovery` reports:
    ``snap_load_ms`` and ``txns_load_ms`` (Apache ZooKeeper's
    startup_snap_load_time and startup_txns_load_time, in ms), ``txns_loaded``
    and ``snap_zxid``.
    """
    started = time.monotonic()
    snap_zxid = 0
    snap: Any = None
    for zxid in backend.list_snapshots():
        try:
            from zktwist.storage.snapshot import SnapshotError, load_snapshot
        except ImportError:  # pragma: no cover - snapshots not available in this build
            break
        try:
            snap = load_snapshot(backend.read_snapshot(zxid), zxid)
        except (SnapshotError, CorruptLogError) as e:
            log.warn("Skipping damaged snapshot 0x{zxid:x}: {error}", zxid=zxid, error=e)
            continue
        core.install_snapshot(snap.tree, snap.sessions, zxid, now_ms)
        snap_zxid = zxid
        log.info("Loaded snapshot 0x{zxid:x} ({n} znodes, {s} sessions)", zxid=zxid,
                 n=len(snap.tree.nodes), s=len(snap.sessions))
        break
    unresolved = list(getattr(snap, "unresolved_acls", ()) or ()) if snap_zxid else []
    snap_loaded = time.monotonic()
    replayed = 0
    expected = snap_zxid + 1
    for zxid, payload in backend.read_txns(snap_zxid + 1):
        # Within an epoch every zxid is used: a jump means lost log records.
        if zxid != expected and (_epoch(zxid) == _epoch(expected) or zxid & 0xFFFFFFFF != 0
                                 and zxid & 0xFFFFFFFF != 1):
            raise StorageError(
                "the transaction log is missing txns 0x%x to 0x%x (after snapshot 0x%x); "
                "refusing to start with a shorter history" % (expected, zxid - 1, snap_zxid))
        core.replay(decode(payload), now_ms)
        replayed += 1
        expected = zxid + 1
    _after_replay(core, unresolved)
    if timings is not None:
        timings["snap_load_ms"] = int((snap_loaded - started) * 1000)
        timings["txns_load_ms"] = int((time.monotonic() - snap_loaded) * 1000)
        timings["txns_loaded"] = replayed
        timings["snap_zxid"] = snap_zxid
    return snap_zxid, replayed


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while recovery builds the tree.

    Loading a snapshot and replaying the log create millions of long-lived
    objects, and each full collection meanwhile walks all of them again: at 1M
    znodes that was more than half of the start-up (recovery 4.3 s with the
    collector, 1.9 s without).  The caller freezes the recovered tree afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _after_replay(core: ZooKeeperCore, unresolved: list) -> None:
    """What ZooKeeperServer.loadData does once the log is replayed."""
    tree = core.tree
    # Ephemerals of sessions that are not in the session map died with them.
    for sid in [s for s in tree.ephemerals if s not in core.sessions.sessions]:
        log.info("Removing the ephemerals of dead session 0x{sid:x}", sid=sid & (2**64 - 1))
        tree.kill_session(sid, core.last_zxid, None)
    if unresolved:
        from zktwist.storage.snapshot import UNRESOLVED_ACL

        for path in unresolved:
            node = tree.get(path)
            if node is not None and node.acl == UNRESOLVED_ACL:
                log.warn("{path} kept an ACL the snapshot could not resolve; it allows nothing",
                         path=path)


def write_snapshot_now(core: ZooKeeperCore, backend: Any) -> int:
    """Write a snapshot synchronously (at start-up, before serving); returns its zxid."""
    from zktwist.storage.snapshot import snapshot_chunks

    zxid = core.last_zxid
    sessions = {sid: s.timeout for sid, s in core.sessions.sessions.items()}
    backend.roll()
    writer = backend.begin_snapshot(zxid)
    try:
        for chunk in snapshot_chunks(core.tree, sessions, zxid, 50000):
            writer.write(chunk)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return zxid


class Snapshotter:
    """Decides when to snapshot (snapCount, randomised) and writes snapshots in slices."""

    def __init__(self, reactor: Any, core: ZooKeeperCore, backend: Any,
                 run_on_log_thread: Callable[..., Deferred], snap_count: int,
                 retain: int, rng: Optional[random.Random] = None,
                 nodes_per_slice: int = 2000,
                 on_taken: Optional[Callable[[int], None]] = None) -> None:
        self.reactor = reactor
        self.core = core
        self.backend = backend
        self.run_on_log_thread = run_on_log_thread
        self.snap_count = snap_count
        self.retain = retain
        self.rng = rng or random.Random()
        self.nodes_per_slice = nodes_per_slice
        #: called with each finished snapshot's duration in ms (mntr's snapshottime)
        self.on_taken = on_taken
        self.pool = ThreadPool(1, 1, name="zktwist-snapshot")
        self.txns_since = 0
        self.in_progress = False
        self.taken = 0
        self.last_duration = 0.0
        self.max_slice_ms = 0.0
        # cancel() bumps it: a snapshot being sliced under an older generation aborts
        self.generation = 0
        self._roll()

    def _roll(self) -> None:
        # Apache ZooKeeper's randRoll: snapshot after snapCount/2 + rand(snapCount/2)
        # txns, so the members of an ensemble do not all snapshot at once.
        half = max(1, self.snap_count // 2)
        self.threshold = half + self.rng.randrange(half)

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()

    def would_take(self, n: int) -> bool:
        """Would :meth:`logged` of ``n`` txns start a snapshot now?"""
        return self.txns_since + n > self.threshold and not self.in_progress

    def logged(self, n: int) -> None:
        """``n`` more txns are durable; snapshot when the threshold is passed."""
        self.txns_since += n
        if self.txns_since > self.threshold and not self.in_progress:
            self.take()

    def take(self) -> Deferred:
        """Start a snapshot now; the Deferred fires with its zxid (or None if it failed)."""
        self.in_progress = True
        self.txns_since = 0
        self._roll()
        d = self._take()
        d.addBoth(self._finished)
        return d

    def _finished(self, result: Any) -> Any:
        self.in_progress = False
        return result

    def cancel(self) -> None:
        """Abandon the snapshot being sliced, at its next slice (an ensemble member that
        leaves its role fast-forwards uncommitted txns into the tree)."""
        self.generation += 1

    @inlineCallbacks
    def _take(self) -> Any:
        from zktwist.storage.snapshot import snapshot_chunks

        generation = self.generation
        started = time.monotonic()
        core = self.core
        zxid = core.last_zxid
        sessions = {sid: s.timeout for sid, s in core.sessions.sessions.items()}
        yield self.run_on_log_thread(self.backend.roll)
        writer = self.backend.begin_snapshot(zxid)
        chunks: Iterator[bytes] = snapshot_chunks(core.tree, sessions, zxid,
                                                  self.nodes_per_slice)
        try:
            while True:
                if self.generation != generation:
                    raise _Abandoned()
                t0 = time.monotonic()
                chunk = next(chunks, None)
                self.max_slice_ms = max(self.max_slice_ms, (time.monotonic() - t0) * 1000)
                if chunk is None:
                    break
                yield deferToThreadPool(self.reactor, self.pool, writer.write, chunk)
            if self.generation != generation:
                raise _Abandoned()
            yield deferToThreadPool(self.reactor, self.pool, writer.commit)
        except Exception as e:
            if isinstance(e, _Abandoned):
                log.info("Snapshot 0x{zxid:x} abandoned: the peer left its role", zxid=zxid)
            else:
                log.failure("Snapshot 0x{zxid:x} failed; will try again later", zxid=zxid)
            try:
                yield deferToThreadPool(self.reactor, self.pool, writer.abort)
            except Exception:
                pass
            return None
        self.taken += 1
        self.last_duration = time.monotonic() - started
        log.info("Snapshot 0x{zxid:x} written in {s:.2f}s", zxid=zxid, s=self.last_duration)
        if self.on_taken is not None:
            self.on_taken(int(self.last_duration * 1000))
        yield self.purge()
        return zxid

    @inlineCallbacks
    def purge(self) -> Any:
        """Keep the ``retain`` newest snapshots and the logs they need (autopurge)."""
        try:
            removed = yield self.run_on_log_thread(self.backend.purge, self.retain)
        except Exception:
            log.failure("Purging old snapshots and logs failed")
            return []
        if removed:
            log.info("Autopurge removed: {names}", names=", ".join(removed))
        return removed


class _Abandoned(Exception):
    """A snapshot given up because :meth:`Snapshotter.cancel` was called while it was sliced."""
