"""The election and quorum services (PeerNetwork) on connections.

In memory: several :class:`PeerNetwork` instances share one
``MemoryReactorClock``; every ``connectTCP`` is completed against the
matching ``listenTCP`` with :mod:`twisted.test.iosim` (real TLS over
in-memory transports, as tests/protocol/test_quorum_tls.py does), or refused
when nobody listens there.  The real-socket tests run the real reactor in a
subprocess (a reactor cannot be restarted inside one pytest process).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pytest
from twisted.internet.error import ConnectionRefusedError, UserError
from twisted.internet.ssl import optionsForClientTLS, trustRootFromCertificates
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.test import iosim

from zktwist.cli.tls import init_tls
from zktwist.config import from_text
from zktwist.core.txn import Txn, encode as txn_encode
from zktwist.proto.consts import OpCode
from zktwist.quorum import messages as m
from zktwist.quorum.election import LOOKING, Notification
from zktwist.quorum.tls import QuorumTLS, server_name
from zktwist.quorum.transport import RETRY_MAX, PeerNetwork, _Link

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    good = tmp_path_factory.mktemp("tls")
    init_tls(str(good), [1, 2, 3, 4])
    rogue = tmp_path_factory.mktemp("rogue")         # another CA, same server names
    init_tls(str(rogue), [1, 2, 3])
    return {"good": good, "rogue": rogue}


def member_tls(d: Path, name: str, sid: Optional[int] = None) -> QuorumTLS:
    return QuorumTLS(str(d / ("%s.key" % name)), str(d / ("%s.pem" % name)), str(d / "ca.pem"), sid)


class Anonymous(QuorumTLS):
    """Trusts the right CA but presents no certificate of its own."""

    def client_options(self, sid: int) -> Any:
        return optionsForClientTLS(server_name(sid), trustRoot=trustRootFromCertificates([self.ca]))


def inner(p: Any) -> Any:
    return getattr(p, "wrappedProtocol", p)


class Node:
    def __init__(self, sid: int, net: PeerNetwork) -> None:
        self.sid = sid
        self.net = net
        self.events: List[Tuple[str, int, Any]] = []
        net.on_message = lambda frm, msg: self.events.append(("msg", frm, msg))
        net.on_link_up = lambda frm: self.events.append(("up", frm, None))
        net.on_link_down = lambda frm: self.events.append(("down", frm, None))

    def messages(self, frm: Optional[int] = None) -> List[Any]:
        return [e[2] for e in self.events if e[0] == "msg" and (frm is None or e[1] == frm)]

    def links(self) -> List[Tuple[str, int]]:
        return [(e[0], e[1]) for e in self.events if e[0] in ("up", "down")]

    def take(self) -> List[Tuple[str, int, Any]]:
        out, self.events[:] = list(self.events), []
        return out


class Ensemble:
    """Servers on one in-memory network."""

    def __init__(self, tmp: Path, sids: Iterable[int] = (1, 2, 3), tls_dir: Optional[Path] = None,
                 tls: Optional[Dict[int, QuorumTLS]] = None) -> None:
        self.reactor = MemoryReactorClock()
        self.pumps: List[iosim.IOPump] = []
        self.nodes: Dict[int, Node] = {}
        sids = list(sids)
        lines = "".join("server.%d=127.0.0.1:%d:%d\n" % (s, 12000 + s, 13000 + s) for s in sids)
        for sid in sids:
            d = tmp / ("n%d" % sid)
            d.mkdir(parents=True, exist_ok=True)
            (d / "myid").write_text(str(sid))
            text = "dataDir=%s\ninitLimit=5\nsyncLimit=2\n%s" % (d, lines)
            if tls_dir is None:
                cfg = from_text(text + "sslQuorum=false\n")
                q: Optional[QuorumTLS] = None
            else:
                cfg = from_text(text + "sslQuorum=true\nssl.quorum.keyFile=%s/server%d.key\n"
                                "ssl.quorum.certFile=%s/server%d.pem\nssl.quorum.caFile=%s/ca.pem\n"
                                % (tls_dir, sid, tls_dir, sid, tls_dir))
                q = QuorumTLS.from_config(cfg)
            if tls and sid in tls:
                q = tls[sid]
            self.nodes[sid] = Node(sid, PeerNetwork(cfg, q, self.reactor))

    def __getitem__(self, sid: int) -> Node:
        return self.nodes[sid]

    def start(self, *sids: int) -> None:
        for sid in sids or list(self.nodes):
            n = self.nodes[sid].net
            n.election.startService()
            n.quorum.startService()

    def stop(self, sid: int) -> None:
        n = self.nodes[sid].net
        n.election.stopService()
        n.quorum.stopService()

    def _listening(self, port: int) -> Any:
        for node in self.nodes.values():
            for svc in (node.net.election, node.net.quorum):
                if svc.port is not None and svc.listen_port() == port:
                    for (p, factory, _, _) in self.reactor.tcpServers:
                        if p == port:
                            return factory
        return None

    def run(self, rounds: int = 2000) -> None:
        """Complete dials and move bytes until nothing moves."""
        r = self.reactor
        for _ in range(rounds):
            r.advance(0)
            moved = False
            while r.tcpClients:
                host, port, factory, _timeout, _bind = r.tcpClients.pop(0)
                connector = r.connectors.pop(0)
                moved = True
                if connector.stoppedConnecting:
                    factory.clientConnectionFailed(connector, Failure(UserError()))
                    continue
                server_factory = self._listening(port)
                if server_factory is None:
                    factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
                    continue
                sp = server_factory.buildProtocol(None)
                cp = factory.buildProtocol(None)
                self.pumps.append(iosim.connect(sp, iosim.makeFakeServer(sp), cp,
                                                iosim.makeFakeClient(cp), greet=False, clock=r))
            for pump in self.pumps:
                if pump.pump(advanceClock=False):
                    moved = True
            self.pumps = [p for p in self.pumps
                          if not (p.clientIO.disconnected and p.serverIO.disconnected)]
            if not moved and not r.getDelayedCalls() or not moved and all(
                    c.getTime() > r.seconds() for c in r.getDelayedCalls()):
                return
        raise AssertionError("the network did not settle")

    def advance(self, seconds: float, step: float = 0.05) -> None:
        t = 0.0
        while t < seconds:
            self.reactor.advance(step)
            self.run()
            t += step

    def open_connections(self, channel: str) -> Dict[Tuple[int, int], int]:
        """(dialler, acceptor) -> number of open connections on ``channel``."""
        out: Dict[Tuple[int, int], int] = {}
        for p in self.pumps:
            c, s = inner(p.client), inner(p.server)
            if not isinstance(c, _Link) or c.svc.name_ != channel:
                continue
            if p.clientIO.disconnecting or p.serverIO.disconnecting or c.closed or s.closed:
                continue
            key = (c.svc.my_id, s.svc.my_id)
            out[key] = out.get(key, 0) + 1
        return out

    def pump_of(self, link: _Link) -> iosim.IOPump:
        for p in self.pumps:
            if inner(p.client) is link or inner(p.server) is link:
                return p
        raise LookupError(link)


def note(sid: int, epoch: int = 1) -> Notification:
    return Notification(sid=sid, state=LOOKING, leader=sid, zxid=0, election_epoch=epoch,
                        peer_epoch=0)


def all_pairs(sids: Iterable[int]) -> List[Tuple[int, int]]:
    return [(a, b) for a in sids for b in sids if a != b]


MODES = ["plain", "tls"]


def ensemble(tmp_path: Path, certs: Dict[str, Path], mode: str, sids: Iterable[int] = (1, 2, 3),
             **kw: Any) -> Ensemble:
    return Ensemble(tmp_path, sids, tls_dir=certs["good"] if mode == "tls" else None, **kw)


# -- election links -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_election_notifications_flow_between_all_pairs(tmp_path: Path, certs: Dict[str, Path],
                                                       mode: str) -> None:
    e = ensemble(tmp_path, certs, mode)
    e.start()
    e.run()
    for a, b in all_pairs(e.nodes):
        e[a].net.send(b, note(a))
    e.run()
    for b in e.nodes:
        assert sorted(n.sid for n in e[b].messages()) == sorted(a for a in e.nodes if a != b)
        assert e[b].messages(b) == []
    # A second round goes over the links that are now up, in order.
    for epoch in (2, 3, 4):
        for a, b in all_pairs(e.nodes):
            e[a].net.send(b, note(a, epoch))
    e.run()
    for a, b in all_pairs(e.nodes):
        assert [n.election_epoch for n in e[b].messages(a)] == [1, 2, 3, 4]
    assert e[1].net.counters["election_auth_failures"] == 0
    # Election links are not quorum links: nobody heard link_up.
    assert all(node.links() == [] for node in e.nodes.values())


@pytest.mark.parametrize("mode", MODES)
def test_one_election_connection_per_pair_survives_simultaneous_dialling(
        tmp_path: Path, certs: Dict[str, Path], mode: str) -> None:
    e = ensemble(tmp_path, certs, mode, sids=(1, 2, 3, 4))
    # Everybody has something for everybody before anybody listens: all dial at once, both ways.
    for a, b in all_pairs(e.nodes):
        e[a].net.send(b, note(a))
    e.start()
    e.run()
    e.advance(3 * RETRY_MAX)
    conns = e.open_connections("election")
    # One per pair, and it is the one the higher server dialled.
    assert conns == {(b, a): 1 for a, b in all_pairs(e.nodes) if b > a}
    for a in e.nodes:
        assert e[a].net.election.connected() == sorted(b for b in e.nodes if b != a)
    # Every first notification arrived (the latest one waits for the link).
    for a, b in all_pairs(e.nodes):
        assert [n.sid for n in e[b].messages(a)] == [a]


@pytest.mark.parametrize("mode", MODES)
def test_election_links_come_back_after_a_restart(tmp_path: Path, certs: Dict[str, Path],
                                                 mode: str) -> None:
    e = ensemble(tmp_path, certs, mode)
    e.start()
    e.run()
    e.advance(0.5)
    e.stop(2)
    e.run()
    assert e[1].net.election.connected() == [3] and e[3].net.election.connected() == [1]
    e[1].net.send(2, note(1, 7))   # waits
    e[3].net.send(2, note(3, 7))   # lost or waits: 3 redials 2 with back-off
    e.advance(1.0)
    assert e[2].messages() == []
    e.start(2)
    e.run()
    e.advance(RETRY_MAX + 0.5)
    assert e[2].net.election.connected() == [1, 3]
    assert sorted(n.sid for n in e[2].messages()) == [1, 3]
    assert e.open_connections("election") == {(2, 1): 1, (3, 1): 1, (3, 2): 1}


# -- quorum links ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_quorum_link_up_and_down(tmp_path: Path, certs: Dict[str, Path], mode: str) -> None:
    e = ensemble(tmp_path, certs, mode)
    e.start()
    e.run()
    # A learner dials its leader: both ends learn link_up.
    e[2].net.connect(1)
    e[3].net.connect(1)
    e.run()
    assert e[1].links() == [("up", 2), ("up", 3)]
    assert e[2].links() == [("up", 1)] and e[3].links() == [("up", 1)]
    assert e[1].net.quorum.connected() == [2, 3]
    # Packets both ways.
    e[2].net.send(1, m.FollowerInfo(2, 0))
    e[1].net.send(2, m.LeaderInfo(1))
    e[1].net.send(3, m.LeaderInfo(1))
    e.run()
    assert e[1].messages(2) == [m.FollowerInfo(2, 0)] and e[2].messages(1) == [m.LeaderInfo(1)]
    for node in e.nodes.values():
        node.take()
    # Disconnect: only the other end hears.
    e[1].net.disconnect(2)
    e.run()
    assert e[1].links() == [] and e[2].links() == [("down", 1)]
    # A packet for a link that is down is dropped.
    e[1].net.send(2, m.Ping(1))
    e.run()
    assert e[2].messages() == [] and e[1].net.counters["quorum_packets_dropped"] == 1
    # Dialling again replaces the link: the leader hears the old one go, then the new one.
    for node in e.nodes.values():
        node.take()
    e[3].net.connect(1)
    e.run()
    assert e[1].links() == [("down", 3), ("up", 3)] and e[3].links() == [("up", 1)]
    assert e.open_connections("quorum") == {(3, 1): 1}
    # The leader goes away: its learner hears link_down.
    for node in e.nodes.values():
        node.take()
    e.stop(1)
    e.run()
    assert e[3].links() == [("down", 1)] and e[1].links() == []
    # Dialling a server that is not there: link_down on the dialling end.
    e[2].net.connect(1)
    e.run()
    assert e[2].links() == [("down", 1)]


@pytest.mark.parametrize("mode", MODES)
def test_quorum_packets_arrive_in_order_and_are_written_in_batches(
        tmp_path: Path, certs: Dict[str, Path], mode: str) -> None:
    e = ensemble(tmp_path, certs, mode, sids=(1, 2))
    e.start()
    e[2].net.connect(1)
    e.run()
    link = e[2].net.quorum.links[1]
    writes: List[int] = []
    t: Any = link.transport
    real_write = t.write

    def counting_write(data: bytes) -> None:
        writes.append(len(data))
        real_write(data)
    t.write = counting_write
    sent: List[Any] = []
    for i in range(1000):
        p: Any = (m.Ack(i) if i % 3 else
                  m.Proposal(Txn(5, i, (1 << 32) + i, 0, OpCode.setData, ("/n%d" % i, b"x" * 100, i))))
        sent.append(p)
        e[2].net.send(1, p)
        e[1].net.send(2, m.Commit(i))
    assert writes == []          # nothing is written until the reactor turn ends
    e.run()
    assert len(writes) == 1      # one write for the whole batch
    got = e[1].messages(2)
    assert len(got) == 1000
    for a, b in zip(got, sent):
        assert type(a) is type(b)
        if isinstance(a, m.Proposal):
            assert txn_encode(a.txn) == txn_encode(b.txn)
        else:
            assert a == b
    assert e[2].messages(1) == [m.Commit(i) for i in range(1000)]
    c = e[1].net.counters
    assert c["quorum_packets_in"] == 1000 and c["quorum_packets_out"] == 1000


def test_a_snapshot_and_requests_cross_a_tls_link(tmp_path: Path, certs: Dict[str, Path]) -> None:
    e = ensemble(tmp_path, certs, "tls", sids=(1, 2))
    e.start()
    e[2].net.connect(1)
    e.run()
    snap = os.urandom(1 << 16) * 160     # 10 MiB
    e[1].net.send(2, m.Snap(0x300000000, snap))
    req = m.Request(2, 0x77, 9, int(OpCode.multi),
                    ((int(OpCode.create), ("/a", b"\x00\xff", [(31, "world", "anyone")], 0, -1)),
                     (int(OpCode.check), ("/a", -1))), (("digest", "bob:x="), ("ip", "10.0.0.1")))
    e[2].net.send(1, req)
    e.run()
    assert e[2].messages(1) == [m.Snap(0x300000000, snap)]
    assert e[1].messages(2) == [req]


# -- refusals -----------------------------------------------------------------------------------------

def refused_setup(tmp_path: Path, certs: Dict[str, Path], case: str) -> Ensemble:
    good, rogue = certs["good"], certs["rogue"]
    if case == "another server's certificate":
        return Ensemble(tmp_path, tls_dir=good, tls={2: member_tls(good, "server3")})
    if case == "another CA":
        return Ensemble(tmp_path, tls_dir=good, tls={2: member_tls(rogue, "server2", 2)})
    if case == "no certificate":
        return Ensemble(tmp_path, tls_dir=good, tls={2: Anonymous(
            str(good / "server2.key"), str(good / "server2.pem"), str(good / "ca.pem"), 2)})
    assert case == "claiming another sid"
    # Server 3, with its own good certificate, says it is server 2.
    e = Ensemble(tmp_path, tls_dir=good)
    for svc in (e[3].net.election, e[3].net.quorum):
        svc.my_id = 2
    return e


REFUSALS = ["another server's certificate", "another CA", "no certificate", "claiming another sid"]


@pytest.mark.parametrize("case", REFUSALS)
def test_a_peer_that_cannot_prove_its_identity_is_refused_and_logged(
        tmp_path: Path, certs: Dict[str, Path], case: str) -> None:
    e = refused_setup(tmp_path, certs, case)
    impostor = 3 if case == "claiming another sid" else 2
    with capturedLogs() as events:
        e.start()
        e.run()
        e[impostor].net.send(1, note(impostor))
        e[impostor].net.connect(1)
        e.run()
        e.advance(1.0)
    # Server 1 admitted nobody claiming to be server 2 on either port.
    assert ("up", 2) not in e[1].links() and ("up", 3) not in e[1].links()
    assert e[impostor].links() == [("down", 1)]
    assert e[1].messages() == []
    if impostor == 2:
        assert 2 not in e[1].net.election.connected()
    c = e[1].net.counters
    if case in ("another CA", "no certificate"):
        # The TLS handshake itself fails; server 1 logs and counts it.
        assert c["quorum_handshake_failures"] >= 1 and c["election_handshake_failures"] >= 1
        assert any("before its hello" in e_.get("log_format", "") for e_ in events)
    else:
        assert c["quorum_auth_failures"] == 1 and c["election_auth_failures"] >= 1
        assert c["quorum_refused"] == 1
        why = [ev for ev in events if ev.get("log_format", "").startswith("quorum TLS: refused")]
        assert why and all(ev["sid"] == 2 for ev in why)
    # The honest server 3 (or 2) is unaffected.
    honest = 2 if impostor == 3 else 3
    e[honest].net.connect(1)
    e.run()
    assert ("up", honest) in e[1].links()


def test_plain_tcp_refuses_a_hello_from_a_stranger(tmp_path: Path, certs: Dict[str, Path]) -> None:
    e = ensemble(tmp_path, certs, "plain", sids=(1, 2))
    e.start()
    e[2].net.quorum.my_id = 9       # not a member
    with capturedLogs() as events:
        e[2].net.connect(1)
        e.run()
    assert e[1].links() == [] and e[2].links() == [("down", 1)]
    assert e[1].net.counters["quorum_refused"] == 1
    assert any("not a member" in str(ev.get("why", "")) for ev in events)


# -- malformed frames ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_a_malformed_frame_closes_only_that_link(tmp_path: Path, certs: Dict[str, Path],
                                                mode: str) -> None:
    e = ensemble(tmp_path, certs, mode)
    e.start()
    e[2].net.connect(1)
    e[3].net.connect(1)
    e.run()
    for node in e.nodes.values():
        node.take()
    bad = e[2].net.quorum.links[1]
    with capturedLogs() as events:
        bad.transport.write(b"\x00\x00\x00\x02\xee\x00" + b"junk")  # type: ignore[union-attr]
        e[2].net.send(1, m.Ack(5))   # after the junk: never delivered
        e.run()
    assert e[1].links() == [("down", 2)] and e[2].links() == [("down", 1)]
    assert e[1].messages() == []
    assert e[1].net.counters["quorum_codec_errors"] == 1
    assert any("malformed frame" in ev.get("log_format", "") for ev in events)
    # Everything else still works.
    assert e[1].net.quorum.connected() == [3]
    e[3].net.send(1, m.Ack(6))
    e[1].net.send(3, m.Commit(6))
    for a, b in all_pairs(e.nodes):
        e[a].net.send(b, note(a, 9))
    e.run()
    assert m.Ack(6) in e[1].messages(3) and note(3, 9) in e[1].messages(3)
    assert m.Commit(6) in e[3].messages(1) and note(1, 9) in e[3].messages(1)
    assert sorted(n.sid for n in e[2].messages() if isinstance(n, Notification)) == [1, 3]
    # And server 2 may dial again.
    e[2].net.connect(1)
    e.run()
    assert ("up", 2) in e[1].links()


def test_a_malformed_election_frame_closes_only_that_link(tmp_path: Path,
                                                         certs: Dict[str, Path]) -> None:
    e = ensemble(tmp_path, certs, "plain")
    e.start()
    e.run()
    link = e[3].net.election.links[1]
    link.transport.write(b"\xff\xff\xff\xff\x03")  # type: ignore[union-attr]
    e.run()
    assert e[1].net.counters["election_codec_errors"] == 1
    assert e[1].net.election.connected() == [2]
    e.advance(RETRY_MAX)     # server 3 redials
    assert e[1].net.election.connected() == [2, 3]


def test_an_owner_callback_that_raises_closes_the_link_not_the_server(
        tmp_path: Path, certs: Dict[str, Path]) -> None:
    e = ensemble(tmp_path, certs, "plain", sids=(1, 2))
    e.start()
    e[2].net.connect(1)
    e.run()

    def boom(frm: int, msg: Any) -> None:
        raise RuntimeError("bug")
    e[1].net.on_message = boom
    with capturedLogs() as events:
        e[2].net.send(1, m.Ack(1))
        e.run()
    assert e[2].links()[-1] == ("down", 1)
    assert any(ev.get("log_failure") is not None for ev in events)


# -- real sockets ---------------------------------------------------------------------------------------

SCRIPT = textwrap.dedent('''
    import json, os, sys
    from twisted.internet import reactor
    from zktwist.config import from_text
    from zktwist.quorum import messages as m
    from zktwist.quorum.election import Notification
    from zktwist.quorum.tls import QuorumTLS
    from zktwist.quorum.transport import PeerNetwork

    base, tls_dir, ports = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    sids = [1, 2, 3]
    lines = "".join("server.%d=127.0.0.1:%d:%d\\n" % (s, ports[2 * i], ports[2 * i + 1])
                    for i, s in enumerate(sids))
    nets, got, ups = {}, {s: [] for s in sids}, {s: [] for s in sids}
    for s in sids:
        d = os.path.join(base, str(s)); os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "myid"), "w").write(str(s))
        text = "dataDir=%s\\ninitLimit=5\\nsyncLimit=2\\n%s" % (d, lines)
        if tls_dir:
            text += ("ssl.quorum.keyFile=%s/server%d.key\\nssl.quorum.certFile=%s/server%d.pem\\n"
                     "ssl.quorum.caFile=%s/ca.pem\\n" % (tls_dir, s, tls_dir, s, tls_dir))
        else:
            text += "sslQuorum=false\\n"
        cfg = from_text(text)
        n = nets[s] = PeerNetwork(cfg, QuorumTLS.from_config(cfg), reactor)
        n.on_message = (lambda s: lambda f, msg: got[s].append((f, msg)))(s)
        n.on_link_up = (lambda s: lambda f: ups[s].append(("up", f)))(s)
        n.on_link_down = (lambda s: lambda f: ups[s].append(("down", f)))(s)
        n.election.startService(); n.quorum.startService()

    def notes():
        for a in sids:
            for b in sids:
                if a != b:
                    nets[a].send(b, Notification(a, 0, a, 0, 1, 0))
        nets[2].connect(1); nets[3].connect(1)

    def packets():
        for i in range(1000):
            nets[2].send(1, m.Ack(i))
        nets[1].send(3, m.Snap(7, b"s" * (3 << 20)))

    def done():
        out = {"notes": {s: sorted(msg.sid for f, msg in got[s] if isinstance(msg, Notification))
                         for s in sids},
               "acks": [msg.zxid for f, msg in got[1] if isinstance(msg, m.Ack)],
               "snap": [len(msg.data) for f, msg in got[3] if isinstance(msg, m.Snap)],
               "ups": ups, "election": {s: nets[s].election.connected() for s in sids},
               "auth_failures": sum(nets[s].counters["election_auth_failures"]
                                    + nets[s].counters["quorum_auth_failures"] for s in sids)}
        print(json.dumps(out))
        for s in sids:
            nets[s].election.stopService(); nets[s].quorum.stopService()
        reactor.callLater(0.2, reactor.stop)

    reactor.callLater(0.5, notes)
    reactor.callLater(2.0, packets)
    reactor.callLater(4.0, done)
    reactor.callLater(30, reactor.stop)
    reactor.run()
''')


def free_ports(n: int) -> List[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.parametrize("mode", MODES)
def test_real_sockets_on_loopback(tmp_path: Path, certs: Dict[str, Path], mode: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(certs["good"]) if mode == "tls" else "",
         json.dumps(free_ports(6))], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["notes"] == {"1": [2, 3], "2": [1, 3], "3": [1, 2]}
    assert out["election"] == {"1": [2, 3], "2": [1, 3], "3": [1, 2]}
    assert sorted(out["ups"]["1"]) == [["up", 2], ["up", 3]]
    assert out["ups"]["2"] == [["up", 1]] and out["ups"]["3"] == [["up", 1]]
    assert out["acks"] == list(range(1000))
    assert out["snap"] == [3 << 20]
    assert out["auth_failures"] == 0
    assert "Traceback" not in proc.stderr
