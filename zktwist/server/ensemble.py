"""The shell around one ensemble member: a pure QuorumPeer on real time, storage, links and clients.

:class:`~zktwist.quorum.peer.QuorumPeer` decides everything (docs/replication.md);
:class:`EnsembleServer` only feeds it inputs and carries out the effects it
returns:

* time: :meth:`EnsembleServer.tick` (a timer service, finer than tickTime/2 so
  election timeouts and pings are not delayed by a coarse tick);
* links: a :class:`~zktwist.quorum.transport.PeerNetwork` (or any object with
  its ``send/connect/disconnect`` and ``on_*`` callbacks);
* storage: :class:`PeerStorage` runs the storage effects strictly in order on
  one thread, consecutive ``AppendTxns`` sharing one ``append_and_sync``
  (group commit), and reports durability back in the reactor thread;
* clients: the same :class:`~zktwist.server.connection.ClientConnection` the
  standalone server uses (through :class:`EnsembleConnection`), with writes
  and syncs relayed to the peer and reads answered from ``peer.core``.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from zktwist.config import ServerConfig
from zktwist.core.database import CoreConfig, ZooKeeperCore
from zktwist.proto import records
from zktwist.proto.consts import Err, OpCode
from zktwist.proto.jute import JuteError
from zktwist.quorum import codec
from zktwist.quorum import effects as fx
from zktwist.quorum.election import FOLLOWING, LEADING, LOOKING, OBSERVING
from zktwist.quorum.peer import PeerConfig, QuorumPeer
from zktwist.server.connection import CLOSED, CONNECTING, ClientConnection, Entry, \
    pack_framed_reply_header
from zktwist.server.peerstore import recover_peer, run_storage_op
from zktwist.server.registry import ConnectionRegistry
from zktwist.server.snapshots import Snapshotter, collector_paused
from zktwist.server.stats import STARTUP_METRICS, BufferStats, ServerStats, record_recovery
from zktwist.storage.committer import BatchingStorage

log = Logger()

CONFIG_NODE = "/zookeeper/config"


def peer_config(config: ServerConfig) -> PeerConfig:
    """The pure peer's settings from a zoo.cfg ensemble configuration."""
    assert config.my_id is not None, "an ensemble config has read its myid"
    return PeerConfig(
        sid=config.my_id,
        voters={sid: 1 for sid in config.voters},
        observers=frozenset(config.observers),
        tick_time=config.tick_time,
        init_limit=config.init_limit,
        sync_limit=config.sync_limit,
        min_session_timeout=config.min_session_timeout,
        max_session_timeout=config.max_session_timeout,
        skip_acl=config.skip_acl,
        extended_types=config.extended_types_enabled,
        super_digest=config.super_digest,
        container_max_never_used_ms=config.container_max_never_used_ms,
        reap_interval=config.container_check_interval_ms,
        trace_txns=False,  # _fx_trace ignores them: two objects per txn saved
    )


def ensemble_config_text(config: ServerConfig) -> str:
    """``/zookeeper/config`` as Apache ZooKeeper 3.8 writes it (QuorumMaj.toString).

    One ``server.N=`` line per member in id order, then ``version=<hex>``
    (0: zktwist has no dynamic reconfiguration), with no final newline.
    """
    lines = ["server.%d=%s" % (sid, config.servers[sid].zoo_cfg_value())
             for sid in sorted(config.servers)]
    lines.append("version=0")
    return "\n".join(lines)


def set_config_node(core: ZooKeeperCore, text: str, now_ms: int) -> None:
    """ZKDatabase.initConfigInZKDatabase: data = the membership, version -1, mzxid = 0."""
    node = core.tree.nodes.get(CONFIG_NODE)
    if node is None:
        return
    node.data = text.encode("utf-8")
    node.version = -1
    node.mzxid = 0
    node.mtime = now_ms
    node._stat = None


# -- storage -----------------------------------------------------------------------------------

StorageResult = Tuple[Any, ...]  # ("done", seq, txns, ms) | ("reloaded", seq, core, recent)


class _Append:
    """An ``AppendTxns`` with its txns already encoded: ``records`` = [(zxid, bytes)]."""

    __slots__ = ("seq", "records")

    def __init__(self, seq: int, records: List[Tuple[int, bytes]]) -> None:
        self.seq = seq
        self.records = records


class PeerStorage(BatchingStorage):
    """Runs a peer's storage effects in order on one thread, with group commit.

    Ops queue up while one batch is on the thread; the next batch takes all of
    them, and any run of consecutive ``AppendTxns`` in it becomes one
    ``append_and_sync`` (one fsync).  Everything else goes through
    :func:`~zktwist.server.peerstore.run_storage_op`, and a ``Reload`` is
    followed by :func:`~zktwist.server.peerstore.recover_peer` on the same
    thread (it reads the log the truncate just shortened).  Results come back
    in order with ``reactor.callFromThread``.
    """

    def __init__(self, reactor: Any, backend: Any, core_config: CoreConfig, window: int,
                 on_results: Callable[[List[StorageResult]], None],
                 on_failure: Callable[[Failure], None], clock: Callable[[], int]) -> None:
        super().__init__(reactor)
        self.backend = backend
        self.core_config = core_config
        self.window = window
        self.on_results = on_results
        self.on_failure = on_failure
        self.clock = clock
        self.failed = False

    def submit(self, op: Any) -> None:
        if self.failed:
            return
        if type(op) is fx.AppendTxns:
            # Encoded here, in the reactor thread, from the codec's cache: the leader
            # encoded each txn for its PROPOSALs, a learner has the bytes it received.
            txn_bytes = codec.txn_bytes
            op = _Append(op.seq, [(t.zxid, txn_bytes(t)) for t in op.txns])
        self._pending.append(op)
        self._schedule()

    def _flush(self) -> None:
        self._scheduled = False
        if self._in_flight or not self._pending or self.failed:
            return
        batch, self._pending = self._pending, []
        self._in_flight = True
        now = self.clock()
        call_from_thread = self.reactor.callFromThread
        finished = self._finished

        def on_result(ok: bool, result: Any) -> None:
            call_from_thread(finished, ok, result)

        self.pool.callInThreadWithCallback(on_result, self._run, batch, now)

    def _run(self, ops: List[Any], now: int) -> Tuple[List[StorageResult], Optional[Failure]]:
        """On the storage thread: every op in order; stops at the first failure."""
        out: List[StorageResult] = []
        backend = self.backend
        i, n = 0, len(ops)
        try:
            while i < n:
                op = ops[i]
                if type(op) is _Append:
                    j = i
                    records: List[Tuple[int, bytes]] = []
                    while j < n and type(ops[j]) is _Append:
                        records.extend(ops[j].records)
                        j += 1
                    started = time.monotonic()
                    if records:
                        backend.append_and_sync(records)
                    out.append(("done", ops[j - 1].seq, len(records),
                                (time.monotonic() - started) * 1000))
                    i = j
                    continue
                run_storage_op(backend, op)
                if isinstance(op, fx.Reload):
                    core, _, _, recent = recover_peer(backend, self.core_config, now, self.window)
                    out.append(("reloaded", op.seq, core, recent))
                else:
                    out.append(("done", op.seq, 0, 0.0))
                i += 1
        except BaseException:
            return out, Failure()
        return out, None

    def _finished(self, ok: bool, result: Any) -> None:
        self._in_flight = False
        self.batches += 1
        if not ok:  # pragma: no cover - _run catches everything
            self.failed = True
            self.on_failure(result)
            return
        results, failure = result
        if failure is not None:
            self.failed = True
            self._pending = []
        elif self._pending:
            self._flush()  # the next batch's fsync overlaps this batch's callbacks
        try:
            if results:
                self.on_results(results)
        finally:
            if failure is not None:
                self.on_failure(failure)
            elif self._pending:
                self._schedule()


# -- clients -----------------------------------------------------------------------------------

#: The request types an ensemble connection answers when the peer says so.
_AWAITED = ClientConnection.AWAIT_OPS | {OpCode.sync}


class EnsembleConnection(ClientConnection):
    """A client connection of an ensemble member: ``sync`` goes to the leader, reads are counted."""

    AWAIT_OPS = _AWAITED

    server: "EnsembleServer"

    def _request(self, frame: bytes) -> None:
        if len(frame) >= 8 and not self.closing_session and \
                int.from_bytes(frame[4:8], "big", signed=True) == OpCode.sync:
            self.server.stats.packets_received += 1
            self.packets_received += 1
            xid = int.from_bytes(frame[0:4], "big", signed=True)
            try:
                req: Any = records.decode_request(OpCode.sync, frame, 8)
            except JuteError:
                req = None
            entry = Entry(xid, OpCode.sync, req, self.server.mono)
            self.queue.append(entry)
            self.server.submit_sync(self, entry)
            return
        super()._request(frame)

    def _answer_read(self, xid: int, op: int, req: Any, started: float,
                     session_checked: bool = False, session_err: int = 0) -> None:
        self.server.local_reads += 1
        super()._answer_read(xid, op, req, started, session_checked, session_err)


class EnsembleClientFactory(Factory):
    def __init__(self, server: "EnsembleServer") -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> EnsembleConnection:
        conn = EnsembleConnection(self.server)
        conn.factory = self
        return conn


# -- the server --------------------------------------------------------------------------------

_MODES = {LEADING: "leader", FOLLOWING: "follower", OBSERVING: "observer", LOOKING: "looking"}


class EnsembleServer(ConnectionRegistry):
    """One ensemble member while it runs: its peer, storage, links and client connections."""

    #: ms between ticks: fine enough that election timers (200 ms) and tickTime/2
    #: pings are not held back (the peer decides what is due).
    TICK_MS = 50

    def __init__(self, config: ServerConfig, backend: Any, reactor: Any,
                 network: Any = None) -> None:
        self.config = config
        self.backend = backend
        self.reactor = reactor
        self.pconfig = peer_config(config)
        self.sid = self.pconfig.sid
        self.config_text = ensemble_config_text(config)
        self.storage = PeerStorage(reactor, backend, self.pconfig.core_config(),
                                   self.pconfig.committed_log_size, self._storage_results,
                                   self._storage_failed, self.now)
        self.peer: Optional[QuorumPeer] = None
        self._core: Optional[ZooKeeperCore] = None
        self.snapshotter: Optional[Snapshotter] = None
        self.network: Any = None
        if network is not None:
            self.attach_network(network)
        self.stats = ServerStats()
        self.stats.enable("updatelatency", "readlatency", "bytes_received_count",
                          "connection_request_count", "fsynctime", "sync_processor_batch_size",
                          *STARTUP_METRICS)
        self.connections: Set[ClientConnection] = set()
        self.by_session: Dict[int, ClientConnection] = {}
        self.per_ip: Dict[str, int] = {}
        self.dirty: Set[ClientConnection] = set()
        self.outstanding = 0
        self._paused = False
        self.local_reads = 0
        self.forwarded_writes = 0
        self.mono = time.monotonic()
        self.wall = time.time()
        self.now_ms = self.now()
        self.started_at = time.time()
        self.serving = False
        self.mode = "looking"
        self.serving_since = 0.0
        self.proposal_sizes = BufferStats()
        self.stopped = False
        self._effects: Deque[Any] = deque()
        self._running = False
        self._frozen = False
        self._handlers: Dict[type, Callable[[Any], None]] = {
            fx.Send: self._fx_send, fx.Connect: self._fx_connect,
            fx.Disconnect: self._fx_disconnect,
            fx.AppendTxns: self._fx_storage, fx.SetMeta: self._fx_storage,
            fx.TruncateLog: self._fx_storage, fx.WriteSnapshot: self._fx_storage,
            fx.Reload: self._fx_storage,
            fx.SessionEstablished: self._fx_session_established,
            fx.SessionRejected: self._fx_session_rejected,
            fx.WriteDone: self._fx_write_done, fx.SyncDone: self._fx_sync_done,
            fx.SessionClosed: self._fx_session_closed,
            fx.StartServing: self._fx_start_serving, fx.StopServing: self._fx_stop_serving,
            fx.Trace: self._fx_trace,
        }

    # -- time ---------------------------------------------------------------------------------

    def now(self) -> int:
        """The peer's clock (ms): the reactor's, so tests drive it with task.Clock."""
        return int(self.reactor.seconds() * 1000)

    def read_clock(self) -> None:
        self.mono = time.monotonic()
        self.wall = time.time()
        self.now_ms = self.now()

    @property
    def core(self) -> ZooKeeperCore:
        """The tree reads are answered from (the peer's, which Reload/SNAP replace)."""
        assert self.peer is not None
        return self.peer.core

    # -- start-up and shutdown ------------------------------------------------------------------

    def attach_network(self, network: Any) -> None:
        self.network = network
        network.on_message = self.message_received
        network.on_messages = self.messages_received
        network.on_link_up = self.link_up
        network.on_link_down = self.link_down

    def recover(self) -> int:
        """Open storage and rebuild the peer from it (snapshot + log, epochs from meta).

        Returns the last zxid recovered.
        """
        started = time.monotonic()
        with collector_paused():
            self.backend.open()
            now = self.now()
            timings: Dict[str, int] = {}
            core, accepted, current, recent = recover_peer(
                self.backend, self.pconfig.core_config(), now, self.pconfig.committed_log_size,
                timings)
            record_recovery(self.stats, timings, started)
            self.peer = QuorumPeer(self.pconfig, core, accepted, current, recent, now)
            self._core_changed()  # freezes the recovered tree
        self.snapshotter = Snapshotter(
            self.reactor, core, self.backend, self.storage.run_serialized,
            self.config.snap_count, self.config.snap_retain_count,
            on_taken=lambda ms: self.stats.add("snapshottime", ms))
        self.storage.start()
        self.snapshotter.start()
        log.info("zktwist server.{sid}: recovered to zxid 0x{zxid:x}, acceptedEpoch {a}, "
                 "currentEpoch {c}", sid=self.sid, zxid=core.last_zxid, a=accepted, c=current)
        return core.last_zxid

    def start_peer(self) -> None:
        """Begin LOOKING (the links are up by now)."""
        assert self.peer is not None
        self.read_clock()
        self._run(self.peer.start(self.now_ms))

    def stop_peer(self) -> None:
        """Stop taking clients and close them; the peer's state is dropped with the process."""
        self.stopped = True
        self.serving = False
        for conn in list(self.connections):
            conn.close()

    def shutdown(self) -> None:
        """Finish the queued storage work, then close the backend."""
        self.stopped = True
        if self.snapshotter is not None:
            self.snapshotter.cancel()
            self.snapshotter.stop()
        self.storage.stop()
        self.backend.close()

    def purge(self) -> Any:
        """autopurge: keep snapRetainCount snapshots and the logs they need."""
        if self.snapshotter is not None:
            return self.snapshotter.purge()
        return None

    # -- peer inputs -------------------------------------------------------------------------

    def tick(self) -> None:
        if self.peer is None or self.stopped:
            return
        self.read_clock()
        self._run(self.peer.tick(self.now_ms))

    def message_received(self, sender: int, msg: Any) -> None:
        if self.peer is None or self.stopped:
            return
        self.read_clock()
        self._run(self.peer.receive(sender, msg, self.now_ms))

    def messages_received(self, sender: int, msgs: List[Any]) -> None:
        """What one read of a link brought, handed to the peer in one go."""
        if self.peer is None or self.stopped:
            return
        self.read_clock()
        self._run(self.peer.receive_many(sender, msgs, self.now_ms))

    def link_up(self, sid: int) -> None:
        if self.peer is None or self.stopped:
            return
        self._run(self.peer.link_up(sid, self.now()))

    def link_down(self, sid: int) -> None:
        if self.peer is None or self.stopped:
            return
        self._run(self.peer.link_down(sid, self.now()))

    def _storage_results(self, results: List[StorageResult]) -> None:
        peer = self.peer
        if peer is None:
            return
        self.read_clock()
        now = self.now_ms
        for r in results:
            if r[0] == "reloaded":
                _, seq, core, recent = r
                set_config_node(core, self.config_text, now)
                self._run(peer.reloaded(seq, core, recent, now))
            else:
                _, seq, n, ms = r
                if n:
                    self.stats.record_sync(n, int(ms))
                    if self.serving and self.snapshotter is not None:
                        self.snapshotter.logged(n)
                self._run(peer.storage_done(seq, now))

    def _storage_failed(self, failure: Failure) -> None:
        """Storage refused an op: the peer's promises can no longer be kept; stop the process
        (a crash, which the protocol is built to survive, as Apache ZooKeeper exits)."""
        log.failure("zktwist server.{sid}: storage failed; stopping", failure, sid=self.sid)
        self.stats.log_failures += 1
        self.stop_peer()
        if not getattr(self.reactor, "running", False):
            return
        self.reactor.callLater(0, self.reactor.stop)

    # -- effects ---------------------------------------------------------------------------

    def _run(self, effects: List[Any]) -> None:
        """Carry out effects in the order the peer emitted them.

        A network callback fired from inside ``send``/``disconnect`` feeds the
        peer again; its effects queue behind the ones being carried out.
        """
        if not effects:
            if self.peer is not None and self.peer.core is not self._core:
                self._core_changed()
            return
        self._effects.extend(effects)
        if self._running:
            return
        self._running = True
        handlers = self._handlers
        queue = self._effects
        try:
            while queue:
                e = queue.popleft()
                handlers[type(e)](e)
        finally:
            self._running = False
        if self.peer is not None and self.peer.core is not self._core:
            self._core_changed()
        self.flush_dirty()
        self._maybe_resume()

    def _core_changed(self) -> None:
        """A new core (start-up, Reload, SNAP): it shows the ensemble in /zookeeper/config."""
        assert self.peer is not None
        core = self.peer.core
        self._core = core
        set_config_node(core, self.config_text, self.now())
        # A recovered or installed tree is long-lived: keep it out of GC passes (as
        # standalone does after recovery).  A core replaced later (Reload, SNAP) may be
        # cyclic garbage in the frozen generation: thaw, collect it, freeze again.
        if self._frozen:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        self._frozen = True
        if self.snapshotter is not None:
            self.snapshotter.cancel()
            self.snapshotter.core = core

    def _fx_send(self, e: fx.Send) -> None:
        self.network.send(e.to, e.msg)

    def _fx_connect(self, e: fx.Connect) -> None:
        self.network.connect(e.to)

    def _fx_disconnect(self, e: fx.Disconnect) -> None:
        self.network.disconnect(e.to)

    def _fx_storage(self, e: Any) -> None:
        if self.mode == "leader" and type(e) is fx.AppendTxns:
            # Leader.propose's proposalStats: the size of each proposed txn (the bytes the
            # PROPOSALs carry, from the codec's cache).
            txn_bytes = codec.txn_bytes
            for t in e.txns:
                self.proposal_sizes.set_last(len(txn_bytes(t)))
        self.storage.submit(e)

    def _fx_trace(self, e: fx.Trace) -> None:
        if e.kind in ("elected", "established", "looking", "following", "observing",
                      "truncated", "dropped"):
            log.info("zktwist server.{sid}: {kind} epoch={epoch} zxid=0x{zxid:x} leader={leader} "
                     "{detail}", sid=self.sid, kind=e.kind, epoch=e.epoch, zxid=e.zxid,
                     leader=e.leader, detail=e.detail)

    def _fx_start_serving(self, e: fx.StartServing) -> None:
        self.serving = True
        self.mode = e.role
        self.serving_since = time.time()
        log.info("zktwist server.{sid}: serving clients as {role}", sid=self.sid, role=e.role)

    def _fx_stop_serving(self, e: fx.StopServing) -> None:
        log.info("zktwist server.{sid}: stopped serving ({reason}); closing {n} client "
                 "connections", sid=self.sid, reason=e.reason, n=len(self.connections))
        self.serving = False
        self.mode = "looking"
        if self.snapshotter is not None:
            self.snapshotter.cancel()
        # Requests in flight have an unknown outcome: the clients see the connection drop
        # and reconnect (to this server once it serves again, or another).
        for conn in list(self.connections):
            conn.close()
        self.outstanding = 0
        self._maybe_resume()

    def _fx_session_established(self, e: fx.SessionEstablished) -> None:
        conn = e.token
        if conn.state != CLOSED:
            self.bind_session(conn, e.session_id, e.timeout, e.password)

    def _fx_session_rejected(self, e: fx.SessionRejected) -> None:
        conn = e.token
        if conn.state != CLOSED:
            conn.reject()

    def _fx_write_done(self, e: fx.WriteDone) -> None:
        conn, entry = e.token
        self.outstanding = max(0, self.outstanding - 1)
        if conn.state == CLOSED:
            return
        if entry.op == OpCode.closeSession:
            conn.answer_close(entry, e.txn.zxid)
        else:
            conn.answer_write(entry, e.txn, e.result)

    def _fx_sync_done(self, e: fx.SyncDone) -> None:
        conn, entry = e.token
        if conn.state == CLOSED:
            return
        zxid = self.core.last_zxid
        entry.zxid = zxid
        if entry.req is None:
            frame = pack_framed_reply_header(16, entry.xid, zxid, Err.MARSHALLINGERROR)
        else:
            body = records.create_response(entry.req[0])
            frame = pack_framed_reply_header(16 + len(body), entry.xid, zxid, 0) + body
        conn.write_applied(entry, frame)

    def _fx_session_closed(self, e: fx.SessionClosed) -> None:
        self.close_session_connection(e.session_id)

    # -- connections (ClientConnection's server interface) --------------------------------------

    def connection_closed(self, conn: ClientConnection) -> None:
        self.forget_connection(conn)
        if self.peer is not None:
            self.peer.core.tree.remove_watcher(conn)
        if conn.session_id and self.by_session.get(conn.session_id) is conn:
            del self.by_session[conn.session_id]

    def connect(self, conn: ClientConnection, last_zxid: int, timeout: int, session_id: int,
                passwd: Optional[bytes]) -> None:
        peer = self.peer
        if not self.serving or peer is None:
            # As Apache ZooKeeper: "ZooKeeperServer not running" -- the client tries another.
            conn.close()
            return
        if last_zxid > peer.core.last_zxid:
            log.info("Refusing session request for client {ip} as it has seen zxid 0x{z:x} "
                     "our last zxid is 0x{l:x} client must try another server",
                     ip=conn.remote_ip, z=last_zxid, l=peer.core.last_zxid)
            conn.close()
            return
        if session_id:
            old = self.by_session.get(session_id)
            if old is not None and old is not conn:
                old.close()
        conn.state = CONNECTING
        conn.timeout = timeout
        self._run(peer.client_connect(conn, session_id, passwd if session_id else None,
                                      timeout, self.now_ms))

    def touch(self, conn: ClientConnection) -> None:
        peer = self.peer
        if peer is not None:
            out = peer.client_touch(conn.session_id, self.now_ms)
            if out:
                self._run(out)

    def submit_write(self, conn: ClientConnection, xid: int, op: int, frame: bytes,
                     started: float) -> None:
        peer = self.peer
        assert peer is not None
        req = records.decode_write_request(op, frame)
        entry = Entry(xid, op, None, started)
        conn.queue.append(entry)
        self._count_in()
        if not peer.is_leader:
            self.forwarded_writes += 1
        self._run(peer.client_write((conn, entry), conn.session_id, xid, op, req,
                                    conn.auth_ids, self.now_ms))

    def submit_close(self, conn: ClientConnection, xid: int, started: float) -> None:
        peer = self.peer
        assert peer is not None
        entry = Entry(xid, OpCode.closeSession, None, started)
        conn.queue.append(entry)
        self._count_in()
        if not peer.is_leader:
            self.forwarded_writes += 1
        self._run(peer.client_close((conn, entry), conn.session_id, xid, self.now_ms))

    def submit_sync(self, conn: ClientConnection, entry: Entry) -> None:
        """sync: answered once this server has applied everything the leader committed
        before the sync reached it (then the reads queued behind it see that)."""
        peer = self.peer
        assert peer is not None
        self._run(peer.client_sync((conn, entry), self.now_ms))

    # -- what 4lw show --------------------------------------------------------------------------

    @property
    def leader_role(self) -> Any:
        peer = self.peer
        if peer is not None and peer.is_leader and peer.role is not None:
            return peer.role
        return None

