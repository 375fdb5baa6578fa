"""Txn encode/decode: ZooKeeper's log format (TxnHeader + the txn record of zookeeper.jute).

Round trips for every txn type, and byte-exact expectations built here with
``struct`` from the jute definitions (TxnHeader, CreateTxn, CreateContainerTxn,
CreateTTLTxn, DeleteTxn, SetDataTxn, SetACLTxn, CheckVersionTxn,
CreateSessionTxn, CloseSessionTxn, ErrorTxn, MultiTxn/Txn).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zktwist.core.txn import Txn, decode, encode
from zktwist.proto.consts import CreateMode, Err, OpCode

from tests.unit.test_core_support import OPEN, Harness, op_check, op_create, op_delete, op_set_data

ACL2 = ((31, "world", "anyone"), (1, "digest", "bob:fyVmFCwVbTJYrznoSu1koqYEYF0="))


def j_int(v: int) -> bytes:
    return struct.pack(">i", v)


def j_long(v: int) -> bytes:
    return struct.pack(">q", v)


def j_buf(b) -> bytes:
    return j_int(-1) if b is None else j_int(len(b)) + b


def j_str(s) -> bytes:
    return j_buf(None if s is None else s.encode("utf-8"))


def j_acls(acls) -> bytes:
    return j_int(len(acls)) + b"".join(j_int(p) + j_str(s) + j_str(i) for p, s, i in acls)


def header(sid, cxid, zxid, time, type_) -> bytes:
    return j_long(sid) + j_int(cxid) + j_long(zxid) + j_long(time) + j_int(type_)


SID = 0x0100ABCDEF000001
NEG_SID = -0x0100ABCDEF000001

BODIES = {
    "create": (OpCode.create, ("/a/b", b"data", ACL2, False, 3),
               j_str("/a/b") + j_buf(b"data") + j_acls(ACL2) + b"\x00" + j_int(3)),
    "create-ephemeral-null-data": (OpCode.create, ("/e", None, OPEN_T := ((31, "world", "anyone"),),
                                                   True, -2147483648),
                                   j_str("/e") + j_buf(None) + j_acls(OPEN_T) + b"\x01"
                                   + j_int(-2147483648)),
    "create2": (OpCode.create2, ("/x", b"", ACL2, True, 1),
                j_str("/x") + j_buf(b"") + j_acls(ACL2) + b"\x01" + j_int(1)),
    "createContainer": (OpCode.createContainer, ("/c", b"z", ACL2, 7),
                        j_str("/c") + j_buf(b"z") + j_acls(ACL2) + j_int(7)),
    "createTTL": (OpCode.createTTL, ("/t", None, ACL2, 2, 0xFFFFFFFFFF),
                  j_str("/t") + j_buf(None) + j_acls(ACL2) + j_int(2) + j_long(0xFFFFFFFFFF)),
    "delete": (OpCode.delete, ("/a",), j_str("/a")),
    "deleteContainer": (OpCode.deleteContainer, ("/c",), j_str("/c")),
    "setData": (OpCode.setData, ("/a", b"\x00\xff", 5), j_str("/a") + j_buf(b"\x00\xff") + j_int(5)),
    "setData-null": (OpCode.setData, ("/a", None, -2147483648),
                     j_str("/a") + j_buf(None) + j_int(-2147483648)),
    "setACL": (OpCode.setACL, ("/a", ACL2, 2), j_str("/a") + j_acls(ACL2) + j_int(2)),
    "check": (OpCode.check, ("/a", 9), j_str("/a") + j_int(9)),
    "createSession": (OpCode.createSession, (30000,), j_int(30000)),
    "closeSession": (OpCode.closeSession, (("/e1", "/p/\u00e9"),),
                     j_int(2) + j_str("/e1") + j_str("/p/\u00e9")),
    "closeSession-empty": (OpCode.closeSession, ((),), j_int(0)),
    "error": (OpCode.error, (Err.NODEEXISTS,), j_int(Err.NODEEXISTS)),
    "multi-empty": (OpCode.multi, ((),), j_int(0)),
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_encoding_is_byte_exact_and_round_trips(name):
    type_, body, raw_body = BODIES[name]
    for sid in (SID, NEG_SID, 0):
        txn = Txn(sid, 17, 0x500000003, 1_700_000_000_123, type_, body)
        raw = encode(txn)
        assert raw == header(sid, 17, 0x500000003, 1_700_000_000_123, type_) + raw_body
        back = decode(raw)
        assert (back.session_id, back.cxid, back.zxid, back.time, back.type) == \
            (sid, 17, 0x500000003, 1_700_000_000_123, type_)
        assert back.body == body


def test_non_bmp_text_is_written_as_java_jute_writes_it():
    """BinaryOutputArchive.writeString encodes each UTF-16 char on its own: a surrogate pair
    becomes two 3-byte sequences (bytes checked against zookeeper-jute-3.8.0.jar)."""
    txn = Txn(1, 2, 3, 4, OpCode.delete, ("/\U00010000x",))
    assert encode(txn)[-12:] == bytes.fromhex("000000082feda080edb08078")


def test_non_bmp_text_decodes_as_java_jute_does():
    """BinaryInputArchive.readString is ``new String(bytes, UTF_8)``: each 3-byte surrogate
    sequence is one malformed input and becomes one U+FFFD (zookeeper-jute-3.8.0.jar
    reads the bytes above back as "/\ufffd\ufffdx")."""
    txn = Txn(1, 2, 3, 4, OpCode.delete, ("/\U00010000x",))
    assert decode(encode(txn)).body == ("/\ufffd\ufffdx",)


def test_close_session_without_paths_round_trips():
    txn = Txn(SID, 0, 9, 1, OpCode.closeSession, (None,))
    raw = encode(txn)
    assert raw == header(SID, 0, 9, 1, OpCode.closeSession)
    assert decode(raw).body == (None,)


def test_multi_encoding_nests_each_sub_txn_in_a_buffer():
    subs = (
        (OpCode.create, ("/m/a", b"A", ACL2, False, 1)),
        (OpCode.createContainer, ("/m/c", b"", ACL2, 2)),
        (OpCode.createTTL, ("/m/t", b"", ACL2, 3, 100)),
        (OpCode.delete, ("/m/x",)),
        (OpCode.setData, ("/m/a", b"B", 1)),
        (OpCode.check, ("/m/a", 1)),
        (OpCode.error, (Err.RUNTIMEINCONSISTENCY,)),
    )
    txn = Txn(SID, 3, 77, 5, OpCode.multi, (subs,))
    expected = header(SID, 3, 77, 5, OpCode.multi) + j_int(len(subs))
    for t, _ in subs:
        inner = BODIES_BY_TYPE_FOR_MULTI[t]
        expected += j_int(t) + j_buf(inner)
    assert encode(txn) == expected
    assert decode(encode(txn)).body == (subs,)


BODIES_BY_TYPE_FOR_MULTI = {
    OpCode.create: j_str("/m/a") + j_buf(b"A") + j_acls(ACL2) + b"\x00" + j_int(1),
    OpCode.createContainer: j_str("/m/c") + j_buf(b"") + j_acls(ACL2) + j_int(2),
    OpCode.createTTL: j_str("/m/t") + j_buf(b"") + j_acls(ACL2) + j_int(3) + j_long(100),
    OpCode.delete: j_str("/m/x"),
    OpCode.setData: j_str("/m/a") + j_buf(b"B") + j_int(1),
    OpCode.check: j_str("/m/a") + j_int(1),
    OpCode.error: j_int(Err.RUNTIMEINCONSISTENCY),
}


def test_txns_made_by_prep_round_trip_and_replay_to_the_same_tree():
    h = Harness(extended_types=True)
    log = []

    def w(op, req):
        t = h.prep_only(op, req)
        log.append(t)
        h.apply(t)

    from tests.unit.test_core_support import create_req
    w(OpCode.create, create_req("/a", b"1", ACL2))
    w(OpCode.create2, create_req("/a/s-", None, flags=CreateMode.PERSISTENT_SEQUENTIAL))
    w(OpCode.createContainer, create_req("/c", flags=CreateMode.CONTAINER))
    w(OpCode.createTTL, create_req("/t", flags=CreateMode.PERSISTENT_WITH_TTL, ttl=5000))
    w(OpCode.create, create_req("/e", flags=CreateMode.EPHEMERAL))
    w(OpCode.setData, ("/a", b"2", 0))
    w(OpCode.setACL, ("/a", list(OPEN), 0))
    w(OpCode.multi, (op_create("/c/k"), op_set_data("/a", None), op_check("/a", 2),
                     op_delete("/c/k")))
    w(OpCode.multi, (op_create("/fail"), op_delete("/nope")))
    w(OpCode.delete, ("/nope", -1))
    w(OpCode.multi, ())
    t = h.prep.prep_delete_container("/c", h.now)
    log.append(t)
    h.apply(t)
    t = h.prep.prep_close_session(h.sid, 99, h.now)
    log.append(t)
    h.apply(t)

    # a second core replays the same history from zxid 1
    from zktwist.core.database import CoreConfig, ZooKeeperCore
    fresh = ZooKeeperCore(CoreConfig(extended_types=True), h.now)
    first = Txn(h.sid, 0, 1, h.now, OpCode.createSession, (30000,))
    fresh.replay(decode(encode(first)), h.now)
    for txn in log:
        raw = encode(txn)
        back = decode(raw)
        assert (back.session_id, back.cxid, back.zxid, back.time, back.type, back.body) == \
            (txn.session_id, txn.cxid, txn.zxid, txn.time, txn.type, txn.body)
        assert encode(back) == raw
        fresh.replay(back, h.now)
    assert set(fresh.tree.nodes) == set(h.tree.nodes)
    for path, node in h.tree.nodes.items():
        other_node = fresh.tree.nodes[path]
        assert other_node.stat() == node.stat(), path
        assert other_node.data == node.data and tuple(other_node.acl) == tuple(node.acl)
    assert fresh.last_zxid == h.core.last_zxid
    assert fresh.prep.last_zxid == h.core.last_zxid


# BMP only: jute writes each UTF-16 unit separately, so non-BMP text does not survive a
# Java round trip either (see test_non_bmp_text_decodes_as_java_jute_does).
_text = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0xFFFF,
                                       blacklist_categories=("Cs",)), max_size=20)
_acl = st.tuples(st.integers(0, 31), _text, _text)
_data = st.one_of(st.none(), st.binary(max_size=40))
_i32 = st.integers(-(1 << 31), (1 << 31) - 1)
_i64 = st.integers(-(1 << 63), (1 << 63) - 1)


@settings(max_examples=150, deadline=None)
@given(_i64, _i32, _i64, _i64, _text, _data, st.lists(_acl, max_size=3).map(tuple),
       st.booleans(), _i32)
def test_create_txn_round_trip_property(sid, cxid, zxid, time, path, data, acl, eph, pcv):
    txn = Txn(sid, cxid, zxid, time, OpCode.create, (path, data, acl, eph, pcv))
    back = decode(encode(txn))
    assert (back.session_id, back.cxid, back.zxid, back.time, back.type) == \
        (sid, cxid, zxid, time, OpCode.create)
    assert back.body == (path, data, acl, eph, pcv)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just(OpCode.delete), st.tuples(_text)),
    st.tuples(st.just(OpCode.setData), st.tuples(_text, _data, _i32)),
    st.tuples(st.just(OpCode.check), st.tuples(_text, _i32)),
    st.tuples(st.just(OpCode.error), st.tuples(_i32)),
    st.tuples(st.just(OpCode.createTTL), st.tuples(_text, _data, st.lists(_acl, max_size=2)
                                                   .map(tuple), _i32, _i64)),
), max_size=6).map(tuple))
def test_multi_txn_round_trip_property(subs):
    txn = Txn(1, 2, 3, 4, OpCode.multi, (subs,))
    assert decode(encode(txn)).body == (subs,)
