"""Watch trigger rules (reference 2.7): one-shot, persistent, persistent-recursive, setWatches(2) on re-attach,
checkWatches/removeWatches. Each session's notifications are compared with their position among its replies."""

from __future__ import annotations

import pytest

from tests.support import rawclient as rc
from tests.support.rawclient import (
    ADD_WATCH_PERSISTENT, ADD_WATCH_PERSISTENT_RECURSIVE, EPHEMERAL, OPEN_ACL_UNSAFE, PERSISTENT_SEQUENTIAL,
    WATCHER_ANY, WATCHER_CHILDREN, WATCHER_DATA, op_check, op_create, op_delete, op_set_data,
)
from tests.differential.conftest import diff

pytestmark = pytest.mark.differential


def test_one_shot_data_exist_child_watches(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/n", b"1")
        z.b.get_data(R + "/n", True)
        z.b.exists(R + "/n", True)               # same data table: one event per trigger
        z.b.get_children(R, True)
        z.b.get_children2(R + "/n", True)
        z.a.set_data(R + "/n", b"2")              # NodeDataChanged once
        z.a.set_data(R + "/n", b"3")              # one-shot: nothing
        z.barrier()
        z.a.create(R + "/n/c")                    # child watch on /n fires, parent R's child watch not (grandchild)
        z.a.create(R + "/m")                      # R's child watch fires
        z.a.create(R + "/m2")                     # already consumed
        z.barrier()
        z.b.get_data(R + "/n/c", True)
        z.b.get_children(R + "/n", True)
        z.b.exists(R + "/n", True)
        z.b.get_children(R, True)
        z.a.delete(R + "/n/c")                    # NodeDeleted(/n/c), NodeChildrenChanged(/n)
        z.barrier()
        z.b.get_children(R + "/n", True)
        z.a.delete(R + "/n")                      # NodeDeleted(/n) once (data + child tables), NCC(R)
        z.barrier()
        # watches set and fired by the same session: the event precedes the write's reply
        z.a.exists(R + "/self", True)
        z.a.create(R + "/self")
        z.a.get_data(R + "/self", True)
        z.a.get_children(R + "/self", True)
        z.a.delete(R + "/self")
        # sync and reads fire nothing
        z.b.exists(R + "/m", True)
        z.a.sync(R + "/m")
        z.a.get_data(R + "/m")
        z.barrier()
        z.a.set_data(R + "/m", None)
        z.barrier()

    diff(zk_pair, scenario)


def test_multi_fires_per_sub_op_in_order(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/x", b"0")
        z.b.get_children(R, True)
        z.b.get_data(R + "/x", True)
        z.b.exists(R + "/y", True)
        z.b.exists(R + "/s0000000002", True)
        z.a.multi([op_set_data(R + "/x", b"1"), op_create(R + "/y"), op_create(R + "/s", flags=PERSISTENT_SEQUENTIAL),
                   op_delete(R + "/x"), op_check(R, 0)])
        z.barrier()
        z.b.get_children(R, True)
        z.b.get_data(R + "/y", True)
        z.a.multi([op_delete(R + "/y"), op_check(R, 42)])        # failed multi fires nothing
        z.barrier()
        z.a.multi([])
        z.barrier()

    diff(zk_pair, scenario)


def test_persistent_watch(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.b.add_watch(R + "/p", ADD_WATCH_PERSISTENT)         # on a missing node
        z.a.create(R + "/p", b"1")                            # NodeCreated
        z.a.set_data(R + "/p", b"2")                          # NodeDataChanged
        z.a.set_data(R + "/p", b"3")                          # again: persistent
        z.a.create(R + "/p/c")                                # NodeChildrenChanged
        z.a.create(R + "/p/c/g")                              # grandchild: nothing
        z.a.set_data(R + "/p/c", b"x")                        # child data: nothing
        z.a.delete(R + "/p/c/g")
        z.a.delete(R + "/p/c")                                # NodeChildrenChanged
        z.a.set_acl(R + "/p", OPEN_ACL_UNSAFE)                # nothing
        z.barrier()
        z.b.get_data(R + "/p", True)                          # one-shot on top: still one event per trigger
        z.b.get_children(R + "/p", True)
        z.a.set_data(R + "/p", b"4")
        z.a.delete(R + "/p")                                  # NodeDeleted
        z.a.create(R + "/p")                                  # still armed: NodeCreated
        z.barrier()
        z.b.check_watches(R + "/p", WATCHER_DATA)
        z.b.check_watches(R + "/p", WATCHER_CHILDREN)
        z.b.check_watches(R + "/p", WATCHER_ANY)
        z.b.add_watch(R + "/p", ADD_WATCH_PERSISTENT)         # twice
        z.b.add_watch(R + "/p", 2)                            # invalid mode
        z.b.add_watch(R + "/p", -1)
        z.b.remove_watches(R + "/p", WATCHER_CHILDREN)
        z.a.create(R + "/p/d")
        z.a.set_data(R + "/p", b"5")
        z.barrier()
        z.b.remove_watches(R + "/p", WATCHER_ANY)
        z.b.check_watches(R + "/p", WATCHER_ANY)
        z.a.set_data(R + "/p", b"6")
        z.barrier()

    diff(zk_pair, scenario)


def test_persistent_recursive_watch(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.b.add_watch(R + "/r", ADD_WATCH_PERSISTENT_RECURSIVE)
        z.a.create(R + "/r")
        z.a.create(R + "/r/a", b"1")
        z.a.create(R + "/r/a/b", b"1")
        z.a.create(R + "/rx")                                 # sibling with a common prefix: nothing
        z.a.set_data(R + "/r/a/b", b"2")
        z.a.create(R + "/r/e", flags=EPHEMERAL)
        z.barrier()
        z.b.get_children(R + "/r", True)                      # one-shot child watch still works alongside
        z.a.create(R + "/r/z")
        z.a.delete(R + "/r/z")
        z.barrier()
        z.b.check_watches(R + "/r", WATCHER_DATA)
        z.b.check_watches(R + "/r", WATCHER_CHILDREN)
        z.b.check_watches(R + "/r/a", WATCHER_ANY)
        z.b.add_watch(R + "/r/a", ADD_WATCH_PERSISTENT)       # overlapping: one event per trigger
        z.a.set_data(R + "/r/a", b"x")
        z.a.create(R + "/r/a/c")
        z.barrier()
        z.a.close_session()                                   # ephemeral deleted: recursive watch sees it
        z.barrier()
        z.b.remove_watches(R + "/r", WATCHER_DATA)
        z.connect("a")
        z.a.set_data(R + "/r/a/b", b"3")
        z.barrier()

    diff(zk_pair, scenario)


def test_check_and_remove_watches(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/n")
        for t in (WATCHER_CHILDREN, WATCHER_DATA, WATCHER_ANY):
            z.b.check_watches(R + "/n", t)                    # nothing registered: NOWATCHER
            z.b.remove_watches(R + "/n", t)
        z.b.check_watches(R + "/missing", WATCHER_ANY)
        z.b.get_data(R + "/n", True)
        z.b.check_watches(R + "/n", WATCHER_CHILDREN)
        z.b.check_watches(R + "/n", WATCHER_DATA)
        z.b.check_watches(R + "/n", WATCHER_ANY)
        z.b.remove_watches(R + "/n", WATCHER_DATA)
        z.b.check_watches(R + "/n", WATCHER_DATA)
        z.a.set_data(R + "/n", b"x")                          # removed: nothing
        z.barrier()
        z.b.exists(R + "/missing", True)                      # exist watch counts as a data watch
        z.b.check_watches(R + "/missing", WATCHER_DATA)
        z.b.check_watches(R + "/missing", WATCHER_CHILDREN)
        z.b.remove_watches(R + "/missing", WATCHER_ANY)
        z.a.create(R + "/missing")
        z.barrier()
        z.b.get_children(R + "/n", True)
        z.b.get_data(R + "/n", True)
        z.b.remove_watches(R + "/n", WATCHER_CHILDREN)
        z.b.check_watches(R + "/n", WATCHER_CHILDREN)
        z.b.check_watches(R + "/n", WATCHER_DATA)
        z.b.remove_watches(R + "/n", WATCHER_ANY)
        z.b.check_watches(R + "/n", WATCHER_ANY)
        z.a.check_watches(R + "/n", WATCHER_ANY)              # other session: its own table
        z.b.check_watches("bad", WATCHER_ANY)
        z.b.check_watches(R + "/", WATCHER_ANY)
        z.a.delete(R + "/n")
        z.barrier()

    diff(zk_pair, scenario)


# Types 4 (Persistent) and 5 (PersistentRecursive) are Apache ZooKeeper 3.9's; 3.8.0 answers
# MARSHALLINGERROR. zktwist supports them on purpose (README, "Differences"), so they are
# not compared here; tests/unit/test_core_watches.py pins zktwist's 3.9 behaviour.
@pytest.mark.parametrize("wtype", [0, 6, -1], ids=["type0", "type6", "type-1"])
def test_check_watches_unknown_type(zk_pair, wtype):
    """3.8.0 knows WatcherType 1..3 only (4/5 arrived in 3.9)."""

    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.b.add_watch(R, ADD_WATCH_PERSISTENT)
        z.b.check_watches(R, wtype, _timeout=2.0)
        z.b.remove_watches(R, wtype, _timeout=2.0)
        z.a.set_data(R, b"x")
        z.barrier()

    diff(zk_pair, scenario)


def test_watches_dropped_with_connection(zk_pair):
    """Watches belong to the connection: a re-attached session does not get them back by itself."""

    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/n")
        z.b.get_data(R + "/n", True)
        z.b.add_watch(R, ADD_WATCH_PERSISTENT_RECURSIVE)
        z.reattach("b")
        z.a.set_data(R + "/n", b"1")
        z.a.create(R + "/m")
        z.barrier()
        z.b.check_watches(R + "/n", WATCHER_ANY)

    diff(zk_pair, scenario)


def test_set_watches_four_cases(zk_pair):
    """SetWatches after re-attach: data/exist/child watches are fired or re-armed against relativeZxid."""

    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        for n in ("gone", "changed", "same", "appeared", "kids", "kidsgone", "quiet"):
            if n != "appeared":
                z.a.create(f"{R}/{n}", b"0")
        z.a.create(R + "/kids/k1")
        z.b.ping()
        rel = z.b.last_zxid
        z.drop("b")
        z.a.delete(R + "/gone")
        z.a.set_data(R + "/changed", b"1")
        z.a.create(R + "/appeared")
        z.a.create(R + "/kids/k2")
        z.a.delete(R + "/kidsgone")
        z.reattach("b", last_zxid=rel)
        z.b.set_watches(
            rel,
            data=[R + "/gone", R + "/changed", R + "/same", R + "/never"],
            exist=[R + "/appeared", R + "/absent", R + "/same"],
            child=[R + "/kids", R + "/kidsgone", R + "/quiet", R + "/nokids"],
        )
        z.barrier()
        # the re-armed ones fire on the next change
        z.a.set_data(R + "/same", b"1")
        z.a.create(R + "/absent")
        z.a.create(R + "/quiet/q")
        z.a.create(R + "/never")
        z.a.create(R + "/nokids")
        z.a.create(R + "/nokids/c")
        z.a.set_data(R + "/changed", b"2")            # already fired at setWatches: one-shot, nothing now
        z.barrier()

    diff(zk_pair, scenario)


def test_set_watches2_persistent_and_relative_zxid_edges(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/x", b"0")
        z.b.ping()
        rel = z.b.last_zxid
        z.drop("b")
        z.a.set_data(R + "/x", b"1")
        z.reattach("b", last_zxid=rel)
        z.b.set_watches2(rel, data=[R + "/x"], exist=[], child=[R], persistent=[R + "/x", R + "/missing"],
                         persistent_recursive=[R])
        z.a.create(R + "/missing")
        z.a.create(R + "/y")
        z.a.set_data(R + "/x", b"2")
        z.a.delete(R + "/y")
        z.barrier()
        z.b.check_watches(R + "/x", WATCHER_ANY)
        # relativeZxid 0 and one in the future, on the same connection
        z.b.set_watches(0, data=[R + "/x"], exist=[], child=[R])
        z.barrier()
        z.b.set_watches(z.b.last_zxid + 1000, data=[R + "/x"], exist=[R + "/nope"], child=[R])
        z.a.set_data(R + "/x", b"3")
        z.barrier()
        # empty and null vectors
        z.b.set_watches(0, data=[], exist=[], child=[])
        z.b.request(rc.OP_SET_WATCHES, rc.enc_long(0) + rc.enc_int(-1) + rc.enc_int(-1) + rc.enc_int(-1),
                    _timeout=2.0)
        z.barrier()
        # setWatches with a normal xid, and setWatches2 via op 105 with only the SetWatches fields
        z.b.set_watches(0, data=[R + "/x"], xid=77)
        z.b.request(rc.OP_SET_WATCHES2, rc.encode_set_watches(0, [R + "/x"], [], []), _timeout=2.0)
        z.barrier()

    diff(zk_pair, scenario)


def test_watch_events_are_acl_filtered(zk_pair):
    """Debian's 3.8.0-11+deb12u2 carries the CVE-2024-23944 fix: a watcher lacking READ on the changed node
    gets no event (reference 2.7, "from 3.8.4/3.9.2"). Every watch kind, on nodes with and without READ."""

    u2 = [rc.ACL(rc.PERM_ALL, "digest", rc.digest_id("u2", "p2"))]
    noread = [rc.ACL(rc.PERM_ALL & ~rc.PERM_READ, "world", "anyone")]

    def scenario(z):
        z.connect("a")
        z.connect("b")
        z.connect("c")
        R = z.root
        z.a.create(R)
        z.a.add_digest("u2", "p2")
        z.c.add_digest("u2", "p2")
        z.b.add_watch(R, ADD_WATCH_PERSISTENT_RECURSIVE)
        z.c.add_watch(R, ADD_WATCH_PERSISTENT_RECURSIVE)
        z.b.get_children(R, True)
        z.b.exists(R + "/secret", True)
        z.b.exists(R + "/nr", True)
        z.a.create(R + "/secret", b"s", u2)                  # b: lacks READ on /secret
        z.a.create(R + "/nr", b"s", noread)
        z.a.create(R + "/open", b"o")
        z.barrier()
        z.b.add_watch(R + "/secret", ADD_WATCH_PERSISTENT)
        z.b.exists(R + "/secret", True)
        z.b.get_children(R + "/nr", True)                    # NOAUTH: no watch either
        z.b.exists(R + "/nr", True)
        z.a.set_data(R + "/secret", b"t")
        z.a.set_data(R + "/nr", b"t")
        z.a.create(R + "/secret/kid", b"", rc.OPEN_ACL_UNSAFE)
        z.a.create(R + "/nr/kid")
        z.barrier()
        z.b.get_data(R + "/open", True)
        z.a.set_acl(R + "/open", u2)                         # READ taken away after the watch was set
        z.a.delete(R + "/secret/kid")
        z.a.delete(R + "/secret")
        z.a.delete(R + "/nr/kid")
        z.a.delete(R + "/nr")
        z.a.set_data(R + "/open", b"x")
        z.a.delete(R + "/open")
        z.barrier()

    diff(zk_pair, scenario)
