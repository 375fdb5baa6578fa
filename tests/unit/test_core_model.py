"""Model-based test: random create/delete/setData/multi/closeSession against ZooKeeperCore.

Every write goes through prep then apply, singly or in batches (all prepped before
any is applied, so prep must see the outstanding changes).  A small independent
model of ZooKeeper's semantics (reference 2.1-2.6) predicts each error code and
every Stat field; invariants tie the tree's bookkeeping together.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Set, Tuple

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from zktwist.proto.consts import CONTAINER_EPHEMERAL_OWNER, CreateMode, Err, OpCode

from tests.unit.test_core_support import (
    OPEN,
    T0,
    Harness,
    parse_create,
    parse_create2,
    parse_multi,
    parse_stat,
)

SYSTEM = ("/zookeeper", "/zookeeper/quota", "/zookeeper/config")
NAMES = ("a", "b", "c")
INT_MIN = -(1 << 31)


class MNode:
    def __init__(self, data, owner, zxid, now):
        self.data = data
        self.owner = owner
        self.version = 0
        self.cversion = 0
        self.children: Set[str] = set()
        self.czxid = self.mzxid = self.pzxid = zxid
        self.ctime = self.mtime = now

    def stat(self) -> Tuple[int, ...]:
        n = len(self.children)
        owner = self.owner if self.owner not in (0, CONTAINER_EPHEMERAL_OWNER) else 0
        return (self.czxid, self.mzxid, self.ctime, self.mtime, self.version,
                2 * self.cversion - n, 0, owner,
                0 if self.data is None else len(self.data), n, self.pzxid)


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


class Model:
    def __init__(self) -> None:
        root = MNode(b"", 0, 0, 0)
        root.children.add("zookeeper")
        self.nodes: Dict[str, MNode] = {"/": root}

    # each returns (err, extra)
    def create(self, path, data, flags, container, sid, zxid, now):
        parent_path = parent_of(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            return Err.NONODE, None
        if flags in (CreateMode.PERSISTENT_SEQUENTIAL, CreateMode.EPHEMERAL_SEQUENTIAL):
            path = "%s%010d" % (path, parent.cversion)
        if path in self.nodes or path in SYSTEM:
            return Err.NODEEXISTS, None
        if parent.owner not in (0, CONTAINER_EPHEMERAL_OWNER):
            return Err.NOCHILDRENFOREPHEMERALS, None
        if container:
            owner = CONTAINER_EPHEMERAL_OWNER
        elif flags in (CreateMode.EPHEMERAL, CreateMode.EPHEMERAL_SEQUENTIAL):
            owner = sid
        else:
            owner = 0
        self.nodes[path] = MNode(data, owner, zxid, now)
        parent.children.add(name_of(path))
        parent.cversion += 1
        parent.pzxid = zxid
        return 0, path

    def delete(self, path, version, zxid):
        if path == "/" or path in SYSTEM:
            return Err.BADARGUMENTS, None
        if parent_of(path) not in self.nodes:
            return Err.NONODE, None
        node = self.nodes.get(path)
        if node is None:
            return Err.NONODE, None
        if version != -1 and version != node.version:
            return Err.BADVERSION, None
        if node.children:
            return Err.NOTEMPTY, None
        self._remove(path, zxid)
        return 0, None

    def _remove(self, path, zxid):
        del self.nodes[path]
        parent = self.nodes[parent_of(path)]
        parent.children.discard(name_of(path))
        parent.pzxid = max(parent.pzxid, zxid)

    def set_data(self, path, data, version, zxid, now):
        node = self.nodes.get(path)
        if node is None:
            return Err.NONODE, None
        if version != -1 and version != node.version:
            return Err.BADVERSION, None
        node.version += 1
        node.data = data
        node.mzxid = zxid
        node.mtime = now
        return 0, node

    def check(self, path, version):
        node = self.nodes.get(path)
        if node is None:
            return Err.NONODE, None
        if version != -1 and version != node.version:
            return Err.BADVERSION, None
        return 0, None

    def close(self, sid, zxid):
        for path in sorted(p for p, n in self.nodes.items() if n.owner == sid):
            self._remove(path, zxid)

    def ephemerals(self) -> Dict[int, Set[str]]:
        out: Dict[int, Set[str]] = {}
        for p, n in self.nodes.items():
            if n.owner not in (0, CONTAINER_EPHEMERAL_OWNER):
                out.setdefault(n.owner, set()).add(p)
        return out


# -- abstract ops ------------------------------------------------------------------------------

universe_path = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts))
data_st = st.sampled_from([None, b"", b"x", b"hello"])
version_st = st.sampled_from(["any", "current", "wrong", "current"])

create_op = st.tuples(
    st.just("create"), universe_path,
    st.sampled_from([CreateMode.PERSISTENT, CreateMode.EPHEMERAL, CreateMode.PERSISTENT_SEQUENTIAL,
                     CreateMode.EPHEMERAL_SEQUENTIAL, "container"]),
    st.sampled_from([OpCode.create, OpCode.create2]), data_st, st.integers(0, 1))
delete_op = st.tuples(st.just("delete"), universe_path, version_st, st.integers(0, 1))
set_op = st.tuples(st.just("setData"), universe_path, version_st, data_st, st.integers(0, 1))
check_op = st.tuples(st.just("check"), universe_path, version_st, st.integers(0, 1))
any_op = st.one_of(create_op, create_op, delete_op, set_op)


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(now=T0)
        self.model = Model()
        self.sids: List[int] = [self.h.sid, self.h.new_session()]
        self.zxid = self.h.core.last_zxid

    # -- helpers ----------------------------------------------------------------------------

    def _version(self, path: str, choice: str, model: Optional[Model] = None) -> int:
        node = (model or self.model).nodes.get(path)
        current = node.version if node else 0
        if choice == "any":
            return -1
        if choice == "current":
            return current
        return current + 7

    def _retarget(self, path: str, pick: int) -> str:
        """Half the time aim at an existing node, to get past NONODE."""
        existing = sorted(p for p in self.model.nodes if p != "/")
        if pick and existing:
            return existing[hash(path) % len(existing)]
        return path

    def _request(self, op, model: Model):
        """(opcode, request tuple, session) for an abstract op, resolving versions now."""
        kind = op[0]
        if kind == "create":
            _, path, flags, code, data, s = op
            if flags == "container":
                return OpCode.createContainer, (path, data, list(OPEN), CreateMode.CONTAINER, -1), s
            return code, (path, data, list(OPEN), flags, -1), s
        if kind == "delete":
            _, path, vch, s = op
            return OpCode.delete, (path, self._version(path, vch, model)), s
        if kind == "setData":
            _, path, vch, data, s = op
            return OpCode.setData, (path, data, self._version(path, vch, model)), s
        _, path, vch, s = op
        return OpCode.check, (path, self._version(path, vch, model)), s

    def _model_apply(self, model: Model, code: int, req: tuple, sid: int, zxid: int):
        """(err, created path or None, the Stat the reply must carry or None)."""
        if code in (OpCode.create, OpCode.create2, OpCode.createContainer):
            path, data, _, flags, _ = req
            err, created = model.create(path, data, flags, code == OpCode.createContainer, sid,
                                        zxid, self.h.now)
            return err, created, (model.nodes[created].stat() if created else None)
        if code == OpCode.delete:
            return model.delete(req[0], req[1], zxid) + (None,)
        if code == OpCode.setData:
            err, node = model.set_data(req[0], req[1], req[2], zxid, self.h.now)
            return err, None, (node.stat() if node else None)
        return model.check(req[0], req[1]) + (None,)

    def _check_reply(self, code: int, reply, expected) -> None:
        err, body = reply
        exp_err, created, stat = expected
        event("op %d -> %d" % (code, exp_err))
        assert err == exp_err, (code, err, exp_err)
        if err:
            assert body is None
            return
        if code == OpCode.create:
            assert parse_create(body) == created
        elif code in (OpCode.create2, OpCode.createContainer):
            path, got = parse_create2(body)
            assert (path, tuple(got)) == (created, stat)
        elif code == OpCode.setData:
            assert tuple(parse_stat(body)) == stat
        else:
            assert body is None

    # -- rules ------------------------------------------------------------------------------

    @initialize(parents=st.lists(universe_path, max_size=4))
    def seed(self, parents):
        for p in sorted(parents, key=len):
            self.single(("create", p, 0, OpCode.create, b"", 0), 0)

    @rule(op=any_op, pick=st.integers(0, 1))
    def single(self, op, pick):
        if op[0] != "create":
            op = (op[0], self._retarget(op[1], pick)) + op[2:]
        self.h.advance(3)
        code, req, s = self._request(op, self.model)
        sid = self.sids[s]
        self.zxid += 1
        expected = self._model_apply(self.model, code, req, sid, self.zxid)
        reply = self.h.write(code, req, sid=sid)
        self._check_reply(code, reply, expected)

    @rule(ops=st.lists(st.tuples(any_op, st.integers(0, 1)), min_size=2, max_size=5))
    def batch(self, ops):
        """Prep every op before applying any: prep must see the outstanding changes."""
        self.h.advance(5)
        txns = []
        for op, pick in ops:
            if op[0] != "create":
                op = (op[0], self._retarget(op[1], pick)) + op[2:]
            code, req, s = self._request(op, self.model)  # versions from the pre-batch model
            sid = self.sids[s]
            self.zxid += 1
            expected = self._model_apply(self.model, code, req, sid, self.zxid)
            txn = self.h.prep_only(code, req, sid=sid)
            assert txn.zxid == self.zxid
            txns.append((code, txn, expected))
        assert all(t.type != OpCode.error for _, t, e in txns if e[0] == 0)
        for code, txn, expected in txns:
            result = self.h.apply(txn)
            self._check_reply(code, self.h.core.write_reply(code, result), expected)

    @rule(ops=st.lists(st.one_of(any_op, check_op), min_size=0, max_size=4),
          picks=st.lists(st.integers(0, 1), min_size=4, max_size=4), s=st.integers(0, 1))
    def multi(self, ops, picks, s):
        self.h.advance(7)
        sid = self.sids[s]
        self.zxid += 1
        scratch = copy.deepcopy(self.model)
        requests = []
        expected: List[Tuple[int, int, object]] = []
        failed_at = None
        for i, op in enumerate(ops):
            if op[0] != "create":
                op = (op[0], self._retarget(op[1], picks[i])) + op[2:]
            code, req, _ = self._request(op, scratch)
            requests.append((code, req))
            if failed_at is not None:
                continue
            err, created, stat = self._model_apply(scratch, code, req, sid, self.zxid)
            if err:
                failed_at = i
                expected = [(-1, 0, 0)] * i + [(-1, err, err)]
                continue
            if code in (OpCode.create, OpCode.create2):
                expected.append((OpCode.create, 0, created))
            elif code == OpCode.createContainer:
                expected.append((OpCode.create2, 0, (created, stat)))
            elif code == OpCode.delete:
                expected.append((OpCode.delete, 0, None))
            elif code == OpCode.setData:
                expected.append((OpCode.setData, 0, stat))
            else:
                expected.append((OpCode.check, 0, None))
        if failed_at is not None:
            expected += [(-1, Err.RUNTIMEINCONSISTENCY, Err.RUNTIMEINCONSISTENCY)] * (
                len(ops) - failed_at - 1)
        else:
            self.model = scratch
        event("multi failed at %s" % failed_at)
        err, body = self.h.multi(requests, sid=sid)
        assert err == 0
        results = parse_multi(body)
        assert [(r.type, r.err) for r in results] == [(t, e) for t, e, _ in expected]
        for r, (t, _, extra) in zip(results, expected):
            if t == OpCode.create:
                assert r.value == extra
            elif t == OpCode.create2:
                assert (r.value[0], tuple(r.value[1])) == extra
            elif t == OpCode.setData:
                assert tuple(r.value) == extra
            elif t == -1:
                assert r.value == r.err

    @rule(s=st.integers(0, 1))
    def close_session(self, s):
        self.h.advance(11)
        sid = self.sids[s]
        self.zxid += 1
        self.model.close(sid, self.zxid)
        txn = self.h.prep.prep_close_session(sid, 0, self.h.now)
        assert txn.zxid == self.zxid
        self.h.apply(txn)
        self.sids[s] = self.h.new_session()
        self.zxid += 1

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def nothing_outstanding_and_zxids_match(self):
        assert not self.h.prep.has_outstanding()
        assert self.h.core.last_zxid == self.zxid == self.h.prep.last_zxid

    @invariant()
    def tree_matches_model(self):
        tree = self.h.tree
        user_paths = {p for p in tree.nodes if p not in SYSTEM}
        assert user_paths == set(self.model.nodes)
        assert tree.node_count() == len(self.model.nodes) + len(SYSTEM) + 1
        for path, m in self.model.nodes.items():
            node = tree.nodes[path]
            assert node.children == m.children, path
            assert node.data == m.data, path
            assert tuple(parse_stat(node.stat())) == m.stat(), path

    @invariant()
    def bookkeeping_is_consistent(self):
        tree = self.h.tree
        for path, node in tree.nodes.items():
            stat = parse_stat(node.stat())
            assert stat.numChildren == len(node.children)
            assert stat.cversion == 2 * node.cversion - len(node.children)
            assert node.cversion >= 0
            for child in node.children:
                assert (path.rstrip("/") + "/" + child) in tree.nodes
            if path != "/":
                assert name_of(path) in tree.nodes[parent_of(path)].children
        live = {sid: paths for sid, paths in tree.ephemerals.items() if paths}
        assert live == self.model.ephemerals()
        for sid, paths in live.items():
            assert sid in self.h.core.sessions.sessions
            for p in paths:
                assert tree.nodes[p].owner == sid
                assert not tree.nodes[p].children
        assert tree.containers == {p for p, n in self.model.nodes.items()
                                   if n.owner == CONTAINER_EPHEMERAL_OWNER}


CoreMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestCoreModel = CoreMachine.TestCase
