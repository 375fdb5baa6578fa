"""The simulator's own machinery: event order, network semantics, disks, clocks, determinism.

These run without a QuorumPeer: a recording host stands in for the servers,
so a failure here is the simulator's fault, not the protocol's.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Tuple

import pytest

from zktwist.core.tree import OPEN_ACL_UNSAFE
from zktwist.core.txn import Txn
from zktwist.proto.consts import OpCode
from zktwist.quorum.effects import AppendTxns, SetMeta
from zktwist.server.peerstore import recover_peer
from zktwist.core.database import CoreConfig
from zktwist.sim.clock import Clock
from zktwist.sim.disk import Disk, DiskConfig
from zktwist.sim.events import EventQueue
from zktwist.sim.net import NetConfig, Network
from zktwist.storage.memory import MemoryBackend


class Recorder:
    """A Host that records what the network delivers."""

    def __init__(self, queue: EventQueue, sids: Tuple[int, ...] = (1, 2, 3)) -> None:
        self.queue = queue
        self.inc: Dict[int, int] = {s: 1 for s in sids}
        self.events: List[Tuple[int, str, int, int, Any]] = []

    def incarnation(self, sid: int) -> int:
        return self.inc[sid]

    def deliver(self, dst: int, src: int, msg: Any) -> None:
        self.events.append((self.queue.now, "msg", dst, src, msg))

    def link_up(self, dst: int, other: int) -> None:
        self.events.append((self.queue.now, "up", dst, other, None))

    def link_down(self, dst: int, other: int) -> None:
        self.events.append((self.queue.now, "down", dst, other, None))

    def of(self, kind: str, dst: int) -> List[Any]:
        return [e for e in self.events if e[1] == kind and e[2] == dst]


def make_net(seed: int = 1, **cfg: Any) -> Tuple[EventQueue, Network, Recorder]:
    q = EventQueue()
    host = Recorder(q)
    net = Network(q, random.Random(seed), host, NetConfig(**cfg))
    return q, net, host


def run(q: EventQueue, until: int = 10**9) -> None:
    while q.next_time() >= 0 and q.next_time() <= until:
        q.step()


class Notification:  # stands for an election datagram
    pass


# -- event queue ------------------------------------------------------------------------


def test_queue_orders_by_time_then_insertion() -> None:
    q = EventQueue()
    out: List[str] = []
    q.at(5, out.append, "b")
    q.at(3, out.append, "a")
    q.at(5, out.append, "c")
    q.at(5, out.append, "d")
    run(q)
    assert out == ["a", "b", "c", "d"] and q.now == 5


# -- election channel ------------------------------------------------------------------------


def test_election_channel_is_fifo_per_pair_despite_jitter() -> None:
    q, net, host = make_net(jitter=50)
    for i in range(200):
        q.at(i // 10, net.send_election, 1, 2, i)
    run(q)
    assert [e[4] for e in host.of("msg", 2)] == list(range(200))


def test_election_loss_drops_datagrams() -> None:
    q, net, host = make_net(election_loss=0.5)
    for i in range(400):
        net.send_election(1, 2, i)
    run(q)
    got = [e[4] for e in host.of("msg", 2)]
    assert 100 < len(got) < 300 and got == sorted(got)


def test_asymmetric_cut_lets_datagrams_flow_one_way() -> None:
    q, net, host = make_net()
    net.cut(1, 2)
    net.send_election(1, 2, "lost")
    net.send_election(2, 1, "arrives")
    run(q)
    assert [e[4] for e in host.of("msg", 2)] == []
    assert [e[4] for e in host.of("msg", 1)] == ["arrives"]


# -- quorum links -------------------------------------------------------------------------------


def connect(q: EventQueue, net: Network, a: int = 2, b: int = 1) -> None:
    net.connect(a, b)
    run(q)


def test_connect_brings_both_ends_up_acceptor_first() -> None:
    q, net, host = make_net()
    connect(q, net)
    ups = [(e[2], e[3]) for e in host.events if e[1] == "up"]
    assert ups == [(1, 2), (2, 1)]
    assert net.connected(1, 2) and net.connected(2, 1)


def test_quorum_link_is_fifo_both_ways() -> None:
    q, net, host = make_net(jitter=30)
    connect(q, net)
    for i in range(100):
        q.at(q.now + i // 7, net.send_quorum, 2, 1, i)
        q.at(q.now + i // 5, net.send_quorum, 1, 2, -i)
    run(q)
    assert [e[4] for e in host.of("msg", 1)] == list(range(100))
    assert [e[4] for e in host.of("msg", 2)] == [-i for i in range(100)]


def test_acceptor_messages_never_overtake_the_dialers_link_up() -> None:
    q, net, host = make_net(jitter=20)
    net.connect(2, 1)
    # as soon as the acceptor learns of the link it sends
    while not host.of("up", 1):
        q.step()
    net.send_quorum(1, 2, "hello")
    run(q)
    kinds = [e[1] for e in host.events if e[2] == 2]
    assert kinds == ["up", "msg"]


def test_reset_loses_in_flight_and_both_ends_learn() -> None:
    q, net, host = make_net(jitter=10)
    connect(q, net)
    for i in range(10):
        net.send_quorum(2, 1, i)
    net.reset(1, 2)
    net.send_quorum(2, 1, "after")
    run(q)
    assert host.of("msg", 1) == []
    assert len(host.of("down", 1)) == 1 and len(host.of("down", 2)) == 1
    assert not net.connected(1, 2) and not net.connected(2, 1)


def test_a_lost_packet_breaks_the_connection() -> None:
    q, net, host = make_net(quorum_loss=1.0)
    net.config.quorum_loss = 0.0
    connect(q, net)
    net.config.quorum_loss = 1.0
    net.send_quorum(2, 1, "lost")
    net.config.quorum_loss = 0.0
    net.send_quorum(2, 1, "never")
    run(q)
    assert host.of("msg", 1) == []
    assert len(host.of("down", 1)) == 1 and len(host.of("down", 2)) == 1


def test_one_way_cut_breaks_quorum_links_both_ways_and_blocks_connects() -> None:
    q, net, host = make_net()
    connect(q, net)
    net.cut(1, 2)
    run(q)
    assert len(host.of("down", 1)) == 1 and len(host.of("down", 2)) == 1
    host.events.clear()
    net.connect(1, 2)  # the other way round: also needs both directions
    run(q)
    assert host.of("up", 2) == [] and [e[3] for e in host.of("down", 1)] == [2]
    net.heal()
    host.events.clear()
    connect(q, net, 1, 2)
    assert len(host.of("up", 1)) == 1 and len(host.of("up", 2)) == 1


def test_disconnect_notifies_only_the_other_end() -> None:
    q, net, host = make_net()
    connect(q, net)
    net.send_quorum(2, 1, "in flight")
    net.disconnect(2, 1)
    run(q)
    assert host.of("down", 2) == [] and len(host.of("down", 1)) == 1
    assert host.of("msg", 1) == []


def test_connect_to_a_dead_server_fails_and_crash_breaks_links() -> None:
    q, net, host = make_net()
    connect(q, net, 2, 1)
    connect(q, net, 3, 1)
    host.inc[1] = 0
    net.crashed(1)
    run(q)
    assert sorted(e[2] for e in host.events if e[1] == "down") == [2, 3]
    host.events.clear()
    connect(q, net, 2, 1)
    assert [(e[1], e[2]) for e in host.events] == [("down", 2)]


def test_redial_replaces_the_old_connection_in_order() -> None:
    q, net, host = make_net(detect_min=100, detect_max=100)
    connect(q, net)
    host.events.clear()
    net.connect(2, 1)  # a new connection while the old one is still open at 1
    run(q)
    at1 = [e[1] for e in host.events if e[2] == 1]
    assert at1 == ["down", "up"]  # 1 never sees up twice, nor a late down for the new one
    assert net.connected(1, 2) and net.connected(2, 1)


def test_same_seed_same_network_log() -> None:
    def once(seed: int) -> List[Any]:
        q, net, host = make_net(seed, jitter=20, election_loss=0.2, quorum_loss=0.01)
        connect(q, net)
        for i in range(300):
            q.at(i, net.send_quorum, 2, 1, i)
            q.at(i, net.send_election, 3, 1, i)
        run(q)
        return host.events

    assert once(7) == once(7)
    assert once(7) != once(8)


# -- disks -------------------------------------------------------------------------------------


def txn(zxid: int, path: str) -> Txn:
    return Txn(0, 0, zxid, 0, OpCode.create, (path, b"", OPEN_ACL_UNSAFE, False, zxid & 0xFF))


def test_disk_runs_ops_in_order_and_crash_loses_the_rest() -> None:
    q = EventQueue()
    backend = MemoryBackend()
    backend.open()
    disk = Disk(q, random.Random(3), backend, DiskConfig(torn_p=0.0))
    done: List[int] = []
    disk.done = lambda op: done.append(op.seq)
    base = 1 << 32
    for i in range(1, 6):
        disk.submit(AppendTxns(i, (txn(base + i, "/n%d" % i),)))
    disk.submit(SetMeta(6, "currentEpoch", "1"))
    while len(done) < 3:
        q.step()
    disk.crash()
    run(q)
    assert done == [1, 2, 3]
    backend.open()
    core, _, current, recent = recover_peer(backend, CoreConfig(), 0)
    assert core.last_zxid == base + 3 and current == 0 and len(recent) == 3


def test_disk_crash_may_leave_the_head_op_durable_but_unreported() -> None:
    q = EventQueue()
    backend = MemoryBackend()
    backend.open()
    disk = Disk(q, random.Random(3), backend, DiskConfig(torn_p=1.0))
    done: List[int] = []
    disk.done = lambda op: done.append(op.seq)
    base = 1 << 32
    disk.submit(AppendTxns(1, (txn(base + 1, "/a"), txn(base + 2, "/b"))))
    disk.crash()
    run(q)
    assert done == []
    assert 1 <= len(list(backend.read_txns(0))) <= 2


# -- clocks ---------------------------------------------------------------------------------------


def test_clock_offset_and_drift() -> None:
    c = Clock(offset=1000, drift_ppm=10_000)  # 1% fast
    assert c.local(0) == 1000
    assert c.local(100_000) == 1000 + 101_000
    assert c.sim_delay(1010) == 1000
    slow = Clock(drift_ppm=-10_000)
    assert slow.local(100_000) == 99_000
    assert all(slow.local(t) <= slow.local(t + 1) for t in range(0, 5000, 7))
    with pytest.raises(ValueError):
        Clock(drift_ppm=-1_000_000)
