"""A small deterministic harness for the Zab tests: real QuorumPeers, MemoryBackends, a router.

Not the simulator (zktwist/sim): just enough plumbing to drive a few peers
through scripted scenarios.  Time is an integer (ms); events run in (time,
order) order; storage ops run after a per-node delay, in order, and may be
held back to model a slow disk.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from zktwist.core.txn import Txn
from zktwist.proto.consts import CreateMode, OpCode
from zktwist.quorum import effects as fx
from zktwist.quorum.election import Notification
from zktwist.quorum.peer import PeerConfig, QuorumPeer
from zktwist.server.peerstore import is_storage_op, recover_peer, run_storage_op
from zktwist.storage.memory import MemoryBackend

OPEN_ACL = ((31, "world", "anyone"),)


class Node:
    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.backend = MemoryBackend()
        self.backend.open()
        self.peer: Optional[QuorumPeer] = None
        self.alive = False
        self.incarnation = 0
        self.storage: List[Any] = []      # ops not yet run, in order
        self.storage_busy = False
        self.storage_held = False
        self.storage_delay = 2
        self.effects: List[Any] = []      # every effect ever emitted (this incarnation)
        self.client: List[Any] = []       # client-facing effects


class Cluster:
    def __init__(self, voters: int = 3, observers: int = 0, unsafe: Optional[Dict[int, frozenset]] = None,
                 tick_time: int = 100, init_limit: int = 10, sync_limit: int = 5,
                 committed_log_size: int = 500, net_delay: int = 1) -> None:
        self.now = 0
        self.events: List[Tuple[int, int, Callable[[], None]]] = []
        self.order = itertools.count()
        self.net_delay = net_delay
        self.tick_time = tick_time
        sids = list(range(1, voters + observers + 1))
        self.voter_sids = sids[:voters]
        self.observer_sids = sids[voters:]
        self.nodes: Dict[int, Node] = {sid: Node(sid) for sid in sids}
        self.unsafe = unsafe or {}
        self.configs = {sid: PeerConfig(
            sid=sid, voters={v: 1 for v in self.voter_sids}, observers=frozenset(self.observer_sids),
            tick_time=tick_time, init_limit=init_limit, sync_limit=sync_limit,
            min_session_timeout=2 * tick_time, max_session_timeout=100 * tick_time,
            committed_log_size=committed_log_size, finalize_wait=20,
            min_notification_interval=50, max_notification_interval=400,
            unsafe=self.unsafe.get(sid, frozenset()), reap_interval=tick_time)
            for sid in sids}
        self.links: Dict[frozenset, int] = {}   # pair -> link id (present = up)
        self.link_ids = itertools.count(1)
        self.cut: Set[frozenset] = set()         # partitioned pairs
        self.tokens = itertools.count(1)
        for sid in sids:
            self.start(sid)

    # -- event loop --------------------------------------------------------------------------------

    def at(self, when: int, fn: Callable[[], None]) -> None:
        heapq.heappush(self.events, (when, next(self.order), fn))

    def run(self, until: int) -> None:
        while self.events and self.events[0][0] <= until:
            when, _, fn = heapq.heappop(self.events)
            self.now = max(self.now, when)
            fn()
        self.now = max(self.now, until)

    def run_for(self, ms: int) -> None:
        self.run(self.now + ms)

    def run_until(self, pred: Callable[[], bool], limit: int = 20000, step: int = 10) -> bool:
        end = self.now + limit
        while self.now < end:
            if pred():
                return True
            self.run(self.now + step)
        return pred()

    # -- nodes ------------------------------------------------------------------------------------

    def start(self, sid: int) -> None:
        node = self.nodes[sid]
        node.incarnation += 1
        node.alive = True
        node.storage = []
        node.storage_busy = False
        node.effects = []
        node.backend.open()
        core, acc, cur, recent = recover_peer(node.backend, self.configs[sid].core_config(),
                                              self.now, self.configs[sid].committed_log_size)
        node.peer = QuorumPeer(self.configs[sid], core, acc, cur, recent, self.now)
        self.handle(sid, node.peer.start(self.now))
        self._schedule_tick(sid, node.incarnation)

    def crash(self, sid: int) -> None:
        node = self.nodes[sid]
        node.alive = False
        node.backend.crash()
        node.storage = []
        node.storage_held = False
        for pair in [p for p in self.links if sid in p]:
            del self.links[pair]
            (other,) = pair - {sid}
            self._link_down_later(other, sid)

    def restart(self, sid: int) -> None:
        self.crash(sid) if self.nodes[sid].alive else None
        self.start(sid)

    def _schedule_tick(self, sid: int, inc: int) -> None:
        def tick() -> None:
            node = self.nodes[sid]
            if not node.alive or node.incarnation != inc:
                return
            assert node.peer is not None
            self.handle(sid, node.peer.tick(self.now))
            self.at(self.now + self.tick_time // 2, tick)
        self.at(self.now + self.tick_time // 2, tick)

    def peer(self, sid: int) -> QuorumPeer:
        p = self.nodes[sid].peer
        assert p is not None
        return p

    # -- network -------------------------------------------------------------------------------------

    def partition(self, a: int, b: int) -> None:
        pair = frozenset((a, b))
        self.cut.add(pair)
        if pair in self.links:
            del self.links[pair]
            self._link_down_later(a, b)
            self._link_down_later(b, a)

    def isolate(self, sid: int) -> None:
        for other in self.nodes:
            if other != sid:
                self.partition(sid, other)

    def heal(self) -> None:
        self.cut.clear()

    def _link_down_later(self, sid: int, other: int) -> None:
        node = self.nodes[sid]
        inc = node.incarnation

        def go() -> None:
            if node.alive and node.incarnation == inc and frozenset((sid, other)) not in self.links:
                self.handle(sid, self.peer(sid).link_down(other, self.now))
        self.at(self.now + self.net_delay, go)

    def _deliver(self, frm: int, to: int, msg: Any) -> None:
        pair = frozenset((frm, to))
        if pair in self.cut:
            return
        dst = self.nodes[to]
        inc = dst.incarnation
        if isinstance(msg, Notification):
            def go() -> None:
                if dst.alive and dst.incarnation == inc and pair not in self.cut:
                    self.handle(to, self.peer(to).receive(frm, msg, self.now))
        else:
            link = self.links.get(pair)
            if link is None:
                return

            def go() -> None:
                if dst.alive and dst.incarnation == inc and self.links.get(pair) == link:
                    self.handle(to, self.peer(to).receive(frm, msg, self.now))
        self.at(self.now + self.net_delay, go)

    def _connect(self, frm: int, to: int) -> None:
        pair = frozenset((frm, to))

        def go() -> None:
            a, b = self.nodes[frm], self.nodes[to]
            if not a.alive:
                return
            if not b.alive or pair in self.cut:
                self.handle(frm, self.peer(frm).link_down(to, self.now))
                return
            if pair in self.links:
                del self.links[pair]
                self.handle(to, self.peer(to).link_down(frm, self.now))
            self.links[pair] = next(self.link_ids)
            self.handle(frm, self.peer(frm).link_up(to, self.now))
            self.handle(to, self.peer(to).link_up(frm, self.now))
        self.at(self.now + self.net_delay, go)

    # -- storage ---------------------------------------------------------------------------------------

    def hold_storage(self, sid: int) -> None:
        self.nodes[sid].storage_held = True

    def release_storage(self, sid: int) -> None:
        self.nodes[sid].storage_held = False
        self._pump(sid)

    def _pump(self, sid: int) -> None:
        node = self.nodes[sid]
        if node.storage_busy or not node.storage or node.storage_held or not node.alive:
            return
        node.storage_busy = True
        inc = node.incarnation

        def go() -> None:
            node.storage_busy = False
            if not node.alive or node.incarnation != inc or node.storage_held or not node.storage:
                return
            op = node.storage.pop(0)
            run_storage_op(node.backend, op)
            peer = self.peer(sid)
            if isinstance(op, fx.Reload):
                core, _acc, _cur, recent = recover_peer(
                    node.backend, self.configs[sid].core_config(), self.now,
                    self.configs[sid].committed_log_size)
                self.handle(sid, peer.reloaded(op.seq, core, recent, self.now))
            else:
                self.handle(sid, peer.storage_done(op.seq, self.now))
            self._pump(sid)
        self.at(self.now + node.storage_delay, go)

    # -- effects ------------------------------------------------------------------------------------------

    def handle(self, sid: int, effects: List[Any]) -> None:
        node = self.nodes[sid]
        for e in effects:
            node.effects.append(e)
            if isinstance(e, fx.Send):
                self._deliver(sid, e.to, e.msg)
            elif isinstance(e, fx.Connect):
                self._connect(sid, e.to)
            elif isinstance(e, fx.Disconnect):
                pair = frozenset((sid, e.to))
                if pair in self.links:
                    del self.links[pair]
                    self._link_down_later(e.to, sid)
            elif is_storage_op(e):
                node.storage.append(e)
                self._pump(sid)
            elif isinstance(e, fx.Trace):
                pass
            else:
                node.client.append(e)

    # -- queries ----------------------------------------------------------------------------------------------

    def leader(self) -> Optional[int]:
        for sid, node in self.nodes.items():
            if node.alive and node.peer is not None and node.peer.is_leader and node.peer.serving:
                return sid
        return None

    def all_serving(self, sids: Optional[List[int]] = None) -> bool:
        sids = sids or [s for s, n in self.nodes.items() if n.alive]
        return all(self.nodes[s].alive and self.peer(s).serving for s in sids)

    def stable(self, limit: int = 20000) -> int:
        assert self.run_until(lambda: self.leader() is not None and self.all_serving(), limit), \
            self.describe()
        leader = self.leader()
        assert leader is not None
        return leader

    def describe(self) -> str:
        out = []
        for sid, n in self.nodes.items():
            if n.alive and n.peer is not None:
                p = n.peer
                out.append("%d: state=%d serving=%s epoch=%d/%d last=0x%x logged=0x%x role=%s" % (
                    sid, p.state, p.serving, p.accepted_epoch, p.current_epoch,
                    p.core.last_zxid, p.last_logged, type(p.role).__name__))
            else:
                out.append("%d: down" % sid)
        return "\n".join(out)

    def traces(self, sid: int, kind: str) -> List[fx.Trace]:
        return [e for e in self.nodes[sid].effects if isinstance(e, fx.Trace) and e.kind == kind]

    # -- clients ----------------------------------------------------------------------------------------------

    def client_results(self, sid: int, token: Any) -> List[Any]:
        return [e for e in self.nodes[sid].client if getattr(e, "token", None) == token]

    def connect(self, sid: int, session_id: int = 0, passwd: Optional[bytes] = None,
                timeout: int = 3000) -> Any:
        token = next(self.tokens)
        self.handle(sid, self.peer(sid).client_connect(token, session_id, passwd, timeout,
                                                        self.now))
        assert self.run_until(lambda: bool(self.client_results(sid, token)), 5000)
        return self.client_results(sid, token)[0]

    def write(self, sid: int, session_id: int, cxid: int, op: int, req: Any,
              wait: bool = True) -> Any:
        token = next(self.tokens)
        self.handle(sid, self.peer(sid).client_write(token, session_id, cxid, op, req, (),
                                                      self.now))
        if not wait:
            return token
        assert self.run_until(lambda: bool(self.client_results(sid, token)), 5000), self.describe()
        return self.client_results(sid, token)[0]

    def create(self, sid: int, session_id: int, cxid: int, path: str, data: bytes = b"",
               ephemeral: bool = False, wait: bool = True) -> Any:
        flags = CreateMode.EPHEMERAL if ephemeral else CreateMode.PERSISTENT
        return self.write(sid, session_id, cxid, OpCode.create,
                          (path, data, OPEN_ACL, flags, -1), wait)

    def set_data(self, sid: int, session_id: int, cxid: int, path: str, data: bytes,
                 version: int = -1, wait: bool = True) -> Any:
        return self.write(sid, session_id, cxid, OpCode.setData, (path, data, version), wait)

    def sync(self, sid: int) -> Any:
        token = next(self.tokens)
        self.handle(sid, self.peer(sid).client_sync(token, self.now))
        assert self.run_until(lambda: bool(self.client_results(sid, token)), 5000)
        return self.client_results(sid, token)[0]

    def data(self, sid: int, path: str) -> Optional[bytes]:
        node = self.peer(sid).core.tree.get(path)
        return None if node is None else node.data

    def logged(self, sid: int) -> List[Tuple[int, bytes]]:
        return list(self.nodes[sid].backend.read_txns(0))


def committed(c: Cluster, sid: int) -> List[int]:
    return [t.zxid for t in c.traces(sid, "committed")]


def txn_zxids(txns: List[Txn]) -> List[int]:
    return [t.zxid for t in txns]
