"""The standalone server's shell: wires the pure core to connections, the log and timers.

It owns the :class:`~zktwist.core.database.ZooKeeperCore`, the group committer
and the live connections.  Writes are prepped at once, logged by the committer
and applied (then answered) when their batch is durable.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from zktwist.config import ServerConfig
from zktwist.core.database import CoreConfig, ZooKeeperCore
from zktwist.core.sessions import session_password
from zktwist.core.txn import Txn, decode
from zktwist.proto import records
from zktwist.proto.consts import Err, OpCode
from zktwist.server.connection import ClientConnection, Entry, pack_framed_reply_header
from zktwist.server.stats import STARTUP_METRICS, ServerStats, record_recovery
from zktwist.server.registry import ConnectionRegistry
from zktwist.server.snapshots import Snapshotter, collector_paused, recover, write_snapshot_now
from zktwist.storage.committer import GroupCommitter

log = Logger()


def wall_ms() -> int:
    return int(time.time() * 1000)


class StandaloneServer(ConnectionRegistry):
    """Everything one standalone server holds while it runs."""

    def __init__(self, config: ServerConfig, backend: Any, reactor: Any) -> None:
        self.config = config
        self.backend = backend
        self.reactor = reactor
        self.core = ZooKeeperCore(CoreConfig(
            tick_time=config.tick_time, server_id=1, skip_acl=config.skip_acl,
            extended_types=config.extended_types_enabled, super_digest=config.super_digest,
            container_max_never_used_ms=config.container_max_never_used_ms), wall_ms())
        self.core.on_session_closed = self.close_session_connection
        self.committer = GroupCommitter(reactor, backend, self._durable, self._log_failed,
                                        self._snapshot_due)
        self.stats = ServerStats()
        self.stats.enable("updatelatency", "readlatency", "bytes_received_count",
                          "connection_request_count", "fsynctime", "sync_processor_batch_size",
                          *STARTUP_METRICS)
        self.snapshotter = Snapshotter(reactor, self.core, backend, self.committer.run_serialized,
                                       config.snap_count, config.snap_retain_count,
                                       on_taken=self._snapshot_taken)
        self.snapshot_zxid = 0
        self.connections: Set[ClientConnection] = set()
        self.by_session: Dict[int, ClientConnection] = {}
        self.per_ip: Dict[str, int] = {}
        self.dirty: Set[ClientConnection] = set()
        # zxid -> (connection or None, entry or None, kind)
        self._waiting: Dict[int, Tuple[Optional[ClientConnection], Optional[Entry], str]] = {}
        self.outstanding = 0
        self._paused = False
        # The clock, read once per dataReceived and per durable batch (read_clock).
        self.mono = time.monotonic()
        self.wall = time.time()
        self.now_ms = wall_ms()
        self.started_at = time.time()
        self.serving = False

    # -- start-up ------------------------------------------------------------------

    def recover(self) -> int:
        """Open storage, load the newest snapshot and replay the log after it.

        Returns the number of txns replayed.
        """
        started = time.monotonic()
        with collector_paused():
            self.backend.open()
            now = wall_ms()
            timings: Dict[str, int] = {}
            self.snapshot_zxid, count = recover(self.core, self.backend, now, timings)
            record_recovery(self.stats, timings, started)
            snaps = self.backend.list_snapshots()
            if not snaps or snaps[0] != self.core.last_zxid:
                # As Apache ZooKeeper does: a clean snapshot of what was recovered
                # (a fresh dataDir gets snapshot.0, so Apache can read it too).
                snap_started = time.monotonic()
                self.snapshot_zxid = write_snapshot_now(self.core, self.backend)
                self._snapshot_taken(int((time.monotonic() - snap_started) * 1000))
                self.backend.purge(self.config.snap_retain_count)
            gc.freeze()  # the recovered tree is long-lived: keep it out of GC passes
        # Restored sessions get a full timeout from now to reattach.
        for sid in list(self.core.sessions.sessions):
            self.core.sessions.touch(sid, now)
        self.committer.start()
        self.snapshotter.start()
        self.serving = True
        return count

    def _snapshot_taken(self, ms: int) -> None:
        self.stats.add("snapshottime", ms)

    def shutdown(self) -> None:
        self.serving = False
        for conn in list(self.connections):
            conn.close()
        self.snapshotter.stop()
        self.committer.stop()
        self.backend.close()

    # -- connections ------------------------------------------------------------------

    def connection_closed(self, conn: ClientConnection) -> None:
        self.forget_connection(conn)
        self.core.tree.remove_watcher(conn)
        if conn.session_id and self.by_session.get(conn.session_id) is conn:
            del self.by_session[conn.session_id]
        self._maybe_resume()

    def connect(self, conn: ClientConnection, last_zxid: int, timeout: int, session_id: int,
                passwd: Optional[bytes]) -> None:
        core = self.core
        if not self.serving:
            conn.close()
            return
        if last_zxid > core.last_zxid:
            log.info("Refusing session request for client {ip} as it has seen zxid 0x{z:x} "
                     "our last zxid is 0x{l:x} client must try another server",
                     ip=conn.remote_ip, z=last_zxid, l=core.last_zxid)
            conn.close()
            return
        timeout = max(self.config.min_session_timeout, min(timeout, self.config.max_session_timeout))
        if session_id == 0:
            new_id = core.sessions.new_session_id()
            conn.state = 1  # CONNECTING
            conn.timeout = timeout
            txn = core.prep.prep_create_session(new_id, timeout, wall_ms())
            self._waiting[txn.zxid] = (conn, None, "session")
            self.committer.submit(txn)
            return
        # As Apache ZooKeeper 3.8 does, the session's current connection is
        # closed before the password is checked (ZooKeeperServer.processConnectRequest).
        old = self.by_session.get(session_id)
        if old is not None and old is not conn:
            old.close()
        if not core.check_password(session_id, passwd) or not core.sessions.touch(
                session_id, wall_ms(), timeout):
            conn.reject()
            return
        self.by_session[session_id] = conn
        conn.established(session_id, timeout, session_password(session_id))

    def read_clock(self) -> None:
        """Read the clocks once for all the requests of one read from a socket or one batch."""
        self.mono = time.monotonic()
        self.wall = time.time()
        self.now_ms = wall_ms()

    def touch(self, conn: ClientConnection) -> None:
        self.core.sessions.touch(conn.session_id, self.now_ms, conn.timeout)

    # -- writes --------------------------------------------------------------------------

    def submit_write(self, conn: ClientConnection, xid: int, op: int, frame: bytes,
                     started: float) -> None:
        core = self.core
        req = records.decode_write_request(op, frame)
        now = self.now_ms
        if op == OpCode.deleteContainer:
            txn = core.prep.prep_delete_container(req, now) if isinstance(req, str) else \
                core.prep.prep(conn.session_id, xid, op, req, conn.auth_ids, now)
        elif op == OpCode.reconfig:
            zxid = core.prep.next_zxid()
            txn = Txn(conn.session_id, xid, zxid, now, OpCode.error, (Err.RECONFIGDISABLED,))
        else:
            txn = core.prep.prep(conn.session_id, xid, op, req, conn.auth_ids, now)
        entry = Entry(xid, op, None, started)
        conn.queue.append(entry)
        self._waiting[txn.zxid] = (conn, entry, "write")
        self._count_in()
        self.committer.submit(txn)

    def submit_close(self, conn: ClientConnection, xid: int, started: float) -> None:
        txn = self.core.prep.prep_close_session(conn.session_id, xid, self.now_ms)
        entry = Entry(xid, OpCode.closeSession, None, started)
        conn.queue.append(entry)
        self._waiting[txn.zxid] = (conn, entry, "close")
        self._count_in()
        self.committer.submit(txn)

    def expire_sessions(self) -> None:
        """Tick: close the sessions whose time ran out."""
        now = wall_ms()
        for sid in self.core.expired_sessions(now):
            log.info("Expiring session 0x{sid:x}", sid=sid & 0xFFFFFFFFFFFFFFFF)
            txn = self.core.prep.prep_close_session(sid, 0, now)
            self._waiting[txn.zxid] = (None, None, "expire")
            self.committer.submit(txn)

    def reap_containers(self) -> None:
        now = wall_ms()
        for path in self.core.reapable(now):
            txn = self.core.prep.prep_delete_container(path, now)
            self.committer.submit(txn)

    # -- durable batches -----------------------------------------------------------------------

    def _durable(self, batch: List[Txn]) -> None:
        self.stats.record_sync(len(batch), int(self.committer.last_sync_ms))
        self.snapshotter.logged(len(batch))
        core = self.core
        self.read_clock()
        now = self.now_ms
        waiting = self._waiting
        for txn in batch:
            result = core.apply(txn, now)
            target = waiting.pop(txn.zxid, None)
            if target is None:
                continue
            conn, entry, kind = target
            if kind == "write":
                self.outstanding -= 1
                if conn is None or entry is None or conn.state == 3:
                    continue
                conn.answer_write(entry, txn, result)
            elif kind == "close":
                self.outstanding -= 1
                if conn is None or entry is None or conn.state == 3:
                    continue
                conn.answer_close(entry, txn.zxid)
            elif kind == "session":
                if conn is None or conn.state == 3:
                    continue
                sid = txn.session_id
                self.bind_session(conn, sid, txn.body[0], session_password(sid))
        self.flush_dirty()
        self._maybe_resume()

    def _snapshot_due(self, n: int) -> bool:
        """Will logging ``n`` more txns start a snapshot (whose log roll must precede the next batch)?"""
        return self.snapshotter.would_take(n)

    def _log_failed(self, batch: List[Txn], failure: Failure) -> None:
        log.failure("Writing the transaction log failed; {n} txns rolled back", failure, n=len(batch))
        self.stats.log_failures += 1
        self.read_clock()
        self.core.prep.rollback_all(self.core.last_zxid)
        for txn in batch:
            target = self._waiting.pop(txn.zxid, None)
            if target is None:
                continue
            conn, entry, kind = target
            if kind in ("write", "close"):
                self.outstanding -= 1
            if conn is None or conn.state == 3:
                continue
            if entry is not None:
                conn.write_applied(entry, pack_framed_reply_header(
                    16, entry.xid, self.core.last_zxid, Err.SYSTEMERROR))
            else:
                conn.close()
            if kind == "session":
                conn.close()
        # Sessions marked closing by a rolled-back close may close again at the next tick.
        for s in self.core.sessions.sessions.values():
            s.closing = False
        self.flush_dirty()
        self._maybe_resume()


class ClientFactory(Factory):
    """Builds a :class:`ClientConnection` per accepted socket."""

    def __init__(self, server: StandaloneServer) -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> ClientConnection:
        conn = ClientConnection(self.server)
        conn.factory = self
        return conn
