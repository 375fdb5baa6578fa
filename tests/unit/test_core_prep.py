"""Prep: the check order of every write (reference 2.3), node-type rules (2.4) and outstanding changes.

Oracle: PrepRequestProcessor.pRequest2Txn / pRequest2TxnCreate /
validateCreateRequest / getParentPathAndValidate / getRecordForPath /
rollbackPendingChanges and SessionTrackerImpl.checkSession/checkGlobalSession
of Apache ZooKeeper 3.8.0.
"""

from __future__ import annotations

import pytest

from zktwist.proto.consts import MAX_TTL, CreateMode, Err, OpCode

from tests.unit.test_core_support import (
    OPEN,
    READ_ONLY,
    Harness,
    create_req,
    op_check,
    op_create,
    op_delete,
    parse_multi,
)

UNKNOWN_SID = 0x7EADBEEF
NO_CREATE = [(31 & ~4, "world", "anyone")]
NO_DELETE = [(31 & ~8, "world", "anyone")]
NO_WRITE = [(31 & ~2, "world", "anyone")]
NO_ADMIN = [(31 & ~16, "world", "anyone")]
NO_READ = [(31 & ~1, "world", "anyone")]
BAD_ACL: list = []


def err_of(h: Harness, op: int, req: tuple, sid=None, auth=None) -> int:
    return h.write(op, req, sid=sid, auth=auth)[0]


# -- create ------------------------------------------------------------------------------

class TestCreateOrder:
    def setup_method(self):
        self.h = Harness(extended_types=True)
        h = self.h
        h.mk("/p")
        h.mk("/p/x")
        h.mk("/ro")
        h.mk("/ro/x")
        assert h.set_acl("/ro", NO_CREATE)[0] == 0
        h.mk("/eph", flags=CreateMode.EPHEMERAL)
        h.mk("/eph2", flags=CreateMode.EPHEMERAL)

    def c(self, path, flags=0, acl=None, op=OpCode.create, ttl=-1, sid=None):
        return err_of(self.h, op, create_req(path, b"", acl, flags, ttl), sid=sid)

    def test_invalid_flags_first(self):
        for flags in (7, -1, 100):
            assert self.c("noslash", flags=flags, acl=BAD_ACL, sid=UNKNOWN_SID) == Err.BADARGUMENTS

    def test_ttl_disabled_before_bad_ttl_and_session(self):
        h = Harness(extended_types=False)
        for flags in (CreateMode.PERSISTENT_WITH_TTL, CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL):
            assert err_of(h, OpCode.createTTL, create_req("/t", b"", OPEN, flags, 0),
                          sid=UNKNOWN_SID) == Err.UNIMPLEMENTED
            assert err_of(h, OpCode.createTTL, create_req("/t", b"", OPEN, flags, 100)) == \
                Err.UNIMPLEMENTED
            # a TTL mode on a plain create: still the TTL feature check first
            assert err_of(h, OpCode.create, create_req("/t", b"", OPEN, flags, -1)) == \
                Err.UNIMPLEMENTED

    @pytest.mark.parametrize("ttl", [0, -1, -5, MAX_TTL + 1, 1 << 62])
    def test_bad_ttl_before_session(self, ttl):
        assert self.c("/t", flags=CreateMode.PERSISTENT_WITH_TTL, op=OpCode.createTTL, ttl=ttl,
                      sid=UNKNOWN_SID) == Err.BADARGUMENTS

    def test_ttl_bounds(self):
        assert self.c("/t1", flags=CreateMode.PERSISTENT_WITH_TTL, op=OpCode.createTTL, ttl=1) == 0
        assert self.c("/t2", flags=CreateMode.PERSISTENT_WITH_TTL, op=OpCode.createTTL,
                      ttl=MAX_TTL) == 0

    def test_ttl_with_non_ttl_mode_is_bad_arguments(self):
        assert self.c("/t", flags=0, op=OpCode.createTTL, ttl=100) == Err.BADARGUMENTS
        assert self.c("/t", flags=0, op=OpCode.createTTL, ttl=0) == Err.BADARGUMENTS
        # a TTL mode through op 1 has ttl -1
        assert self.c("/t", flags=CreateMode.PERSISTENT_WITH_TTL, op=OpCode.create) == \
            Err.BADARGUMENTS

    def test_unknown_session_for_persistent_create(self):
        assert self.c("noslash", acl=BAD_ACL, sid=UNKNOWN_SID) == Err.UNKNOWNSESSION

    @pytest.mark.parametrize("flags", [CreateMode.EPHEMERAL, CreateMode.EPHEMERAL_SEQUENTIAL])
    def test_unknown_session_for_ephemeral_create_is_session_expired(self, flags):
        """validateCreateRequest uses checkGlobalSession, which turns UnknownSession into SessionExpired."""
        assert self.c("/e-new", flags=flags, sid=UNKNOWN_SID) == Err.SESSIONEXPIRED

    def test_closing_session(self):
        h = self.h
        sid = h.new_session()
        h.core.sessions.set_closing(sid)
        assert self.c("/z", sid=sid) == Err.SESSIONEXPIRED
        assert self.c("/z", flags=CreateMode.EPHEMERAL, sid=sid) == Err.SESSIONEXPIRED

    def test_path_shape_before_acl(self):
        assert self.c("noslash", acl=BAD_ACL) == Err.BADARGUMENTS
        assert self.c("", acl=BAD_ACL) == Err.BADARGUMENTS
        assert self.c("/p/a\x00b", acl=BAD_ACL) == Err.BADARGUMENTS

    def test_acl_before_parent(self):
        assert self.c("/missing/x", acl=BAD_ACL) == Err.INVALIDACL
        assert self.c("/missing/x", acl=[(31, "digest", "nocolon")]) == Err.INVALIDACL

    def test_parent_missing(self):
        assert self.c("/missing/x") == Err.NONODE
        assert self.c("/missing/.") == Err.NONODE  # parent before validatePath
        assert self.c("/p//x") == Err.NONODE  # parent "/p/" does not exist

    def test_create_permission_before_path_and_existence(self):
        assert self.c("/ro/x") == Err.NOAUTH
        assert self.c("/ro/.") == Err.NOAUTH
        assert self.c("/ro/new") == Err.NOAUTH

    def test_validate_path_after_suffix(self):
        assert self.c("/p/.") == Err.BADARGUMENTS
        assert self.c("/p/..") == Err.BADARGUMENTS
        assert self.c("/p/") == Err.BADARGUMENTS
        assert self.c("/p/\x01") == Err.BADARGUMENTS
        assert self.c("/p/\ud800") == Err.BADARGUMENTS
        # with the suffix appended the trailing slash and the dot are fine
        assert self.c("/p/", flags=CreateMode.PERSISTENT_SEQUENTIAL) == 0
        assert self.c("/p/.", flags=CreateMode.PERSISTENT_SEQUENTIAL) == 0

    def test_exists_before_ephemeral_parent(self):
        h = self.h
        assert self.c("/p/x") == Err.NODEEXISTS
        # a child under an ephemeral can only come from outside prep (e.g. an old log)
        h.tree.create_node("/eph2/kid", b"", tuple(OPEN), 0, -1, h.core.last_zxid, h.now)
        assert self.c("/eph2/kid") == Err.NODEEXISTS
        # the ephemeral has no children, so the -108 check is what remains
        assert self.c("/eph/c") == Err.NOCHILDRENFOREPHEMERALS
        assert self.c("/eph/c", flags=CreateMode.EPHEMERAL) == Err.NOCHILDRENFOREPHEMERALS
        assert self.c("/eph/", flags=CreateMode.PERSISTENT_SEQUENTIAL) == \
            Err.NOCHILDRENFOREPHEMERALS

    def test_container_and_ttl_parents_may_have_children(self):
        h = self.h
        h.mk("/c", op=OpCode.createContainer, flags=CreateMode.CONTAINER)
        h.mk("/t", op=OpCode.createTTL, flags=CreateMode.PERSISTENT_WITH_TTL, ttl=1000)
        assert self.c("/c/x") == 0
        assert self.c("/t/x") == 0

    def test_ephemeral_of_another_session_is_also_a_bad_parent(self):
        h = self.h
        other = h.new_session()
        h.mk("/other", flags=CreateMode.EPHEMERAL, sid=other)
        assert self.c("/other/x") == Err.NOCHILDRENFOREPHEMERALS


def test_create_with_container_flag_through_op_1_makes_a_persistent_node():
    """pRequest2TxnCreate: type create builds a CreateTxn(ephemeral=false); the node is persistent."""
    h = Harness()
    err, body = h.create("/c", flags=CreateMode.CONTAINER, op=OpCode.create)
    assert err == 0
    assert h.last_txn.type == OpCode.create
    assert h.tree.nodes["/c"].owner == 0
    assert "/c" not in h.tree.containers


@pytest.mark.parametrize("flags", [CreateMode.PERSISTENT, CreateMode.EPHEMERAL,
                                   CreateMode.PERSISTENT_SEQUENTIAL])
def test_create_container_op_always_makes_a_container(flags):
    """pRequest2TxnCreate: type createContainer always builds a CreateContainerTxn."""
    h = Harness()
    path = h.mk("/c", op=OpCode.createContainer, flags=flags)
    assert h.last_txn.type == OpCode.createContainer
    assert path in h.tree.containers
    assert h.stat(path).ephemeralOwner == 0
    assert h.sid not in h.tree.ephemerals


def test_create_ttl_and_container_txn_types():
    h = Harness(extended_types=True)
    h.mk("/c", op=OpCode.createContainer, flags=CreateMode.CONTAINER)
    assert h.last_txn.type == OpCode.createContainer
    assert h.last_txn.body == ("/c", b"", tuple(OPEN), 1)
    assert "/c" in h.tree.containers
    h.mk("/t", op=OpCode.createTTL, flags=CreateMode.PERSISTENT_WITH_TTL, ttl=1234)
    assert h.last_txn.type == OpCode.createTTL
    assert h.last_txn.body == ("/t", b"", tuple(OPEN), 2, 1234)
    assert "/t" in h.tree.ttls
    assert h.mk("/t-", op=OpCode.createTTL, flags=CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL,
                ttl=5) == "/t-0000000002"
    h.mk("/e", flags=CreateMode.EPHEMERAL, op=OpCode.create2)
    assert h.last_txn.type == OpCode.create2
    assert h.last_txn.body == ("/e", b"", tuple(OPEN), True, 4)


# -- delete ------------------------------------------------------------------------------

class TestDeleteOrder:
    def setup_method(self):
        h = self.h = Harness()
        h.mk("/p")
        h.mk("/p/x")
        h.mk("/p/x/y")
        h.mk("/nd", acl=NO_DELETE)
        h.mk("/nd/x")

    def d(self, path, version=-1, sid=None):
        return err_of(self.h, OpCode.delete, (path, version), sid=sid)

    def test_session_first(self):
        assert self.d("/", sid=UNKNOWN_SID) == Err.UNKNOWNSESSION

    @pytest.mark.parametrize("path", ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config",
                                      "noslash", "/p/x\x00"])
    def test_system_nodes_and_bad_paths(self, path):
        assert self.d(path, version=12345) == Err.BADARGUMENTS

    def test_parent_missing(self):
        assert self.d("/missing/x", version=5) == Err.NONODE

    def test_delete_permission_on_parent_before_node_lookup(self):
        assert self.d("/nd/missing") == Err.NOAUTH
        assert self.d("/nd/x", version=9) == Err.NOAUTH

    def test_node_permission_is_irrelevant(self):
        h = self.h
        h.mk("/p/locked", acl=[(1, "world", "anyone")])
        assert self.d("/p/locked") == 0

    def test_node_missing(self):
        assert self.d("/p/missing", version=7) == Err.NONODE

    def test_version_before_not_empty(self):
        assert self.d("/p/x", version=3) == Err.BADVERSION
        assert self.d("/p/x", version=0) == Err.NOTEMPTY
        assert self.d("/p/x", version=-1) == Err.NOTEMPTY

    def test_success_with_matching_version(self):
        h = self.h
        h.set_data("/p/x/y", b"1")
        assert self.d("/p/x/y", version=0) == Err.BADVERSION
        assert self.d("/p/x/y", version=1) == 0
        assert self.d("/p/x", version=0) == 0

    def test_unvalidated_path_shapes_are_just_missing(self):
        # delete does not run validatePath: odd but slash-containing paths are looked up
        assert self.d("/p/x/") == Err.NONODE
        assert self.d("/p/./x") == Err.NONODE


# -- setData / setACL / check --------------------------------------------------------------

class TestSetDataOrder:
    def setup_method(self):
        h = self.h = Harness()
        h.mk("/a")
        h.mk("/nw", acl=NO_WRITE)

    def s(self, path, version=-1, sid=None):
        return err_of(self.h, OpCode.setData, (path, b"x", version), sid=sid)

    def test_order(self):
        assert self.s("bad", sid=UNKNOWN_SID) == Err.UNKNOWNSESSION
        assert self.s("/a/", version=5) == Err.BADARGUMENTS
        assert self.s("/a/../a") == Err.BADARGUMENTS
        assert self.s("/missing", version=5) == Err.NONODE
        assert self.s("/nw", version=5) == Err.NOAUTH
        assert self.s("/a", version=5) == Err.BADVERSION
        assert self.s("/a", version=0) == 0
        assert self.s("/a", version=-1) == 0
        assert self.h.stat("/a").version == 2

    def test_config_node_is_read_only(self):
        assert self.s("/zookeeper/config") == Err.NOAUTH

    def test_system_nodes_are_writable(self):
        assert self.s("/zookeeper") == 0
        assert self.s("/") == 0


class TestSetACLOrder:
    def setup_method(self):
        h = self.h = Harness()
        h.mk("/a")
        h.mk("/na", acl=NO_ADMIN)

    def s(self, path, acl=None, version=-1, sid=None):
        return err_of(self.h, OpCode.setACL, (path, list(OPEN if acl is None else acl), version),
                      sid=sid)

    def test_order(self):
        assert self.s("bad", acl=BAD_ACL, sid=UNKNOWN_SID) == Err.UNKNOWNSESSION
        assert self.s("bad", acl=BAD_ACL) == Err.BADARGUMENTS
        assert self.s("/missing", acl=BAD_ACL) == Err.INVALIDACL
        assert self.s("/missing", version=3) == Err.NONODE
        assert self.s("/na", version=3) == Err.NOAUTH
        assert self.s("/a", version=3) == Err.BADVERSION
        assert self.s("/a", version=0) == 0
        assert self.s("/a", version=0) == Err.BADVERSION
        assert self.s("/a", version=1) == 0

    def test_config_node(self):
        assert self.s("/zookeeper/config", version=-1) == Err.NOAUTH


class TestCheckOrder:
    def setup_method(self):
        h = self.h = Harness()
        h.mk("/a")
        h.mk("/nr", acl=NO_READ)

    def chk(self, path, version):
        err, body = self.h.multi([op_check(path, version)])
        assert err == 0
        (r,) = parse_multi(body)
        return r.err if r.type == -1 else 0

    def test_order(self):
        assert self.chk("/a/", 5) == Err.BADARGUMENTS
        assert self.chk("/missing", 5) == Err.NONODE
        assert self.chk("/nr", 5) == Err.NOAUTH
        assert self.chk("/a", 5) == Err.BADVERSION
        assert self.chk("/a", 0) == 0
        assert self.chk("/a", -1) == 0

    def test_unknown_session(self):
        err, body = self.h.multi([op_check("/a", 0)], sid=UNKNOWN_SID)
        assert err == 0
        assert [(r.type, r.err) for r in parse_multi(body)] == [(-1, Err.UNKNOWNSESSION)]


# -- outstanding changes -------------------------------------------------------------------------

class TestOutstandingChanges:
    def setup_method(self):
        h = self.h = Harness()
        h.mk("/a")

    def test_pending_create_makes_second_create_nodeexists(self):
        h = self.h
        t1 = h.prep_only(OpCode.create, create_req("/x"))
        t2 = h.prep_only(OpCode.create, create_req("/x"))
        assert t1.type == OpCode.create
        assert (t2.type, t2.body) == (OpCode.error, (Err.NODEEXISTS,))
        assert t2.zxid == t1.zxid + 1

    def test_pending_create_is_a_valid_parent(self):
        h = self.h
        t1 = h.prep_only(OpCode.create, create_req("/x"))
        t2 = h.prep_only(OpCode.create, create_req("/x/y"))
        assert t2.type == OpCode.create
        h.apply(t1)
        h.apply(t2)
        assert h.children("/x") == (0, ["y"])

    def test_pending_ephemeral_is_a_bad_parent(self):
        h = self.h
        h.prep_only(OpCode.create, create_req("/e", flags=CreateMode.EPHEMERAL))
        t = h.prep_only(OpCode.create, create_req("/e/c"))
        assert t.body == (Err.NOCHILDRENFOREPHEMERALS,)

    def test_pending_delete_makes_set_data_nonode(self):
        h = self.h
        t1 = h.prep_only(OpCode.delete, ("/a", -1))
        assert t1.type == OpCode.delete
        t2 = h.prep_only(OpCode.setData, ("/a", b"x", -1))
        assert (t2.type, t2.body) == (OpCode.error, (Err.NONODE,))
        t3 = h.prep_only(OpCode.create, create_req("/a"))
        assert t3.type == OpCode.create  # recreating a pending-deleted node is fine

    def test_pending_set_data_version_is_seen(self):
        h = self.h
        assert h.prep_only(OpCode.setData, ("/a", b"1", 0)).type == OpCode.setData
        assert h.prep_only(OpCode.setData, ("/a", b"2", 0)).body == (Err.BADVERSION,)
        t = h.prep_only(OpCode.setData, ("/a", b"3", 1))
        assert t.type == OpCode.setData and t.body == ("/a", b"3", 2)

    def test_pending_set_acl_is_seen(self):
        h = self.h
        read_admin = [(1 | 16, "world", "anyone")]
        assert h.prep_only(OpCode.setACL, ("/a", read_admin, -1)).type == OpCode.setACL
        assert h.prep_only(OpCode.setData, ("/a", b"x", -1)).body == (Err.NOAUTH,)
        assert h.prep_only(OpCode.setACL, ("/a", OPEN, 0)).body == (Err.BADVERSION,)
        assert h.prep_only(OpCode.setACL, ("/a", OPEN, 1)).type == OpCode.setACL

    def test_pending_child_makes_delete_notempty(self):
        h = self.h
        h.prep_only(OpCode.create, create_req("/a/c"))
        assert h.prep_only(OpCode.delete, ("/a", -1)).body == (Err.NOTEMPTY,)

    def test_pending_sequential_creates_count_up(self):
        h = self.h
        t1 = h.prep_only(OpCode.create, create_req("/a/s-", flags=CreateMode.PERSISTENT_SEQUENTIAL))
        t2 = h.prep_only(OpCode.create, create_req("/a/s-", flags=CreateMode.PERSISTENT_SEQUENTIAL))
        assert (t1.body[0], t1.body[4]) == ("/a/s-0000000000", 1)
        assert (t2.body[0], t2.body[4]) == ("/a/s-0000000001", 2)

    def test_applied_forgets_records(self):
        h = self.h
        t1 = h.prep_only(OpCode.create, create_req("/x"))
        t2 = h.prep_only(OpCode.setData, ("/a", b"v", -1))
        assert h.prep.has_outstanding()
        assert {"/x", "", "/a"} <= set(h.prep.by_path)  # the parent of /x is keyed "" as in Java
        h.apply(t1)
        assert "/x" not in h.prep.by_path and "/" not in h.prep.by_path
        assert "/a" in h.prep.by_path
        h.apply(t2)
        assert not h.prep.has_outstanding()
        assert h.prep.by_path == {}
        # the tree is now the source of truth again
        assert h.prep_only(OpCode.create, create_req("/x")).body == (Err.NODEEXISTS,)

    def test_applied_keeps_newer_record_for_the_same_path(self):
        h = self.h
        t1 = h.prep_only(OpCode.setData, ("/a", b"1", -1))
        t2 = h.prep_only(OpCode.setData, ("/a", b"2", -1))
        h.apply(t1)
        assert h.prep.by_path["/a"].zxid == t2.zxid
        assert h.prep_only(OpCode.setData, ("/a", b"3", 2)).type == OpCode.setData

    def test_error_txns_leave_no_records(self):
        h = self.h
        h.prep_only(OpCode.create, create_req("/missing/x"))
        assert not h.prep.has_outstanding()

    def test_failed_multi_restores_earlier_pending_parent_record(self):
        """ZOOKEEPER-1624: rollback puts back the parent record of an earlier, unapplied create."""
        h = self.h
        t1 = h.prep_only(OpCode.create, create_req("/a/s-", flags=CreateMode.PERSISTENT_SEQUENTIAL))
        assert t1.body[0] == "/a/s-0000000000"
        tm = h.prep_only(OpCode.multi, (
            op_create("/a/s-", flags=CreateMode.PERSISTENT_SEQUENTIAL),
            op_delete("/nope"),
        ))
        assert [t for t, _ in tm.body[0]] == [OpCode.create, OpCode.error]
        t3 = h.prep_only(OpCode.create, create_req("/a/s-", flags=CreateMode.PERSISTENT_SEQUENTIAL))
        assert t3.body[0] == "/a/s-0000000001"
        for t in (t1, tm, t3):
            h.apply(t)
        assert h.children("/a") == (0, ["s-0000000000", "s-0000000001"])
        assert not h.prep.has_outstanding()

    def test_failed_multi_restores_pending_deleted_state(self):
        h = self.h
        h.prep_only(OpCode.delete, ("/a", -1))
        tm = h.prep_only(OpCode.multi, (op_create("/a"), op_check("/a", 5)))
        assert [t for t, _ in tm.body[0]] == [OpCode.create, OpCode.error]
        # /a is still pending-deleted after the rollback
        assert h.prep_only(OpCode.setData, ("/a", b"", -1)).body == (Err.NONODE,)

    def test_rollback_all_reuses_zxids(self):
        h = self.h
        last = h.core.last_zxid
        h.prep_only(OpCode.create, create_req("/x"))
        h.prep_only(OpCode.create, create_req("/y"))
        h.prep.rollback_all(last)
        assert not h.prep.has_outstanding()
        t = h.prep_only(OpCode.create, create_req("/x"))
        assert t.zxid == last + 1 and t.type == OpCode.create

    def test_pending_set_acl_on_root_does_not_guard_creates_under_root(self):
        """Java keys a create's parent record by "" for children of the root, a setACL by "/".

        getRecordForPath("") misses the pending "/" record and reads the applied root ACL.
        """
        h = self.h
        assert h.prep_only(OpCode.setACL, ("/", READ_ONLY, -1)).type == OpCode.setACL
        t = h.prep_only(OpCode.create, create_req("/b"))
        assert t.type == OpCode.create


# -- closeSession prep ----------------------------------------------------------------------

def test_prep_close_session_lists_applied_and_pending_ephemerals():
    h = Harness()
    other = h.new_session()
    h.mk("/e1", flags=CreateMode.EPHEMERAL)
    h.mk("/e2", flags=CreateMode.EPHEMERAL)
    h.mk("/p")
    h.prep_only(OpCode.create, create_req("/e3", flags=CreateMode.EPHEMERAL))
    h.prep_only(OpCode.delete, ("/e1", -1))
    h.prep_only(OpCode.create, create_req("/p/mine"))  # persistent: not listed
    t = h.prep.prep_close_session(h.sid, 9, h.now)
    assert t.type == OpCode.closeSession
    assert sorted(t.body[0]) == ["/e2", "/e3"]
    assert h.core.sessions.sessions[h.sid].closing
    # a write after the close was prepped: the session is closing
    assert h.prep_only(OpCode.create, create_req("/late")).body == (Err.SESSIONEXPIRED,)
    # the close marks the ephemerals deleted for later preps
    assert h.prep_only(OpCode.setData, ("/e2", b"", -1), sid=other).body == (Err.NONODE,)
    assert h.prep_only(OpCode.setData, ("/p", b"", -1), sid=other).type == OpCode.setData


# -- deleteContainer (ContainerManager's internal op 20) ----------------------------------

class TestDeleteContainer:
    def setup_method(self):
        h = self.h = Harness(extended_types=True)
        h.mk("/c", op=OpCode.createContainer, flags=CreateMode.CONTAINER)
        h.mk("/full", op=OpCode.createContainer, flags=CreateMode.CONTAINER)
        h.mk("/full/x")
        h.mk("/t", op=OpCode.createTTL, flags=CreateMode.PERSISTENT_WITH_TTL, ttl=10)
        h.mk("/e", flags=CreateMode.EPHEMERAL)
        h.mk("/p")

    def dc(self, path):
        t = self.h.prep.prep_delete_container(path, self.h.now)
        self.h.apply(t)
        return t

    def test_empty_container(self):
        t = self.dc("/c")
        assert (t.type, t.body, t.session_id) == (OpCode.deleteContainer, ("/c",), 0)
        assert "/c" not in self.h.tree.nodes and "/c" not in self.h.tree.containers

    def test_ttl_node(self):
        t = self.dc("/t")
        assert t.type == OpCode.deleteContainer
        assert "/t" not in self.h.tree.nodes and "/t" not in self.h.tree.ttls

    def test_not_empty(self):
        assert self.dc("/full").body == (Err.NOTEMPTY,)

    def test_ephemeral_is_bad_version(self):
        assert self.dc("/e").body == (Err.BADVERSION,)

    def test_missing(self):
        assert self.dc("/gone").body == (Err.NONODE,)

    @pytest.mark.parametrize("path", ["/zookeeper", "/", "/zookeeper/quota"])
    def test_system_nodes(self, path):
        assert self.dc(path).body == (Err.BADARGUMENTS,)

    def test_persistent_node_is_deleted(self):
        """EphemeralType.get(0) is VOID, not NORMAL: only ephemerals get BadVersion."""
        t = self.dc("/p")
        assert t.type == OpCode.deleteContainer
        assert "/p" not in self.h.tree.nodes

    def test_consumes_zxid(self):
        before = self.h.core.last_zxid
        self.dc("/gone")
        assert self.h.core.last_zxid == before + 1
