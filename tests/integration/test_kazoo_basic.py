"""kazoo (an unmodified ZooKeeper client) against a real server process.

Runs against zktwist by default; ``ZKTWIST_TEST_TARGET=apache`` runs the same
tests against Apache ZooKeeper 3.8 to prove the expectations right.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    BadArgumentsError,
    BadVersionError,
    InvalidACLError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    ReconfigDisabledError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import EventType, KazooState, WatchedEvent, ZnodeStat
from kazoo.security import (
    ACL,
    CREATOR_ALL_ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)

from tests.integration.conftest import (
    WAIT,
    EventRecorder,
    GateProxy,
    close_session,
    handshake,
    settle,
    wait_until,
    wait_until_serving,
)


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- CRUD


def test_create_get_set_delete_roundtrip(zk, base_path):
    path = f"{base_path}/node"
    assert zk.create(path, b"hello") == path
    data, stat = zk.get(path)
    assert data == b"hello"
    assert isinstance(stat, ZnodeStat)

    stat2 = zk.set(path, b"world!")
    assert stat2.version == 1
    assert zk.get(path)[0] == b"world!"

    zk.delete(path)
    assert zk.exists(path) is None
    with pytest.raises(NoNodeError):
        zk.get(path)
    with pytest.raises(NoNodeError):
        zk.set(path, b"x")
    with pytest.raises(NoNodeError):
        zk.delete(path)


def test_create_errors(zk, base_path):
    path = f"{base_path}/dup"
    zk.create(path)
    with pytest.raises(NodeExistsError):
        zk.create(path)
    with pytest.raises(NoNodeError):
        zk.create(f"{base_path}/missing/child")
    zk.create(f"{base_path}/deep/er/path", b"d", makepath=True)
    assert zk.get(f"{base_path}/deep/er/path")[0] == b"d"
    assert zk.get(f"{base_path}/deep/er")[0] == b""
    with pytest.raises(NotEmptyError):
        zk.delete(f"{base_path}/deep")
    zk.delete(f"{base_path}/deep", recursive=True)
    assert zk.exists(f"{base_path}/deep") is None
    zk.ensure_path(f"{base_path}/ens/ured")
    zk.ensure_path(f"{base_path}/ens/ured")  # idempotent
    assert zk.exists(f"{base_path}/ens/ured") is not None


def test_system_nodes_cannot_be_deleted(zk):
    assert "zookeeper" in zk.get_children("/")
    with pytest.raises(BadArgumentsError):
        zk.delete("/zookeeper")
    with pytest.raises(BadArgumentsError):
        zk.delete("/zookeeper/quota")
    with pytest.raises(BadArgumentsError):
        zk.delete("/")


def test_invalid_paths_are_rejected_by_server(zk, base_path):
    # kazoo rejects "." and ".." itself but passes these on; the server validates.
    for bad in (f"{base_path}/x\u0001y", f"{base_path}/x\u007fy", f"{base_path}/pua\ue000",
                f"{base_path}/x\ufff5"):
        with pytest.raises(BadArgumentsError):
            zk.create(bad)


def test_stat_fields_of_new_and_updated_node(zk, base_path):
    path = f"{base_path}/stat"
    before = now_ms()
    created_path, stat = zk.create(path, b"12345", include_data=True)
    after = now_ms()
    assert created_path == path
    assert stat.czxid == stat.mzxid == stat.pzxid
    assert stat.czxid > 0
    assert stat.version == 0 and stat.cversion == 0 and stat.aversion == 0
    assert stat.ephemeralOwner == 0
    assert stat.dataLength == 5
    assert stat.numChildren == 0
    assert stat.ctime == stat.mtime
    assert before - 5000 <= stat.ctime <= after + 5000
    assert zk.exists(path) == stat
    assert zk.get(path)[1] == stat

    stat2 = zk.set(path, b"")
    assert stat2.version == 1
    assert stat2.czxid == stat.czxid
    assert stat2.mzxid > stat.mzxid
    assert stat2.pzxid == stat.pzxid
    assert stat2.ctime == stat.ctime
    assert stat2.mtime >= stat.mtime
    assert stat2.dataLength == 0
    assert zk.exists(path) == stat2

    # Versioned writes.
    with pytest.raises(BadVersionError):
        zk.set(path, b"x", version=0)
    assert zk.set(path, b"x", version=1).version == 2
    with pytest.raises(BadVersionError):
        zk.delete(path, version=1)
    zk.delete(path, version=2)
    assert zk.exists(path) is None


def test_parent_stat_tracks_children(zk, base_path):
    parent = f"{base_path}/parent"
    _, pstat0 = zk.create(parent, include_data=True)
    _, c1 = zk.create(f"{parent}/c1", include_data=True)
    _, c2 = zk.create(f"{parent}/c2", b"x", include_data=True)
    pstat = zk.exists(parent)
    assert pstat.numChildren == 2
    assert pstat.cversion == 2
    assert pstat.pzxid == c2.czxid
    assert pstat.mzxid == pstat0.mzxid  # children do not touch data version / mzxid
    assert pstat.version == 0

    zk.set(f"{parent}/c1", b"changed")
    assert zk.exists(parent).cversion == 2  # data change of a child: no cversion change

    zk.delete(f"{parent}/c1")
    pstat2 = zk.exists(parent)
    assert pstat2.numChildren == 1
    assert pstat2.cversion == 3
    assert pstat2.pzxid > c2.czxid
    assert sorted(zk.get_children(parent)) == ["c2"]

    children, stat = zk.get_children(parent, include_data=True)
    assert children == ["c2"]
    assert stat == pstat2


def test_zxids_increase_monotonically(zk, base_path):
    zxids = []
    for i in range(5):
        _, stat = zk.create(f"{base_path}/z{i}", include_data=True)
        zxids.append(stat.czxid)
    assert zxids == sorted(zxids) and len(set(zxids)) == 5
    assert zk.last_zxid >= zxids[-1]


def test_binary_unicode_and_large_data(zk, base_path):
    blob = bytes(range(256)) * 4
    path = f"{base_path}/bin"
    zk.create(path, blob)
    assert zk.get(path)[0] == blob

    upath = f"{base_path}/ünïcødé-ĳ-中文"
    zk.create(upath, "ß".encode("utf-8"))
    assert zk.get(upath)[0] == "ß".encode("utf-8")
    assert "ünïcødé-ĳ-中文" in zk.get_children(base_path)

    big = b"z" * (512 * 1024)
    zk.set(path, big)
    data, stat = zk.get(path)
    assert data == big and stat.dataLength == len(big)


def test_many_children_listing(zk, base_path):
    names = {f"child-{i:03d}" for i in range(200)}
    tx = zk.transaction()
    for name in sorted(names):
        tx.create(f"{base_path}/{name}")
    assert all(isinstance(r, str) for r in tx.commit())
    assert set(zk.get_children(base_path)) == names
    assert zk.exists(base_path).numChildren == 200


def test_chroot_is_transparent(zk_factory, zk, base_path):
    chrooted = zk_factory(chroot=base_path)
    chrooted.create("/inner", b"in")
    assert zk.get(f"{base_path}/inner")[0] == b"in"
    assert chrooted.get_children("/") == ["inner"]
    seq = chrooted.create("/inner/s-", sequence=True)
    assert seq == "/inner/s-0000000000"
    events = EventRecorder()
    chrooted.get("/inner", watch=events)
    zk.set(f"{base_path}/inner", b"out")
    (event,) = events.wait_for(1)
    assert event.type == EventType.CHANGED
    assert event.path == "/inner"


# ------------------------------------------------------------------ ephemerals


def test_ephemeral_owner_and_removal_on_stop(zk_factory, zk, base_path):
    owner = zk_factory()
    path = f"{base_path}/eph"
    owner.create(path, b"e", ephemeral=True)
    stat = zk.exists(path)
    assert stat is not None
    assert stat.ephemeralOwner == owner.client_id[0]
    assert stat.ephemeralOwner != zk.client_id[0]
    # an ephemeral node cannot have children
    with pytest.raises(NoChildrenForEphemeralsError):
        owner.create(f"{path}/child")

    deleted = EventRecorder()
    assert zk.exists(path, watch=deleted) is not None
    children = EventRecorder()
    zk.get_children(base_path, watch=children)
    owner.stop()  # closeSession: its ephemerals go before the reply
    assert zk.exists(path) is None
    (event,) = deleted.wait_for(1)
    assert event.type == EventType.DELETED and event.path == path
    (cevent,) = children.wait_for(1)
    assert cevent.type == EventType.CHILD and cevent.path == base_path


def test_ephemeral_of_one_session_only(zk_factory, zk, base_path):
    a = zk_factory()
    b = zk_factory()
    a.create(f"{base_path}/a", ephemeral=True)
    b.create(f"{base_path}/b", ephemeral=True)
    zk.create(f"{base_path}/persistent")
    a.stop()
    assert sorted(zk.get_children(base_path)) == ["b", "persistent"]
    b.stop()
    assert zk.get_children(base_path) == ["persistent"]


# ------------------------------------------------------------------ sequences


def test_sequence_nodes(zk, base_path):
    parent = f"{base_path}/seq"
    zk.create(parent)
    p1 = zk.create(f"{parent}/job-", b"1", sequence=True)
    p2 = zk.create(f"{parent}/job-", b"2", sequence=True)
    # the counter is per parent, shared by every prefix
    p3 = zk.create(f"{parent}/other-", sequence=True)
    assert p1 == f"{parent}/job-0000000000"
    assert p2 == f"{parent}/job-0000000001"
    assert p3 == f"{parent}/other-0000000002"
    # an empty prefix is allowed: "parent/" + counter
    p4 = zk.create(f"{parent}/", sequence=True)
    assert p4 == f"{parent}/0000000003"
    eph = zk.create(f"{parent}/eph-", ephemeral=True, sequence=True)
    assert eph == f"{parent}/eph-0000000004"
    assert zk.exists(eph).ephemeralOwner == zk.client_id[0]
    assert sorted(zk.get_children(parent)) == sorted(p.rsplit("/", 1)[1] for p in (p1, p2, p3, p4, eph))


def test_sequence_counter_counts_creations_not_deletions(zk, base_path):
    parent = f"{base_path}/cnt"
    zk.create(parent)
    zk.create(f"{parent}/a")
    zk.delete(f"{parent}/a")
    assert zk.create(f"{parent}/s-", sequence=True) == f"{parent}/s-0000000001"
    zk.create(f"{parent}/b")
    with pytest.raises(NodeExistsError):
        zk.create(f"{parent}/b")
    assert zk.create(f"{parent}/s-", sequence=True) == f"{parent}/s-0000000003"
    stat = zk.exists(parent)
    # 4 creations, 1 deletion, 3 children
    assert stat.numChildren == 3
    assert stat.cversion == 5


# ------------------------------------------------------------------ watches


def test_exists_watch_on_missing_node_fires_once_on_create(zk_factory, zk, base_path):
    other = zk_factory()
    path = f"{base_path}/w"
    events = EventRecorder()
    assert zk.exists(path, watch=events) is None
    other.create(path, b"1")
    other.delete(path)
    other.create(path, b"2")
    got = events.wait_for(1)
    settle(zk)
    got = events.snapshot()
    assert len(got) == 1
    assert isinstance(got[0], WatchedEvent)
    assert got[0].type == EventType.CREATED
    assert got[0].path == path
    assert got[0].state == "CONNECTED"


def test_get_watch_fires_on_change_and_delete(zk_factory, zk, base_path):
    other = zk_factory()
    path = f"{base_path}/g"
    zk.create(path, b"v0")
    changed = EventRecorder()
    zk.get(path, watch=changed)
    other.set(path, b"v1")
    (ev,) = changed.wait_for(1)
    assert ev.type == EventType.CHANGED and ev.path == path

    deleted = EventRecorder()
    zk.get(path, watch=deleted)
    other.delete(path)
    (ev,) = deleted.wait_for(1)
    assert ev.type == EventType.DELETED and ev.path == path


def test_children_watch_fires_on_membership_not_on_child_data(zk_factory, zk, base_path):
    other = zk_factory()
    zk.create(f"{base_path}/c")
    events = EventRecorder()
    assert zk.get_children(base_path, watch=events) == ["c"]
    other.set(f"{base_path}/c", b"data")  # child data change: no child event
    other.set(base_path, b"data")  # the node's own data: not a child event either
    settle(zk)
    assert events.snapshot() == []
    other.create(f"{base_path}/d")
    (ev,) = events.wait_for(1)
    assert ev.type == EventType.CHILD and ev.path == base_path

    # deletion of the watched parent fires the child watch as DELETED
    events2 = EventRecorder()
    zk.get_children(f"{base_path}/c", watch=events2)
    other.delete(f"{base_path}/c")
    (ev2,) = events2.wait_for(1)
    assert ev2.type == EventType.DELETED and ev2.path == f"{base_path}/c"


def test_watches_are_one_shot(zk_factory, zk, base_path):
    other = zk_factory()
    path = f"{base_path}/once"
    zk.create(path)
    events = EventRecorder()
    zk.get(path, watch=events)
    for i in range(3):
        other.set(path, str(i).encode())
    events.wait_for(1)
    settle(zk)
    assert len(events.snapshot()) == 1


def test_missing_node_get_and_children_set_no_watch(zk_factory, zk, base_path):
    other = zk_factory()
    path = f"{base_path}/absent"
    ev_get = EventRecorder()
    ev_children = EventRecorder()
    with pytest.raises(NoNodeError):
        zk.get(path, watch=ev_get)
    with pytest.raises(NoNodeError):
        zk.get_children(path, watch=ev_children)
    other.create(path)
    other.create(f"{path}/kid")
    settle(zk)
    assert ev_get.snapshot() == []
    assert ev_children.snapshot() == []


def test_watch_fires_for_own_change_before_reply(zk, base_path):
    path = f"{base_path}/own"
    zk.create(path)
    events = EventRecorder()
    zk.exists(path, watch=events)
    zk.set(path, b"x")
    (ev,) = events.wait_for(1)
    assert ev.type == EventType.CHANGED


def test_data_and_children_watch_recipes(zk_factory, zk, base_path):
    other = zk_factory()
    path = f"{base_path}/dw"
    seen = []
    seen_lock = threading.Lock()

    @zk.DataWatch(path)
    def on_data(data, stat):
        with seen_lock:
            seen.append((data, stat.version if stat else None))

    wait_until(lambda: seen, message="initial DataWatch call")
    assert seen[0] == (None, None)
    other.create(path, b"a")
    wait_until(lambda: (b"a", 0) in seen, message="DataWatch create")
    other.set(path, b"b")
    wait_until(lambda: (b"b", 1) in seen, message="DataWatch change")
    other.delete(path)
    wait_until(lambda: seen[-1] == (None, None) and len(seen) >= 4, message="DataWatch delete")

    lists = []

    @zk.ChildrenWatch(base_path)
    def on_children(children):
        lists.append(sorted(children))

    wait_until(lambda: lists, message="initial ChildrenWatch call")
    other.create(f"{base_path}/k1")
    wait_until(lambda: lists[-1] == ["k1"], message="ChildrenWatch add")
    other.create(f"{base_path}/k2", ephemeral=True)
    wait_until(lambda: lists[-1] == ["k1", "k2"], message="ChildrenWatch add 2")
    other.stop()  # ephemeral k2 goes away
    wait_until(lambda: lists[-1] == ["k1"], message="ChildrenWatch ephemeral removal")


# ------------------------------------------------------------------ transactions


def test_transaction_commits_atomically(zk, base_path):
    zk.create(f"{base_path}/existing", b"old")
    tx = zk.transaction()
    tx.create(f"{base_path}/new", b"n")
    tx.create(f"{base_path}/new/child", b"c")
    tx.check(f"{base_path}/existing", 0)
    tx.set_data(f"{base_path}/existing", b"new")
    tx.create(f"{base_path}/s-", sequence=True)
    tx.create(f"{base_path}/s-", sequence=True)
    results = tx.commit()
    assert results[0] == f"{base_path}/new"
    assert results[1] == f"{base_path}/new/child"
    assert results[2] is True
    assert isinstance(results[3], ZnodeStat) and results[3].version == 1
    # consecutive sequential creates see each other's pending counter increment
    assert results[4] == f"{base_path}/s-0000000002"
    assert results[5] == f"{base_path}/s-0000000003"
    assert zk.get(f"{base_path}/existing")[0] == b"new"
    # all ops share one zxid
    assert zk.exists(f"{base_path}/new").czxid == zk.exists(f"{base_path}/new/child").czxid == results[3].mzxid

    tx2 = zk.transaction()
    tx2.delete(f"{base_path}/new/child")
    tx2.delete(f"{base_path}/new")
    assert tx2.commit() == [True, True]
    assert zk.exists(f"{base_path}/new") is None


def test_failing_transaction_rolls_back(zk, base_path):
    zk.create(f"{base_path}/a", b"a")
    before = zk.exists(base_path)
    tx = zk.transaction()
    tx.create(f"{base_path}/b", b"b")
    tx.set_data(f"{base_path}/a", b"changed")
    tx.check(f"{base_path}/a", 7)  # wrong version: fails
    tx.delete(f"{base_path}/a")
    results = tx.commit()
    assert len(results) == 4
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], RolledBackError)
    assert isinstance(results[2], BadVersionError)
    assert isinstance(results[3], RuntimeInconsistency)
    assert zk.exists(f"{base_path}/b") is None
    assert zk.get(f"{base_path}/a") [0] == b"a"
    assert zk.exists(f"{base_path}/a").version == 0
    after = zk.exists(base_path)
    assert (after.cversion, after.numChildren, after.pzxid) == (before.cversion, before.numChildren, before.pzxid)


def test_failing_transaction_error_kinds(zk, base_path):
    zk.create(f"{base_path}/x")
    tx = zk.transaction()
    tx.create(f"{base_path}/x")  # exists
    tx.create(f"{base_path}/y")
    results = tx.commit()
    assert isinstance(results[0], NodeExistsError)
    assert isinstance(results[1], RuntimeInconsistency)

    tx = zk.transaction()
    tx.delete(f"{base_path}/x")
    tx.delete(f"{base_path}/nope")
    results = tx.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], NoNodeError)
    assert zk.exists(f"{base_path}/x") is not None

    tx = zk.transaction()
    tx.create(f"{base_path}/x/child")
    tx.delete(f"{base_path}/x")  # not empty within the transaction
    results = tx.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], NotEmptyError)
    assert zk.get_children(f"{base_path}/x") == []


def test_transaction_sequence_counter_not_consumed_by_rollback(zk, base_path):
    tx = zk.transaction()
    tx.create(f"{base_path}/s-", sequence=True)
    tx.check(f"{base_path}/missing", 0)
    results = tx.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], NoNodeError)
    assert zk.create(f"{base_path}/s-", sequence=True) == f"{base_path}/s-0000000000"


def test_transaction_with_context_manager(zk, base_path):
    with zk.transaction() as tx:
        tx.create(f"{base_path}/cm1")
        tx.create(f"{base_path}/cm2")
    assert sorted(zk.get_children(base_path)) == ["cm1", "cm2"]


# ------------------------------------------------------------------ ACLs


def test_default_acl_is_open(zk, base_path):
    zk.create(f"{base_path}/open")
    acls, stat = zk.get_acls(f"{base_path}/open")
    assert acls == OPEN_ACL_UNSAFE
    assert stat.aversion == 0


def test_digest_acl_and_auth(zk_factory, base_path):
    alice = zk_factory()
    alice.add_auth("digest", "alice:secret")
    anon = zk_factory()
    path = f"{base_path}/secret"
    acl = make_digest_acl("alice", "secret", all=True)
    assert acl.id.id == "alice:" + make_digest_acl_credential("alice", "secret").split(":", 1)[1]
    alice.create(path, b"hidden", acl=[acl])

    assert alice.get(path)[0] == b"hidden"
    alice.set(path, b"hidden2")
    acls, stat = alice.get_acls(path)
    assert acls == [acl]

    with pytest.raises(NoAuthError):
        anon.get(path)
    with pytest.raises(NoAuthError):
        anon.set(path, b"x")
    with pytest.raises(NoAuthError):
        anon.get_children(path)
    with pytest.raises(NoAuthError):
        anon.create(f"{path}/child")
    with pytest.raises(NoAuthError):
        anon.set_acls(path, OPEN_ACL_UNSAFE)
    # exists needs no permission on 3.8.0
    assert anon.exists(path) is not None

    wrong = zk_factory()
    wrong.add_auth("digest", "alice:wrong")
    with pytest.raises(NoAuthError):
        wrong.get(path)

    # same credentials on another session, given at connect time
    alice2 = zk_factory(auth_data=[("digest", "alice:secret")])
    assert alice2.get(path)[0] == b"hidden2"

    # delete needs DELETE on the parent (open), not on the node itself
    anon.delete(path)
    assert alice.exists(path) is None


def test_digest_ids_masked_without_admin(zk_factory, base_path):
    owner = zk_factory()
    owner.add_auth("digest", "bob:pw")
    reader = zk_factory()
    path = f"{base_path}/masked"
    bob_all = make_digest_acl("bob", "pw", all=True)
    owner.create(path, acl=[bob_all, ACL(Permissions.READ, Id("world", "anyone"))])
    acls, _ = owner.get_acls(path)
    assert sorted(acls, key=lambda a: a.id.scheme) == sorted(
        [bob_all, ACL(Permissions.READ, Id("world", "anyone"))], key=lambda a: a.id.scheme)
    acls, _ = reader.get_acls(path)
    digest = [a for a in acls if a.id.scheme == "digest"]
    assert digest == [ACL(Permissions.ALL, Id("digest", "bob:x"))]
    assert reader.get(path)[0] == b""
    with pytest.raises(NoAuthError):
        reader.set(path, b"x")


def test_auth_scheme_acl_expands_to_callers_identity(zk_factory, base_path):
    anon = zk_factory()
    with pytest.raises(InvalidACLError):
        anon.create(f"{base_path}/creator", acl=CREATOR_ALL_ACL)
    carol = zk_factory()
    carol.add_auth("digest", "carol:pw1")
    carol.create(f"{base_path}/creator", acl=CREATOR_ALL_ACL)
    acls, _ = carol.get_acls(f"{base_path}/creator")
    assert acls == [make_digest_acl("carol", "pw1", all=True)]
    with pytest.raises(NoAuthError):
        anon.get(f"{base_path}/creator")


def test_set_acls_versions_and_invalid_acls(zk, base_path):
    path = f"{base_path}/acl"
    zk.create(path)
    with pytest.raises(BadVersionError):
        zk.set_acls(path, READ_ACL_UNSAFE, version=3)
    stat = zk.set_acls(path, READ_ACL_UNSAFE, version=0)
    assert stat.aversion == 1
    assert stat.version == 0
    with pytest.raises(NoAuthError):
        zk.set(path, b"read only")
    with pytest.raises(NoAuthError):
        zk.set_acls(path, OPEN_ACL_UNSAFE)  # READ only: no ADMIN
    assert zk.get(path)[0] == b""
    # (kazoo replaces an empty ACL list by its default ACL, so that case is not testable here)
    with pytest.raises(InvalidACLError):
        zk.create(f"{base_path}/bad-world", acl=[make_acl("world", "someone", all=True)])
    with pytest.raises(InvalidACLError):
        zk.create(f"{base_path}/bad-scheme", acl=[make_acl("nosuchscheme", "x", all=True)])


def test_create_permission_is_checked_on_parent(zk_factory, zk, base_path):
    parent = f"{base_path}/nocreate"
    zk.create(parent, acl=[make_acl("world", "anyone", read=True, delete=True, admin=True, write=True)])
    with pytest.raises(NoAuthError):
        zk.create(f"{parent}/child")
    zk.set_acls(parent, [make_acl("world", "anyone", read=True, create=True, admin=True)])
    zk.create(f"{parent}/child")
    with pytest.raises(NoAuthError):
        zk.delete(f"{parent}/child")


def test_ip_acl(zk_factory, zk, base_path):
    path = f"{base_path}/ip"
    zk.create(path, b"ip", acl=[make_acl("ip", "127.0.0.1", all=True)])
    assert zk.get(path)[0] == b"ip"
    zk.create(f"{base_path}/ip-other", b"no", acl=[make_acl("ip", "10.1.2.3", all=True)])
    with pytest.raises(NoAuthError):
        zk.get(f"{base_path}/ip-other")
    zk.create(f"{base_path}/ip-net", b"net", acl=[make_acl("ip", "127.0.0.0/8", all=True)])
    assert zk.get(f"{base_path}/ip-net")[0] == b"net"


# ------------------------------------------------------------------ misc requests


def test_sync(zk_factory, zk, base_path):
    other = zk_factory()
    other.create(f"{base_path}/synced", b"s")
    assert zk.sync(base_path) == base_path
    assert zk.get(f"{base_path}/synced")[0] == b"s"


def test_server_version_and_four_letter_words(zk):
    version = zk.server_version()
    assert version[:2] == (3, 8), version
    assert zk.command(b"ruok") == "imok"


def test_config_node_of_a_standalone_server(zk):
    # /zookeeper/config exists (empty in standalone) and is world-readable
    data, stat = zk.get("/zookeeper/config")
    assert stat.aversion == -1
    assert zk.get_acls("/zookeeper/config")[0] == READ_ACL_UNSAFE


# ------------------------------------------------------------------ sessions


def _takeover_session(port: int, session_id: int, passwd: bytes) -> socket.socket:
    """Re-attach a session from a raw socket, so the server drops the old connection."""
    sock, timeout, sid, _ = handshake(port, session_id, passwd)
    assert sid == session_id and timeout > 0, (sid, timeout)
    return sock


def test_session_reconnect_after_server_closes_socket(zk_factory, target_server, base_path):
    client = zk_factory(connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 0.5})
    observer = zk_factory()
    states = []
    client.add_listener(states.append)
    session_id, passwd = client.client_id
    eph = f"{base_path}/eph"
    client.create(eph, b"mine", ephemeral=True)

    sock = _takeover_session(target_server.port, session_id, passwd)
    try:
        wait_until(lambda: KazooState.SUSPENDED in states, message="kazoo noticing the closed socket")
    finally:
        sock.close()
    wait_until(lambda: states[-1] == KazooState.CONNECTED and client.connected,
               message="kazoo reconnecting")
    assert KazooState.LOST not in states
    assert client.client_id[0] == session_id
    # the session, and so the ephemeral, survived
    stat = observer.exists(eph)
    assert stat is not None and stat.ephemeralOwner == session_id
    assert client.get(eph)[0] == b"mine"
    client.create(f"{base_path}/after", ephemeral=True)
    client.stop()
    assert observer.get_children(base_path) == []


def test_session_survives_server_restart(zk_factory, fresh_server):
    """Sessions and ephemerals are durable: a restarted server keeps them.

    The client goes through a proxy that is shut while the server restarts, so
    it reconnects only once the restarted server serves.
    """
    proxy = GateProxy(fresh_server.port)
    try:
        client = KazooClient(hosts=f"127.0.0.1:{proxy.port}", timeout=10.0,
                             connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 0.3})
        zk_factory.clients.append(client)
        client.start(timeout=WAIT)
        states = []
        client.add_listener(states.append)
        session_id = client.client_id[0]
        client.create("/restart-persistent", b"p")
        client.create("/restart-eph", b"e", ephemeral=True)
        proxy.shut()
        wait_until(lambda: KazooState.SUSPENDED in states, message="kazoo noticing the drop")
        fresh_server.stop()
        fresh_server.start()
        wait_until_serving(fresh_server.port)
        proxy.reopen()
        wait_until(lambda: client.connected and states[-1] == KazooState.CONNECTED,
                   message="kazoo reconnecting after the restart")
        assert KazooState.LOST not in states
        assert client.client_id[0] == session_id
        assert client.get("/restart-persistent")[0] == b"p"
        other = zk_factory(server=fresh_server)
        assert other.exists("/restart-eph").ephemeralOwner == session_id
        client.stop()
        assert other.exists("/restart-eph") is None
    finally:
        proxy.close()


def test_negotiated_session_timeout(target_server):
    # kazoo sends its requested timeout; the server clamps it to [2, 20] * tickTime.
    for requested, expected in ((1000, 4000), (10_000_000, 40000), (15000, 15000)):
        sock, timeout, sid, passwd = handshake(target_server.port, timeout_ms=requested)
        close_session(sock)
        assert sid != 0 and len(passwd) == 16
        assert timeout == expected, (requested, timeout)


# ------------------------------------------------------------------ more requests


def test_reconfig_is_refused_on_standalone(zk):
    with pytest.raises(ReconfigDisabledError):
        zk.reconfig(joining=None, leaving=None, new_members="server.1=127.0.0.1:2888:3888;2181")
    with pytest.raises(ReconfigDisabledError):
        zk.reconfig(joining="server.2=127.0.0.1:2889:3889;2182", leaving=None, new_members=None)
    assert zk.connected


def test_add_auth_with_unknown_scheme_fails(zk_factory):
    client = zk_factory()
    states = []
    client.add_listener(states.append)
    with pytest.raises(AuthFailedError):
        client.add_auth("nosuchscheme", "whatever")
    wait_until(lambda: KazooState.LOST in states, message="kazoo giving the session up")


def test_pipelined_async_requests_answered_in_order(zk, base_path):
    count = 300
    creates = [zk.create_async(f"{base_path}/n{i:04d}", str(i).encode()) for i in range(count)]
    assert [r.get(timeout=WAIT) for r in creates] == [f"{base_path}/n{i:04d}" for i in range(count)]
    mixed = []
    for i in range(count):
        mixed.append(("get", i, zk.get_async(f"{base_path}/n{i:04d}")))
        mixed.append(("set", i, zk.set_async(f"{base_path}/n{i:04d}", b"x" * (i % 7), version=0)))
        mixed.append(("missing", i, zk.exists_async(f"{base_path}/missing{i}")))
    for kind, i, result in mixed:
        value = result.get(timeout=WAIT)
        if kind == "get":
            assert value[0] == str(i).encode() and value[1].version == 0
        elif kind == "set":
            assert value.version == 1 and value.dataLength == i % 7
        else:
            assert value is None
    czxids = [zk.exists(f"{base_path}/n{i:04d}").czxid for i in range(0, count, 50)]
    assert czxids == sorted(czxids)


def test_session_expiry_deletes_ephemerals_and_client_sees_lost(zk_factory, zk, target_server, base_path):
    """A client that goes silent loses its session after the negotiated timeout."""
    proxy = GateProxy(target_server.port)
    try:
        quiet = KazooClient(hosts=f"127.0.0.1:{proxy.port}", timeout=4.0,
                            connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 0.3})
        zk_factory.clients.append(quiet)
        quiet.start(timeout=WAIT)
        states = []
        quiet.add_listener(states.append)
        old_session = quiet.client_id[0]
        eph = f"{base_path}/short-lived"
        quiet.create(eph, ephemeral=True)
        deleted = EventRecorder()
        assert zk.exists(eph, watch=deleted) is not None
        proxy.shut()  # the client can neither talk nor reconnect
        started = time.monotonic()
        (event,) = deleted.wait_for(1, timeout=20)
        elapsed = time.monotonic() - started
        assert event.type == EventType.DELETED
        assert 2.0 <= elapsed <= 12.0, elapsed  # 4 s negotiated, expiry checked per tick
        assert zk.exists(eph) is None
        proxy.reopen()
        wait_until(lambda: KazooState.LOST in states, timeout=20, message="kazoo told the session expired")
        wait_until(lambda: quiet.connected, timeout=20, message="kazoo starting a new session")
        assert quiet.client_id[0] != old_session
    finally:
        proxy.close()
