"""EnsembleServer: three real QuorumPeers behind their shells, on one task.Clock, no sockets.

Each member is an :class:`EnsembleServer` with an in-memory backend whose
storage "thread" runs at once (results come back through ``callFromThread``,
i.e. at the next clock turn).  The peer links are :class:`FakeNetwork`, a
stand-in for ``zktwist.quorum.transport.PeerNetwork`` (which is not the
subject here): messages and link events are delivered at the next clock
turn, FIFO per pair, and a member can be cut off.  Clients are
:class:`EnsembleConnection` objects on StringTransports, spoken to in bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import pytest

from tests.protocol.test_connection import (
    OK,
    Client,
    FakeReactor,
    MemoryBackend,
    SyncPool,
    create,
    frame,
    get_data,
    parse_event,
    request,
    string,
)
from zktwist.config import ServerConfig, from_text
from zktwist.quorum.election import Notification
from zktwist.server.ensemble import EnsembleConnection, EnsembleServer
from zktwist.server.fourletter import run as run_word

OP_SYNC = 9
EPOCH_S = 1_700_000_000.0
SERVERS = ("server.1=127.0.0.1:2888:3888;127.0.0.1:2181\n"
           "server.2=127.0.0.1:2889:3889;127.0.0.1:2182\n"
           "server.3=127.0.0.1:2890:3890;127.0.0.1:2183\n")


class Hub:
    """The wire between FakeNetworks: who is reachable, and the links that are up."""

    def __init__(self, clock: FakeReactor) -> None:
        self.clock = clock
        self.nets: Dict[int, "FakeNetwork"] = {}
        self.links: Set[Tuple[int, int]] = set()   # (dialler, acceptor)
        self.cut: Set[int] = set()                 # members nobody can reach
        self.sent: List[Tuple[int, int, Any]] = []

    def reachable(self, a: int, b: int) -> bool:
        return a not in self.cut and b not in self.cut and b in self.nets

    def up(self, a: int, b: int) -> bool:
        return (a, b) in self.links or (b, a) in self.links

    def deliver(self, src: int, dst: int, msg: Any, quorum: bool) -> None:
        if not self.reachable(src, dst) or (quorum and not self.up(src, dst)):
            return
        self.nets[dst].on_message(src, msg)

    def drop(self, a: int, b: int, tell: List[int]) -> None:
        if not self.up(a, b):
            return
        self.links.discard((a, b))
        self.links.discard((b, a))
        for sid in tell:
            other = b if sid == a else a
            if sid in self.nets:
                self.clock.callLater(0, self.nets[sid].on_link_down, other)

    def isolate(self, sid: int) -> None:
        self.cut.add(sid)
        for a, b in list(self.links):
            if sid in (a, b):
                self.drop(a, b, [a, b])


class FakeNetwork:
    """PeerNetwork's interface (send/connect/disconnect, on_* callbacks), in memory."""

    def __init__(self, hub: Hub, sid: int) -> None:
        self.hub = hub
        self.sid = sid
        hub.nets[sid] = self
        self.counters: Dict[str, int] = {"sent": 0}
        self.on_message: Any = None
        self.on_link_up: Any = None
        self.on_link_down: Any = None
        self.election: Any = None
        self.quorum: Any = None

    def send(self, to: int, msg: Any) -> None:
        self.counters["sent"] += 1
        self.hub.sent.append((self.sid, to, msg))
        quorum = not isinstance(msg, Notification)
        if quorum and not self.hub.up(self.sid, to):
            return
        self.hub.clock.callLater(0, self.hub.deliver, self.sid, to, msg, quorum)

    def connect(self, to: int) -> None:
        hub = self.hub
        if not hub.reachable(self.sid, to):
            hub.clock.callLater(0.01, self.on_link_down, to)
            return
        hub.links.add((self.sid, to))
        hub.clock.callLater(0, self.on_link_up, to)
        hub.clock.callLater(0, hub.nets[to].on_link_up, self.sid)

    def disconnect(self, to: int) -> None:
        self.hub.drop(self.sid, to, [to])


class Member:
    def __init__(self, ensemble: "Ensemble", sid: int, backend: Optional[MemoryBackend] = None,
                 servers: str = SERVERS) -> None:
        data = ensemble.tmp / ("m%d" % sid)
        data.mkdir(exist_ok=True)
        (data / "myid").write_text(str(sid))
        self.config: ServerConfig = from_text(
            "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nsslQuorum=false\n"
            "4lw.commands.whitelist=*\nsnapCount=%d\n%s" % (data, ensemble.snap_count, servers),
            "zoo%d.cfg" % sid)
        self.backend = backend or MemoryBackend()
        self.net = FakeNetwork(ensemble.hub, sid)
        self.server = EnsembleServer(self.config, self.backend, ensemble.clock, self.net)
        self.server.storage.pool = SyncPool()
        self.server.recover()
        snap = self.server.snapshotter
        assert snap is not None
        snap.stop()
        snap.pool = SyncPool()  # type: ignore[assignment]
        self.server.start_peer()


class Ensemble:
    """Members (three by default) on one clock; ``run`` advances it, ticking every member
    every 50 ms.  ``servers``: the ``server.N`` lines every member's config gets."""

    def __init__(self, tmp: Path, snap_count: int = 100000, start: Sequence[int] = (1, 2, 3),
                 servers: str = SERVERS) -> None:
        self.tmp = tmp
        self.snap_count = snap_count
        self.servers = servers
        self.clock = FakeReactor()
        self.clock.advance(EPOCH_S)
        self.hub = Hub(self.clock)
        self.members: Dict[int, Member] = {}
        self.backends: Dict[int, MemoryBackend] = {}
        for sid in start:
            self.start(sid)

    def start(self, sid: int) -> Member:
        backend = self.backends.setdefault(sid, MemoryBackend())
        m = self.members[sid] = Member(self, sid, backend, servers=self.servers)
        return m

    def crash(self, sid: int) -> None:
        """The process dies: its links go down, its clients' sockets close, the disk stays."""
        self.hub.isolate(sid)
        self.hub.nets.pop(sid, None)
        m = self.members.pop(sid)
        m.server.stop_peer()
        self.hub.cut.discard(sid)

    def pump(self) -> None:
        for _ in range(200):
            if not any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)

    def run(self, seconds: float) -> None:
        steps = int(round(seconds / 0.05))
        for _ in range(steps):
            self.pump()
            self.clock.advance(0.05)
            for m in list(self.members.values()):
                m.server.tick()
            self.pump()

    def server(self, sid: int) -> EnsembleServer:
        return self.members[sid].server

    def settle(self, timeout: float = 10.0) -> Tuple[int, List[int]]:
        """Run until every live member serves; (leader, followers)."""
        for _ in range(int(timeout / 0.1)):
            self.run(0.1)
            modes = {sid: m.server.mode for sid, m in self.members.items()}
            if all(m.server.serving for m in self.members.values()):
                leaders = [s for s, mode in modes.items() if mode == "leader"]
                if len(leaders) == 1:
                    return leaders[0], sorted(s for s in modes if s != leaders[0])
        raise AssertionError("no stable leader: %r" % {
            sid: (m.server.mode, m.server.serving) for sid, m in self.members.items()})

    def client(self, sid: int) -> "EClient":
        return EClient(self, sid)


class EClient(Client):
    """A test client on one member (an EnsembleConnection on a StringTransport)."""

    def __init__(self, ensemble: Ensemble, sid: int) -> None:
        self.ensemble = ensemble
        harness: Any = ensemble
        self.harness = harness
        from tests.protocol.test_connection import CountingTransport
        self.transport = CountingTransport("127.0.0.1")
        self.conn = EnsembleConnection(ensemble.server(sid))
        self.conn.makeConnection(self.transport)
        self.session_id = 0
        self.passwd = b""

    def settle_call(self, data: bytes, seconds: float = 0.5) -> List[Any]:
        self.send(data)
        self.ensemble.run(seconds)
        return self.replies()


def sync(xid: int, path: str) -> bytes:
    return request(xid, OP_SYNC, string(path))


def word(server: EnsembleServer, w: str) -> str:
    conn = EnsembleConnection(server)
    from twisted.internet.testing import StringTransport
    conn.makeConnection(StringTransport())
    return run_word(server, conn, w)


@pytest.fixture
def ens(tmp_path: Path) -> Ensemble:
    return Ensemble(tmp_path)


# -- election, modes, 4lw ------------------------------------------------------------------------

def test_three_members_elect_one_leader_and_report_modes(ens: Ensemble) -> None:
    leader, followers = ens.settle()
    assert leader == 3  # equal histories: the highest id wins
    for sid in (1, 2, 3):
        text = word(ens.server(sid), "srvr")
        assert ("Mode: leader\n" if sid == leader else "Mode: follower\n") in text
        # StatCommand adds the proposal sizes on the leader only (-1 before the first proposal)
        assert ("Proposal sizes last/min/max: -1/-1/-1\n" in text) == (sid == leader)
    mntr = dict(line.split("\t", 1) for line in word(ens.server(leader), "mntr").splitlines())
    assert mntr["zk_server_state"] == "leader"
    assert mntr["zk_peer_state"] == "leading - broadcast"
    assert mntr["zk_quorum_size"] == "3"
    assert mntr["zk_learners"] == mntr["zk_followers"] == "2"
    assert mntr["zk_synced_followers"] == "2"
    assert mntr["zk_pending_syncs"] == "0"
    fmntr = dict(line.split("\t", 1) for line in word(ens.server(followers[0]), "mntr").splitlines())
    assert fmntr["zk_server_state"] == "follower"
    assert "zk_synced_followers" not in fmntr
    assert "zk_zktwist_local_reads" in fmntr and "zk_zktwist_forwarded_writes" in fmntr


def test_conf_shows_the_quorum_keys_and_membership(ens: Ensemble) -> None:
    ens.settle()
    text = word(ens.server(2), "conf")
    assert "\nserverId=2\ninitLimit=10\nsyncLimit=5\nelectionAlg=3\nelectionPort=3889\n" \
           "quorumPort=2889\npeerType=0\nmembership: \n" in text
    assert text.endswith("server.3=127.0.0.1:2890:3890:participant;127.0.0.1:2183\nversion=0")


def test_zookeeper_config_node_holds_the_ensemble(ens: Ensemble) -> None:
    ens.settle()
    c = ens.client(1)
    c.handshake()
    reply = c.call(get_data(1, "/zookeeper/config"))
    assert reply.err == OK
    n = struct.unpack_from(">i", reply.body, 0)[0]
    data = reply.body[4:4 + n].decode()
    assert data == ("server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n"
                    "server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n"
                    "server.3=127.0.0.1:2890:3890:participant;127.0.0.1:2183\nversion=0")
    version = struct.unpack_from(">i", reply.body, 4 + n + 32)[0]
    assert version == -1  # as ZKDatabase.initConfigInZKDatabase sets it


# -- clients -------------------------------------------------------------------------------------

def test_not_serving_closes_client_connections_but_answers_srvr(tmp_path: Path) -> None:
    ens = Ensemble(tmp_path, start=(1,))  # alone: no quorum, never serves
    ens.run(1.0)
    server = ens.server(1)
    assert not server.serving
    assert word(server, "srvr") == "This ZooKeeper instance is not currently serving requests\n"
    c = ens.client(1)
    c.send(frame(struct.pack(">iqiqi", 0, 0, 30000, 0, 16) + bytes(16) + b"\x00"))
    ens.pump()
    assert c.closed and c.take() == b""


def test_write_on_a_follower_is_forwarded_and_read_everywhere_after_sync(ens: Ensemble) -> None:
    leader, (f1, f2) = ens.settle()
    a = ens.client(f1)
    resp = a.handshake()
    ens.run(0.3)
    if not resp.session_id:
        a.take()
    assert resp.session_id >> 56 == f1  # the session id carries the server it was created on
    replies = a.settle_call(create(1, "/x", b"hello"))
    assert [(r.xid, r.err) for r in replies] == [(1, OK)]
    assert replies[0].zxid > 0
    assert ens.server(f1).forwarded_writes == 1
    for sid in (leader, f1, f2):
        c = ens.client(sid)
        c.handshake()
        ens.run(0.3)
        c.take()
        got = c.settle_call(sync(1, "/x") + get_data(2, "/x"))
        assert [(r.xid, r.err) for r in got] == [(1, OK), (2, OK)], sid
        assert got[1].body[4:9] == b"hello"
        assert got[0].zxid >= replies[0].zxid
    assert ens.server(f2).local_reads >= 1
    mntr = dict(line.split("\t", 1) for line in word(ens.server(f1), "mntr").splitlines())
    assert mntr["zk_zktwist_forwarded_writes"] == "1"


def test_watch_event_precedes_the_reply_on_the_writing_follower(ens: Ensemble) -> None:
    _, (f1, _) = ens.settle()
    a = ens.client(f1)
    a.handshake()
    ens.run(0.3)
    a.settle_call(create(1, "/w", b"1"))
    a.settle_call(get_data(2, "/w", watch=True))
    from tests.protocol.test_connection import set_data
    out = a.settle_call(set_data(3, "/w", b"2"))
    assert [r.xid for r in out] == [-1, 3]
    assert parse_event(out[0])[0] == 3 and parse_event(out[0])[2] == "/w"


def test_replies_keep_request_order_behind_a_pending_sync(ens: Ensemble) -> None:
    _, (f1, _) = ens.settle()
    a = ens.client(f1)
    a.handshake()
    ens.run(0.3)
    out = a.settle_call(create(1, "/o", b"") + sync(2, "/o") + get_data(3, "/o")
                        + create(4, "/o/c", b"") + get_data(5, "/o/c"))
    assert [(r.xid, r.err) for r in out] == [(1, OK), (2, OK), (3, OK), (4, OK), (5, OK)]


def test_group_commit_one_fsync_for_a_burst(ens: Ensemble) -> None:
    leader, _ = ens.settle()
    a = ens.client(leader)
    a.handshake()
    ens.run(0.3)
    backend = ens.backends[leader]
    before = len(backend.calls)
    a.send(b"".join(create(i, "/g%d" % i, b"") for i in range(1, 21)))
    ens.run(0.5)
    assert [(r.xid, r.err) for r in a.replies()] == [(i, OK) for i in range(1, 21)]
    batches = backend.calls[before:]
    assert sum(len(b) for b in batches) == 20
    assert len(batches) <= 2  # one append_and_sync for the burst (plus at most the one in flight)


def test_leader_loss_stops_serving_closes_clients_and_a_new_leader_takes_over(
        ens: Ensemble) -> None:
    leader, (f1, f2) = ens.settle()
    a = ens.client(f1)
    a.handshake()
    ens.run(0.3)
    a.settle_call(create(1, "/keep", b"v"))
    ens.crash(leader)
    ens.run(1.0)
    assert a.closed  # the follower stopped serving when its leader went silent
    new_leader, rest = ens.settle()
    assert new_leader == max(f1, f2) and rest == [min(f1, f2)]
    # the restarted old leader recovers from its disk and rejoins as a follower
    ens.start(leader)
    l2, followers = ens.settle()
    assert l2 == new_leader and leader in followers
    b = ens.client(leader)
    b.handshake()
    ens.run(0.3)
    b.take()
    got = b.settle_call(sync(1, "/keep") + get_data(2, "/keep"))
    assert [(r.xid, r.err) for r in got] == [(1, OK), (2, OK)]
    meta = ens.backends[leader]
    assert int(meta.get_meta("currentEpoch") or 0) >= 2
    assert int(meta.get_meta("acceptedEpoch") or 0) >= 2


def test_session_survives_a_move_to_another_member(ens: Ensemble) -> None:
    _, (f1, f2) = ens.settle()
    a = ens.client(f1)
    a.handshake()
    ens.run(0.3)
    a.settle_call(create(1, "/eph", b"", flags=1))
    sid, pw = a.session_id, a.passwd
    a.conn.transport.loseConnection()  # type: ignore[union-attr]
    a.conn.connectionLost(None)
    b = ens.client(f2)
    b.send(frame(struct.pack(">iqiqi", 0, 0, 30000, sid, 16) + pw + b"\x00"))
    ens.run(0.3)
    frames = b.frames()
    assert len(frames) == 1
    assert struct.unpack_from(">q", frames[0], 8)[0] == sid
    b.session_id = sid
    got = b.settle_call(get_data(2, "/eph"))
    assert got[0].err == OK


def test_snapshots_every_snapcount_txns_while_serving(tmp_path: Path) -> None:
    ens = Ensemble(tmp_path, snap_count=10)
    leader, _ = ens.settle()
    a = ens.client(leader)
    a.handshake()
    ens.run(0.3)
    for i in range(30):
        a.send(create(i + 1, "/s%d" % i, b""))
        ens.run(0.1)
    ens.run(1.0)
    assert ens.server(leader).snapshotter is not None
    assert ens.server(leader).snapshotter.taken >= 1  # type: ignore[union-attr]
    assert ens.backends[leader].list_snapshots()


# -- the storage pipeline ------------------------------------------------------------------------

def test_peer_storage_runs_ops_in_order_and_batches_consecutive_appends() -> None:
    from zktwist.core.database import CoreConfig
    from zktwist.core.txn import Txn
    from zktwist.proto.consts import OpCode
    from zktwist.quorum import effects as fx
    from zktwist.server.ensemble import PeerStorage

    clock = FakeReactor()
    backend = MemoryBackend()
    backend.open()
    results: List[Any] = []
    failures: List[Any] = []
    storage = PeerStorage(clock, backend, CoreConfig(tick_time=2000, server_id=1), 500,
                          results.extend, failures.append, lambda: 0)
    storage.pool = SyncPool()

    def txn(z: int) -> Txn:
        return Txn(0x100, z, z, 0, OpCode.createSession, (30000,))

    storage.submit(fx.AppendTxns(1, (txn(1),)))
    storage.submit(fx.AppendTxns(2, (txn(2), txn(3))))
    storage.submit(fx.SetMeta(3, "currentEpoch", "1"))
    storage.submit(fx.AppendTxns(4, (txn(4),)))
    storage.submit(fx.Reload(5, 2))
    clock.advance(0)
    clock.advance(0)
    assert [len(c) for c in backend.calls] == [3, 1]  # 1+2 merged; SetMeta between
    assert [(r[0], r[1]) for r in results] == [("done", 2), ("done", 3), ("done", 4),
                                               ("reloaded", 5)]
    core = results[-1][2]
    assert core.last_zxid == 2 and backend.get_meta("currentEpoch") == "1"
    assert failures == []
    # a refused op stops the pipeline and reports the failure
    backend.fail_next = OSError("disk full")
    storage.submit(fx.AppendTxns(6, (txn(3),)))
    storage.submit(fx.SetMeta(7, "currentEpoch", "2"))
    clock.advance(0)
    clock.advance(0)
    assert len(failures) == 1 and storage.failed
    assert backend.get_meta("currentEpoch") == "1"


# -- observers and expiry ------------------------------------------------------------------------

def test_an_observer_serves_reads_forwards_writes_and_never_votes(tmp_path: Path) -> None:
    ens = Ensemble(tmp_path, start=(1, 2, 3, 4),
                   servers=SERVERS + "server.4=127.0.0.1:2891:3891:observer;127.0.0.1:2184\n")
    leader, others = ens.settle()
    assert leader == 3 and ens.server(4).mode == "observer"
    assert "Mode: observer\n" in word(ens.server(4), "srvr")
    assert "\npeerType=1\n" in word(ens.server(4), "conf")
    o = ens.client(4)
    o.handshake()
    ens.run(0.3)
    assert [(r.xid, r.err) for r in o.settle_call(create(1, "/obs", b"o"))] == [(1, OK)]
    got = o.settle_call(sync(2, "/obs") + get_data(3, "/obs"))
    assert [(r.xid, r.err) for r in got] == [(2, OK), (3, OK)]
    mntr = dict(line.split("\t", 1) for line in word(ens.server(leader), "mntr").splitlines())
    assert mntr["zk_synced_observers"] == "1" and mntr["zk_synced_followers"] == "2"
    assert mntr["zk_quorum_size"] == "3"


def test_the_leader_expires_a_silent_session_and_its_follower_closes_the_socket(
        ens: Ensemble) -> None:
    _, (f1, f2) = ens.settle()
    a = ens.client(f1)
    resp = a.handshake(timeout=4000)
    ens.run(0.3)
    a.settle_call(create(1, "/gone", b"", flags=1))
    b = ens.client(f2)
    b.handshake()
    ens.run(0.3)
    b.take()
    ens.run(8.0)  # a sends nothing (no pings): its 4 s session expires on the leader
    assert a.closed and resp.timeout == 4000
    got = b.settle_call(sync(1, "/gone") + get_data(2, "/gone"))
    assert [(r.xid, r.err) for r in got] == [(1, OK), (2, -101)]  # NONODE: the ephemeral went


def test_a_replaced_core_is_collected_and_the_new_one_frozen(ens: Ensemble) -> None:
    """gc.freeze() after recovery (as standalone); a later core (Reload, SNAP) thaws, collects
    the old one and freezes again, so a frozen old tree never leaks."""
    import gc
    import weakref

    ens.settle()
    server = ens.server(1)
    assert server._frozen and gc.get_freeze_count() > 0

    class Marker:
        pass

    old = Marker()
    old.cycle = old  # type: ignore[attr-defined]
    gone = weakref.ref(old)
    gc.freeze()
    del old
    peer = server.peer
    assert peer is not None
    from zktwist.core.database import ZooKeeperCore

    peer.install_core(ZooKeeperCore(peer.core.config, server.now()), (), peer.core.last_zxid,
                      server.now())
    server._core_changed()
    assert gone() is None
    assert gc.get_freeze_count() > 0 and server.core is peer.core
