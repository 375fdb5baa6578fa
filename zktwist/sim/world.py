"""The simulated world: servers running the real QuorumPeer, network, disks, clocks, clients, faults.

Everything is driven by one :class:`random.Random` made from the seed and one
:class:`~zktwist.sim.events.EventQueue`; nothing reads a wall clock, so a
seed replays exactly.  The world is the peer's *shell*: it carries out the
effects the peer returns (:mod:`zktwist.quorum.effects`) the way the
production services will, running storage ops with
:func:`zktwist.server.peerstore.run_storage_op` and restarts with
:func:`zktwist.server.peerstore.recover_peer`.

Phases: a **fault phase** (``duration`` ms) with crashes, restarts,
partitions (symmetric and one-way), link resets, message loss and slow
disks; then **heal** (every cut healed, every server restarted, no more
loss) and a **liveness phase** in which a write must be acknowledged within
``liveness_bound`` ms; then clients stop and the ensemble **settles** so the
final checks can compare every server's tree.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from zktwist.core.database import CoreConfig
from zktwist.proto.consts import OpCode
from zktwist.quorum import effects as fx
from zktwist.server.peerstore import recover_peer
from zktwist.sim.checks import Checker
from zktwist.sim.clients import PARENT, Request, SimClient, write_outcome
from zktwist.sim.clock import Clock
from zktwist.sim.disk import Disk, DiskConfig
from zktwist.sim.events import EventQueue
from zktwist.sim.net import NetConfig, Network
from zktwist.storage.memory import MemoryBackend

PeerFactory = Callable[..., Any]

#: fault kind -> weight, per ``--faults`` profile
FAULT_PROFILES: Dict[str, Dict[str, int]] = {
    "mixed": {"crash": 20, "double_crash": 6, "partition": 12, "isolate_leader": 8, "cut": 10,
              "reset": 15, "election_loss": 5, "quorum_loss": 5, "minority_then_crash": 8},
    "crashes": {"crash": 10, "double_crash": 10, "minority_then_crash": 30, "reset": 5},
    "partitions": {"partition": 20, "isolate_leader": 20, "cut": 15, "reset": 5, "crash": 5},
    "none": {},
}


class SimConfig:
    """Everything a run depends on besides the seed (the replay command names it all)."""

    def __init__(self, servers: int = 3, observers: int = 0, clients: int = 3,
                 duration: int = 6000, unsafe: Tuple[str, ...] = (), liveness_bound: int = 30000,
                 settle: int = 2000, tick_time: int = 100, init_limit: int = 10,
                 sync_limit: int = 5, session_timeout: int = 4000, request_timeout: int = 2000,
                 faults: str = "mixed", trace: bool = False) -> None:
        self.servers = servers
        self.observers = observers
        self.clients = clients
        self.duration = duration
        self.unsafe = tuple(unsafe)
        self.liveness_bound = liveness_bound
        self.settle = settle
        self.tick_time = tick_time
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.session_timeout = session_timeout
        self.request_timeout = request_timeout
        self.faults = faults
        self.trace = trace


class SimServer:
    """The shell's view of one server: durable backend, disk, clock, and (while up) its peer."""

    def __init__(self, sid: int, voter: bool, clock: Clock, backend: MemoryBackend,
                 disk: Disk) -> None:
        self.sid = sid
        self.voter = voter
        self.clock = clock
        self.backend = backend
        self.disk = disk
        self.peer: Any = None
        self.inc = 0  # 0 while down
        self.serving = False
        self.role = ""
        self.tokens: Dict[Any, SimClient] = {}
        self.crashes = 0


def _default_peer_factory(config: Any, core: Any, accepted: int, current: int, recent: Any,
                          now: int) -> Any:
    from zktwist.quorum.peer import QuorumPeer
    return QuorumPeer(config, core, accepted, current, recent, now)


def _default_config_factory(sid: int, voters: Dict[int, int], observers: Set[int],
                            cfg: SimConfig) -> Any:
    from zktwist.quorum.peer import PeerConfig
    return PeerConfig(sid=sid, voters=voters, observers=observers, tick_time=cfg.tick_time,
                      init_limit=cfg.init_limit, sync_limit=cfg.sync_limit,
                      unsafe=frozenset(cfg.unsafe))


class World:
    def __init__(self, seed: int, config: SimConfig,
                 peer_factory: PeerFactory = _default_peer_factory,
                 config_factory: Callable[..., Any] = _default_config_factory) -> None:
        self.seed = seed
        self.config = config
        self.rng = rng = random.Random(seed)
        self.queue = EventQueue()
        self.peer_factory = peer_factory
        self.config_factory = config_factory
        self.net = Network(self.queue, rng, self, NetConfig())
        n, k = config.servers, config.observers
        self.voters = {sid: 1 for sid in range(1, n + 1)}
        self.observers = set(range(n + 1, n + k + 1))
        self.sids = list(range(1, n + k + 1))
        self.servers: Dict[int, SimServer] = {}
        # a third of the runs (all of 'crashes') get slow disks: wide windows between a
        # write being handed to the disk and being durable
        slow = config.faults == "crashes" or rng.random() < 0.33
        self.disk_config = DiskConfig(min_ms=3, max_ms=40) if slow else DiskConfig()
        for sid in self.sids:
            drift = rng.randint(-2000, 2000) if rng.random() < 0.7 else rng.randint(-20000, 20000)
            clock = Clock(offset=rng.randrange(0, 10_000_000), drift_ppm=drift)
            backend = MemoryBackend()
            backend.open()
            disk = Disk(self.queue, rng, backend, self.disk_config)
            srv = SimServer(sid, sid in self.voters, clock, backend, disk)
            disk.done = self._disk_done_for(srv)
            disk.failed = self._disk_failed_for(srv)
            self.servers[sid] = srv
        self.checker = Checker(self)
        self._inc_counter = 0
        npaths = rng.randint(2, 5)
        paths = ["%s/k%d" % (PARENT, i) for i in range(npaths)]
        self.clients = [SimClient(c, rng, paths, config.session_timeout, config.request_timeout)
                        for c in range(1, config.clients + 1)]
        # the step log: every line is hashed; recent ones kept for failure reports
        self._hash = hashlib.blake2b(digest_size=16)
        self.lines: Deque[str] = deque(maxlen=None if config.trace else 400)
        self.phase = "faults"
        self.heal_at = config.duration
        self.first_write_after_heal: Optional[int] = None
        self.leader_crashes: List[int] = []  # simulated times a serving leader crashed
        self.failovers: List[int] = []
        self.write_acks = 0
        self.stats: Dict[str, int] = {"crashes": 0, "partitions": 0, "resets": 0, "cuts": 0}
        self._effect_handlers: Dict[type, Callable[[SimServer, Any], None]] = {
            fx.Send: self._fx_send, fx.Connect: self._fx_connect,
            fx.Disconnect: self._fx_disconnect, fx.AppendTxns: self._fx_storage,
            fx.SetMeta: self._fx_storage, fx.TruncateLog: self._fx_storage,
            fx.WriteSnapshot: self._fx_storage, fx.Reload: self._fx_storage,
            fx.SessionEstablished: self._fx_session_established,
            fx.SessionRejected: self._fx_session_rejected, fx.WriteDone: self._fx_write_done,
            fx.SyncDone: self._fx_sync_done, fx.StopServing: self._fx_stop_serving,
            fx.StartServing: self._fx_start_serving, fx.SessionClosed: self._fx_session_closed,
            fx.Trace: self._fx_trace,
        }
        from zktwist.quorum.election import Notification
        from zktwist.quorum.messages import Ack
        self._election_type = Notification
        self._ack_type = Ack
        self._ack_trigger: Optional[Set[int]] = None
        self._ack_armed = False

    # -- the step log ----------------------------------------------------------------

    def log(self, line: str) -> None:
        text = "%d %s" % (self.queue.now, line)
        self._hash.update(text.encode())
        self._hash.update(b"\n")
        self.lines.append(text)

    def trace_hash(self) -> str:
        return self._hash.hexdigest()

    # -- Host (for the network) ------------------------------------------------------

    def incarnation(self, sid: int) -> int:
        return self.servers[sid].inc

    def deliver(self, dst: int, src: int, msg: Any) -> None:
        srv = self.servers[dst]
        self.log("s%d <- s%d %s" % (dst, src, type(msg).__name__))
        self._run(srv, srv.peer.receive(src, msg, self.local(srv)))

    def link_up(self, dst: int, other: int) -> None:
        srv = self.servers[dst]
        self.log("s%d link_up s%d" % (dst, other))
        self._run(srv, srv.peer.link_up(other, self.local(srv)))

    def link_down(self, dst: int, other: int) -> None:
        srv = self.servers[dst]
        self.log("s%d link_down s%d" % (dst, other))
        self._run(srv, srv.peer.link_down(other, self.local(srv)))

    # -- servers ------------------------------------------------------------------------

    def local(self, srv: SimServer) -> int:
        return srv.clock.local(self.queue.now)

    def core_config(self, sid: int) -> CoreConfig:
        return CoreConfig(tick_time=self.config.tick_time, server_id=sid)

    def start_server(self, sid: int) -> None:
        """Boot (or restart) ``sid`` from its durable storage, as production start-up does."""
        srv = self.servers[sid]
        if srv.inc:
            return
        self._inc_counter += 1
        srv.inc = self._inc_counter
        srv.backend.open()
        now = self.local(srv)
        core, accepted, current, recent = recover_peer(srv.backend, self.core_config(sid), now)
        pconfig = self.config_factory(sid, dict(self.voters), set(self.observers), self.config)
        srv.peer = self.peer_factory(pconfig, core, accepted, current, recent, now)
        srv.serving = False
        srv.role = ""
        self.log("s%d start (zxid 0x%x, epochs %d/%d)" % (sid, core.last_zxid, accepted, current))
        self.checker.started(sid, srv.peer)
        self._run(srv, srv.peer.start(now))
        self._schedule_tick(srv)

    def crash_server(self, sid: int) -> None:
        srv = self.servers[sid]
        if not srv.inc:
            return
        if srv.role == "leading" and srv.serving:
            self.leader_crashes.append(self.queue.now)
        self.log("s%d CRASH" % sid)
        self.stats["crashes"] += 1
        srv.crashes += 1
        srv.inc = 0
        srv.peer = None
        srv.serving = False
        srv.role = ""
        srv.disk.crash()
        self.net.crashed(sid)
        self.checker.crashed(sid)
        self._drop_clients(srv, "server crashed")

    def _schedule_tick(self, srv: SimServer) -> None:
        delay = srv.clock.sim_delay(max(1, self.config.tick_time // 2))
        self.queue.after(delay, self._tick, srv, srv.inc)

    def _tick(self, srv: SimServer, inc: int) -> None:
        if srv.inc != inc:
            return
        self._run(srv, srv.peer.tick(self.local(srv)))
        if srv.inc == inc:
            self._schedule_tick(srv)

    def _disk_done_for(self, srv: SimServer) -> Callable[[Any], None]:
        def done(op: Any) -> None:
            if not srv.inc:
                return
            now = self.local(srv)
            if isinstance(op, fx.Reload):
                core, _, _, recent = recover_peer(srv.backend, self.core_config(srv.sid), now)
                self.log("s%d reloaded #%d at 0x%x" % (srv.sid, op.seq, core.last_zxid))
                self.checker.reloaded(srv.sid, core)
                self._run(srv, srv.peer.reloaded(op.seq, core, recent, now))
            else:
                self.log("s%d durable #%d %s" % (srv.sid, op.seq, type(op).__name__))
                self._run(srv, srv.peer.storage_done(op.seq, now))
        return done

    def _disk_failed_for(self, srv: SimServer) -> Callable[[Any, Exception], None]:
        def failed(op: Any, error: Exception) -> None:
            self.checker.violation("s%d: storage refused %s #%d: %s" % (
                srv.sid, type(op).__name__, op.seq, error))
        return failed

    # -- effects --------------------------------------------------------------------------

    def _run(self, srv: SimServer, effects: Any) -> None:
        if not effects:
            return
        handlers = self._effect_handlers
        inc = srv.inc
        for e in effects:
            if srv.inc != inc:
                return  # crashed while carrying these out (cannot happen today)
            handlers[type(e)](srv, e)

    def _fx_send(self, srv: SimServer, e: fx.Send) -> None:
        if isinstance(e.msg, self._election_type):
            self.net.send_election(srv.sid, e.to, e.msg)
        else:
            self.net.send_quorum(srv.sid, e.to, e.msg)
            trigger = self._ack_trigger
            if (trigger is not None and self._ack_armed and type(e.msg) is self._ack_type
                    and srv.sid not in trigger and srv.disk.pending):
                self._ack_armed = False
                self.log("s%d ACKed with its disk busy: power cut soon" % srv.sid)
                self.queue.after(self.rng.randint(3, 12), self._crash_all_but, trigger)

    def _fx_connect(self, srv: SimServer, e: fx.Connect) -> None:
        self.log("s%d connect s%d" % (srv.sid, e.to))
        self.net.connect(srv.sid, e.to)

    def _fx_disconnect(self, srv: SimServer, e: fx.Disconnect) -> None:
        self.log("s%d disconnect s%d" % (srv.sid, e.to))
        self.net.disconnect(srv.sid, e.to)

    def _fx_storage(self, srv: SimServer, e: Any) -> None:
        srv.disk.submit(e)

    def _fx_trace(self, srv: SimServer, e: fx.Trace) -> None:
        self.log("s%d trace %s e%d z0x%x%s" % (srv.sid, e.kind, e.epoch, e.zxid,
                                                 "" if e.leader is None else " L%d" % e.leader))
        if e.kind in ("following", "observing"):
            srv.role = e.kind
        elif e.kind == "established":
            srv.role = "leading"
        elif e.kind == "looking":
            srv.role = ""
        self.checker.trace(srv.sid, e)

    def _fx_start_serving(self, srv: SimServer, e: fx.StartServing) -> None:
        self.log("s%d serving as %s" % (srv.sid, e.role))
        srv.serving = True
        if e.role in ("leader", "leading"):
            srv.role = "leading"

    def _fx_stop_serving(self, srv: SimServer, e: fx.StopServing) -> None:
        self.log("s%d stop serving (%s)" % (srv.sid, e.reason))
        srv.serving = False
        self._drop_clients(srv, "stopped serving")

    # -- clients: server side ------------------------------------------------------------

    def _drop_clients(self, srv: SimServer, why: str) -> None:
        tokens = list(srv.tokens.items())
        srv.tokens.clear()
        for token, client in tokens:
            self.queue.after(self.net.delay() + self.rng.randint(0, 20), self._client_lost,
                             client, token, why)

    def _to_client(self, client: SimClient, fn: Callable[..., None], *args: Any) -> None:
        self.queue.after(self.net.delay(), fn, client, *args)

    def _fx_session_established(self, srv: SimServer, e: fx.SessionEstablished) -> None:
        client = srv.tokens.get(e.token)
        if client is not None:
            self._to_client(client, self._client_established, e.token, e.session_id, e.password)

    def _fx_session_rejected(self, srv: SimServer, e: fx.SessionRejected) -> None:
        client = srv.tokens.pop(e.token, None)
        if client is not None:
            self._to_client(client, self._client_rejected, e.token)

    def _fx_write_done(self, srv: SimServer, e: fx.WriteDone) -> None:
        client = srv.tokens.get(e.token)
        if client is None:
            return
        r = client.pending
        if r is None or r.token != e.token or r.cxid != e.txn.cxid:
            return
        outcome = write_outcome(r.kind, r.op, e.result)
        self._to_client(client, self._client_reply, e.token, r.cxid, outcome)

    def _fx_sync_done(self, srv: SimServer, e: fx.SyncDone) -> None:
        client = srv.tokens.get(e.token)
        if client is None or client.pending is None or client.pending.token != e.token:
            return
        r = client.pending
        # The read queued behind the sync runs now, on this server's tree.
        self._to_client(client, self._client_reply, e.token, r.cxid,
                        self._read(srv, r.path))

    def _fx_session_closed(self, srv: SimServer, e: fx.SessionClosed) -> None:
        for token, client in list(srv.tokens.items()):
            if client.session_id == e.session_id:
                del srv.tokens[token]
                self.queue.after(self.net.delay(), self._client_lost, client, token,
                                 "session closed")

    @staticmethod
    def _read(srv: SimServer, path: str) -> Any:
        node = srv.peer.core.tree.nodes.get(path)
        if node is None:
            return "nonode"
        return ("ok", node.data, node.version)

    def _server_connect(self, srv: SimServer, inc: int, client: SimClient, token: Any) -> None:
        if srv.inc != inc or not srv.serving:
            self._to_client(client, self._client_lost, token, "connection refused")
            return
        srv.tokens[token] = client
        self.log("s%d client c%d connect 0x%x" % (srv.sid, client.cid, client.session_id))
        self._run(srv, srv.peer.client_connect(token, client.session_id, client.passwd,
                                               client.session_timeout, self.local(srv)))

    def _server_request(self, srv: SimServer, inc: int, client: SimClient, r: Request) -> None:
        if srv.inc != inc or srv.tokens.get(r.token) is not client:
            return
        now = self.local(srv)
        peer = srv.peer
        self._run(srv, peer.client_touch(client.session_id, now))
        if srv.inc != inc or srv.tokens.get(r.token) is not client:
            return
        if r.kind == "read":
            self._to_client(client, self._client_reply, r.token, r.cxid, self._read(srv, r.path))
        elif r.kind == "syncread":
            self._run(srv, peer.client_sync(r.token, now))
        else:
            self._run(srv, peer.client_write(r.token, client.session_id, r.cxid, r.op, r.req, [],
                                             now))

    def _server_ping(self, srv: SimServer, inc: int, client: SimClient, token: Any) -> None:
        if srv.inc == inc and srv.tokens.get(token) is client:
            self._run(srv, srv.peer.client_touch(client.session_id, self.local(srv)))

    # -- clients: client side --------------------------------------------------------------

    def _client_connect(self, client: SimClient) -> None:
        if client.stopped or client.token is not None:
            return
        serving = [s for s in self.sids if self.servers[s].serving]
        if not serving:
            self.queue.after(self.rng.randint(50, 300), self._client_connect, client)
            return
        sid = self.rng.choice(serving)
        srv = self.servers[sid]
        client.conn_no += 1
        token = (client.cid, client.conn_no)
        client.token = token
        client.server = sid
        client.connected = False
        self.queue.after(self.net.delay(), self._server_connect, srv, srv.inc, client, token)
        self.queue.after(client.request_timeout * 2, self._client_connect_timeout, client, token)

    def _client_connect_timeout(self, client: SimClient, token: Any) -> None:
        if client.token == token and not client.connected:
            self._client_lost(client, token, "connect timeout")

    def _client_established(self, client: SimClient, token: Any, session_id: int,
                            passwd: bytes) -> None:
        if client.token != token:
            return
        if session_id != client.session_id:
            client.sessions += 1
        client.session_id = session_id
        client.passwd = passwd
        client.connected = True
        self.log("c%d session 0x%x on s%s" % (client.cid, session_id, client.server))
        self._client_issue(client)
        self.queue.after(client.session_timeout // 3, self._client_ping, client, token)

    def _client_rejected(self, client: SimClient, token: Any) -> None:
        if client.token != token:
            return
        self.log("c%d session 0x%x expired" % (client.cid, client.session_id))
        client.session_id = 0
        client.passwd = b""
        client.token = None
        client.connected = False
        self.queue.after(self.rng.randint(1, 50), self._client_connect, client)

    def _client_ping(self, client: SimClient, token: Any) -> None:
        if client.token != token or not client.connected:
            return
        srv = self.servers[client.server]  # type: ignore[index]
        self.queue.after(self.net.delay(), self._server_ping, srv, srv.inc, client, token)
        self.queue.after(client.session_timeout // 3, self._client_ping, client, token)

    def _client_issue(self, client: SimClient) -> None:
        if client.pending is not None or not client.connected or client.stopped:
            return
        now = self.queue.now
        r = client.next_request(now)
        client.pending = r
        srv = self.servers[client.server]  # type: ignore[index]
        self.queue.after(self.net.delay(), self._server_request, srv, srv.inc, client, r)
        self.queue.after(client.request_timeout, self._client_request_timeout, client, r)

    def _client_request_timeout(self, client: SimClient, r: Request) -> None:
        if client.pending is r:
            self._client_lost(client, r.token, "request timeout")

    def _client_reply(self, client: SimClient, token: Any, cxid: int, result: Any) -> None:
        r = client.pending
        if client.token != token or r is None or r.cxid != cxid:
            return
        now = self.queue.now
        client.finish(now, result)
        if r.record and r.kind not in ("read", "syncread") and result is not None:
            self.write_acks += 1
            self._write_acked(now, r.call)
        self.log("c%d %s %s -> %r" % (client.cid, r.kind, r.path, result))
        if not client.stopped:
            self.queue.after(self.rng.randint(0, 30), self._client_issue, client)

    def _client_lost(self, client: SimClient, token: Any, why: str) -> None:
        if client.token != token:
            return
        if client.pending is not None:
            self.log("c%d lost (%s): %s %s unknown" % (client.cid, why, client.pending.kind,
                                                       client.pending.path))
            client.finish(None, None)
        srv = self.servers[client.server] if client.server else None
        if srv is not None:
            srv.tokens.pop(token, None)
        client.token = None
        client.connected = False
        if not client.stopped:
            self.queue.after(self.rng.randint(5, 100), self._client_connect, client)

    def _write_acked(self, now: int, call: int) -> None:
        """A write issued at ``call`` was acknowledged at ``now``.

        Failover time: from a serving leader's crash to the first acknowledged write
        issued after it (one in flight at the crash does not show the new leader works).
        """
        if self.leader_crashes:
            waiting = []
            for t in self.leader_crashes:
                if call >= t:
                    self.failovers.append(now - t)
                else:
                    waiting.append(t)
            self.leader_crashes = waiting
        if self.phase == "liveness" and self.first_write_after_heal is None:
            self.first_write_after_heal = now

    # -- faults ------------------------------------------------------------------------------

    def leader(self) -> Optional[int]:
        for sid in self.sids:
            srv = self.servers[sid]
            if srv.inc and srv.role == "leading":
                return sid
        return None

    def _schedule_faults(self) -> None:
        if not FAULT_PROFILES[self.config.faults]:
            return
        t = 0
        while True:
            t += int(self.rng.expovariate(1.0 / 600)) + 50
            if t >= self.config.duration:
                break
            self.queue.at(t, self._fault)

    def _fault(self) -> None:
        if self.phase != "faults":
            return
        rng = self.rng
        weights = FAULT_PROFILES[self.config.faults]
        r = rng.randrange(sum(weights.values()))
        for kind, w in weights.items():
            if r < w:
                break
            r -= w
        getattr(self, "_fault_" + kind)()

    def _restart_later(self, sid: int, lo: int = 50, hi: int = 3000) -> None:
        self.queue.after(self.rng.randint(lo, hi), self._restart_if_faults, sid)

    def _fault_crash(self) -> None:
        """Crash a server (the leader half the time); it restarts later."""
        lead = self.leader()
        rng = self.rng
        victim = lead if lead is not None and rng.random() < 0.5 else rng.choice(self.sids)
        if self.servers[victim].inc:
            self.crash_server(victim)
            self._restart_later(victim)

    def _fault_double_crash(self) -> None:
        live = [s for s in self.sids if self.servers[s].inc]
        for victim in self.rng.sample(live, min(2, len(live))):
            self.crash_server(victim)
            self._restart_later(victim, 50, 2000)

    def _fault_partition(self) -> None:
        rng = self.rng
        everyone = set(self.sids)
        side = set(rng.sample(self.sids, rng.randint(1, max(1, len(self.sids) // 2))))
        self.log("partition %s | %s" % (sorted(side), sorted(everyone - side)))
        self.stats["partitions"] += 1
        self.net.partition(side, everyone)
        self.queue.after(rng.randint(100, 3000), self._heal_cuts)

    def _fault_isolate_leader(self) -> None:
        lead = self.leader()
        if lead is not None:
            self.log("isolate leader s%d" % lead)
            self.stats["partitions"] += 1
            self.net.partition({lead}, set(self.sids))
            self.queue.after(self.rng.randint(100, 3000), self._heal_cuts)

    def _fault_cut(self) -> None:
        a, b = self.rng.sample(self.sids, 2)
        self.log("cut s%d -> s%d" % (a, b))
        self.stats["cuts"] += 1
        self.net.cut(a, b)
        self.queue.after(self.rng.randint(100, 3000), self._heal_one, a, b)

    def _fault_reset(self) -> None:
        conns = self.net.open_conns()
        if conns:
            c = self.rng.choice(conns)
            self.log("reset s%d-s%d" % (c.a, c.b))
            self.stats["resets"] += 1
            self.net.reset(c.a, c.b)

    def _fault_election_loss(self) -> None:
        self.log("election loss burst")
        self.net.config.election_loss = 0.3
        self.queue.after(self.rng.randint(200, 1500), self._end_loss)

    def _fault_quorum_loss(self) -> None:
        self.log("quorum loss burst")
        self.net.config.quorum_loss = 0.01
        self.queue.after(self.rng.randint(200, 1500), self._end_loss)

    def _fault_minority_then_crash(self) -> None:
        """Cut off a minority of voters, let the rest commit alone, then power-cut the rest.

        Everything committed meanwhile lives only on the crashed majority's disks; once
        they restart and the minority rejoins, a txn a server ACKed before it was
        durable is gone (ack_before_durable), and a correct ensemble loses nothing.
        """
        rng = self.rng
        lead = self.leader()
        if lead is None or self._ack_trigger is not None:
            return
        voters = sorted(self.voters)
        f = (len(voters) - 1) // 2
        followers = [s for s in voters if s != lead]
        minority = set(rng.sample(followers, f))
        everyone = set(self.sids)
        self.log("minority %s cut off" % sorted(minority))
        self.stats["partitions"] += 1
        self.net.partition(minority, everyone)
        # Some txns commit on the majority alone; then the power cut comes a few ms after
        # some follower of the majority sends an ACK while its disk still has work queued
        # (the window ack_before_durable opens), or at a random time if none does.
        self._ack_trigger = minority
        self._ack_armed = False
        self.queue.after(rng.randint(150, 600), self._arm_ack_trigger, minority)
        self.queue.after(rng.randint(700, 1500), self._crash_all_but, minority)

    def _arm_ack_trigger(self, minority: Set[int]) -> None:
        if self._ack_trigger is minority:
            self._ack_armed = True

    def _crash_all_but(self, minority: Set[int]) -> None:
        if self.phase != "faults" or self._ack_trigger is not minority:
            return
        self._ack_trigger = None
        self.log("power cut on everyone but %s" % sorted(minority))
        lead = self.leader()
        for sid in self.sids:
            if sid not in minority and self.servers[sid].inc:
                self.crash_server(sid)
                # the old leader often stays down longer than its followers
                self._restart_later(sid, 20, 3000 if sid == lead else 400)
        self.net.heal()

    def _restart_if_faults(self, sid: int) -> None:
        if self.phase == "faults":
            self.start_server(sid)

    def _heal_cuts(self) -> None:
        if self.phase == "faults":
            self.log("heal")
            self.net.heal()

    def _heal_one(self, a: int, b: int) -> None:
        if self.phase == "faults":
            self.log("heal s%d -> s%d" % (a, b))
            self.net.heal(a, b)

    def _end_loss(self) -> None:
        self.net.config.election_loss = 0.0
        self.net.config.quorum_loss = 0.0

    def heal_all(self) -> None:
        """End of the fault phase: no cuts, no loss, every server up."""
        self.phase = "liveness"
        self.heal_at = self.queue.now
        self.log("HEAL ALL")
        self.net.heal()
        self._end_loss()
        for sid in self.sids:
            self.start_server(sid)

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """The whole run: faults, heal, liveness, settle, final checks (into ``checker``)."""
        cfg = self.config
        for sid in self.sids:
            self.start_server(sid)
        for client in self.clients:
            self.queue.at(self.rng.randint(0, 200), self._client_connect, client)
        self._schedule_faults()
        q = self.queue
        checker = self.checker
        while q.next_time() >= 0 and q.next_time() <= cfg.duration and not checker.violations:
            q.step()
        q.now = max(q.now, cfg.duration)
        self.heal_all()
        deadline = self.heal_at + cfg.liveness_bound
        while (not checker.violations and self.first_write_after_heal is None
               and q.next_time() >= 0 and q.next_time() <= deadline):
            q.step()
        if checker.violations:
            return
        if self.first_write_after_heal is None:
            checker.violation("liveness: no write acknowledged within %d ms after healing at %d"
                              % (cfg.liveness_bound, self.heal_at))
            return
        # settle: clients stop issuing; what is in flight finishes; servers catch up
        self.phase = "settle"
        for client in self.clients:
            client.stopped = True
        end = q.now + cfg.settle
        while not checker.violations and q.next_time() >= 0 and q.next_time() <= end:
            q.step()
        # then until the serving servers agree (a session expiring may still be committing)
        end += cfg.settle
        while (not checker.violations and not checker.tips_agree() and q.next_time() >= 0
               and q.next_time() <= end):
            q.step()
        if not checker.violations:
            checker.final()

    def history(self) -> List[Any]:
        ops: List[Any] = []
        for c in self.clients:
            ops.extend(c.history)
            if c.pending is not None and c.pending.record and c.pending.kind not in (
                    "read", "syncread", "check"):
                r = c.pending
                from zktwist.sim.linearizability import Op
                ops.append(Op(c.cid, r.call, None, r.kind, r.path, r.value, r.version, None))
        ops.sort(key=lambda o: (o.call, o.client))
        return ops


__all__ = ["World", "SimConfig", "SimServer", "OpCode"]
