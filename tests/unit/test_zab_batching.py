"""Cumulative ACKs and COMMITs, and one storage op per input (docs/replication.md, Broadcast)."""

from __future__ import annotations

from typing import Any, List, Tuple

from zktwist.core.txn import Txn, encode
from zktwist.proto.consts import OpCode
from zktwist.quorum import codec
from zktwist.quorum import effects as fx
from zktwist.quorum import messages as m

from tests.unit.test_zab import followers, ok, sent
from tests.unit.test_zab_harness import Cluster


class BatchingCluster(Cluster):
    """Messages from ``src`` to ``dst`` wait in a list until :meth:`deliver_batch`."""

    def __init__(self, **kw: Any) -> None:
        self.held: List[Tuple[int, int, Any]] = []
        self.hold: Tuple[int, int] = (0, 0)
        super().__init__(**kw)

    def _deliver(self, frm: int, to: int, msg: Any) -> None:
        if (frm, to) == self.hold:
            self.held.append((frm, to, msg))
            return
        super()._deliver(frm, to, msg)

    def deliver_batch(self) -> List[Any]:
        frm, to = self.hold
        msgs = [msg for _, _, msg in self.held]
        self.held = []
        self.hold = (0, 0)
        out = self.peer(to).receive_many(frm, msgs, self.now)
        self.handle(to, out)
        return out


def _appends(effects: List[Any]) -> List[fx.AppendTxns]:
    return [e for e in effects if isinstance(e, fx.AppendTxns)]


def test_a_batch_of_proposals_is_one_append_and_one_cumulative_ack() -> None:
    c = BatchingCluster()
    leader = c.stable()
    f, g = followers(c, leader)
    s = c.connect(leader).session_id
    assert ok(c.create(leader, s, 1, "/a", b""))
    c.crash(g)  # f's ACK is the one the leader needs
    c.hold = (leader, f)
    tokens = [c.set_data(leader, s, 2 + i, "/a", b"%d" % i, wait=False) for i in range(5)]
    c.run_for(20)
    assert not any(c.client_results(leader, t) for t in tokens)  # no quorum without f
    proposals = [msg for _, _, msg in c.held if isinstance(msg, m.Proposal)]
    assert len(proposals) == 5
    acks_before = len(sent(c, f, leader, m.Ack))
    out = c.deliver_batch()
    # one storage op for the five proposals ...
    appends = _appends(out)
    assert len(appends) == 1 and [t.zxid for t in appends[0].txns] == \
        [p.txn.zxid for p in proposals]
    assert not [e for e in out if isinstance(e, fx.Send) and isinstance(e.msg, m.Ack)]
    assert c.run_until(lambda: all(c.client_results(leader, t) for t in tokens), 2000)
    # ... and one ACK, for the last of them, once it is durable
    acks = sent(c, f, leader, m.Ack)[acks_before:]
    assert [a.zxid for a in acks] == [proposals[-1].txn.zxid]
    assert c.data(f, "/a") == b"4" and c.data(leader, "/a") == b"4"


def test_one_cumulative_commit_per_commit_round() -> None:
    c = BatchingCluster()
    leader = c.stable()
    f, g = followers(c, leader)
    s = c.connect(leader).session_id
    assert ok(c.create(leader, s, 1, "/a", b""))
    c.crash(g)
    c.hold = (leader, f)
    commits_before = len(sent(c, leader, f, m.Commit))
    tokens = [c.set_data(leader, s, 2 + i, "/a", b"%d" % i, wait=False) for i in range(4)]
    c.run_for(20)
    last = max(msg.txn.zxid for _, _, msg in c.held if isinstance(msg, m.Proposal))
    c.deliver_batch()
    assert c.run_until(lambda: all(c.client_results(leader, t) for t in tokens), 2000)
    # f's one cumulative ACK commits all four: one COMMIT, for the last
    commits = sent(c, leader, f, m.Commit)[commits_before:]
    assert [cm.zxid for cm in commits] == [last]
    assert [t.zxid for t in c.traces(leader, "committed")][-4:] == \
        [last - 3, last - 2, last - 1, last]
    for sid in (leader, f):
        assert c.data(sid, "/a") == b"3"
        applied = [t.zxid for t in c.traces(sid, "applied")]
        assert applied == sorted(applied) and applied[-1] == last


def test_a_commit_without_quorum_never_happens_with_cumulative_acks() -> None:
    """Both followers' disks stuck: the leader's own durable ACK is no quorum."""
    c = Cluster()
    leader = c.stable()
    s = c.connect(leader).session_id
    for f in followers(c, leader):
        c.hold_storage(f)
    tokens = [c.set_data(leader, s, 1 + i, "/zookeeper", b"", wait=False) for i in range(3)]
    c.run_for(300)
    assert not any(c.client_results(leader, t) for t in tokens)
    assert not [t for t in c.traces(leader, "committed") if t.zxid & 0xFFFFFFFF > 1]


def test_receive_many_stops_at_a_role_change() -> None:
    c = Cluster()
    leader = c.stable()
    f = followers(c, leader)[0]
    p = c.peer(f)
    gen = p._gen
    # A COMMIT for a txn we never got breaks the stream: the follower goes LOOKING, and
    # what came after it on that link is not handled by the next role.
    out = p.receive_many(leader, [m.Commit((1 << 32) | 999), m.Commit((1 << 32) | 1000)], c.now)
    assert p._gen != gen
    assert any(isinstance(e, fx.Disconnect) for e in out)
    assert p.role is None or p.role.committed_upto == 0


# -- the codec's txn bytes cache ---------------------------------------------------------------------

def test_txn_bytes_are_encoded_once_and_decoded_bytes_are_reused() -> None:
    t = Txn(0x1234, 7, (1 << 32) | 5, 1000, OpCode.setData, ("/a", b"xyz", 3))
    raw = codec.txn_bytes(t)
    assert raw == encode(t)
    assert codec.txn_bytes(t) is raw
    frame = codec.encode(m.Proposal(t))
    assert frame == codec.encode(m.Proposal(t))
    got = codec.FrameDecoder().feed(frame)[0]
    assert got.txn is not t and codec.txn_bytes(got.txn) == raw
    # an equal txn that is another object is encoded on its own
    other = Txn(0x1234, 7, (1 << 32) | 5, 1000, OpCode.setData, ("/a", b"xyz", 3))
    assert codec.txn_bytes(other) == raw


def test_txn_bytes_cache_is_bounded() -> None:
    big = b"x" * 1000
    txns = [Txn(1, i, i, 0, OpCode.setData, ("/a", big, -1)) for i in range(codec._TXN_CACHE_MAX + 10)]
    for t in txns:
        codec.txn_bytes(t)
    assert len(codec._TXN_CACHE) <= codec._TXN_CACHE_MAX
    assert codec._txn_cache_bytes[0] <= codec._TXN_CACHE_MAX_BYTES
    assert codec._txn_cache_bytes[0] == sum(len(v[1]) for v in codec._TXN_CACHE.values())
    huge = Txn(1, 1, 1, 0, OpCode.setData, ("/a", b"y" * (codec._TXN_CACHE_ENTRY_MAX + 1), -1))
    assert codec.txn_bytes(huge) == encode(huge)
    assert id(huge) not in codec._TXN_CACHE


def test_forwarded_set_data_fast_paths_match_the_general_encoding() -> None:
    import random

    rng = random.Random(7)
    reqs: List[Any] = [("/a", b"x", -1), ("/bench/k", None, 3), ("/b", b"", 1 << 40),
                       ("/\u00e9", b"x", 1), ("/a", b"x", True), ("/a", "str", 1),
                       ("/a", b"x", 1 << 70), ("/a", b"x"), ("/a", bytearray(b"x"), 1)]
    for _ in range(200):
        path = "/" + "".join(rng.choice("abc/\u00e9") for _ in range(rng.randint(0, 6)))
        data = None if rng.random() < 0.2 else bytes(rng.randint(0, 255)
                                                     for _ in range(rng.randint(0, 9)))
        reqs.append((path, data, rng.randint(-(1 << 63), (1 << 63) - 1)))
    for req in reqs:
        for auth in ((), (("digest", "u:p"),)):
            msg = m.Request(2, 0x77, 9, OpCode.setData, req, auth)
            frame = codec.encode(msg)
            general = [codec._request_head.pack(2, 0x77, 9, OpCode.setData)]
            codec._enc_value(req, general, 0)
            codec._enc_value(tuple(auth), general, 0)
            assert frame == codec._frame(codec.T_REQUEST, b"".join(general))
            back = codec.decode(frame)
            general_req = codec.decode_value(codec.encode_value(req))
            assert back.req == general_req and type(back.req[1]) is type(general_req[1])
            assert back.auth_ids == codec.decode_value(codec.encode_value(tuple(auth)))
