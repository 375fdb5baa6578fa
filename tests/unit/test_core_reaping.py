"""Container and TTL reaping candidates (ZooKeeperCore.reapable) and the deleteContainer round trip.

Oracle: ContainerManager.getCandidates / getElapsed (wall time - mtime) and
PrepRequestProcessor (case deleteContainer) of Apache ZooKeeper 3.8.0.
"""

from __future__ import annotations

from zktwist.proto.consts import CreateMode, Err, EventType, OpCode

from tests.unit.test_core_support import T0, Harness, Recorder, create_req


def container(h: Harness, path: str) -> None:
    h.mk(path, op=OpCode.createContainer, flags=CreateMode.CONTAINER)


def ttl_node(h: Harness, path: str, ttl: int, flags: int = CreateMode.PERSISTENT_WITH_TTL) -> str:
    return h.mk(path, op=OpCode.createTTL, flags=flags, ttl=ttl)


def test_never_used_container_is_kept_by_default():
    h = Harness()
    container(h, "/c")
    assert h.core.reapable(T0) == []
    assert h.core.reapable(T0 + 10 ** 12) == []


def test_container_that_had_a_child_is_reaped_once_empty():
    h = Harness()
    container(h, "/c")
    h.mk("/c/x")
    assert h.core.reapable(T0) == []
    assert h.delete("/c/x") == 0
    assert h.core.reapable(T0) == ["/c"]


def test_container_with_children_is_kept():
    h = Harness()
    container(h, "/c")
    h.mk("/c/x")
    h.mk("/c/y")
    h.delete("/c/x")
    assert h.core.reapable(T0 + 10 ** 9) == []


def test_max_never_used_interval():
    h = Harness(container_max_never_used_ms=60000)
    container(h, "/c")
    assert h.core.reapable(T0 + 60000) == []       # elapsed must be strictly greater
    assert h.core.reapable(T0 + 60001) == ["/c"]
    h.now = T0 + 50000
    h.set_data("/c", b"touch")                      # mtime moves
    assert h.core.reapable(T0 + 60001) == []
    assert h.core.reapable(T0 + 110001) == ["/c"]


def test_ttl_node_expires_strictly_after_ttl_since_mtime():
    h = Harness(extended_types=True)
    ttl_node(h, "/t", 5000)
    assert h.core.reapable(T0 + 5000) == []
    assert h.core.reapable(T0 + 5001) == ["/t"]
    h.now = T0 + 3000
    assert h.set_data("/t", b"x")[0] == 0
    assert h.core.reapable(T0 + 5001) == []
    assert h.core.reapable(T0 + 8001) == ["/t"]


def test_ttl_node_with_children_is_kept():
    h = Harness(extended_types=True)
    ttl_node(h, "/t", 10)
    h.mk("/t/kid")
    assert h.core.reapable(T0 + 10 ** 6) == []
    h.delete("/t/kid")
    assert h.core.reapable(T0 + 10 ** 6) == ["/t"]


def test_sequential_ttl_node_and_max_ttl():
    h = Harness(extended_types=True)
    p = ttl_node(h, "/s-", 1, flags=CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL)
    ttl_node(h, "/long", (1 << 40) - 1)
    assert h.core.reapable(T0 + 2) == [p]
    assert h.core.reapable(T0 + (1 << 40) - 1) == [p]
    assert sorted(h.core.reapable(T0 + (1 << 40))) == sorted([p, "/long"])


def test_plain_and_ephemeral_nodes_are_never_candidates():
    h = Harness()
    h.mk("/p")
    h.mk("/p/x")
    h.delete("/p/x")
    h.mk("/e", flags=CreateMode.EPHEMERAL)
    assert h.core.reapable(T0 + 10 ** 12) == []


def test_limit():
    h = Harness()
    for i in range(5):
        container(h, "/c%d" % i)
        h.mk("/c%d/x" % i)
        h.delete("/c%d/x" % i)
    assert len(h.core.reapable(T0)) == 5
    assert len(h.core.reapable(T0, limit=2)) == 2


def test_reaping_round_trip_fires_watches_and_consumes_a_zxid():
    h = Harness()
    h.mk("/p")
    container(h, "/p/c")
    h.mk("/p/c/x")
    h.delete("/p/c/x")
    w = Recorder()
    h.get_data("/p/c", w)
    h.children("/p", w)
    start = h.core.last_zxid
    for path in h.core.reapable(h.now):
        t = h.prep.prep_delete_container(path, h.now)
        assert (t.type, t.body, t.zxid) == (OpCode.deleteContainer, ("/p/c",), start + 1)
        h.apply(t)
    assert "/p/c" not in h.tree.nodes and "/p/c" not in h.tree.containers
    assert sorted(w.take()) == sorted([(EventType.NodeDeleted, "/p/c"),
                                       (EventType.NodeChildrenChanged, "/p")])
    assert h.core.last_zxid == start + 1
    assert h.stat("/p").pzxid == start + 1
    assert h.core.reapable(h.now) == []


def test_reaping_sees_a_pending_child():
    h = Harness()
    container(h, "/c")
    h.mk("/c/x")
    h.delete("/c/x")
    assert h.core.reapable(h.now) == ["/c"]
    pending = h.prep_only(OpCode.create, create_req("/c/new"))
    t = h.prep.prep_delete_container("/c", h.now)
    assert t.body == (Err.NOTEMPTY,)
    h.apply(pending)
    h.apply(t)
    assert h.children("/c") == (0, ["new"])


def test_reaped_twice_is_nonode():
    h = Harness()
    container(h, "/c")
    h.mk("/c/x")
    h.delete("/c/x")
    t1 = h.prep.prep_delete_container("/c", h.now)
    t2 = h.prep.prep_delete_container("/c", h.now)
    assert t1.type == OpCode.deleteContainer
    assert t2.body == (Err.NONODE,)
