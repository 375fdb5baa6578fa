"""Stat maintenance, cversion/pzxid, the sequential counter and zxid consumption (reference 2.1, 2.2).

Oracle: DataTree.createNode/deleteNode/setData/setACL, DataNode.copyStat and
PrepRequestProcessor.pRequest2TxnCreate of Apache ZooKeeper 3.8.0.
"""

from __future__ import annotations

import pytest

from zktwist.core.tree import DataTree
from zktwist.proto.consts import CreateMode, Err, OpCode

from tests.unit.test_core_support import (
    INT_MAX,
    INT_MIN,
    OPEN,
    READ_ONLY,
    T0,
    Harness,
    Stat,
    op_create,
    parse_create2,
    parse_get_data,
    parse_multi,
    parse_stat,
)


# -- system nodes ----------------------------------------------------------------------

def test_fresh_tree_system_node_stats():
    h = Harness()
    # DataNode.copyStat: cversion = 2*persisted - numChildren, so "/" (one child) shows -1.
    assert h.stat("/") == Stat(0, 0, 0, 0, 0, -1, 0, 0, 0, 1, 0)
    assert h.stat("/zookeeper") == Stat(0, 0, 0, 0, 0, -2, 0, 0, 0, 2, 0)
    assert h.stat("/zookeeper/quota") == Stat(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    # addConfigNode: setACL(config, READ_ACL_UNSAFE, -1) leaves aversion -1.
    assert h.stat("/zookeeper/config") == Stat(0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0)
    err, acl, _ = h.get_acl("/zookeeper/config")
    assert (err, acl) == (0, READ_ONLY)
    assert h.children("/") == (0, ["zookeeper"])
    assert h.children("/zookeeper") == (0, ["config", "quota"])


def test_node_count_and_all_children_number_of_fresh_tree():
    h = Harness()
    # the root is stored twice in Java ("" and "/"): 4 real nodes -> 5
    assert h.tree.node_count() == 5
    err, body = h.read(OpCode.getAllChildrenNumber, ("/",))
    assert (err, body) == (0, (3).to_bytes(4, "big"))
    h.mk("/a")
    h.mk("/a/b")
    h.mk("/a/b/c")
    h.mk("/ab")
    assert h.read(OpCode.getAllChildrenNumber, ("/a",)) == (0, (2).to_bytes(4, "big"))
    assert h.read(OpCode.getAllChildrenNumber, ("/",)) == (0, (7).to_bytes(4, "big"))
    assert h.tree.node_count() == 9


# -- create ----------------------------------------------------------------------------

def test_create_sets_every_stat_field():
    h = Harness()
    h.now = T0 + 1234
    err, body = h.create("/a", b"hello", op=OpCode.create2)
    assert err == 0
    z = h.last_txn.zxid
    path, stat = parse_create2(body)
    assert path == "/a"
    expected = Stat(czxid=z, mzxid=z, ctime=T0 + 1234, mtime=T0 + 1234, version=0, cversion=0,
                    aversion=0, ephemeralOwner=0, dataLength=5, numChildren=0, pzxid=z)
    assert stat == expected
    assert h.stat("/a") == expected
    err, data, stat2 = h.get_data("/a")
    assert (err, data, stat2) == (0, b"hello", expected)


def test_create_uses_txn_time_not_apply_time():
    h = Harness()
    h.now = T0 + 10
    txn = h.prep_only(OpCode.create, ("/a", b"", OPEN, 0, -1))
    h.now = T0 + 99999  # applied much later
    h.apply(txn)
    s = h.stat("/a")
    assert (s.ctime, s.mtime) == (T0 + 10, T0 + 10)


def test_ephemeral_owner_is_session_for_ephemerals_only():
    h = Harness(extended_types=True)
    h.mk("/e", flags=CreateMode.EPHEMERAL)
    h.mk("/es-", flags=CreateMode.EPHEMERAL_SEQUENTIAL)
    h.mk("/c", op=OpCode.createContainer, flags=CreateMode.CONTAINER)
    h.mk("/t", op=OpCode.createTTL, flags=CreateMode.PERSISTENT_WITH_TTL, ttl=5000)
    h.mk("/p")
    assert h.stat("/e").ephemeralOwner == h.sid
    assert h.stat("/es-0000000001").ephemeralOwner == h.sid
    # container and TTL markers are masked to 0 (DataNode.getClientEphemeralOwner)
    assert h.stat("/c").ephemeralOwner == 0
    assert h.stat("/t").ephemeralOwner == 0
    assert h.stat("/p").ephemeralOwner == 0


def test_create2_stat_of_container_and_ttl_replies():
    h = Harness(extended_types=True)
    err, body = h.create("/c", b"xy", op=OpCode.createContainer, flags=CreateMode.CONTAINER)
    assert err == 0
    path, stat = parse_create2(body)
    assert path == "/c" and stat == h.stat("/c") and stat.dataLength == 2
    err, body = h.create("/t", None, op=OpCode.createTTL, flags=CreateMode.PERSISTENT_WITH_TTL,
                         ttl=10)
    assert err == 0
    path, stat = parse_create2(body)
    assert path == "/t" and stat == h.stat("/t") and stat.dataLength == 0


# -- setData / setACL ------------------------------------------------------------------

def test_set_data_updates_mzxid_mtime_version_length_only():
    h = Harness()
    h.mk("/a", b"12345")
    before = h.stat("/a")
    h.now = T0 + 500
    err, body = h.set_data("/a", b"xyz")
    assert err == 0
    z = h.last_txn.zxid
    after = parse_stat(body)
    assert after == before._replace(mzxid=z, mtime=T0 + 500, version=1, dataLength=3)
    assert h.stat("/a") == after
    err, body = h.set_data("/a", b"", version=1)
    assert err == 0 and parse_stat(body).version == 2 and parse_stat(body).dataLength == 0


def test_set_acl_updates_aversion_only():
    h = Harness()
    h.mk("/a", b"d")
    before = h.stat("/a")
    h.now = T0 + 777
    err, body = h.set_acl("/a", READ_ONLY + [(16, "world", "anyone")])
    assert err == 0
    after = parse_stat(body)
    assert after == before._replace(aversion=1)
    assert h.stat("/a") == after
    err, body = h.set_acl("/a", OPEN, version=1)
    assert err == 0 and parse_stat(body).aversion == 2


# -- children: cversion and pzxid -----------------------------------------------------

def test_child_create_and_delete_update_parent_cversion_and_pzxid_only():
    h = Harness()
    h.mk("/p", b"data")
    p0 = h.stat("/p")
    h.mk("/p/a")
    za = h.last_txn.zxid
    p1 = h.stat("/p")
    assert p1 == p0._replace(cversion=1, numChildren=1, pzxid=za)
    assert h.persisted_cversion("/p") == 1
    h.mk("/p/b")
    zb = h.last_txn.zxid
    assert h.stat("/p") == p0._replace(cversion=2, numChildren=2, pzxid=zb)
    assert h.delete("/p/a") == 0
    zd = h.last_txn.zxid
    # persisted stays 2, visible = 2*2 - 1 = 3
    assert h.stat("/p") == p0._replace(cversion=3, numChildren=1, pzxid=zd)
    assert h.persisted_cversion("/p") == 2
    assert h.delete("/p/b") == 0
    assert h.stat("/p") == p0._replace(cversion=4, numChildren=0, pzxid=h.last_txn.zxid)
    # grandchildren do not touch the grandparent
    h.mk("/p/c")
    before = h.stat("/p")
    h.mk("/p/c/d")
    assert h.stat("/p") == before


def test_sequential_suffix_uses_persisted_cversion_reference_trap():
    """Reference 2.2: a, delete a, s- -> s-0000000001; x; failed x; s- -> s-0000000003; cversion 5."""
    h = Harness()
    h.mk("/p")
    h.mk("/p/a")
    assert h.delete("/p/a") == 0
    assert h.mk("/p/s-", flags=CreateMode.PERSISTENT_SEQUENTIAL) == "/p/s-0000000001"
    h.mk("/p/x")
    err, _ = h.create("/p/x")
    assert err == Err.NODEEXISTS
    assert h.mk("/p/s-", flags=CreateMode.PERSISTENT_SEQUENTIAL) == "/p/s-0000000003"
    s = h.stat("/p")
    assert (s.cversion, s.numChildren) == (5, 3)
    assert h.persisted_cversion("/p") == 4


def test_sequential_counter_is_shared_by_prefixes_and_ephemerals():
    h = Harness()
    h.mk("/q")
    assert h.mk("/q/a-", flags=CreateMode.PERSISTENT_SEQUENTIAL) == "/q/a-0000000000"
    assert h.mk("/q/b-", flags=CreateMode.EPHEMERAL_SEQUENTIAL) == "/q/b-0000000001"
    h.mk("/q/plain")
    assert h.mk("/q/a-", flags=CreateMode.PERSISTENT_SEQUENTIAL) == "/q/a-0000000003"
    # an empty prefix: the path may end in "/" for a sequential create
    assert h.mk("/q/", flags=CreateMode.PERSISTENT_SEQUENTIAL) == "/q/0000000004"
    # directly under the root, whose persisted cversion is 0 in a fresh tree
    assert h.mk("/r-", flags=CreateMode.PERSISTENT_SEQUENTIAL) == "/r-0000000001"


def test_sequential_name_collision_with_existing_node():
    h = Harness()
    h.mk("/p")
    h.mk("/p/n0000000001")  # cversion 0 -> 1
    err, _ = h.create("/p/n", flags=CreateMode.PERSISTENT_SEQUENTIAL)
    assert err == Err.NODEEXISTS
    # the failed create did not advance the counter
    assert h.persisted_cversion("/p") == 1


def test_sequential_counters_within_a_multi_see_each_other():
    h = Harness()
    h.mk("/m")
    err, body = h.multi([
        op_create("/m/x-", flags=CreateMode.PERSISTENT_SEQUENTIAL),
        op_create("/m/y-", flags=CreateMode.EPHEMERAL_SEQUENTIAL),
        op_create("/m/x-", flags=CreateMode.PERSISTENT_SEQUENTIAL),
    ])
    assert err == 0
    paths = [r.value for r in parse_multi(body)]
    assert paths == ["/m/x-0000000000", "/m/y-0000000001", "/m/x-0000000002"]
    # all sub-ops share one zxid: pzxid = czxid of each child
    z = h.last_txn.zxid
    assert {h.stat(p).czxid for p in paths} == {z}
    assert h.stat("/m").pzxid == z
    assert h.stat("/m").cversion == 3


def test_failed_multi_rolls_back_the_sequential_counter():
    h = Harness()
    h.mk("/m")
    h.mk("/m/a-", flags=CreateMode.PERSISTENT_SEQUENTIAL)
    err, body = h.multi([
        op_create("/m/f-", flags=CreateMode.PERSISTENT_SEQUENTIAL),
        op_create("/m/f-", flags=CreateMode.PERSISTENT_SEQUENTIAL),
        (OpCode.check, ("/m", 99)),
    ])
    assert err == 0
    assert [r.err for r in parse_multi(body)] == [0, 0, Err.BADVERSION]
    assert h.persisted_cversion("/m") == 1
    assert h.mk("/m/g-", flags=CreateMode.PERSISTENT_SEQUENTIAL) == "/m/g-0000000001"


def test_sequential_suffix_is_a_signed_ten_digit_int():
    h = Harness()
    h.mk("/p")
    h.tree.nodes["/p"].cversion = 41
    h.tree.nodes["/p"]._stat = None
    assert h.mk("/p/s", flags=CreateMode.PERSISTENT_SEQUENTIAL) == "/p/s0000000041"


def test_sequential_create_at_int_max_cversion_wraps_like_java():
    """PrepRequestProcessor: ``int newCversion = parentRecord.stat.getCversion() + 1`` overflows.

    The suffix is the old value, the txn's parentCVersion is Integer.MIN_VALUE, and
    DataTree.createNode then leaves the parent's cversion (and pzxid) alone because
    MIN_VALUE is not greater than MAX_VALUE.
    """
    h = Harness()
    h.mk("/p")
    node = h.tree.nodes["/p"]
    node.cversion = INT_MAX
    node._stat = None
    pzxid_before = node.pzxid
    txn = h.prep_only(OpCode.create, ("/p/s", b"", OPEN, CreateMode.PERSISTENT_SEQUENTIAL, -1))
    assert txn.type == OpCode.create
    assert txn.body[0] == "/p/s2147483647"
    assert txn.body[4] == INT_MIN
    h.apply(txn)
    assert h.tree.nodes["/p"].cversion == INT_MAX
    assert h.tree.nodes["/p"].pzxid == pzxid_before


def test_visible_cversion_uses_java_int_arithmetic():
    """DataNode.copyStat: ``stat.getCversion() * 2 - numChildren`` is int arithmetic and wraps."""
    h = Harness()
    h.mk("/p")
    for c in ("a", "b", "c"):
        h.mk("/p/" + c)
    node = h.tree.nodes["/p"]
    node.cversion = (1 << 30) + 5
    node._stat = None
    assert h.stat("/p").cversion == -2147483641  # value printed by a JVM for ((1<<30)+5)*2-3


# -- data: null vs empty -----------------------------------------------------------------

def test_null_and_empty_data_are_distinct_on_the_wire():
    h = Harness()
    h.mk("/null", None)
    h.mk("/empty", b"")
    err, body = h.read(OpCode.getData, ("/null", False))
    assert err == 0 and body[:4] == b"\xff\xff\xff\xff"
    assert parse_get_data(body)[0] is None
    assert parse_get_data(body)[1].dataLength == 0
    err, body = h.read(OpCode.getData, ("/empty", False))
    assert err == 0 and body[:4] == b"\x00\x00\x00\x00"
    assert parse_get_data(body)[0] == b""
    # setData to null and back
    assert h.set_data("/empty", None)[0] == 0
    assert h.get_data("/empty")[1] is None
    assert h.set_data("/null", b"x")[0] == 0
    assert h.get_data("/null")[1] == b"x"


# -- zxids ------------------------------------------------------------------------------

def test_failed_writes_consume_a_zxid_and_are_applied_as_error_txns():
    h = Harness()
    start = h.core.last_zxid
    assert h.create("/missing/child")[0] == Err.NONODE
    assert h.last_txn.zxid == start + 1
    assert h.last_txn.type == OpCode.error and h.last_txn.body == (Err.NONODE,)
    assert h.core.last_zxid == start + 1
    assert h.delete("/nope") == Err.NONODE
    assert h.set_data("/nope", b"")[0] == Err.NONODE
    assert h.set_acl("/nope", OPEN)[0] == Err.NONODE
    assert h.create("bad")[0] == Err.BADARGUMENTS
    h.mk("/ok")
    assert h.last_txn.zxid == start + 6
    assert h.stat("/ok").czxid == start + 6


def test_empty_multi_consumes_a_zxid():
    h = Harness()
    start = h.core.last_zxid
    err, body = h.multi([])
    assert h.last_txn.type == OpCode.multi and h.last_txn.zxid == start + 1
    assert err == 0 and parse_multi(body) == []
    assert h.core.last_zxid == start + 1


def test_session_create_consumes_a_zxid():
    h = Harness()
    start = h.core.last_zxid
    h.new_session()
    assert h.core.last_zxid == start + 1


def test_marshalling_error_consumes_a_zxid():
    h = Harness()
    start = h.core.last_zxid
    err, body = h.write(OpCode.create, ValueError("undecodable"))
    assert (err, body) == (Err.MARSHALLINGERROR, None)
    assert h.last_txn.zxid == start + 1 and h.last_txn.type == OpCode.error


# -- pzxid only increases on delete --------------------------------------------------------

def test_delete_sets_parent_pzxid_to_delete_zxid():
    h = Harness()
    h.mk("/p")
    h.mk("/p/a")
    h.set_data("/p", b"x")
    assert h.delete("/p/a") == 0
    assert h.stat("/p").pzxid == h.last_txn.zxid


def test_delete_never_lowers_pzxid_datatree_level():
    t = DataTree()
    t.create_node("/p", b"", tuple(OPEN), 0, -1, 5, 0)
    t.create_node("/p/a", b"", tuple(OPEN), 0, -1, 6, 0)
    t.create_node("/p/b", b"", tuple(OPEN), 0, -1, 10, 0)
    assert t.nodes["/p"].pzxid == 10
    t.delete_node("/p/a", 8)  # replaying an older delete (fuzzy snapshot)
    assert t.nodes["/p"].pzxid == 10
    t.delete_node("/p/b", 12)
    assert t.nodes["/p"].pzxid == 12


def test_create_with_stale_parent_cversion_leaves_parent_alone():
    t = DataTree()
    t.create_node("/p", b"", tuple(OPEN), 0, -1, 5, 0)
    t.create_node("/p/a", b"", tuple(OPEN), 0, 3, 6, 0)
    assert (t.nodes["/p"].cversion, t.nodes["/p"].pzxid) == (3, 6)
    t.create_node("/p/b", b"", tuple(OPEN), 0, 2, 7, 0)  # 2 is not > 3
    assert (t.nodes["/p"].cversion, t.nodes["/p"].pzxid) == (3, 6)
    assert "b" in t.nodes["/p"].children
    t.create_node("/p/c", b"", tuple(OPEN), 0, -1, 8, 0)  # -1 means current + 1
    assert (t.nodes["/p"].cversion, t.nodes["/p"].pzxid) == (4, 8)


def test_replayed_create_of_existing_node_still_bumps_parent_cversion():
    """DataTree.processTxn: a create txn failing with NODEEXISTS calls setCversionPzxid on the parent."""
    h = Harness()
    h.mk("/p")
    h.mk("/p/a")
    assert h.persisted_cversion("/p") == 1
    from zktwist.core.txn import Txn
    z = h.core.last_zxid + 1
    h.core.replay(Txn(h.sid, 1, z, T0, OpCode.create, ("/p/a", b"", tuple(OPEN), False, 7)), T0)
    assert h.persisted_cversion("/p") == 7
    assert h.tree.nodes["/p"].pzxid == z


# -- versions --------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["setData", "delete"])
def test_version_minus_one_matches_anything(op):
    h = Harness()
    h.mk("/a")
    for _ in range(3):
        assert h.set_data("/a", b"x")[0] == 0
    if op == "setData":
        err, body = h.set_data("/a", b"y", version=-1)
        assert err == 0 and parse_stat(body).version == 4
    else:
        assert h.delete("/a", -1) == 0


def test_data_version_wraps_at_int_max():
    h = Harness()
    h.mk("/a")
    node = h.tree.nodes["/a"]
    node.version = INT_MAX
    node._stat = None
    err, body = h.set_data("/a", b"x", version=INT_MAX)
    assert err == 0 and parse_stat(body).version == INT_MIN
    err, body = h.set_data("/a", b"x", version=INT_MIN)
    assert err == 0 and parse_stat(body).version == INT_MIN + 1


def test_acl_version_wraps_at_int_max():
    h = Harness()
    h.mk("/a")
    node = h.tree.nodes["/a"]
    node.aversion = INT_MAX
    node._stat = None
    err, body = h.set_acl("/a", OPEN, version=INT_MAX)
    assert err == 0 and parse_stat(body).aversion == INT_MIN
