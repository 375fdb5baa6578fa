"""multi (op 14): txn shape, atomicity and the MultiResponse encoding of write_reply (reference 1.7, 2.6).

Oracle: PrepRequestProcessor.pRequestHelper (case multi), MultiOperationRecord,
Op.Create.getOpcode, DataTree.processTxn (case multi) and FinalRequestProcessor
(case multi) of Apache ZooKeeper 3.8.0.
"""

from __future__ import annotations

from zktwist.proto.consts import CreateMode, Err, OpCode

from tests.unit.test_core_support import (
    OPEN,
    Harness,
    MultiResult,
    op_check,
    op_create,
    op_delete,
    op_set_data,
    parse_multi,
)


def make() -> Harness:
    h = Harness(extended_types=True)
    h.mk("/m")
    h.mk("/m/a", b"A")
    return h


def test_successful_multi_result_types_and_bodies():
    h = make()
    err, body = h.multi([
        op_create("/m/x", b"X"),
        op_create("/m/y", b"Y", op=OpCode.create2),
        op_set_data("/m/a", b"AA", 0),
        op_check("/m/a", 1),
        op_delete("/m/y", 0),
    ])
    z = h.last_txn.zxid
    assert err == 0
    results = parse_multi(body)
    assert [(r.type, r.err) for r in results] == [
        (OpCode.create, 0),
        (OpCode.create, 0),  # 3.8.0: a create2 sub-op is answered as create (ZOOKEEPER-4026)
        (OpCode.setData, 0),
        (OpCode.check, 0),
        (OpCode.delete, 0),
    ]
    assert results[0].value == "/m/x"
    assert results[1].value == "/m/y"
    stat = results[2].value
    assert (stat.version, stat.mzxid, stat.dataLength) == (1, z, 2)
    assert stat == h.stat("/m/a")
    assert h.children("/m") == (0, ["a", "x"])
    assert h.get_data("/m/a")[1] == b"AA"


def test_successful_multi_txn_shares_one_zxid_and_keeps_sub_types():
    h = make()
    start = h.core.last_zxid
    h.multi([op_create("/m/x"), op_create("/m/y", op=OpCode.create2), op_set_data("/m/a", b"")])
    txn = h.last_txn
    assert txn.type == OpCode.multi and txn.zxid == start + 1
    assert [t for t, _ in txn.body[0]] == [OpCode.create, OpCode.create, OpCode.setData]
    assert h.stat("/m/x").czxid == h.stat("/m/y").czxid == h.stat("/m/a").mzxid == start + 1
    assert h.core.last_zxid == start + 1


def test_container_sub_op_is_answered_as_create2():
    h = make()
    err, body = h.multi([
        op_create("/m/c", b"cc", op=OpCode.createContainer, flags=CreateMode.CONTAINER),
    ])
    assert err == 0
    (r,) = parse_multi(body)
    assert (r.type, r.err) == (OpCode.create2, 0)
    path, stat = r.value
    assert path == "/m/c" and stat == h.stat("/m/c") and stat.dataLength == 2
    assert "/m/c" in h.tree.containers
    assert [t for t, _ in h.last_txn.body[0]] == [OpCode.createContainer]


def test_container_flag_on_a_create_sub_op_makes_a_container():
    """MultiOperationRecord -> Op.create(path, data, acl, 4): Create.getOpcode picks createContainer."""
    h = make()
    err, body = h.multi([op_create("/m/c", op=OpCode.create, flags=CreateMode.CONTAINER)])
    assert err == 0
    (r,) = parse_multi(body)
    assert r.type == OpCode.create2 and r.value[0] == "/m/c"
    assert "/m/c" in h.tree.containers


def test_container_sub_op_with_plain_flags_is_a_plain_create():
    """MultiOperationRecord reads op 19 as Op.create(path, data, acl, flags): the flags decide."""
    h = make()
    err, body = h.multi([op_create("/m/p", op=OpCode.createContainer, flags=0)])
    assert err == 0
    (r,) = parse_multi(body)
    assert (r.type, r.value) == (OpCode.create, "/m/p")
    assert "/m/p" not in h.tree.containers


def test_ttl_sub_op_is_answered_as_create2():
    h = make()
    err, body = h.multi([
        op_create("/m/t-", op=OpCode.createTTL, flags=CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL,
                  ttl=60000),
    ])
    assert err == 0
    (r,) = parse_multi(body)
    assert r.type == OpCode.create2
    assert r.value[0] == "/m/t-0000000001"
    assert r.value[1] == h.stat("/m/t-0000000001")
    assert "/m/t-0000000001" in h.tree.ttls
    assert h.last_txn.body[0][0] == (OpCode.createTTL,
                                     ("/m/t-0000000001", b"", tuple(OPEN), 2, 60000))


def test_ttl_sub_op_with_extended_types_disabled():
    h = Harness(extended_types=False)
    err, body = h.multi([
        op_create("/a"),
        op_create("/t", op=OpCode.createTTL, flags=CreateMode.PERSISTENT_WITH_TTL, ttl=100),
    ])
    assert err == 0
    assert [(r.type, r.err) for r in parse_multi(body)] == [(-1, 0), (-1, Err.UNIMPLEMENTED)]


def test_ttl_sub_op_with_a_non_ttl_mode_drops_the_ttl():
    """Op.create(..., flags, ttl) with a non-TTL mode builds a plain Create: the ttl is ignored."""
    h = make()
    err, body = h.multi([op_create("/m/n", op=OpCode.createTTL, flags=0, ttl=100)])
    assert err == 0
    (r,) = parse_multi(body)
    assert (r.type, r.value) == (OpCode.create, "/m/n")
    assert h.tree.nodes["/m/n"].owner == 0


def test_ttl_flags_on_a_create_sub_op_are_a_marshalling_error():
    """Create(opcode createTTL) carries a CreateRequest; the CreateTTLRequest cast fails: -5 overall."""
    h = make()
    start = h.core.last_zxid
    err, body = h.multi([op_create("/m/t", op=OpCode.create, flags=CreateMode.PERSISTENT_WITH_TTL)])
    assert (err, body) == (Err.MARSHALLINGERROR, None)
    assert h.last_txn.type == OpCode.error and h.last_txn.zxid == start + 1
    assert "/m/t" not in h.tree.nodes


def test_invalid_flags_in_a_sub_op_are_bad_arguments():
    h = make()
    err, body = h.multi([op_create("/m/q", flags=9)])
    assert err == 0
    assert [(r.type, r.err) for r in parse_multi(body)] == [(-1, Err.BADARGUMENTS)]


def test_failed_multi_encoding_zero_code_minus_two():
    h = make()
    start = h.core.last_zxid
    err, body = h.multi([
        op_create("/m/x"),
        op_create("/m/y"),
        op_set_data("/m/a", b"no", 99),
        op_delete("/m/a"),
        op_check("/m/a", 0),
    ])
    assert err == 0  # the outer ReplyHeader err stays 0
    assert parse_multi(body) == [
        MultiResult(-1, 0, 0),
        MultiResult(-1, 0, 0),
        MultiResult(-1, Err.BADVERSION, Err.BADVERSION),
        MultiResult(-1, Err.RUNTIMEINCONSISTENCY, Err.RUNTIMEINCONSISTENCY),
        MultiResult(-1, Err.RUNTIMEINCONSISTENCY, Err.RUNTIMEINCONSISTENCY),
    ]
    # the logged txn keeps the ops prepped before the failure, then ErrorTxns
    txn = h.last_txn
    assert txn.type == OpCode.multi and txn.zxid == start + 1
    assert [t for t, _ in txn.body[0]] == [OpCode.create, OpCode.create, -1, -1, -1]
    assert [b for t, b in txn.body[0] if t == -1] == [
        (Err.BADVERSION,), (Err.RUNTIMEINCONSISTENCY,), (Err.RUNTIMEINCONSISTENCY,)]
    # nothing was applied, but the zxid was consumed
    assert "/m/x" not in h.tree.nodes and "/m/y" not in h.tree.nodes
    assert h.get_data("/m/a")[1] == b"A"
    assert h.persisted_cversion("/m") == 1
    assert h.core.last_zxid == start + 1
    assert not h.prep.has_outstanding()


def test_failed_multi_at_first_op():
    h = make()
    err, body = h.multi([op_delete("/m/nope"), op_create("/m/x")])
    assert err == 0
    assert [(r.type, r.err) for r in parse_multi(body)] == [
        (-1, Err.NONODE), (-1, Err.RUNTIMEINCONSISTENCY)]


def test_failed_multi_at_last_op():
    h = make()
    err, body = h.multi([op_create("/m/x"), op_set_data("/m/a", b""), op_create("/m/x")])
    assert err == 0
    assert [(r.type, r.err) for r in parse_multi(body)] == [
        (-1, 0), (-1, 0), (-1, Err.NODEEXISTS)]
    assert "/m/x" not in h.tree.nodes


def test_ops_in_a_multi_see_earlier_ops():
    h = make()
    err, body = h.multi([
        op_create("/m/n"),
        op_create("/m/n/c"),
        op_set_data("/m/n/c", b"1", 0),
        op_check("/m/n/c", 1),
        op_delete("/m/n/c", 1),
        op_delete("/m/n", 0),
    ])
    assert err == 0
    assert all(r.err == 0 and r.type != -1 for r in parse_multi(body))
    assert "/m/n" not in h.tree.nodes
    # /m had one create (persisted cversion 2 now) and one delete
    assert h.stat("/m").cversion == 2 * 2 - 1


def test_delete_after_create_in_same_multi_is_not_empty():
    h = make()
    err, body = h.multi([op_create("/m/a/kid"), op_delete("/m/a")])
    assert [(r.type, r.err) for r in parse_multi(body)] == [(-1, 0), (-1, Err.NOTEMPTY)]


def test_undecodable_multi_is_a_marshalling_error():
    h = make()
    err, body = h.write(OpCode.multi, ValueError("mixing different kind of ops"))
    assert (err, body) == (Err.MARSHALLINGERROR, None)
    assert h.last_txn.type == OpCode.error


def test_single_check_multi():
    h = make()
    err, body = h.multi([op_check("/m/a", 0)])
    assert err == 0
    assert parse_multi(body) == [MultiResult(OpCode.check, 0, None)]
    assert h.last_txn.body[0] == ((OpCode.check, ("/m/a", 1)),)


def test_top_level_create_replies():
    """Outside multi: create -> path only; create2/createContainer/createTTL -> path + Stat."""
    from tests.unit.test_core_support import parse_create, parse_create2
    h = Harness(extended_types=True)
    err, body = h.create("/a")
    assert err == 0 and parse_create(body) == "/a"
    for op, flags, ttl, path in ((OpCode.create2, 0, -1, "/b"),
                                 (OpCode.createContainer, CreateMode.CONTAINER, -1, "/c"),
                                 (OpCode.createTTL, CreateMode.PERSISTENT_WITH_TTL, 9, "/d")):
        err, body = h.create(path, op=op, flags=flags, ttl=ttl)
        assert err == 0
        assert parse_create2(body) == (path, h.stat(path))


def test_top_level_error_and_empty_replies():
    h = make()
    assert h.create("/m/a") == (Err.NODEEXISTS, None)
    assert h.write(OpCode.delete, ("/m/a", -1)) == (0, None)
