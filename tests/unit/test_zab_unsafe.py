"""Each test-only fault switch (PeerConfig.unsafe) really changes behaviour; the safe build does not.

The simulator proves the checks catch them; here we only pin down that each
switch is the bug it claims to be, against the same scenario without it.
"""

from __future__ import annotations

from typing import Any

import pytest

from zktwist.proto.consts import OpCode
from zktwist.quorum import effects as fx
from zktwist.quorum import messages as m
from zktwist.quorum.peer import PeerConfig

from tests.unit.test_zab import _diverge, followers, ok, sent
from tests.unit.test_zab_harness import Cluster

ALL = (1, 2, 3)
X = (1 << 32) | 2  # the write's zxid (after the createSession)


def _unsafe(switch: str) -> dict:
    return {sid: frozenset((switch,)) for sid in ALL}


def _write_with_followers_disks_stuck(c: Cluster) -> Any:
    leader = c.stable()
    s = c.connect(leader).session_id
    for f in followers(c, leader):
        c.hold_storage(f)
    token = c.write(leader, s, 1, OpCode.create, ("/x", b"", ((31, "world", "anyone"),), 0, -1),
                    wait=False)
    c.run_for(200)
    return leader, token


def test_safe_follower_acks_only_when_durable() -> None:
    c = Cluster()
    leader, token = _write_with_followers_disks_stuck(c)
    assert not c.client_results(leader, token)          # no quorum of durable ACKs yet
    for f in followers(c, leader):
        assert not [a for a in sent(c, f, leader, m.Ack) if a.zxid == X]
    for f in followers(c, leader):
        c.release_storage(f)
    assert c.run_until(lambda: bool(c.client_results(leader, token)), 1000)


def test_ack_before_durable_acks_what_is_not_on_disk() -> None:
    c = Cluster(unsafe=_unsafe("ack_before_durable"))
    leader, token = _write_with_followers_disks_stuck(c)
    assert ok(c.client_results(leader, token)[0])       # committed on volatile ACKs
    for f in followers(c, leader):
        assert not [z for z, _ in c.logged(f) if z >> 32 == 1 and z & 0xFFFFFFFF >= 2]


def test_commit_on_minority_commits_with_the_leaders_ack_alone() -> None:
    c = Cluster(unsafe=_unsafe("commit_on_minority"))
    leader, token = _write_with_followers_disks_stuck(c)
    assert ok(c.client_results(leader, token)[0])
    assert not any(a.zxid == X for f in followers(c, leader) for a in sent(c, f, leader, m.Ack))


def test_skip_trunc_keeps_a_diverged_txn() -> None:
    safe = Cluster()
    old, new, lost, _ = _diverge(safe)
    safe.heal()
    safe.stable()
    assert safe.data(old, "/lost") is None

    c = Cluster(unsafe=_unsafe("skip_trunc"))
    old, new, lost, _ = _diverge(c)
    c.heal()
    c.stable()
    assert sent(c, new, old, m.Trunc)
    assert c.data(old, "/lost") == b"x"                 # a txn nobody committed, still there
    assert lost in [z for z, _ in c.logged(old)]


def test_forget_accepted_epoch_never_persists_it() -> None:
    c = Cluster(unsafe=_unsafe("forget_accepted_epoch"))
    c.stable()
    for sid in ALL:
        assert c.peer(sid).accepted_epoch == 1
        assert c.nodes[sid].backend.get_meta("acceptedEpoch") is None
        assert not [e for e in c.nodes[sid].effects
                    if isinstance(e, fx.SetMeta) and e.key == "acceptedEpoch"]
    c.restart(1)
    assert c.peer(1).accepted_epoch == 0


def test_unknown_switch_is_refused() -> None:
    with pytest.raises(ValueError):
        PeerConfig(sid=1, voters={1: 1}, unsafe=frozenset(("ack_early",)))
