"""Section 7 of the protocol reference ("traps"), sequential suffixes, validation order, zxid consumption."""

from __future__ import annotations

import pytest

from tests.support import rawclient as rc
from tests.support.rawclient import (
    CONTAINER, EPHEMERAL, EPHEMERAL_SEQUENTIAL, OPEN_ACL_UNSAFE, PERSISTENT_SEQUENTIAL, PERSISTENT_WITH_TTL,
    READ_ACL_UNSAFE, ACL, op_check, op_create, op_create2, op_delete, op_set_data,
)
from tests.differential.conftest import diff

pytestmark = pytest.mark.differential


def test_sequential_suffix_is_persisted_cversion(zk_pair):
    """Trap 1: suffix = creates ever made under the parent; visible cversion = 2*persisted - numChildren."""

    def scenario(z):
        z.connect("a")
        R = z.root
        p = R + "/p"
        z.a.create(R)
        z.a.create(p)
        z.a.create(p + "/a")
        z.a.delete(p + "/a")
        z.a.create(p + "/s-", flags=PERSISTENT_SEQUENTIAL)       # s-0000000001
        z.a.get_children2(p)
        z.a.create(p + "/x")
        z.a.create(p + "/x")                                     # NodeExists: counter untouched
        z.a.create(p + "/nochild/y")                             # NoNode deeper: p untouched
        z.a.create(p + "/s-", flags=PERSISTENT_SEQUENTIAL)       # s-0000000003
        z.a.create(p + "/t-", flags=EPHEMERAL_SEQUENTIAL)        # shared counter across prefixes
        z.a.create2(p + "/", flags=PERSISTENT_SEQUENTIAL)        # empty prefix: p/0000000005
        z.a.exists(p)
        z.a.get_children2(p)
        # within a multi consecutive sequential creates see each other
        z.a.multi([op_create(p + "/m-", flags=PERSISTENT_SEQUENTIAL), op_create(p + "/m-", flags=PERSISTENT_SEQUENTIAL),
                   op_create2(p + "/m-", flags=PERSISTENT_SEQUENTIAL)])
        # a failed multi does not advance the counter (rollback preserves it)
        z.a.multi([op_create(p + "/f-", flags=PERSISTENT_SEQUENTIAL), op_check(p, 99)])
        z.a.create(p + "/g-", flags=PERSISTENT_SEQUENTIAL)
        # deletes never lower it
        for child in ("x", "s-0000000001", "s-0000000003", "0000000005"):
            z.a.delete(p + "/" + child)
        z.a.create(p + "/h-", flags=PERSISTENT_SEQUENTIAL)
        z.a.get_children2(p)
        # a sequential name that already exists as a plain node
        z.a.create(p + "/n0000000012")
        z.a.create(p + "/n", flags=PERSISTENT_SEQUENTIAL)
        z.a.get_children2(p)
        # sequential directly under the root of the test and under a brand new parent
        z.a.create(R + "/q")
        z.a.create(R + "/q/", flags=PERSISTENT_SEQUENTIAL)
        z.a.get_children2(R)

    diff(zk_pair, scenario)


def test_visible_cversion_and_pzxid(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/c")
        z.a.exists(R)
        z.a.set_data(R + "/c", b"1")           # child data change: parent untouched
        z.a.exists(R)
        z.a.create(R + "/d")
        z.a.delete(R + "/c")
        z.a.exists(R)
        z.a.delete(R + "/d")
        z.a.exists(R)
        z.a.delete(R + "/zz")                  # failed delete: no change
        z.a.exists(R)
        z.a.create(R + "/c/x")                 # failed create: no change
        z.a.get_children2(R)
        z.a.set_acl(R, OPEN_ACL_UNSAFE)
        z.a.exists(R)
        z.a.multi([op_create(R + "/m1"), op_create(R + "/m2"), op_delete(R + "/m1")])
        z.a.get_children2(R)
        z.a.exists(R + "/m2")

    diff(zk_pair, scenario)


def test_failed_writes_and_empty_multi_consume_zxids(zk_pair):
    """Trap 2: every write, failed or not, and an empty multi, is a txn."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.ping()
        z.a.create(R)
        z.a.ping()
        z.a.create(R)                          # NodeExists
        z.a.ping()
        z.a.set_data(R, b"x", 7)               # BadVersion
        z.a.ping()
        z.a.delete(R + "/none")                # NoNode
        z.a.ping()
        z.a.set_acl(R + "/none", OPEN_ACL_UNSAFE)
        z.a.ping()
        z.a.multi([])                          # empty multi
        z.a.ping()
        z.a.multi([op_check(R, 5)])            # failed multi
        z.a.ping()
        z.a.get_data(R)                        # reads consume nothing
        z.a.exists(R + "/none")
        z.a.sync(R)
        z.a.ping()
        z.a.create("bad")                      # BadArguments: still a txn?
        z.a.ping()
        z.a.create(R + "/t", flags=99)         # invalid flags
        z.a.ping()
        z.connect("b")                         # a new session is a txn
        z.a.ping()
        z.b.close_session()                    # so is closeSession
        z.a.ping()

    diff(zk_pair, scenario)


def test_failed_multi_encoding(zk_pair):
    """Trap 3: outer err 0, results 0 before, the code at, -2 after the failing op."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R, b"r")
        z.a.create(R + "/k")
        z.a.multi([op_create(R + "/a"), op_create(R + "/k"), op_set_data(R, b"z"), op_delete(R + "/a")])
        z.a.multi([op_check(R + "/none", 0), op_create(R + "/b")])
        z.a.multi([op_create(R + "/b"), op_set_data(R, b"x", 3)])
        z.a.multi([op_create(R + "/b"), op_create(R + "/b/c"), op_delete(R + "/b")])    # NotEmpty
        z.a.multi([op_create(R + "/b"), op_create("nope")])                              # bad path
        z.a.multi([op_create(R + "/b"), op_create(R + "/b/c", flags=42)])                # bad flags
        z.a.multi([op_delete(R + "/k", 4)])
        z.a.multi([op_create(R + "/e", flags=EPHEMERAL), op_create(R + "/e/x")])       # -108 inside multi
        z.a.get_children2(R)
        z.a.get_data(R)
        # success: every kind of result; create2 in 3.8.0 answers type 1 without a Stat
        z.a.multi([op_create(R + "/b", b"1"), op_create2(R + "/c", None), op_set_data(R + "/b", b"2", 0),
                   op_check(R + "/b", 1), op_delete(R + "/c", 0), op_create(R + "/s", flags=PERSISTENT_SEQUENTIAL)])
        z.a.get_children2(R)

    diff(zk_pair, scenario)


def test_create_container_always_returns_stat(zk_pair):
    """Trap 4: op 19 answers Create2Response (path + Stat) always."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.create_container(R + "/c1", b"d")
        z.a.create_container(R + "/c1")                                  # NodeExists
        z.a.create_container(R + "/c2", flags=0)                         # op 19 without the container flag
        z.a.create_container(R + "/c3", flags=PERSISTENT_SEQUENTIAL)
        z.a.create(R + "/c4", flags=CONTAINER)                           # container flag on op 1
        z.a.create2(R + "/c5", flags=CONTAINER)                          # and on op 15
        z.a.create(R + "/c1/child", flags=EPHEMERAL)                    # ephemeral under a container: fine
        z.a.exists(R + "/c1")
        z.a.get_children2(R)

    diff(zk_pair, scenario)


@pytest.mark.parametrize("read_only", [None, False, True], ids=["44-byte", "45-byte-rw", "45-byte-ro"])
def test_connect_response_mirrors_read_only_byte(zk_pair, read_only):
    """Trap 5: a 44-byte ConnectRequest gets a 36-byte response, a 45-byte one 37 bytes."""

    def scenario(z):
        z.handshake_raw("a", rc.encode_connect_request(timeout=30000, read_only=read_only), note=f"ro={read_only}")
        z.a.exists("/")

    diff(zk_pair, scenario)


def test_missing_node_watch_rules(zk_pair):
    """Trap 6: exists() on a missing node arms a watch, getData()/getChildren() do not; setACL fires nothing."""

    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.b.exists(R + "/x", True)
        z.b.get_data(R + "/y", True)
        z.b.get_children(R + "/w", True)
        z.a.create(R + "/x")
        z.a.create(R + "/y")
        z.a.create(R + "/w")
        z.a.create(R + "/w/c")
        z.barrier()
        z.b.get_data(R + "/x", True)
        z.b.exists(R + "/y", True)
        z.b.get_children(R + "/w", True)
        z.a.set_acl(R + "/x", OPEN_ACL_UNSAFE)
        z.a.set_acl(R + "/y", READ_ACL_UNSAFE + [ACL(rc.PERM_ALL, "world", "anyone")])
        z.a.set_acl(R + "/w", OPEN_ACL_UNSAFE)
        z.barrier()
        z.a.set_data(R + "/x", b"1")
        z.a.set_data(R + "/y", b"1")
        z.a.set_data(R + "/w", b"1")                    # child watch: data change is not a child change
        z.barrier()

    diff(zk_pair, scenario)


def test_persistent_recursive_never_gets_children_changed(zk_pair):
    """Trap 7 (and 8: notification zxid is -1 on 3.8, compared raw)."""

    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.b.add_watch(R, rc.ADD_WATCH_PERSISTENT_RECURSIVE)
        z.a.create(R + "/x")
        z.a.create(R + "/x/y", b"1")
        z.a.set_data(R + "/x/y", b"2")
        z.a.delete(R + "/x/y")
        z.a.set_data(R, b"r")
        z.a.multi([op_create(R + "/m"), op_create(R + "/m/n"), op_set_data(R + "/m", b"q")])
        z.barrier()
        z.a.delete(R + "/m/n")
        z.a.delete(R + "/m")
        z.a.delete(R + "/x")
        z.barrier()

    diff(zk_pair, scenario)


def test_empty_acl_rejected(zk_pair):
    """Trap 9: an empty ACL list is InvalidACL at create and setACL; so is a null vector."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/e", b"", [])
        z.a.create2(R + "/e", b"", [])
        z.a.create(R + "/n", b"", None)
        z.a.set_acl(R, [])
        z.a.set_acl(R, None)
        z.a.multi([op_create(R + "/m", b"", [])])
        z.a.create_container(R + "/c", b"", [])
        z.a.create_ttl(R + "/t", b"", [], ttl=100000)
        z.a.get_acl(R)

    diff(zk_pair, scenario)


def test_system_nodes(zk_pair):
    """Trap 10: /zookeeper/config has aversion -1 and a READ-only ACL; system nodes have zero stats."""

    def scenario(z):
        z.connect("a")
        for p in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
            z.a.get_data(p)
            z.a.get_acl(p)
            z.a.get_children(p)
        z.a.get_all_children_number("/zookeeper")
        z.a.set_data("/zookeeper/config", b"x")
        z.a.delete("/zookeeper/config")
        z.a.delete("/zookeeper/quota")
        z.a.delete("/zookeeper")
        z.a.delete("/")
        z.a.set_data("/zookeeper", b"x", 5)
        z.a.create("/zookeeper/config/x")
        z.a.create("/zookeeper", b"")

    diff(zk_pair, scenario)


def test_null_versus_empty_data(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R, None)
        z.a.get_data(R)
        z.a.create2(R + "/e", b"")
        z.a.get_data(R + "/e")
        z.a.set_data(R + "/e", None)
        z.a.get_data(R + "/e")
        z.a.set_data(R, b"")
        z.a.get_data(R)
        z.a.multi([op_set_data(R, None), op_create(R + "/m", None)])
        z.a.multi_read([rc.op_get_data(R), rc.op_get_data(R + "/m")])
        z.a.create_container(R + "/c", None)
        z.a.get_data(R + "/c")
        z.a.create_ttl(R + "/t", None, ttl=1000000)
        z.a.get_data(R + "/t")

    diff(zk_pair, scenario)


def test_create_validation_order(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/ro", b"", READ_ACL_UNSAFE)
        z.a.create(R + "/ro/x")                                      # no CREATE on parent
        z.a.create(R + "/eph", flags=EPHEMERAL)
        z.a.create(R + "/have")
        # invalid flags beat everything else
        z.a.create(R + "/missing/x", b"", [], flags=7)
        z.a.create("bad", flags=-1)
        # TTL: flag on op 1, non-TTL flag on op 21, bad ttl values
        z.a.create(R + "/t1", flags=PERSISTENT_WITH_TTL)
        z.a.create2(R + "/t1", flags=rc.PERSISTENT_SEQUENTIAL_WITH_TTL)
        z.a.create_ttl(R + "/t1", flags=0, ttl=1000)
        z.a.create_ttl(R + "/t1", flags=EPHEMERAL, ttl=1000)
        z.a.create_ttl(R + "/t1", flags=CONTAINER, ttl=1000)
        z.a.create_ttl(R + "/t1", ttl=0)
        z.a.create_ttl(R + "/t1", ttl=-5)
        z.a.create_ttl(R + "/t1", ttl=(1 << 40) - 1)
        z.a.create_ttl(R + "/t2", ttl=1 << 40)
        z.a.create_ttl("bad", ttl=0)                                  # bad ttl before bad path
        z.a.create_ttl(R + "/missing/t", ttl=1000)
        # path checks: no slash, NUL, trailing slash, empty segment, dot segments
        for p in ("bad", "", R + "/a\x00b", R + "/a/", R + "//a", R + "/.", R + "/..", R + "/a/../b", "/",
                  R + "/\u0001", R + "/\ud7ff", R + "/\uffff", R + "/ok\u00e9"):
            z.a.create(p)
        # ACL fixup beats missing parent; missing parent beats NOAUTH; NOAUTH beats NodeExists
        z.a.create(R + "/missing/x", b"", [])
        z.a.create(R + "/missing/x", b"", [ACL(31, "world", "nobody")])
        z.a.create(R + "/missing/x", b"", rc.CREATOR_ALL_ACL)
        z.a.create(R + "/ro/x/y")
        z.a.create(R + "/ro")
        z.a.create(R + "/ro/", flags=PERSISTENT_SEQUENTIAL)
        # NodeExists beats the ephemeral-parent check; sequential under ephemeral
        z.a.create(R + "/eph/c")
        z.a.create(R + "/eph/c", flags=PERSISTENT_SEQUENTIAL)
        z.a.create(R + "/eph/c", flags=EPHEMERAL)
        z.a.create(R + "/have")
        z.a.create(R + "/have", b"", [])
        z.a.create(R + "/have", b"", READ_ACL_UNSAFE, flags=9)
        # sequential with a bad final path
        z.a.create(R + "/have/", flags=PERSISTENT_SEQUENTIAL)
        z.a.create(R + "//", flags=PERSISTENT_SEQUENTIAL)
        z.a.get_children2(R)

    diff(zk_pair, scenario)


def test_delete_setdata_setacl_validation_order(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/nd", b"", [ACL(rc.PERM_ALL & ~rc.PERM_DELETE, "world", "anyone")])
        z.a.create(R + "/nd/c")
        z.a.create(R + "/nd/c/g")
        z.a.create(R + "/nw", b"", [ACL(rc.PERM_ALL & ~rc.PERM_WRITE & ~rc.PERM_ADMIN, "world", "anyone")])
        z.a.create(R + "/full")
        z.a.create(R + "/full/c")
        # delete
        for p in ("bad", R + "/", R + "/missing/x", R + "/missing", "/zookeeper/quota", "/zookeeper/config"):
            z.a.delete(p)
        z.a.delete(R + "/nd/missing")           # DELETE on parent checked before the node exists
        z.a.delete(R + "/nd/c")                 # NOAUTH before NotEmpty
        z.a.delete(R + "/nd/c", 5)
        z.a.delete(R + "/full", 5)              # BadVersion before NotEmpty
        z.a.delete(R + "/full")
        z.a.delete(R + "/full/c", 1)
        z.a.delete(R + "/full/c", 0)
        # setData
        z.a.set_data("bad", b"x")
        z.a.set_data(R + "/", b"x")
        z.a.set_data(R + "/missing", b"x", 9)
        z.a.set_data(R + "/nw", b"x", 9)        # NOAUTH before BadVersion
        z.a.set_data(R + "/full", b"x", 1)
        z.a.set_data(R + "/full", b"x", 0)
        z.a.set_data(R + "/full", b"y", 0)
        z.a.set_data(R + "/full", b"y", -1)
        z.a.set_data(R + "/full", b"y", -2)
        # setACL
        z.a.set_acl("bad", [])
        z.a.set_acl(R + "/missing", [], 3)      # ACL fixup before NoNode
        z.a.set_acl(R + "/missing", OPEN_ACL_UNSAFE, 3)
        z.a.set_acl(R + "/nw", OPEN_ACL_UNSAFE, 3)   # NOAUTH before BadVersion
        z.a.set_acl(R + "/full", OPEN_ACL_UNSAFE, 1)
        z.a.set_acl(R + "/full", READ_ACL_UNSAFE, 0)
        z.a.set_acl(R + "/full", OPEN_ACL_UNSAFE, 0)     # needs ADMIN: READ-only now
        z.a.exists(R + "/full")
        # check inside multi
        z.a.multi([op_check("bad", 0)])
        z.a.multi([op_check(R + "/missing", 0)])
        z.a.create(R + "/nr", b"", [ACL(rc.PERM_ALL & ~rc.PERM_READ, "world", "anyone")])
        z.a.multi([op_check(R + "/nr", 7)])      # NOAUTH before BadVersion
        z.a.multi([op_check(R + "/nr", 0)])
        z.a.multi([op_check(R + "/full", -1)])
        # reads
        z.a.get_data(R + "/nr")
        z.a.get_children(R + "/nr")
        z.a.get_children2(R + "/nr")
        z.a.exists(R + "/nr")                   # 3.8.0 does not check READ on exists
        z.a.get_acl(R + "/nr")
        z.a.get_all_children_number(R + "/nr")
        z.a.get_data(R + "/missing")
        z.a.get_data("bad")
        z.a.exists("bad")
        z.a.get_children(R + "/")

    diff(zk_pair, scenario)


def test_top_level_check_and_xids(zk_pair):
    """Op 13 outside multi, explicit xids echoed, pipelined requests answered in order."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R, xid=0)
        z.a.exists(R, xid=2147483647)
        z.a.exists(R, xid=-77)
        z.a.get_data(R, xid=5)
        z.a.ping(xid=9)                            # ping with a normal xid
        z.a.sync(R, xid=-2)
        c = z.a.client
        # pipelining: three requests then three replies
        c.submit(rc.OP_CREATE, rc.encode_create(R + "/p1"), 100)
        c.submit(rc.OP_GET_DATA, rc.encode_path_watch(R + "/p1", False), 101)
        c.submit(rc.OP_DELETE, rc.encode_path_version(R + "/p1", -1), 102)
        for _ in range(3):
            z.note("a", "pipelined reply", z._norm_reply(c.read_reply()))
        z.connect("b")
        z.b.check(R, 3)                            # BadVersion as a top-level txn on 3.8.0
        z.expect_eof("b", 1.0)
        z.a.ping()

    diff(zk_pair, scenario)


def test_top_level_check_matching_version(zk_pair):
    """Op 13 outside multi with a matching version (3.8.0: logged, then the connection is dropped)."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.connect("b")
        z.b.check(R, 0, _timeout=1.5)
        z.expect_eof("b", 1.0)
        z.a.ping()
        z.a.exists(R)

    diff(zk_pair, scenario)
