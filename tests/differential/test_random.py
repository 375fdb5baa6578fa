"""Hypothesis-generated operation sequences over 3 sessions and a small path alphabet, run against both
servers; every reply, Stat and notification is compared (see conftest for the normalisation).

Each example works under its own fresh root node, so examples do not see each other's state. The
examples are derandomized (fixed sequence), so CI is reproducible. ``ZKDIFF_EXAMPLES`` sets how many
sequences run (default 300, and half as many watch-heavy ones); ``ZKDIFF_SHRINK=0`` skips shrinking of a failing sequence;
``ZKDIFF_SEED=<int>`` explores a different (seeded, still reproducible) set of sequences.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings, strategies as st

from tests.support import rawclient as rc
from tests.support.rawclient import ACL, digest_id
from tests.differential.conftest import diff, fresh_root

pytestmark = pytest.mark.differential

EXAMPLES = int(os.environ.get("ZKDIFF_EXAMPLES", "300"))
SHRINK = os.environ.get("ZKDIFF_SHRINK", "1") not in ("0", "no", "false")
SEED = os.environ.get("ZKDIFF_SEED")          # explore other sequences: a seed instead of the fixed ones

SESSIONS = ("a", "b", "c")
# relative paths under the example's root ("" = the root itself); sequential names collide on purpose
PATHS = ("", "a", "b", "a/a", "a/b", "b/a", "a/a/a", "s0000000000", "s0000000001", "a/s0000000000",
         "a/s0000000001", "a/s0000000002")
DATA = (None, b"", b"x", b"yy")
VERSIONS = (-1, -1, 0, 1, 2)
USERS = {"u1": "p1", "u2": "p2"}
ACLS: Tuple[List[ACL], ...] = (
    rc.OPEN_ACL_UNSAFE,
    rc.READ_ACL_UNSAFE,
    [ACL(rc.PERM_ALL, "digest", digest_id("u1", "p1")), ACL(rc.PERM_READ, "world", "anyone")],
    rc.CREATOR_ALL_ACL,
    [ACL(rc.PERM_ALL, "ip", "127.0.0.1")],
    [],
    [ACL(rc.PERM_READ | rc.PERM_CREATE | rc.PERM_DELETE, "world", "anyone")],
    [ACL(rc.PERM_ALL, "digest", digest_id("u2", "p2"))],
)

sess = st.sampled_from(SESSIONS)
path = st.one_of(st.integers(0, 2), st.integers(1, 4), st.integers(0, len(PATHS) - 1))   # shallow paths more often
data = st.sampled_from(DATA)
version = st.sampled_from(VERSIONS)
acl = st.sampled_from(range(len(ACLS)))
acl_mostly_open = st.one_of(st.just(0), st.just(0), st.just(0), acl)
flags = st.sampled_from([0, 0, 0, 1, 2, 3])
ttl = st.sampled_from([3600000, 3600000, 0])
paths_subset = st.lists(path, max_size=3, unique=True)

create_op = st.tuples(st.just("create"), sess, path, data, flags, acl_mostly_open,
                      st.sampled_from(["create", "create", "create2", "container", "ttl", "ttl_seq"]), ttl)
read_op = st.tuples(st.sampled_from(["exists", "getData", "getChildren", "getChildren2"]), sess, path,
                    st.sampled_from([True, True, False]))

sub_op = st.one_of(
    st.tuples(st.just("create"), path, data, flags),
    st.tuples(st.just("create2"), path, data, flags),
    st.tuples(st.just("container"), path, data),
    st.tuples(st.just("ttl"), path, data, ttl),
    st.tuples(st.just("delete"), path, version),
    st.tuples(st.just("setData"), path, data, version),
    st.tuples(st.just("check"), path, version),
)
read_sub_op = st.tuples(st.sampled_from(["getData", "getChildren"]), path)

OP = st.one_of(
    create_op, create_op, create_op, create_op, create_op,
    st.tuples(st.just("delete"), sess, path, version),
    st.tuples(st.just("delete"), sess, path, version),
    st.tuples(st.just("setData"), sess, path, data, version),
    st.tuples(st.just("setData"), sess, path, data, version),
    read_op, read_op, read_op,
    read_op, read_op,
    st.tuples(st.just("getACL"), sess, path),
    st.tuples(st.just("setACL"), sess, path, acl, version),
    st.tuples(st.just("sync"), sess, path),
    st.tuples(st.just("multi"), sess, st.lists(sub_op, max_size=4)),
    st.tuples(st.just("multi"), sess, st.lists(sub_op, min_size=1, max_size=4)),
    st.tuples(st.just("multiRead"), sess, st.lists(read_sub_op, max_size=3)),
    st.tuples(st.just("addWatch"), sess, path, st.sampled_from([0, 1])),
    st.tuples(st.sampled_from(["checkWatches", "removeWatches"]), sess, path, st.sampled_from([1, 2, 3])),
    st.tuples(st.just("getEphemerals"), sess, st.sampled_from(["", "a", "s"])),
    st.tuples(st.just("getAllChildrenNumber"), sess, path),
    st.tuples(st.just("auth"), sess, st.sampled_from(["u1", "u2", "u1-wrong"])),
    st.tuples(st.just("whoAmI"), sess),
    st.tuples(st.just("closeSession"), sess),
    st.tuples(st.just("drop"), sess, paths_subset, paths_subset, paths_subset, paths_subset, paths_subset,
              st.booleans()),
    # several requests pipelined on one connection before any reply is read
    st.tuples(st.just("burst"), sess, st.lists(st.one_of(
        st.tuples(st.just("create"), path, data, st.sampled_from([0, 0, 1, 2])),
        st.tuples(st.just("delete"), path, version),
        st.tuples(st.just("setData"), path, data, version),
        st.tuples(st.sampled_from(["getData", "exists", "getChildren2"]), path, st.booleans()),
        st.tuples(st.just("ping"),),
    ), min_size=2, max_size=6)),
)


class Interpreter:
    """Applies generated ops to a Run; re-opens closed sessions and re-attaches dropped ones on next use."""

    def __init__(self, z) -> None:
        self.z = z
        self.R = z.root
        self.state: Dict[str, Dict[str, Any]] = {s: {"closed": False, "dropped": None} for s in SESSIONS}

    def p(self, i: int) -> str:
        rel = PATHS[i]
        return self.R + "/" + rel if rel else self.R

    def seq_prefix(self, i: int) -> str:
        return self.p(i) + "/s"

    def live(self, s: str):
        z, st_ = self.z, self.state[s]
        if st_["closed"]:
            z.connect(s)
            st_["closed"] = False
        elif st_["dropped"] is not None:
            rel, lists, v2 = st_["dropped"]
            st_["dropped"] = None
            z.reattach(s, last_zxid=rel)
            d, e, c, p, r = ([self.p(i) for i in lst] for lst in lists)
            if v2:
                z[s].set_watches2(rel, d, e, c, p, r)
            else:
                z[s].set_watches(rel, d, e, c)
        elif z.clients[s].closed:
            z.reattach(s)            # the server closed the connection (e.g. failed auth): same session
        return z[s]

    def sub(self, o: Tuple) -> rc.SubOp:
        kind = o[0]
        if kind in ("create", "create2"):
            _, i, d, f = o
            target = self.seq_prefix(i) if f in (2, 3) else self.p(i)
            return (rc.op_create if kind == "create" else rc.op_create2)(target, d, rc.OPEN_ACL_UNSAFE, f)
        if kind == "container":
            return rc.op_create_container(self.p(o[1]), o[2])
        if kind == "ttl":
            return rc.op_create_ttl(self.p(o[1]), o[2], ttl=o[3])
        if kind == "delete":
            return rc.op_delete(self.p(o[1]), o[2])
        if kind == "setData":
            return rc.op_set_data(self.p(o[1]), o[2], o[3])
        if kind == "check":
            return rc.op_check(self.p(o[1]), o[2])
        if kind == "getData":
            return rc.op_get_data(self.p(o[1]))
        if kind == "getChildren":
            return rc.op_get_children(self.p(o[1]))
        raise AssertionError(o)

    def apply(self, op: Tuple) -> None:
        kind, s = op[0], op[1]
        z = self.z
        if kind == "drop":
            if self.state[s]["closed"] or self.state[s]["dropped"] is not None or z.clients[s].closed:
                return
            _, _, d, e, c, p, r, v2 = op
            z.drop(s)
            self.state[s]["dropped"] = (z.clients[s].last_zxid, (d, e, c, p, r), v2)
            return
        h = self.live(s)
        if kind == "create":
            _, _, i, d, f, a, variant, t = op
            target = self.seq_prefix(i) if f in (2, 3) else self.p(i)
            if variant == "create":
                h.create(target, d, ACLS[a], f)
            elif variant == "create2":
                h.create2(target, d, ACLS[a], f)
            elif variant == "container":
                h.create_container(self.p(i), d, ACLS[a])
            elif variant == "ttl":
                h.create_ttl(self.p(i), d, ACLS[a], rc.PERSISTENT_WITH_TTL, t)
            else:
                h.create_ttl(self.seq_prefix(i), d, ACLS[a], rc.PERSISTENT_SEQUENTIAL_WITH_TTL, t)
        elif kind == "delete":
            h.delete(self.p(op[2]), op[3])
        elif kind == "setData":
            h.set_data(self.p(op[2]), op[3], op[4])
        elif kind == "exists":
            h.exists(self.p(op[2]), op[3])
        elif kind == "getData":
            h.get_data(self.p(op[2]), op[3])
        elif kind == "getChildren":
            h.get_children(self.p(op[2]), op[3])
        elif kind == "getChildren2":
            h.get_children2(self.p(op[2]), op[3])
        elif kind == "getACL":
            h.get_acl(self.p(op[2]))
        elif kind == "setACL":
            h.set_acl(self.p(op[2]), ACLS[op[3]], op[4])
        elif kind == "sync":
            h.sync(self.p(op[2]))
        elif kind == "multi":
            h.multi([self.sub(o) for o in op[2]])
        elif kind == "multiRead":
            h.multi_read([self.sub(o) for o in op[2]])
        elif kind == "addWatch":
            h.add_watch(self.p(op[2]), op[3])
        elif kind == "checkWatches":
            h.check_watches(self.p(op[2]), op[3])
        elif kind == "removeWatches":
            h.remove_watches(self.p(op[2]), op[3])
        elif kind == "getEphemerals":
            h.get_ephemerals(self.R + ("/" + op[2] if op[2] else ""))
        elif kind == "getAllChildrenNumber":
            h.get_all_children_number(self.p(op[2]))
        elif kind == "auth":
            user = op[2]
            if user == "u1-wrong":
                h.add_digest("u1", "wrong")
            else:
                h.add_digest(user, USERS[user])
        elif kind == "whoAmI":
            h.who_am_i()
        elif kind == "burst":
            c = z.clients[s]
            for o in op[2]:
                k = o[0]
                if k == "create":
                    target = self.seq_prefix(o[1]) if o[3] in (2, 3) else self.p(o[1])
                    c.submit(rc.OP_CREATE, rc.encode_create(target, o[2], rc.OPEN_ACL_UNSAFE, o[3]))
                elif k == "delete":
                    c.submit(rc.OP_DELETE, rc.encode_path_version(self.p(o[1]), o[2]))
                elif k == "setData":
                    c.submit(rc.OP_SET_DATA, rc.encode_set_data(self.p(o[1]), o[2], o[3]))
                elif k == "ping":
                    c.submit(rc.OP_PING)
                else:
                    opcode = {"getData": rc.OP_GET_DATA, "exists": rc.OP_EXISTS,
                              "getChildren2": rc.OP_GET_CHILDREN2}[k]
                    c.submit(opcode, rc.encode_path_watch(self.p(o[1]), o[2]))
            z.note(s, f"burst of {len(op[2])} pipelined: {op[2]!r}", None)
            for _ in op[2]:
                try:
                    reply = c.read_reply()
                except rc.ConnectionClosed:
                    z.note(s, "burst reply", ("connection closed",))
                    break
                z.note(s, "burst reply", (z._norm_events(c.take_events(), z._window_unordered(c)),
                                          z._norm_reply(reply)))
        elif kind == "closeSession":
            h.close_session()
            self.state[s]["closed"] = True
        else:
            raise AssertionError(op)


def run_ops(ops: List[Tuple], prepopulate: bool = False):
    def scenario(z):
        for s in SESSIONS:
            z.connect(s)
        z.a.create(z.root)
        if prepopulate:
            for rel in ("a", "b", "a/a"):
                z.a.create(z.root + "/" + rel, rel.encode())
        it = Interpreter(z)
        for op in ops:
            it.apply(op)
            z.barrier()
        # finally: every session re-attached or re-opened, and one look at the whole subtree
        for s in SESSIONS:
            it.live(s)
        z.barrier()
        for i in range(len(PATHS)):
            z.a.get_children2(it.p(i))
            z.a.get_data(it.p(i))
    return scenario


_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SEED is None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if SHRINK else []),
)


def _seeded(f):
    return seed(int(SEED))(f) if SEED is not None else f


@_seeded
@settings(_SETTINGS)
@given(ops=st.lists(OP, min_size=10, max_size=40), prepopulate=st.booleans())
def test_random_sequences(zk_pair, ops, prepopulate):
    diff(zk_pair, run_ops(ops, prepopulate), title="random sequence", root=fresh_root("h"))


# A second mix, denser in watches: fewer op kinds, more triggers per watch, more re-attaches.
WATCH_PATHS = st.integers(0, 5)
WATCH_OP = st.one_of(
    st.tuples(st.just("create"), sess, WATCH_PATHS, data, st.sampled_from([0, 0, 1, 2, 3]), st.just(0),
              st.sampled_from(["create", "create2", "container"]), st.just(3600000)),
    st.tuples(st.just("create"), sess, WATCH_PATHS, data, st.just(0), st.just(0), st.just("create"), st.just(0)),
    st.tuples(st.just("delete"), sess, WATCH_PATHS, st.just(-1)),
    st.tuples(st.just("setData"), sess, WATCH_PATHS, data, st.just(-1)),
    st.tuples(st.sampled_from(["exists", "getData", "getChildren", "getChildren2"]), sess, WATCH_PATHS, st.just(True)),
    st.tuples(st.sampled_from(["exists", "getData", "getChildren", "getChildren2"]), sess, WATCH_PATHS, st.just(True)),
    st.tuples(st.just("addWatch"), sess, WATCH_PATHS, st.sampled_from([0, 1])),
    st.tuples(st.sampled_from(["checkWatches", "removeWatches"]), sess, WATCH_PATHS, st.sampled_from([1, 2, 3])),
    st.tuples(st.just("multi"), sess, st.lists(st.one_of(
        st.tuples(st.just("create"), WATCH_PATHS, data, st.sampled_from([0, 1, 2])),
        st.tuples(st.just("delete"), WATCH_PATHS, st.just(-1)),
        st.tuples(st.just("setData"), WATCH_PATHS, data, st.just(-1))), min_size=1, max_size=4)),
    st.tuples(st.just("closeSession"), sess),
    st.tuples(st.just("drop"), sess, st.lists(WATCH_PATHS, max_size=3, unique=True),
              st.lists(WATCH_PATHS, max_size=3, unique=True), st.lists(WATCH_PATHS, max_size=3, unique=True),
              st.lists(WATCH_PATHS, max_size=2, unique=True), st.lists(WATCH_PATHS, max_size=2, unique=True),
              st.booleans()),
)


@_seeded
@settings(_SETTINGS, max_examples=max(1, EXAMPLES // 2))
@given(ops=st.lists(WATCH_OP, min_size=10, max_size=40), prepopulate=st.booleans())
def test_random_watch_sequences(zk_pair, ops, prepopulate):
    diff(zk_pair, run_ops(ops, prepopulate), title="random watch sequence", root=fresh_root("w"))
