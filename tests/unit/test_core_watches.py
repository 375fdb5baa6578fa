"""Watches: the reference's 2.7 table, persistent and recursive watches, setWatches, check/removeWatches.

Oracle: DataTree (createNode, deleteNode, setData, addWatch, setWatches,
containsWatcher, removeWatch), watch/WatchManager, watch/WatcherModeManager,
FinalRequestProcessor (exists, checkWatches, removeWatches, addWatch) and
Watcher.WatcherType of Apache ZooKeeper 3.8.0.
"""

from __future__ import annotations

import pytest

from zktwist.proto.consts import AddWatchMode, CreateMode, Err, EventType, OpCode, WatcherType

from tests.unit.test_core_support import (
    OPEN,
    Harness,
    Recorder,
    op_create,
    op_set_data,
)

CREATED = EventType.NodeCreated
DELETED = EventType.NodeDeleted
CHANGED = EventType.NodeDataChanged
CHILDREN = EventType.NodeChildrenChanged


def make() -> Harness:
    h = Harness()
    h.mk("/a", b"A")
    h.mk("/a/b", b"B")
    return h


def add_watch(h: Harness, path: str, mode: int, w: Recorder) -> None:
    err, body = h.read(OpCode.addWatch, (path, mode), w)
    assert (err, body) == (0, b"\x00\x00\x00\x00")  # ErrorResponse{0}


def check(h: Harness, path: str, wtype: int, w: Recorder) -> int:
    return h.read(OpCode.checkWatches, (path, wtype), w)[0]


def remove(h: Harness, path: str, wtype: int, w: Recorder) -> int:
    return h.read(OpCode.removeWatches, (path, wtype), w)[0]


# -- the 2.7 table -------------------------------------------------------------------------

def test_create_row():
    h = make()
    w_exists, w_parent_children, w_parent_data = Recorder("e"), Recorder("pc"), Recorder("pd")
    assert h.exists("/a/n", w_exists) == Err.NONODE  # exists on a missing node arms a watch
    assert h.children("/a", w_parent_children)[0] == 0
    assert h.get_data("/a", w_parent_data)[0] == 0
    h.mk("/a/n")
    assert w_exists.take() == [(CREATED, "/a/n")]
    assert w_parent_children.take() == [(CHILDREN, "/a")]
    assert w_parent_data.take() == []


def test_create_under_root_notifies_root_children_watchers():
    h = make()
    w = Recorder()
    h.children("/", w)
    h.mk("/top")
    assert w.take() == [(CHILDREN, "/")]


def test_delete_row():
    h = make()
    w_data, w_children, w_both, w_exists, w_parent = (Recorder(n) for n in "dcbep")
    h.get_data("/a/b", w_data)
    h.children("/a/b", w_children)
    h.get_data("/a/b", w_both)
    h.children("/a/b", w_both)
    h.exists("/a/b", w_exists)
    h.children("/a", w_parent)
    assert h.delete("/a/b") == 0
    assert w_data.take() == [(DELETED, "/a/b")]
    assert w_children.take() == [(DELETED, "/a/b")]
    assert w_both.take() == [(DELETED, "/a/b")]  # deduplicated across the two tables
    assert w_exists.take() == [(DELETED, "/a/b")]
    assert w_parent.take() == [(CHILDREN, "/a")]
    # every one-shot watch is gone: a re-create only reaches new watches
    h.mk("/a/b")
    for w in (w_data, w_children, w_both, w_exists, w_parent):
        assert w.take() == []
    assert h.tree.watch_count() == 0


def test_set_data_row():
    h = make()
    w_data, w_exists, w_children, w_parent = (Recorder(n) for n in "decp")
    h.get_data("/a", w_data)
    h.exists("/a", w_exists)
    h.children("/a", w_children)
    h.children("/", w_parent)
    assert h.set_data("/a", b"new")[0] == 0
    assert w_data.take() == [(CHANGED, "/a")]
    assert w_exists.take() == [(CHANGED, "/a")]
    assert w_children.take() == []
    assert w_parent.take() == []


def test_set_acl_row_fires_nothing():
    h = make()
    w = Recorder()
    h.get_data("/a", w)
    h.children("/a", w)
    h.children("/", w)
    assert h.set_acl("/a", OPEN)[0] == 0
    assert w.take() == []
    # the watches are still armed
    h.set_data("/a", b"")
    assert w.take() == [(CHANGED, "/a")]


def test_watches_are_one_shot():
    h = make()
    w = Recorder()
    h.get_data("/a", w)
    h.set_data("/a", b"1")
    h.set_data("/a", b"2")
    assert w.take() == [(CHANGED, "/a")]


def test_get_data_and_get_children_on_missing_node_arm_nothing():
    h = make()
    w = Recorder()
    assert h.get_data("/a/missing", w)[0] == Err.NONODE
    assert h.children("/a/missing", w)[0] == Err.NONODE
    assert h.read(OpCode.getChildren2, ("/a/missing", True), w)[0] == Err.NONODE
    h.mk("/a/missing")
    h.mk("/a/missing/kid")
    assert w.take() == []
    assert h.tree.watch_count() == 0


def test_get_children2_arms_a_child_watch():
    h = make()
    w = Recorder()
    assert h.read(OpCode.getChildren2, ("/a", True), w)[0] == 0
    h.mk("/a/c")
    assert w.take() == [(CHILDREN, "/a")]


def test_exists_with_nul_is_bad_arguments_and_arms_nothing():
    h = make()
    w = Recorder()
    assert h.read(OpCode.exists, ("/a\x00", True), w) == (Err.BADARGUMENTS, None)
    assert h.tree.watch_count() == 0


def test_multi_read_ignores_the_watch_flag():
    h = make()
    w = Recorder()
    err, _ = h.read(OpCode.multiRead, ((OpCode.getData, ("/a", True)),
                                       (OpCode.getChildren, ("/a", True))), w)
    assert err == 0
    h.set_data("/a", b"")
    h.mk("/a/c")
    assert w.take() == []


def test_two_watchers_each_get_the_event():
    h = make()
    w1, w2 = Recorder("1"), Recorder("2")
    h.get_data("/a", w1)
    h.get_data("/a", w2)
    h.set_data("/a", b"")
    assert w1.take() == [(CHANGED, "/a")] and w2.take() == [(CHANGED, "/a")]


def test_multi_fires_per_sub_op_and_failed_multi_fires_nothing():
    h = make()
    w = Recorder()
    h.exists("/a/x", w)
    h.get_data("/a", w)
    err, _ = h.multi([op_create("/a/x"), op_set_data("/a", b"z", 99)])
    assert w.take() == []
    err, _ = h.multi([op_create("/a/x"), op_set_data("/a", b"z")])
    assert err == 0
    assert w.take() == [(CREATED, "/a/x"), (CHANGED, "/a")]


def test_connection_close_drops_every_watch():
    h = make()
    w, other = Recorder("w"), Recorder("o")
    h.get_data("/a", w)
    h.children("/a", w)
    h.exists("/nope", w)
    add_watch(h, "/a", AddWatchMode.PERSISTENT, w)
    add_watch(h, "/", AddWatchMode.PERSISTENT_RECURSIVE, w)
    h.get_data("/a", other)
    h.tree.remove_watcher(w)
    h.set_data("/a", b"")
    h.mk("/nope")
    h.mk("/a/c")
    assert w.take() == []
    assert other.take() == [(CHANGED, "/a")]
    assert h.tree.watch_count() == 0


# -- persistent watches ------------------------------------------------------------------------

def test_persistent_watch_gets_all_four_types_for_the_exact_path_and_stays():
    h = make()
    w = Recorder()
    add_watch(h, "/a", AddWatchMode.PERSISTENT, w)
    h.set_data("/a", b"1")
    h.set_data("/a", b"2")
    h.mk("/a/c")
    h.mk("/a/c/d")         # grandchild: not the exact path
    h.set_data("/a/b", b"")  # child data: not the exact path
    assert h.delete("/a/c/d") == 0
    assert h.delete("/a/c") == 0
    assert w.take() == [(CHANGED, "/a"), (CHANGED, "/a"), (CHILDREN, "/a"), (CHILDREN, "/a")]
    assert h.delete("/a/b") == 0
    assert h.delete("/a") == 0
    assert w.take() == [(CHILDREN, "/a"), (DELETED, "/a")]
    h.mk("/a")
    assert w.take() == [(CREATED, "/a")]


def test_persistent_watch_on_missing_node():
    h = make()
    w = Recorder()
    add_watch(h, "/later", AddWatchMode.PERSISTENT, w)
    h.mk("/later")
    h.mk("/later/x")
    assert w.take() == [(CREATED, "/later"), (CHILDREN, "/later")]


def test_standard_watch_after_persistent_downgrades_that_table():
    """WatcherModeManager keeps one mode per (watcher, path) per table; the last addWatch wins."""
    h = make()
    w = Recorder()
    add_watch(h, "/a", AddWatchMode.PERSISTENT, w)
    h.get_data("/a", w)  # data table: back to a one-shot watch
    h.set_data("/a", b"1")
    h.set_data("/a", b"2")
    assert w.take() == [(CHANGED, "/a")]
    h.mk("/a/c")  # the child table is still persistent
    h.mk("/a/d")
    assert w.take() == [(CHILDREN, "/a"), (CHILDREN, "/a")]


# -- persistent recursive watches --------------------------------------------------------------

def test_recursive_watch_covers_descendants_and_never_children_changed():
    h = make()
    w = Recorder()
    add_watch(h, "/a", AddWatchMode.PERSISTENT_RECURSIVE, w)
    h.mk("/a/x")
    h.mk("/a/x/y")
    h.set_data("/a/x/y", b"1")
    h.set_data("/a", b"1")
    assert h.delete("/a/x/y") == 0
    assert h.delete("/a/x") == 0
    assert w.take() == [(CREATED, "/a/x"), (CREATED, "/a/x/y"), (CHANGED, "/a/x/y"),
                        (CHANGED, "/a"), (DELETED, "/a/x/y"), (DELETED, "/a/x")]
    h.mk("/ab")  # a sibling sharing the prefix is not a descendant
    h.set_data("/ab", b"")
    h.set_data("/", b"")
    assert w.take() == []
    assert h.delete("/a/b") == 0
    assert h.delete("/a") == 0
    h.mk("/a")
    assert w.take() == [(DELETED, "/a/b"), (DELETED, "/a"), (CREATED, "/a")]


def test_recursive_watch_on_root_sees_everything_but_children_changed():
    h = make()
    w = Recorder()
    add_watch(h, "/", AddWatchMode.PERSISTENT_RECURSIVE, w)
    h.mk("/q")
    h.set_data("/", b"r")
    h.set_data("/zookeeper", b"")
    h.delete("/q")
    assert w.take() == [(CREATED, "/q"), (CHANGED, "/"), (CHANGED, "/zookeeper"), (DELETED, "/q")]


def test_at_most_one_event_per_watcher_per_trigger():
    h = make()
    w = Recorder()
    add_watch(h, "/", AddWatchMode.PERSISTENT_RECURSIVE, w)
    add_watch(h, "/a", AddWatchMode.PERSISTENT_RECURSIVE, w)
    add_watch(h, "/n", AddWatchMode.PERSISTENT, w)
    h.exists("/n", w)
    h.mk("/n")
    assert w.take() == [(CREATED, "/n")]
    h.get_data("/a/b", w)
    h.children("/a/b", w)
    add_watch(h, "/a/b", AddWatchMode.PERSISTENT, w)
    assert h.delete("/a/b") == 0
    assert w.take() == [(DELETED, "/a/b")]


def test_recursive_watch_replaces_a_standard_child_watch_on_the_same_path():
    """DataTree.addWatch registers every mode in both tables; the child-table entry becomes
    PERSISTENT_RECURSIVE, which WatchManager.triggerWatch skips for NodeChildrenChanged."""
    h = make()
    w = Recorder()
    h.children("/a", w)
    add_watch(h, "/a", AddWatchMode.PERSISTENT_RECURSIVE, w)
    h.mk("/a/c")
    assert w.take() == [(CREATED, "/a/c")]


# -- checkWatches / removeWatches -------------------------------------------------------------------

def test_check_and_remove_without_watches_is_nowatcher():
    h = make()
    w = Recorder()
    for t in (WatcherType.Children, WatcherType.Data, WatcherType.Any):
        assert check(h, "/a", t, w) == Err.NOWATCHER
        assert remove(h, "/a", t, w) == Err.NOWATCHER
        assert check(h, "/missing", t, w) == Err.NOWATCHER


def test_data_watch_check_and_remove():
    h = make()
    w = Recorder()
    h.get_data("/a", w)
    assert check(h, "/a", WatcherType.Data, w) == 0
    assert check(h, "/a", WatcherType.Any, w) == 0
    assert check(h, "/a", WatcherType.Children, w) == Err.NOWATCHER
    assert remove(h, "/a", WatcherType.Children, w) == Err.NOWATCHER
    assert remove(h, "/a", WatcherType.Data, w) == 0
    assert check(h, "/a", WatcherType.Data, w) == Err.NOWATCHER
    assert remove(h, "/a", WatcherType.Data, w) == Err.NOWATCHER
    h.set_data("/a", b"")
    assert w.take() == []


def test_exists_watch_on_missing_node_can_be_checked_and_removed():
    h = make()
    w = Recorder()
    h.exists("/nope", w)
    assert check(h, "/nope", WatcherType.Data, w) == 0
    assert remove(h, "/nope", WatcherType.Any, w) == 0
    h.mk("/nope")
    assert w.take() == []


def test_child_watch_remove_any():
    h = make()
    w = Recorder()
    h.children("/a", w)
    assert check(h, "/a", WatcherType.Children, w) == 0
    assert check(h, "/a", WatcherType.Data, w) == Err.NOWATCHER
    assert remove(h, "/a", WatcherType.Any, w) == 0
    h.mk("/a/c")
    assert w.take() == []


def test_remove_any_removes_persistent_and_recursive_watches():
    h = make()
    w = Recorder()
    add_watch(h, "/a", AddWatchMode.PERSISTENT, w)
    add_watch(h, "/", AddWatchMode.PERSISTENT_RECURSIVE, w)
    assert remove(h, "/a", WatcherType.Any, w) == 0
    assert remove(h, "/", WatcherType.Any, w) == 0
    h.set_data("/a", b"")
    h.mk("/a/c")
    assert w.take() == []
    assert h.tree.watch_count() == 0


def test_check_watches_counts_any_registration_on_the_path():
    """WatchManager.containsWatcher (3.8.0): at the leaf, any watcher on the path makes it true."""
    h = make()
    owner, stranger = Recorder("owner"), Recorder("stranger")
    h.get_data("/a", owner)
    assert check(h, "/a", WatcherType.Data, stranger) == 0
    assert remove(h, "/a", WatcherType.Data, stranger) == Err.NOWATCHER
    h.set_data("/a", b"")
    assert owner.take() == [(CHANGED, "/a")]


@pytest.mark.parametrize("wtype", [0, 6, -1])
def test_unknown_watcher_types_are_marshalling_errors(wtype):
    """Watcher.WatcherType.fromInt throws for a type it does not know.

    3.8.0 knows 1-3 only; zktwist also takes 3.9's Persistent (4) and
    PersistentRecursive (5), as the issue invites (see the next test)."""
    h = make()
    w = Recorder()
    add_watch(h, "/a", AddWatchMode.PERSISTENT, w)
    add_watch(h, "/a/b", AddWatchMode.PERSISTENT_RECURSIVE, w)
    for path in ("/a", "/a/b"):
        assert check(h, path, wtype, w) == Err.MARSHALLINGERROR
        assert remove(h, path, wtype, w) == Err.MARSHALLINGERROR
    h.set_data("/a", b"")
    assert w.take() == [(CHANGED, "/a")]  # nothing was removed


def test_watcher_types_4_and_5_remove_persistent_watches_as_3_9_does():
    """A deliberate extra over 3.8.0: WatcherType.Persistent (4) and PersistentRecursive (5)."""
    h = make()
    h.mk("/b")
    w = Recorder()
    add_watch(h, "/a", AddWatchMode.PERSISTENT, w)
    add_watch(h, "/b", AddWatchMode.PERSISTENT_RECURSIVE, w)
    assert check(h, "/a", 4, w) == 0
    assert check(h, "/a", 5, w) == Err.NOWATCHER
    assert check(h, "/b", 5, w) == 0
    assert check(h, "/b", 4, w) == Err.NOWATCHER
    assert remove(h, "/a", 5, w) == Err.NOWATCHER
    assert remove(h, "/a", 4, w) == 0
    assert remove(h, "/b", 5, w) == 0
    h.set_data("/a", b"")
    h.mk("/b/c")
    assert w.take() == []
    assert check(h, "/a", 4, w) == Err.NOWATCHER


def test_recursive_watch_is_in_the_child_table_too():
    """DataTree.addWatch adds a PERSISTENT_RECURSIVE watch to childWatches as well as dataWatches,
    so checkWatches/removeWatches(Children) find it."""
    h = make()
    w = Recorder()
    add_watch(h, "/a", AddWatchMode.PERSISTENT_RECURSIVE, w)
    assert check(h, "/a", WatcherType.Children, w) == 0
    assert remove(h, "/a", WatcherType.Children, w) == 0
    # the data-table half still delivers
    h.mk("/a/c")
    assert w.take() == [(CREATED, "/a/c")]


def test_recursive_watch_child_table_half_keeps_delivering_deletes():
    """After removeWatches(Data) the childWatches entry remains and still sees NodeDeleted below."""
    h = make()
    w = Recorder()
    add_watch(h, "/a", AddWatchMode.PERSISTENT_RECURSIVE, w)
    assert remove(h, "/a", WatcherType.Data, w) == 0
    h.mk("/a/c")
    h.set_data("/a/b", b"")
    assert w.take() == []
    assert h.delete("/a/b") == 0
    assert w.take() == [(DELETED, "/a/b")]


def test_check_watches_on_a_path_without_slash_is_marshalling_error():
    """PathParentIterator.next() computes the parent eagerly: substring(0, -1) throws."""
    h = make()
    w = Recorder()
    h.get_data("/a", w)
    assert check(h, "abc", WatcherType.Data, w) == Err.MARSHALLINGERROR
    assert check(h, "abc", WatcherType.Any, w) == Err.MARSHALLINGERROR
    # removeWatches does not walk parents: a plain miss
    assert remove(h, "abc", WatcherType.Data, w) == Err.NOWATCHER
    # the empty path yields no element at all
    assert check(h, "", WatcherType.Data, w) == Err.NOWATCHER


def test_add_watch_with_unknown_mode_is_marshalling_error():
    h = make()
    w = Recorder()
    assert h.read(OpCode.addWatch, ("/a", 2), w) == (Err.MARSHALLINGERROR, None)
    assert h.tree.watch_count() == 0


def test_add_watch_needs_no_node_and_no_acl():
    h = make()
    w = Recorder()
    h.mk("/locked", acl=[(2, "world", "anyone")])  # WRITE only, no READ
    add_watch(h, "/locked", AddWatchMode.PERSISTENT, w)
    add_watch(h, "/missing", AddWatchMode.PERSISTENT_RECURSIVE, w)
    h.set_data("/locked", b"")
    assert w.take() == [(CHANGED, "/locked")]


# -- setWatches ----------------------------------------------------------------------------------

def set_watches(h: Harness, w: Recorder, rel: int, data=(), exist=(), child=(), persistent=(),
                recursive=(), op=OpCode.setWatches2):
    err, body = h.read(op, (rel, list(data), list(exist), list(child), list(persistent),
                            list(recursive)), w)
    assert (err, body) == (0, None)


class TestSetWatches:
    def setup_method(self):
        h = self.h = make()
        h.mk("/d", b"old")
        h.mk("/c")
        h.mk("/c/kid")
        self.rel = h.core.last_zxid
        h.mk("/late")
        h.set_data("/d", b"new")  # mzxid > rel
        h.mk("/c/kid2")           # pzxid > rel
        h.mk("/calm")
        h.mk("/calm/x")
        self.rel2 = h.core.last_zxid

    def test_data_watches(self):
        h, w = self.h, Recorder()
        set_watches(h, w, self.rel, data=["/gone", "/d", "/a"])
        assert w.take() == [(DELETED, "/gone"), (CHANGED, "/d")]
        h.set_data("/d", b"again")  # not re-armed after the immediate event
        h.set_data("/a", b"again")  # re-armed
        assert w.take() == [(CHANGED, "/a")]

    def test_data_watch_at_exactly_rel_is_rearmed(self):
        h, w = self.h, Recorder()
        mz = h.stat("/d").mzxid
        set_watches(h, w, mz, data=["/d"])
        assert w.take() == []
        h.set_data("/d", b"x")
        assert w.take() == [(CHANGED, "/d")]

    def test_exist_watches(self):
        h, w = self.h, Recorder()
        set_watches(h, w, self.rel, exist=["/late", "/absent"])
        assert w.take() == [(CREATED, "/late")]
        h.set_data("/late", b"")  # not armed
        h.mk("/absent")           # armed
        assert w.take() == [(CREATED, "/absent")]

    def test_child_watches(self):
        h, w = self.h, Recorder()
        set_watches(h, w, self.rel, child=["/gone", "/c", "/a"])
        assert w.take() == [(DELETED, "/gone"), (CHILDREN, "/c")]
        h.mk("/c/kid3")  # not armed
        h.mk("/a/kid")   # armed
        assert w.take() == [(CHILDREN, "/a")]

    def test_order_is_data_then_exist_then_child(self):
        h, w = self.h, Recorder()
        set_watches(h, w, self.rel, data=["/d"], exist=["/late"], child=["/gone"])
        assert w.take() == [(CHANGED, "/d"), (CREATED, "/late"), (DELETED, "/gone")]

    def test_persistent_and_recursive_are_just_added(self):
        h, w = self.h, Recorder()
        set_watches(h, w, self.rel2, persistent=["/calm", "/nothere"], recursive=["/c"])
        assert w.take() == []
        h.set_data("/calm", b"")
        h.mk("/calm/y")
        h.mk("/nothere")
        h.mk("/c/k4")
        assert w.take() == [(CHANGED, "/calm"), (CHILDREN, "/calm"), (CREATED, "/nothere"),
                            (CREATED, "/c/k4")]
        h.set_data("/calm", b"")  # still there: persistent
        assert w.take() == [(CHANGED, "/calm")]

    def test_recursive_from_set_watches_is_in_both_tables(self):
        h, w = self.h, Recorder()
        set_watches(h, w, self.rel2, recursive=["/c"])
        assert check(h, "/c", WatcherType.Children, w) == 0

    def test_old_set_watches_opcode(self):
        h, w = self.h, Recorder()
        set_watches(h, w, self.rel, data=["/d"], exist=["/absent"], child=["/a"],
                    op=OpCode.setWatches)
        assert w.take() == [(CHANGED, "/d")]
        h.mk("/absent")
        h.mk("/a/z")
        assert w.take() == [(CREATED, "/absent"), (CHILDREN, "/a")]


def test_session_close_fires_delete_events_for_other_watchers():
    h = make()
    other = h.new_session()
    h.mk("/a/e1", flags=CreateMode.EPHEMERAL, sid=other)
    h.mk("/e2", flags=CreateMode.EPHEMERAL, sid=other)
    w = Recorder()
    h.get_data("/a/e1", w)
    h.children("/a", w)
    h.exists("/e2", w)
    t = h.prep.prep_close_session(other, 0, h.now)
    h.apply(t)
    assert sorted(w.take()) == sorted([(DELETED, "/a/e1"), (CHILDREN, "/a"), (DELETED, "/e2")])
