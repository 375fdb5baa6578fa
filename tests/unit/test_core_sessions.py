"""Sessions: ids, Java-compatible passwords, tick-bucket expiry, touch, closeSession (reference 1.13).

Oracle: SessionTrackerImpl, ExpiryQueue, ZooKeeperServer.generatePasswd
(``new Random(id ^ 0xB3415C00L).nextBytes(new byte[16])``) and
DataTree.killSession of Apache ZooKeeper 3.8.0.  The expected passwords below
were printed by a JVM (OpenJDK, java.util.Random) and are cross-checked by an
LCG written here from the java.util.Random specification.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from zktwist.core.sessions import SessionTracker, session_password
from zktwist.core.txn import Txn
from zktwist.proto.consts import CreateMode, Err, EventType, OpCode

from tests.unit.test_core_support import Harness, Recorder, create_req

# Printed by ``new java.util.Random(id ^ 0xB3415C00L).nextBytes(p)`` on a JDK.
JVM_PASSWORDS = {
    0x0100000000000000: "f22acd4a97e69d6d20a49bb638eadb38",
    0x0107A1B2C3D40000: "ce09faed4372c2725ca437a7c4ebcd12",
    0x01FFFFFFFFFFFFFF: "20f62cb5648dc2d771471c8a2486a9ee",
    0x0000000000000001: "054cc74a37327db215e702e20c73f005",
    -1: "20f62cb5648dc2d771471c8a2486a9ee",
    -(1 << 63) + 1: "054cc74a37327db215e702e20c73f005",
    0x00000000B3415C00: "60b420bb3851d9d47acb933dbe70399b",
    0x0172F3C9AA5E0003: "ad5d571ead5d4901a9cc00bd0b5a8ca4",
}


def _to_int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class JavaRandom:
    """java.util.Random as its Javadoc specifies it."""

    MULT = 0x5DEECE66D
    ADD = 0xB
    MASK = (1 << 48) - 1

    def __init__(self, seed: int) -> None:
        self.seed = (seed ^ self.MULT) & self.MASK

    def next(self, bits: int) -> int:
        self.seed = (self.seed * self.MULT + self.ADD) & self.MASK
        return _to_int32(self.seed >> (48 - bits))

    def next_int(self) -> int:
        return self.next(32)

    def next_bytes(self, n: int) -> bytes:
        out = bytearray(n)
        i = 0
        while i < n:
            rnd = self.next_int()
            for _ in range(min(n - i, 4)):
                out[i] = rnd & 0xFF  # (byte) rnd
                i += 1
                rnd >>= 8  # arithmetic shift of a signed int
        return bytes(out)


def java_password(session_id: int) -> bytes:
    seed = session_id ^ 0xB3415C00  # long XOR; a negative id keeps its sign bits
    return JavaRandom(seed).next_bytes(16)


def test_java_random_model_matches_the_jvm():
    for sid, hexpw in JVM_PASSWORDS.items():
        assert java_password(sid).hex() == hexpw


def test_session_password_matches_the_jvm():
    for sid, hexpw in JVM_PASSWORDS.items():
        assert session_password(sid).hex() == hexpw, hex(sid)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_session_password_matches_java_random(sid):
    assert session_password(sid) == java_password(sid)


def test_check_password():
    h = Harness()
    assert h.core.check_password(h.sid, java_password(h.sid))
    assert not h.core.check_password(h.sid, java_password(h.sid + 1))
    assert not h.core.check_password(h.sid, None)
    assert not h.core.check_password(h.sid, b"")
    assert not h.core.check_password(0, session_password(0))


# -- ids -----------------------------------------------------------------------------------

def test_initial_session_id_layout():
    # SessionTrackerImpl.initializeNextSessionId: ((now << 24) >>> 8) | (serverId << 56)
    assert SessionTracker(1, 2000, 0x0123456789).next_id == 0x0101234567890000
    assert SessionTracker(1, 2000, 0xFFFFFFFFFFF).next_id == 0x01FFFFFFFFFF0000
    assert SessionTracker(3, 2000, 0x1_0000_0000_00).next_id == 0x0300000000000000 | (
        ((0x1_0000_0000_00 << 24) & ((1 << 64) - 1)) >> 8)
    # server id 254 (the largest allowed with TTL nodes): a negative long
    sid = SessionTracker(254, 2000, 5).next_id
    assert sid == (0xFE << 56 | (5 << 16)) - (1 << 64)


def test_initial_session_id_skips_the_container_marker():
    assert SessionTracker(0x80, 2000, 0).next_id == -(1 << 63) + 1


def test_session_ids_increment():
    t = SessionTracker(1, 2000, 1000)
    first = t.new_session_id()
    assert t.new_session_id() == first + 1
    assert t.new_session_id() == first + 2


# -- expiry ----------------------------------------------------------------------------------

def test_expiry_is_rounded_up_to_the_next_tick():
    t = SessionTracker(1, 2000, 0)
    t.add(1, 5000, 1000)   # 6000 -> bucket 8000
    t.add(2, 5000, 1999)   # 6999 -> bucket 8000
    t.add(3, 5000, 1)      # 5001 -> bucket 6000
    t.add(4, 4000, 2000)   # exactly 6000 -> the *next* bucket, 8000
    t.add(5, 5000, 3000)   # 8000 -> 10000
    assert t.expired(5999) == []
    assert t.expired(6000) == [3]
    assert t.expired(7999) == []
    assert sorted(t.expired(8000)) == [1, 2, 4]
    assert t.expired(9999) == []
    assert t.expired(10000) == [5]


def test_expired_buckets_are_collected_once_and_late_polls_catch_up():
    t = SessionTracker(1, 1000, 0)
    t.add(1, 2000, 0)   # 3000
    t.add(2, 4000, 0)   # 5000
    assert sorted(t.expired(60000)) == [1, 2]
    assert t.expired(60000) == []


def test_expired_sessions_are_marked_closing():
    t = SessionTracker(1, 2000, 0)
    t.add(7, 4000, 0)
    assert t.is_live(7)
    assert t.expired(6000) == [7]
    assert t.sessions[7].closing and not t.is_live(7)
    assert not t.touch(7, 6000)  # a closing session cannot be revived


def test_touch_extends():
    t = SessionTracker(1, 2000, 0)
    t.add(1, 5000, 1000)         # 8000
    assert t.touch(1, 3000)      # 8000 -> 10000
    assert t.expired(8000) == []
    assert t.expired(9999) == []
    assert t.expired(10000) == [1]


def test_touch_within_the_same_bucket_changes_nothing():
    t = SessionTracker(1, 2000, 0)
    t.add(1, 5000, 1000)
    assert t.touch(1, 1500)  # still 8000
    assert t.sessions[1].expire_at == 8000
    assert t.expired(8000) == [1]


def test_touch_with_explicit_timeout_and_unknown_session():
    t = SessionTracker(1, 2000, 0)
    t.add(1, 5000, 0)
    assert t.touch(1, 0, 20000)  # 20000 -> 22000
    assert t.expired(21999) == []
    assert t.expired(22000) == [1]
    assert not t.touch(99, 0)


def test_removed_sessions_never_expire():
    t = SessionTracker(1, 2000, 0)
    t.add(1, 4000, 0)
    t.remove(1)
    assert t.expired(100000) == []
    assert len(t) == 0


def test_core_expired_sessions_then_writes_and_reads_are_session_expired():
    h = Harness(tick_time=2000, timeout=4000)
    sid = h.sid
    assert h.core.expired_sessions(h.now + 3000) == []
    expired = h.core.expired_sessions(h.now + 10000)
    assert expired == [sid]
    assert h.create("/x")[0] == Err.SESSIONEXPIRED
    assert h.read(OpCode.getData, ("/", False)) == (Err.SESSIONEXPIRED, None)
    assert h.read(OpCode.exists, ("/nope", True), Recorder()) == (Err.SESSIONEXPIRED, None)


def test_unknown_session_reads_and_writes():
    h = Harness()
    assert h.read(OpCode.getData, ("/", False), sid=12345) == (Err.UNKNOWNSESSION, None)
    assert h.create("/x", sid=12345)[0] == Err.UNKNOWNSESSION


def test_create_session_txn_registers_the_session_with_its_timeout():
    h = Harness()
    sid = 0x0100000000000ABC
    start = h.core.last_zxid
    t = h.prep.prep_create_session(sid, 12000, h.now)
    assert (t.type, t.body, t.zxid, t.session_id) == (OpCode.createSession, (12000,), start + 1, sid)
    h.apply(t)
    s = h.core.sessions.sessions[sid]
    assert s.timeout == 12000
    assert s.expire_at == ((h.now + 12000) // 2000 + 1) * 2000


# -- closeSession ---------------------------------------------------------------------------------

def test_close_session_deletes_ephemerals_and_notifies_others():
    h = Harness()
    other = h.new_session()
    h.mk("/p")
    h.mk("/p/e1", flags=CreateMode.EPHEMERAL, sid=other)
    h.mk("/e2", flags=CreateMode.EPHEMERAL, sid=other)
    h.mk("/mine", flags=CreateMode.EPHEMERAL)
    closed = []
    h.core.on_session_closed = closed.append
    w = Recorder()
    h.get_data("/p/e1", w)
    h.children("/p", w)
    h.exists("/e2", w)
    start = h.core.last_zxid
    t = h.prep.prep_close_session(other, 42, h.now)
    assert (t.type, t.cxid, t.zxid) == (OpCode.closeSession, 42, start + 1)
    assert sorted(t.body[0]) == ["/e2", "/p/e1"]
    result = h.apply(t)
    assert h.core.write_reply(OpCode.closeSession, result) == (0, None)
    assert "/p/e1" not in h.tree.nodes and "/e2" not in h.tree.nodes
    assert sorted(w.take()) == sorted([(EventType.NodeDeleted, "/p/e1"),
                                       (EventType.NodeChildrenChanged, "/p"),
                                       (EventType.NodeDeleted, "/e2")])
    assert other not in h.core.sessions.sessions
    assert other not in h.tree.ephemerals
    assert closed == [other]
    assert h.tree.nodes["/mine"].owner == h.sid
    assert h.stat("/p").pzxid == start + 1
    assert h.core.last_zxid == start + 1


def test_close_session_without_ephemerals():
    h = Harness()
    other = h.new_session()
    t = h.prep.prep_close_session(other, 0, h.now)
    assert t.body == ((),)
    h.apply(t)
    assert other not in h.core.sessions.sessions


def test_close_session_deletes_local_ephemerals_missing_from_the_txn():
    """DataTree.killSession: paths in the CloseSessionTxn first, then the session's remaining
    ephemerals from the tree (logged as unexpected, but deleted)."""
    h = Harness()
    other = h.new_session()
    h.mk("/e1", flags=CreateMode.EPHEMERAL, sid=other)
    h.mk("/e2", flags=CreateMode.EPHEMERAL, sid=other)
    z = h.core.last_zxid + 1
    h.core.replay(Txn(other, 0, z, h.now, OpCode.closeSession, (("/e1",),)), h.now)
    assert "/e1" not in h.tree.nodes
    assert "/e2" not in h.tree.nodes
    assert other not in h.tree.ephemerals


def test_close_session_txn_without_paths_deletes_all_ephemerals():
    h = Harness()
    other = h.new_session()
    h.mk("/e1", flags=CreateMode.EPHEMERAL, sid=other)
    h.mk("/e2", flags=CreateMode.EPHEMERAL, sid=other)
    z = h.core.last_zxid + 1
    h.core.replay(Txn(other, 0, z, h.now, OpCode.closeSession, (None,)), h.now)
    assert "/e1" not in h.tree.nodes and "/e2" not in h.tree.nodes


def test_close_session_txn_listing_a_vanished_path_is_ignored():
    h = Harness()
    other = h.new_session()
    h.mk("/e1", flags=CreateMode.EPHEMERAL, sid=other)
    z = h.core.last_zxid + 1
    h.core.replay(Txn(other, 0, z, h.now, OpCode.closeSession, (("/gone", "/e1"),)), h.now)
    assert "/e1" not in h.tree.nodes


def test_ephemeral_bookkeeping_follows_create_and_delete():
    h = Harness()
    h.mk("/e1", flags=CreateMode.EPHEMERAL)
    h.mk("/e2-", flags=CreateMode.EPHEMERAL_SEQUENTIAL)
    assert h.tree.ephemerals[h.sid] == {"/e1", "/e2-0000000001"}
    assert h.tree.ephemeral_count() == 2
    assert h.delete("/e1") == 0
    assert h.tree.ephemerals[h.sid] == {"/e2-0000000001"}
    assert h.delete("/e2-0000000001") == 0
    assert h.sid not in h.tree.ephemerals or h.tree.ephemerals[h.sid] == set()


def test_get_ephemerals_lists_own_session_only():
    h = Harness()
    other = h.new_session()
    h.mk("/a")
    h.mk("/a/e", flags=CreateMode.EPHEMERAL)
    h.mk("/ab", flags=CreateMode.EPHEMERAL)
    h.mk("/x", flags=CreateMode.EPHEMERAL, sid=other)

    def eph(prefix, sid=None):
        from tests.unit.test_core_support import parse_children
        err, body = h.read(OpCode.getEphemerals, (prefix,), sid=sid)
        assert err == 0
        return sorted(parse_children(body))

    assert eph(None) == ["/a/e", "/ab"]
    assert eph("") == ["/a/e", "/ab"]
    assert eph("/") == ["/a/e", "/ab"]
    assert eph("  /  ") == ["/a/e", "/ab"]
    assert eph("/a") == ["/a/e", "/ab"]  # plain startsWith
    assert eph("/a/") == ["/a/e"]
    assert eph("/zzz") == []
    assert eph("/", sid=other) == ["/x"]


def test_get_ephemerals_trims_like_java_string_trim():
    """String.trim() strips every char <= U+0020 and nothing else."""
    h = Harness()
    h.mk("/e", flags=CreateMode.EPHEMERAL)
    from tests.unit.test_core_support import parse_children
    err, body = h.read(OpCode.getEphemerals, ("\x01/\x1f",))
    assert (err, parse_children(body)) == (0, ["/e"])
    err, body = h.read(OpCode.getEphemerals, ("\u2003",))  # not trimmed by Java
    assert (err, parse_children(body)) == (0, [])


def test_closing_session_prep_rejects_ephemeral_create():
    h = Harness()
    h.prep.prep_close_session(h.sid, 0, h.now)
    t = h.prep_only(OpCode.create, create_req("/e", flags=CreateMode.EPHEMERAL))
    assert t.body == (Err.SESSIONEXPIRED,)
    assert not h.core.sessions.touch(h.sid, h.now)
