"""Request -> txn (PrepRequestProcessor).

Every write is validated against the applied tree **plus every txn already
prepped but not yet applied** (the outstanding change records), in Apache
ZooKeeper's check order, and becomes a :class:`Txn` with the next zxid.  A
failed check still consumes a zxid: the txn becomes an ErrorTxn, as in
ZooKeeper, so zxids stay identical to its numbering.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from zktwist.core import acl as aclmod
from zktwist.core.paths import is_valid_path, is_valid_path_cached
from zktwist.core.sessions import SessionTracker
from zktwist.core.tree import SYSTEM_PATHS, DataTree, NodeKind, i32, kind_of, ttl_owner
from zktwist.core.txn import Txn
from zktwist.proto.consts import (
    CONTAINER_EPHEMERAL_OWNER,
    MAX_TTL,
    CreateMode,
    Err,
    OpCode,
    Perms,
)


class KeeperError(Exception):
    """A check failed with ZooKeeper error ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class ChangeRecord:
    """The pending state of one path (ZooKeeperServer.ChangeRecord); ``exists`` False = deleted."""

    __slots__ = ("zxid", "path", "exists", "version", "cversion", "aversion", "owner",
                 "child_count", "acl")

    def __init__(self, zxid: int, path: str, exists: bool, version: int = 0, cversion: int = 0,
                 aversion: int = 0, owner: int = 0, child_count: int = 0,
                 acl: tuple = ()) -> None:
        self.zxid = zxid
        self.path = path
        self.exists = exists
        self.version = version
        self.cversion = cversion
        self.aversion = aversion
        self.owner = owner
        self.child_count = child_count
        self.acl = acl

    def duplicate(self, zxid: int) -> "ChangeRecord":
        return ChangeRecord(zxid, self.path, self.exists, self.version, self.cversion,
                            self.aversion, self.owner, self.child_count, self.acl)


def _create_opcode_for_multi(flags: int) -> int:
    """Op.Create.getOpcode: multi turns create2 into create (ZOOKEEPER-4026, unfixed in 3.8.0)."""
    if flags in CreateMode.TTL_MODES:
        return OpCode.createTTL
    if flags == CreateMode.CONTAINER:
        return OpCode.createContainer
    return OpCode.create


class MarshallingError(Exception):
    pass


class Prep:
    """Turns write requests into txns; owns the zxid counter and outstanding changes."""

    def __init__(self, tree: DataTree, sessions: SessionTracker, *, skip_acl: bool = False,
                 extended_types: bool = False) -> None:
        self.tree = tree
        self.sessions = sessions
        self.skip_acl = skip_acl
        self.extended_types = extended_types
        self.last_zxid = tree.last_zxid  # the last zxid handed out
        self.changes: Deque[ChangeRecord] = deque()
        self.by_path: Dict[str, ChangeRecord] = {}
        self._multi_saved: Optional[Dict[str, Optional[ChangeRecord]]] = None

    # -- outstanding changes ---------------------------------------------------

    def record_for(self, path: str) -> ChangeRecord:
        # As in ZooKeeper, "" (the parent of a top-level node) and "/" are
        # separate keys for outstanding changes, though both are the root.
        rec = self.by_path.get(path)
        if rec is None:
            node = self.tree.get(path)
            if node is None:
                raise KeeperError(Err.NONODE)
            return ChangeRecord(-1, path, True, node.version, node.cversion, node.aversion,
                                node.owner, len(node.children), node.acl)
        if not rec.exists:
            raise KeeperError(Err.NONODE)
        return rec

    def _add(self, rec: ChangeRecord) -> None:
        saved = self._multi_saved
        if saved is not None and rec.path not in saved:
            saved[rec.path] = self.by_path.get(rec.path)
        self.changes.append(rec)
        self.by_path[rec.path] = rec

    def applied(self, zxid: int) -> None:
        """Forget change records made visible by applying ``zxid``."""
        changes = self.changes
        while changes and changes[0].zxid <= zxid:
            rec = changes.popleft()
            if self.by_path.get(rec.path) is rec:
                del self.by_path[rec.path]

    def rollback_all(self, last_good_zxid: int) -> None:
        """The log refused the pending txns: forget them all and reuse their zxids."""
        self.changes.clear()
        self.by_path.clear()
        self.last_zxid = last_good_zxid

    def next_zxid(self) -> int:
        self.last_zxid += 1
        return self.last_zxid

    def has_outstanding(self) -> bool:
        return bool(self.changes)

    # -- checks ------------------------------------------------------------------

    def _check_acl(self, acl: Sequence, perm: int, auth_ids: Sequence) -> None:
        if not aclmod.check(acl, perm, auth_ids, self.skip_acl):
            raise KeeperError(Err.NOAUTH)

    def _check_session(self, session_id: int, global_session: bool = False) -> None:
        s = self.sessions.sessions.get(session_id)
        if s is None:
            # checkGlobalSession (ephemeral creates) reports an unknown session as expired.
            raise KeeperError(Err.SESSIONEXPIRED if global_session else Err.UNKNOWNSESSION)
        if s.closing:
            raise KeeperError(Err.SESSIONEXPIRED)

    @staticmethod
    def _parent_of(path: str) -> str:
        i = path.rfind("/")
        if i == -1 or "\x00" in path:
            raise KeeperError(Err.BADARGUMENTS)
        return path[:i]

    def _fixup(self, acls: Optional[Sequence], auth_ids: Sequence) -> tuple:
        try:
            return aclmod.fixup_acl(acls, auth_ids)
        except aclmod.InvalidACL:
            raise KeeperError(Err.INVALIDACL)
        except aclmod.NullACLId:
            raise MarshallingError("null ACL id")

    @staticmethod
    def _check_version(current: int, expected: int) -> int:
        if expected != -1 and expected != current:
            raise KeeperError(Err.BADVERSION)
        return (current + 1 + 0x80000000) % 0x100000000 - 0x80000000

    # -- per op ------------------------------------------------------------------

    def _create(self, op: int, req: tuple, session_id: int, auth_ids: Sequence,
                zxid: int) -> Tuple[int, tuple]:
        path, data, acls, flags, ttl = req
        if flags not in CreateMode.VALID:
            raise KeeperError(Err.BADARGUMENTS)
        is_ttl = flags in CreateMode.TTL_MODES
        if is_ttl and not self.extended_types:
            raise KeeperError(Err.UNIMPLEMENTED)
        if is_ttl:
            if ttl <= 0 or ttl > MAX_TTL:
                raise KeeperError(Err.BADARGUMENTS)
        elif ttl >= 0:
            raise KeeperError(Err.BADARGUMENTS)
        self._check_session(session_id, global_session=flags in CreateMode.EPHEMERAL_MODES)
        parent_path = self._parent_of(path)
        acl = self._fixup(acls, auth_ids)
        parent = self.record_for(parent_path)
        self._check_acl(parent.acl, Perms.CREATE, auth_ids)
        parent_cversion = parent.cversion
        if flags in CreateMode.SEQUENTIAL_MODES:
            path = "%s%010d" % (path, parent_cversion)
        if not is_valid_path(path):
            raise KeeperError(Err.BADARGUMENTS)
        try:
            self.record_for(path)
        except KeeperError:
            pass
        else:
            raise KeeperError(Err.NODEEXISTS)
        if kind_of(parent.owner) == NodeKind.EPHEMERAL:
            raise KeeperError(Err.NOCHILDRENFOREPHEMERALS)
        new_cversion = i32(parent_cversion + 1)
        if op == OpCode.createContainer:
            body: tuple = (path, data, acl, new_cversion)
            owner = CONTAINER_EPHEMERAL_OWNER
        elif op == OpCode.createTTL:
            body = (path, data, acl, new_cversion, ttl)
            owner = ttl_owner(ttl)
        else:
            ephemeral = flags in CreateMode.EPHEMERAL_MODES
            body = (path, data, acl, ephemeral, new_cversion)
            owner = session_id if ephemeral else 0
        parent = parent.duplicate(zxid)
        parent.child_count += 1
        parent.cversion = new_cversion
        self._add(parent)
        self._add(ChangeRecord(zxid, path, True, 0, 0, 0, owner, 0, acl))
        return op, body

    def _delete(self, req: tuple, session_id: int, auth_ids: Sequence,
                zxid: int) -> Tuple[int, tuple]:
        self._check_session(session_id)
        path, version = req
        parent_path = self._parent_of(path)
        if path in SYSTEM_PATHS:
            raise KeeperError(Err.BADARGUMENTS)
        parent = self.record_for(parent_path)
        self._check_acl(parent.acl, Perms.DELETE, auth_ids)
        node = self.record_for(path)
        self._check_version(node.version, version)
        if node.child_count > 0:
            raise KeeperError(Err.NOTEMPTY)
        parent = parent.duplicate(zxid)
        parent.child_count -= 1
        self._add(parent)
        self._add(ChangeRecord(zxid, path, False))
        return OpCode.delete, (path,)

    def _delete_container(self, path: str, zxid: int) -> Tuple[int, tuple]:
        parent_path = self._parent_of(path)
        if path in SYSTEM_PATHS:
            raise KeeperError(Err.BADARGUMENTS)
        node = self.record_for(path)
        if node.child_count > 0:
            raise KeeperError(Err.NOTEMPTY)
        if kind_of(node.owner) == NodeKind.EPHEMERAL:
            raise KeeperError(Err.BADVERSION)
        parent = self.record_for(parent_path).duplicate(zxid)
        parent.child_count -= 1
        self._add(parent)
        self._add(ChangeRecord(zxid, path, False))
        return OpCode.deleteContainer, (path,)

    def _set_data(self, req: tuple, session_id: int, auth_ids: Sequence,
                  zxid: int) -> Tuple[int, tuple]:
        # _check_session, is_valid_path, record_for, _check_acl, _check_version
        # and duplicate, inlined (the hot write).
        s = self.sessions.sessions.get(session_id)
        if s is None:
            raise KeeperError(Err.UNKNOWNSESSION)
        if s.closing:
            raise KeeperError(Err.SESSIONEXPIRED)
        path, data, version = req
        if not is_valid_path_cached(path):
            raise KeeperError(Err.BADARGUMENTS)
        rec = self.by_path.get(path)
        node = None
        if rec is None:
            node = self.tree.nodes.get(path)
            if node is None:
                raise KeeperError(Err.NONODE)
            acl = node.acl
            current = node.version
        else:
            if not rec.exists:
                raise KeeperError(Err.NONODE)
            acl = rec.acl
            current = rec.version
        if acl and not self.skip_acl and not aclmod.check(acl, Perms.WRITE, auth_ids):
            raise KeeperError(Err.NOAUTH)
        if version != -1 and version != current:
            raise KeeperError(Err.BADVERSION)
        new_version = (current + 1 + 0x80000000) % 0x100000000 - 0x80000000
        if rec is None:
            assert node is not None
            new = ChangeRecord(zxid, path, True, new_version, node.cversion, node.aversion,
                               node.owner, len(node.children), acl)
        else:
            new = ChangeRecord(zxid, path, True, new_version, rec.cversion, rec.aversion,
                               rec.owner, rec.child_count, acl)
        self._add(new)
        return OpCode.setData, (path, data, new_version)

    def _set_acl(self, req: tuple, session_id: int, auth_ids: Sequence,
                 zxid: int) -> Tuple[int, tuple]:
        self._check_session(session_id)
        path, acls, version = req
        if not is_valid_path(path):
            raise KeeperError(Err.BADARGUMENTS)
        acl = self._fixup(acls, auth_ids)
        node = self.record_for(path)
        self._check_acl(node.acl, Perms.ADMIN, auth_ids)
        new_version = self._check_version(node.aversion, version)
        node = node.duplicate(zxid)
        node.aversion = new_version
        node.acl = acl
        self._add(node)
        return OpCode.setACL, (path, acl, new_version)

    def _check(self, req: tuple, session_id: int, auth_ids: Sequence,
               zxid: int) -> Tuple[int, tuple]:
        self._check_session(session_id)
        path, version = req
        if not is_valid_path(path):
            raise KeeperError(Err.BADARGUMENTS)
        node = self.record_for(path)
        self._check_acl(node.acl, Perms.READ, auth_ids)
        return OpCode.check, (path, self._check_version(node.version, version))

    def _one(self, op: int, req: tuple, session_id: int, auth_ids: Sequence,
             zxid: int) -> Tuple[int, tuple]:
        if op == OpCode.setData:
            return self._set_data(req, session_id, auth_ids, zxid)
        if op in (OpCode.create, OpCode.create2, OpCode.createContainer, OpCode.createTTL):
            return self._create(op, req, session_id, auth_ids, zxid)
        if op == OpCode.delete:
            return self._delete(req, session_id, auth_ids, zxid)
        if op == OpCode.setData:
            return self._set_data(req, session_id, auth_ids, zxid)
        if op == OpCode.setACL:
            return self._set_acl(req, session_id, auth_ids, zxid)
        if op == OpCode.check:
            return self._check(req, session_id, auth_ids, zxid)
        raise MarshallingError(op)

    def _multi(self, ops: tuple, session_id: int, auth_ids: Sequence,
               zxid: int, owner: object = None) -> tuple:
        subs: List[Tuple[int, tuple]] = []
        failed = False
        saved: Dict[str, Optional[ChangeRecord]] = {}
        self._multi_saved = saved
        completed = False
        try:
            for op, req in ops:
                if failed:
                    subs.append((OpCode.error, (Err.RUNTIMEINCONSISTENCY,)))
                    continue
                if op in (OpCode.create, OpCode.create2, OpCode.createContainer):
                    op = _create_opcode_for_multi(req[3])
                    if op == OpCode.createTTL:
                        raise MarshallingError("create record with a TTL mode")
                    req = req[:4] + (-1,)
                elif op == OpCode.createTTL:
                    if req[3] not in CreateMode.TTL_MODES:
                        op = _create_opcode_for_multi(req[3])
                        req = req[:4] + (-1,)
                try:
                    if owner is not None:
                        # as pRequest2Txn does for each sub-op: SESSIONMOVED fails this op
                        self.sessions.check_owner(session_id, owner)
                    subs.append(self._one(op, req, session_id, auth_ids, zxid))
                except KeeperError as e:
                    failed = True
                    subs.append((OpCode.error, (e.code,)))
                    self._rollback_multi(zxid, saved)
            completed = True
        finally:
            if not completed:
                # A marshalling error fails the whole request: take back what
                # the earlier sub-ops prepped.
                self._rollback_multi(zxid, saved)
            self._multi_saved = None
        return (tuple(subs),)

    def _rollback_multi(self, zxid: int, saved: Dict[str, Optional[ChangeRecord]]) -> None:
        changes = self.changes
        while changes and changes[-1].zxid == zxid:
            changes.pop()
        for path, rec in saved.items():
            if rec is None:
                self.by_path.pop(path, None)
            else:
                self.by_path[path] = rec
        saved.clear()

    # -- entry points ---------------------------------------------------------------

    def prep(self, session_id: int, cxid: int, op: int, req: object, auth_ids: Sequence,
             now_ms: int, owner: object = None) -> Txn:
        """Make the txn for write request ``op``; ``req`` is the decoded tuple or an exception.

        ``owner`` (replicated servers only; None in standalone) is the server the
        request came from: a session owned by another server gets SESSIONMOVED
        (SessionTrackerImpl.checkSession).
        """
        zxid = self.last_zxid = self.last_zxid + 1
        try:
            if owner is not None and op != OpCode.multi:
                self.sessions.check_owner(session_id, owner)
            if isinstance(req, Exception):
                raise MarshallingError(req)
            if op == OpCode.setData:
                type_, body = self._set_data(req, session_id, auth_ids, zxid)  # type: ignore[arg-type]
                return Txn(session_id, cxid, zxid, now_ms, type_, body)
            if op == OpCode.multi:
                return Txn(session_id, cxid, zxid, now_ms, OpCode.multi,
                           self._multi(req, session_id, auth_ids, zxid,  # type: ignore[arg-type]
                                       owner))
            type_, body = self._one(op, req, session_id, auth_ids, zxid)  # type: ignore[arg-type]
            if op in (OpCode.create2, OpCode.createTTL, OpCode.createContainer):
                type_ = op
            return Txn(session_id, cxid, zxid, now_ms, type_, body)
        except KeeperError as e:
            return Txn(session_id, cxid, zxid, now_ms, OpCode.error, (e.code,))
        except (MarshallingError, ValueError, TypeError, AttributeError):
            return Txn(session_id, cxid, zxid, now_ms, OpCode.error, (Err.MARSHALLINGERROR,))

    def prep_delete_container(self, path: str, now_ms: int) -> Txn:
        zxid = self.next_zxid()
        try:
            type_, body = self._delete_container(path, zxid)
            return Txn(0, 0, zxid, now_ms, type_, body)
        except KeeperError as e:
            return Txn(0, 0, zxid, now_ms, OpCode.error, (e.code,))

    def prep_create_session(self, session_id: int, timeout: int, now_ms: int) -> Txn:
        return Txn(session_id, 0, self.next_zxid(), now_ms, OpCode.createSession, (timeout,))

    def prep_close_session(self, session_id: int, cxid: int, now_ms: int) -> Txn:
        zxid = self.next_zxid()
        paths = set(self.tree.ephemerals.get(session_id, ()))
        for rec in self.changes:
            if not rec.exists:
                paths.discard(rec.path)
            elif rec.owner == session_id:
                paths.add(rec.path)
        for p in paths:
            self._add(ChangeRecord(zxid, p, False))
        self.sessions.set_closing(session_id)
        return Txn(session_id, cxid, zxid, now_ms, OpCode.closeSession, (tuple(sorted(paths)),))
