"""Zab roles driven through QuorumPeer by a small deterministic harness (test_zab_harness)."""

from __future__ import annotations

from typing import Any, List

import pytest

from zktwist.core.txn import Txn, decode, encode
from zktwist.core.sessions import session_password
from zktwist.proto.consts import CreateMode, Err, OpCode, Perms
from zktwist.quorum import effects as fx
from zktwist.quorum import messages as m
from zktwist.quorum.election import FOLLOWING, LEADING, LOOKING, OBSERVING

from tests.unit.test_zab_harness import Cluster, committed


def sent(c: Cluster, frm: int, to: int, kind: type) -> List[Any]:
    return [e.msg for e in c.nodes[frm].effects
            if isinstance(e, fx.Send) and e.to == to and isinstance(e.msg, kind)]


def followers(c: Cluster, leader: int) -> List[int]:
    return [s for s in c.voter_sids if s != leader]


def ok(result: Any) -> bool:
    return isinstance(result, fx.WriteDone) and result.result.err == 0 \
        and result.txn.type != OpCode.error


# -- establishment -------------------------------------------------------------------------------

def test_first_election_establishes_an_epoch_everywhere() -> None:
    c = Cluster()
    leader = c.stable()
    assert c.peer(leader).state == LEADING
    for s in followers(c, leader):
        assert c.peer(s).state == FOLLOWING
        assert c.peer(s).leader_sid == leader
    for s in c.voter_sids:
        p = c.peer(s)
        assert (p.accepted_epoch, p.current_epoch) == (1, 1)
        # both epochs are durable, not just in memory
        assert c.nodes[s].backend.get_meta("acceptedEpoch") == "1"
        assert c.nodes[s].backend.get_meta("currentEpoch") == "1"
    est = c.traces(leader, "established")
    assert len(est) == 1 and est[0].epoch == 1
    assert all(not c.traces(s, "established") for s in followers(c, leader))


def test_followers_do_not_serve_before_uptodate_and_ack_newleader_only_when_durable() -> None:
    c = Cluster()
    leader = c.stable()
    for s in followers(c, leader):
        effects = c.nodes[s].effects
        ack_i = next(i for i, e in enumerate(effects)
                     if isinstance(e, fx.Send) and isinstance(e.msg, m.Ack))
        meta_i = next(i for i, e in enumerate(effects)
                      if isinstance(e, fx.SetMeta) and e.key == "currentEpoch")
        serve_i = next(i for i, e in enumerate(effects) if isinstance(e, fx.StartServing))
        # the SetMeta was emitted, then (a storage_done later) the ACK, then serving
        assert meta_i < ack_i < serve_i
        ackepoch_i = next(i for i, e in enumerate(effects)
                          if isinstance(e, fx.Send) and isinstance(e.msg, m.AckEpoch))
        acc_i = next(i for i, e in enumerate(effects)
                     if isinstance(e, fx.SetMeta) and e.key == "acceptedEpoch")
        assert acc_i < ackepoch_i


# -- writes ------------------------------------------------------------------------------------------

def test_writes_from_leader_and_follower_reach_everyone_in_order() -> None:
    c = Cluster()
    leader = c.stable()
    f = followers(c, leader)[0]
    s1 = c.connect(leader)
    s2 = c.connect(f)
    assert isinstance(s1, fx.SessionEstablished) and isinstance(s2, fx.SessionEstablished)
    assert (s2.session_id >> 56) == f  # server id in the top byte
    assert ok(c.create(leader, s1.session_id, 1, "/a", b"1"))
    r = c.create(f, s2.session_id, 1, "/b", b"2")
    assert ok(r)
    assert ok(c.set_data(f, s2.session_id, 2, "/a", b"3"))
    c.run_for(100)
    for s in c.voter_sids:
        assert c.data(s, "/a") == b"3" and c.data(s, "/b") == b"2"
    zs = committed(c, leader)
    assert zs == sorted(zs) and len(zs) == 5
    # every server applied exactly the committed sequence
    for s in c.voter_sids:
        assert [t.zxid for t in c.traces(s, "applied")] == zs


def test_read_your_writes_after_sync_on_a_follower() -> None:
    c = Cluster()
    leader = c.stable()
    f = followers(c, leader)[0]
    s = c.connect(leader).session_id
    c.nodes[f].storage_delay = 30  # a slow follower: commits reach it late
    c.create(leader, s, 1, "/x", b"v", wait=False)
    c.run_for(3)  # proposed, not yet committed
    assert c.data(f, "/x") is None
    done = c.sync(f)
    assert isinstance(done, fx.SyncDone)
    assert c.data(f, "/x") == b"v"


# -- synchronisation ------------------------------------------------------------------------------------

def test_restarted_follower_catches_up_by_diff() -> None:
    c = Cluster()
    leader = c.stable()
    f = followers(c, leader)[0]
    s = c.connect(leader).session_id
    assert ok(c.create(leader, s, 1, "/a"))
    c.crash(f)
    for i in range(3):
        assert ok(c.create(leader, s, 2 + i, "/n%d" % i, b"%d" % i))
    c.start(f)
    c.stable()
    assert c.peer(leader).is_leader
    diffs = sent(c, leader, f, m.Diff)
    assert diffs and not sent(c, leader, f, m.Snap) and not sent(c, leader, f, m.Trunc)
    assert len(sent(c, leader, f, m.Proposal)) >= 3
    assert [c.data(f, "/n%d" % i) for i in range(3)] == [b"0", b"1", b"2"]
    assert c.peer(f).core.last_zxid == c.peer(leader).core.last_zxid


def test_far_behind_follower_gets_snap() -> None:
    c = Cluster(committed_log_size=4)
    leader = c.stable()
    f = followers(c, leader)[0]
    s = c.connect(leader).session_id
    c.crash(f)
    for i in range(10):
        assert ok(c.create(leader, s, 1 + i, "/n%d" % i, b"%d" % i))
    c.start(f)
    c.stable()
    assert sent(c, leader, f, m.Snap)
    assert any(isinstance(e, fx.WriteSnapshot) for e in c.nodes[f].effects)
    assert [c.data(f, "/n%d" % i) for i in range(10)] == [b"%d" % i for i in range(10)]
    # the session came over in the snapshot; it is the leader's until it reattaches here
    r = c.create(f, s, 20, "/after")
    assert r.txn.body == (Err.SESSIONMOVED,)
    assert isinstance(c.connect(f, s, session_password(s)), fx.SessionEstablished)
    assert ok(c.create(f, s, 21, "/after"))
    # restart again: recovery from the snapshot the SNAP wrote
    c.restart(f)
    c.stable()
    assert c.data(f, "/n9") == b"9" and c.data(f, "/after") == b""


def _diverge(c: Cluster) -> tuple:
    """The leader logs a txn nobody else gets, then loses its quorum; returns (old, zxid)."""
    old = c.stable()
    s = c.connect(old).session_id
    assert ok(c.create(old, s, 1, "/a"))
    c.isolate(old)
    c.create(old, s, 2, "/lost", b"x", wait=False)
    lost = c.peer(old).last_logged
    c.run_until(lambda: c.peer(old).state == LOOKING, 3000)
    # the others elect a new leader with a higher epoch and write on
    others = [x for x in c.voter_sids if x != old]
    assert c.run_until(lambda: any(c.peer(x).is_leader and c.peer(x).serving for x in others),
                       10000), c.describe()
    new = next(x for x in others if c.peer(x).is_leader)
    assert ok(c.create(new, s, 3, "/b", b"y")) if c.peer(new).core.sessions.is_live(s) else True
    return old, new, lost, s


def test_diverged_follower_is_truncated() -> None:
    c = Cluster()
    old, new, lost, s = _diverge(c)
    assert c.data(old, "/lost") == b"x"       # fast-forwarded: its core holds its whole log
    assert lost in [z for z, _ in c.logged(old)]
    c.heal()
    c.stable()
    assert c.leader() == new
    assert sent(c, new, old, m.Trunc)
    assert c.traces(old, "truncated")
    assert c.data(old, "/lost") is None
    assert lost not in [z for z, _ in c.logged(old)]
    assert c.data(old, "/b") == b"y"
    assert c.peer(old).core.last_zxid == c.peer(new).core.last_zxid


def test_leader_crash_keeps_every_committed_txn() -> None:
    c = Cluster()
    old = c.stable()
    s = c.connect(old, timeout=10000).session_id
    for i in range(5):
        assert ok(c.create(old, s, 1 + i, "/k%d" % i, b"%d" % i))
    done = committed(c, old)
    c.crash(old)
    new = c.stable()
    assert new != old
    assert c.peer(new).current_epoch == 2
    assert c.traces(new, "established")[-1].epoch == 2
    for sid in c.voter_sids:
        if sid != old:
            assert [c.data(sid, "/k%d" % i) for i in range(5)] == [b"%d" % i for i in range(5)]
            assert c.peer(sid).core.last_zxid >= done[-1]
    # new writes carry the new epoch; the old leader rejoins as a follower
    r = c.create(new, s, 10, "/after", b"z")
    assert ok(r) and (r.txn.zxid >> 32) == 2
    c.start(old)
    c.stable()
    assert c.peer(old).state == FOLLOWING and c.data(old, "/after") == b"z"


def test_leader_steps_down_without_a_quorum_and_learners_go_looking() -> None:
    c = Cluster()
    old = c.stable()
    c.isolate(old)
    assert c.run_until(lambda: c.peer(old).state == LOOKING, 2000)
    assert not c.peer(old).serving
    assert any(isinstance(e, fx.StopServing) for e in c.nodes[old].client)


def test_silent_leader_makes_a_follower_look() -> None:
    c = Cluster()
    leader = c.stable()
    f = followers(c, leader)[0]
    # the link stays up but nothing comes through: the leader hangs (no ticks, no replies)
    c.nodes[leader].alive = False
    assert c.run_until(lambda: c.peer(f).state == LOOKING, 5 * 100 + 200)


def test_zxid_rollover_forces_a_new_epoch() -> None:
    c = Cluster()
    leader = c.stable()
    s = c.connect(leader).session_id
    core = c.peer(leader).core
    core.prep.last_zxid = (1 << 32) | 0xFFFFFFFD
    core.tree.last_zxid = core.prep.last_zxid  # pretend we got here
    for f in followers(c, leader):
        c.peer(f).core.tree.last_zxid = core.prep.last_zxid
    assert ok(c.create(leader, s, 1, "/last"))   # counter 0xfffffffe: the last one
    c.create(leader, s, 2, "/next", wait=False)
    assert c.peer(leader).state == LOOKING
    c.stable()
    assert all(c.peer(x).current_epoch == 2 for x in c.voter_sids)
    lead = c.leader()
    assert lead is not None
    r = c.create(lead, s, 3, "/new")
    assert ok(r) and r.txn.zxid == (2 << 32) | 1


# -- sessions -------------------------------------------------------------------------------------------

def test_session_expiry_runs_on_the_leader_only_and_ephemerals_vanish_everywhere() -> None:
    c = Cluster()
    leader = c.stable()
    f1, f2 = followers(c, leader)
    idle = c.connect(f1, timeout=400).session_id
    busy = c.connect(f1, timeout=400).session_id
    assert ok(c.create(f1, idle, 1, "/eph", ephemeral=True))
    assert ok(c.create(f1, busy, 1, "/eph2", ephemeral=True))
    for _ in range(20):  # the busy client keeps pinging its follower for 1 s
        c.handle(f1, c.peer(f1).client_touch(busy, c.now))
        c.run_for(50)
    for sid in c.voter_sids:
        assert c.data(sid, "/eph") is None
        assert c.data(sid, "/eph2") == b""
        assert not c.peer(sid).core.sessions.is_live(idle)
        assert c.peer(sid).core.sessions.is_live(busy)
    closes = [t for t in c.traces(leader, "committed") if t.txn.type == OpCode.closeSession]
    assert [t.txn.session_id for t in closes] == [idle]
    assert any(isinstance(e, fx.SessionClosed) and e.session_id == idle for e in c.nodes[f2].client)
    # followers never proposed anything: all proposals came from the leader
    for sid in (f1, f2):
        assert not any(isinstance(e, fx.Send) and isinstance(e.msg, m.Proposal)
                       for e in c.nodes[sid].effects)


def test_revalidation_on_another_server_and_sessionmoved() -> None:
    c = Cluster()
    leader = c.stable()
    f1, f2 = followers(c, leader)
    est = c.connect(f1, timeout=5000)
    sid = est.session_id
    assert ok(c.create(f1, sid, 1, "/s"))
    # reattach on another follower: password checked locally, session revalidated at the leader
    assert isinstance(c.connect(f2, sid, b"wrong" * 4), fx.SessionRejected)
    moved = c.connect(f2, sid, session_password(sid))
    assert isinstance(moved, fx.SessionEstablished) and moved.session_id == sid
    assert sent(c, f2, leader, m.Revalidate)
    assert c.peer(leader).core.sessions.sessions[sid].owner == f2
    # the old connection on f1 writes: SESSIONMOVED; the new one works
    r = c.set_data(f1, sid, 2, "/s", b"old")
    assert isinstance(r, fx.WriteDone) and r.txn.type == OpCode.error
    assert r.txn.body == (Err.SESSIONMOVED,)
    assert ok(c.set_data(f2, sid, 3, "/s", b"new"))
    # a multi from the old connection: its first op fails with SESSIONMOVED, the rest
    # roll back (as pRequest2Txn checks the session per sub-op)
    r = c.write(f1, sid, 4, OpCode.multi, ((OpCode.check, ("/s", -1)),
                                           (OpCode.setData, ("/s", b"old", -1))))
    assert isinstance(r, fx.WriteDone) and r.txn.type == OpCode.multi
    assert [sub for sub in r.txn.body[0]] == [(OpCode.error, (Err.SESSIONMOVED,)),
                                              (OpCode.error, (Err.RUNTIMEINCONSISTENCY,))]
    # an unknown session is rejected
    bogus = (f2 << 56) | 12345
    assert isinstance(c.connect(f2, bogus, session_password(bogus)), fx.SessionRejected)


def test_standalone_never_sets_owners() -> None:
    from zktwist.core.database import CoreConfig, ZooKeeperCore

    core = ZooKeeperCore(CoreConfig(), 0)
    t = core.prep.prep_create_session(5, 3000, 0)
    core.apply(t, 0)
    txn = core.prep.prep(5, 1, OpCode.create, ("/a", b"", ((31, "world", "anyone"),), 0, -1), (), 0)
    assert txn.type == OpCode.create


# -- observers ------------------------------------------------------------------------------------------

def test_observer_learns_by_inform_and_never_votes() -> None:
    c = Cluster(voters=5, observers=1)
    obs = 6
    leader = c.stable()
    assert leader != obs
    assert c.peer(obs).state == OBSERVING
    s = c.connect(obs).session_id
    assert ok(c.create(obs, s, 1, "/o", b"1"))       # writes forwarded from the observer
    assert ok(c.create(leader, s + 0, 2, "/p", b"2")) if False else True
    c.run_for(50)
    assert c.data(obs, "/o") == b"1"
    assert sent(c, leader, obs, m.Inform)
    assert not sent(c, leader, obs, m.Proposal)
    assert not sent(c, leader, obs, m.Commit)
    # it never ACKs a proposal
    acks = [e.msg.zxid for e in c.nodes[obs].effects
            if isinstance(e, fx.Send) and isinstance(e.msg, m.Ack)]
    assert all(z & 0xFFFFFFFF == 0 for z in acks)
    # two voters and the observer are no quorum
    for v in [x for x in c.voter_sids if x != leader][:2] + [leader]:
        c.crash(v)
    c.run_for(3000)
    assert c.leader() is None
    assert not c.peer(obs).serving


def test_an_expiry_close_does_not_answer_a_pending_write_with_cxid_0() -> None:
    c = Cluster()
    leader = c.stable()
    peer = c.peer(leader)
    sid = c.connect(leader, timeout=5000).session_id
    # the client's first write (cxid 0) is waiting while the leader's expiry closes the session
    peer.pending_writes[(sid, 0)] = "write-token"
    close = peer.core.prep.prep_close_session(sid, 0, c.now)
    peer.apply_txn(close, c.now)
    assert not any(isinstance(e, fx.WriteDone) for e in peer._drain())
    assert peer.pending_writes[(sid, 0)] == "write-token"
    # a client's own close with the same key is answered
    peer.pending_closes[(sid, 7)] = "close-token"
    close2 = Txn(sid, 7, close.zxid + 1, c.now, OpCode.closeSession, ((),))
    peer.apply_txn(close2, c.now)
    done = [e for e in peer._drain() if isinstance(e, fx.WriteDone)]
    assert [d.token for d in done] == ["close-token"]


def test_an_acl_id_outside_the_bmp_is_the_same_on_every_server() -> None:
    # (paths cannot hold such characters: prep refuses them as Apache's validatePath does)
    c = Cluster()
    leader = c.stable()
    f1, _ = followers(c, leader)
    sid = c.connect(f1, timeout=5000).session_id
    acl = ((Perms.ALL, "digest", "emoji-\U0001F600:aGFzaA=="),)
    r = c.write(f1, sid, 1, OpCode.create, ("/acl", b"x", acl, CreateMode.PERSISTENT, -1))
    assert ok(r)
    c.run_for(200)
    # Learners get the txn through the codec (txn bytes): what the leader applied must be
    # what they decode, and what any server reads back from its log after a restart.
    [proposal] = [e.msg for e in c.nodes[leader].effects if isinstance(e, fx.Send)
                  and isinstance(e.msg, m.Proposal) and e.msg.txn.zxid == r.txn.zxid][:1]
    wire = decode(encode(proposal.txn))
    assert wire.body == proposal.txn.body
    assert c.peer(leader).core.tree.nodes["/acl"].acl == wire.body[2]
