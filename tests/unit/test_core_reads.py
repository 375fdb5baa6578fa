"""Read replies of ZooKeeperCore.read: getData, exists, getChildren(2), sync, multiRead, counts.

Oracle: FinalRequestProcessor and DataTree (getData, statNode, getChildren,
getAllChildrenNumber) of Apache ZooKeeper 3.8.0.
"""

from __future__ import annotations

from zktwist.proto.consts import Err, OpCode

from tests.unit.test_core_support import (
    Harness,
    MultiResult,
    parse_children,
    parse_create,
    parse_get_data,
    parse_multi,
    parse_stat,
)


def make() -> Harness:
    h = Harness()
    h.mk("/a", b"A")
    h.mk("/a/b", b"")
    h.mk("/a/c", None)
    return h


def test_get_data_reply():
    h = make()
    err, body = h.read(OpCode.getData, ("/a", False))
    assert err == 0
    data, stat = parse_get_data(body)
    assert data == b"A" and stat == h.stat("/a") and stat.numChildren == 2


def test_exists_reply_is_a_bare_stat():
    h = make()
    err, body = h.read(OpCode.exists, ("/a", False))
    assert err == 0 and len(body) == 68
    assert parse_stat(body).dataLength == 1
    assert h.read(OpCode.exists, ("/nope", False)) == (Err.NONODE, None)


def test_get_children_and_children2():
    h = make()
    err, body = h.read(OpCode.getChildren, ("/a", False))
    assert err == 0 and sorted(parse_children(body)) == ["b", "c"]
    err, body = h.read(OpCode.getChildren2, ("/a", False))
    kids, stat = parse_children(body, with_stat=True)
    assert sorted(kids) == ["b", "c"] and stat == h.stat("/a")
    err, body = h.read(OpCode.getChildren, ("/a/b", False))
    assert (err, parse_children(body)) == (0, [])
    assert h.read(OpCode.getChildren, ("/nope", False)) == (Err.NONODE, None)


def test_odd_paths_on_reads_are_just_missing():
    h = make()
    for path in ("/a/", "a", "/a//b", "/a/./b"):
        assert h.read(OpCode.getData, (path, False))[0] == Err.NONODE
        assert h.read(OpCode.exists, (path, False))[0] == Err.NONODE


def test_sync_echoes_the_path():
    h = make()
    err, body = h.read(OpCode.sync, ("/whatever/not/there",))
    assert err == 0 and parse_create(body) == "/whatever/not/there"


def test_get_all_children_number_on_missing_node():
    h = make()
    assert h.read(OpCode.getAllChildrenNumber, ("/nope",)) == (Err.NONODE, None)
    assert h.read(OpCode.getAllChildrenNumber, ("/a/b",)) == (0, b"\x00\x00\x00\x00")


def test_multi_read_mixes_results_and_errors():
    h = make()
    err, body = h.read(OpCode.multiRead, (
        (OpCode.getData, ("/a", False)),
        (OpCode.getChildren, ("/nope", False)),
        (OpCode.getChildren, ("/a", False)),
        (OpCode.getData, ("/a/c", False)),
    ))
    assert err == 0
    res = parse_multi(body)
    assert res[0].type == OpCode.getData and res[0].value == (b"A", h.stat("/a"))
    assert res[1] == MultiResult(-1, Err.NONODE, Err.NONODE)
    assert res[2].type == OpCode.getChildren and sorted(res[2].value) == ["b", "c"]
    assert res[3].value == (None, h.stat("/a/c"))


def test_empty_multi_read():
    h = make()
    err, body = h.read(OpCode.multiRead, ())
    assert err == 0 and parse_multi(body) == []
