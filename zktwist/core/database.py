"""The standalone server's pure core: tree + sessions + prep + apply + reads.

:class:`ZooKeeperCore` takes decoded requests and returns replies; it applies
txns once the shell says they are durable.  It never reads a clock or touches
I/O: ``now_ms`` arrives with each call.  The same object runs under twistd and
under tests that drive it directly.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from zktwist.core import acl as aclmod
from zktwist.core.prep import KeeperError, Prep
from zktwist.core.sessions import SessionTracker, session_password
from zktwist.core.tree import (
    ApplyResult,
    DataTree,
    NodeExistsError,
    NoNodeError,
    ttl_of,
    ttl_owner,
)
from zktwist.core.txn import Txn
from zktwist.core.watches import PERSISTENT, PERSISTENT_RECURSIVE
from zktwist.proto import records
from zktwist.proto.consts import (
    CONTAINER_EPHEMERAL_OWNER,
    AddWatchMode,
    Err,
    EventType,
    OpCode,
    Perms,
    WatcherType,
)
from zktwist.proto.jute import encode_strings, pack_int

WRITE_OPS = frozenset((
    OpCode.create, OpCode.create2, OpCode.createContainer, OpCode.createTTL, OpCode.delete,
    OpCode.setData, OpCode.setACL, OpCode.multi, OpCode.check,
))
READ_OPS = frozenset((
    OpCode.exists, OpCode.getData, OpCode.getACL, OpCode.getChildren, OpCode.getChildren2,
    OpCode.sync, OpCode.multiRead, OpCode.checkWatches, OpCode.removeWatches,
    OpCode.getEphemerals, OpCode.getAllChildrenNumber, OpCode.setWatches, OpCode.setWatches2,
    OpCode.addWatch, OpCode.whoAmI,
))

Reply = Tuple[int, Optional[bytes]]  # (err, body or None)


def java_trim(text: str) -> str:
    """``String.trim()``: strips every character <= U+0020 from both ends, nothing else."""
    start, end = 0, len(text)
    while start < end and text[start] <= " ":
        start += 1
    while end > start and text[end - 1] <= " ":
        end -= 1
    return text[start:end]


class CoreConfig:
    """The settings the core needs (a subset of the server config)."""

    def __init__(self, tick_time: int = 2000, server_id: int = 1, skip_acl: bool = False,
                 extended_types: bool = False, super_digest: Optional[str] = None,
                 container_max_never_used_ms: int = 0) -> None:
        self.tick_time = tick_time
        self.server_id = server_id
        self.skip_acl = skip_acl
        self.extended_types = extended_types
        self.super_digest = super_digest
        self.container_max_never_used_ms = container_max_never_used_ms


class ZooKeeperCore:
    def __init__(self, config: CoreConfig, now_ms: int) -> None:
        self.config = config
        self.tree = DataTree()
        self.sessions = SessionTracker(config.server_id, config.tick_time, now_ms)
        self.prep = Prep(self.tree, self.sessions, skip_acl=config.skip_acl,
                         extended_types=config.extended_types)
        skip = config.skip_acl

        def may_read(watcher: object, acl: object) -> bool:
            ids = getattr(watcher, "auth_ids", None)
            return ids is None or aclmod.check(acl, Perms.READ, ids, skip)  # type: ignore[arg-type]

        self.tree.data_watches.event_filter = may_read
        self.tree.child_watches.event_filter = may_read
        # Called with a session id when its closeSession txn is applied.
        self.on_session_closed: Callable[[int], None] = lambda session_id: None

    @property
    def last_zxid(self) -> int:
        """The last applied zxid (lastProcessedZxid)."""
        return self.tree.last_zxid

    # -- recovery ----------------------------------------------------------------

    def install_snapshot(self, tree: DataTree, sessions: Dict[int, int], zxid: int,
                         now_ms: int) -> None:
        """Start from a loaded snapshot: its tree, its sessions, its zxid."""
        tree.last_zxid = zxid
        tree.data_watches.event_filter = self.tree.data_watches.event_filter
        tree.child_watches.event_filter = self.tree.child_watches.event_filter
        self.tree = tree
        self.prep.tree = tree
        self.prep.last_zxid = zxid
        for sid, timeout in sessions.items():
            self.sessions.add(sid, timeout, now_ms)

    def replay(self, txn: Txn, now_ms: int) -> None:
        """Apply a txn read back from the log at start-up."""
        self.apply(txn, now_ms)
        self.prep.last_zxid = self.tree.last_zxid

    # -- applying ------------------------------------------------------------------

    def apply(self, txn: Txn, now_ms: int) -> ApplyResult:
        """Apply a durable txn: mutate the tree, fire watches, settle sessions."""
        tree = self.tree
        result = self._apply_one(txn.type, txn.body, txn, now_ms)
        if txn.zxid > tree.last_zxid:
            tree.last_zxid = txn.zxid
        self.prep.applied(txn.zxid)
        return result

    def _apply_one(self, type_: int, body: tuple, txn: Txn, now_ms: int) -> ApplyResult:
        tree = self.tree
        zxid = txn.zxid
        try:
            if type_ == OpCode.setData:
                path, data, version = body
                node = tree.set_data(path, data, version, zxid, txn.time)
                return ApplyResult(type_, 0, path, node.stat())
            if type_ in (OpCode.create, OpCode.create2):
                path, data, acl, ephemeral, pcv = body
                node = tree.create_node(path, data, acl, txn.session_id if ephemeral else 0,
                                        pcv, zxid, txn.time)
                return ApplyResult(type_, 0, path, node.stat() if type_ == OpCode.create2 else None)
            if type_ == OpCode.createContainer:
                path, data, acl, pcv = body
                node = tree.create_node(path, data, acl, CONTAINER_EPHEMERAL_OWNER, pcv, zxid,
                                        txn.time)
                return ApplyResult(type_, 0, path, node.stat())
            if type_ == OpCode.createTTL:
                path, data, acl, pcv, ttl = body
                node = tree.create_node(path, data, acl, ttl_owner(ttl), pcv, zxid, txn.time)
                return ApplyResult(type_, 0, path, node.stat())
            if type_ in (OpCode.delete, OpCode.deleteContainer):
                tree.delete_node(body[0], zxid)
                return ApplyResult(type_, 0, body[0])
            if type_ == OpCode.setACL:
                path, acl, version = body
                node = tree.set_acl(path, acl, version)
                return ApplyResult(type_, 0, path, node.stat())
            if type_ == OpCode.check:
                return ApplyResult(type_, 0, body[0])
            if type_ == OpCode.error:
                return ApplyResult(type_, body[0])
            if type_ == OpCode.createSession:
                self.sessions.add(txn.session_id, body[0], now_ms)
                return ApplyResult(type_)
            if type_ == OpCode.closeSession:
                tree.kill_session(txn.session_id, zxid, body[0])
                self.sessions.remove(txn.session_id)
                self.on_session_closed(txn.session_id)
                return ApplyResult(type_)
            if type_ == OpCode.multi:
                return self._apply_multi(body[0], txn, now_ms)
        except NoNodeError:
            return ApplyResult(type_, Err.NONODE)
        except NodeExistsError:
            if type_ == OpCode.create:
                # DataTree.processTxn: a replayed create that meets an existing
                # node still moves the parent's cversion and pzxid forward.
                path = body[0]
                try:
                    tree.set_cversion_pzxid(path[:path.rfind("/")], body[4], zxid)
                except NoNodeError:
                    return ApplyResult(type_, Err.NONODE, path)
            return ApplyResult(type_, Err.NODEEXISTS, body[0])
        return ApplyResult(type_, Err.SYSTEMERROR)

    def _apply_multi(self, subs: tuple, txn: Txn, now_ms: int) -> ApplyResult:
        failed = any(t == OpCode.error for t, _ in subs)
        results: List[ApplyResult] = []
        post_failed = False
        err = 0
        for sub_type, sub_body in subs:
            if sub_type == OpCode.error:
                post_failed = True
                r = ApplyResult(OpCode.error, sub_body[0])
            elif failed:
                r = ApplyResult(OpCode.error, Err.RUNTIMEINCONSISTENCY if post_failed else 0)
            else:
                r = self._apply_one(sub_type, sub_body, txn, now_ms)
            if r.err and not err:
                err = r.err
            results.append(r)
        return ApplyResult(OpCode.multi, err, None, None, results)

    # -- replies to writes ------------------------------------------------------------

    @staticmethod
    def write_reply(op: int, result: ApplyResult) -> Reply:
        """The reply body for write request ``op`` whose txn produced ``result``."""
        if op == OpCode.setData and result.type == OpCode.setData and not result.err:
            return 0, result.stat
        if result.type == OpCode.error:
            return result.err, None
        if op == OpCode.multi:
            parts = []
            for r in result.multi or ():
                t = r.type
                if t == OpCode.error:
                    parts.append(records.multi_header(-1, r.err))
                    parts.append(pack_int(r.err))
                elif t == OpCode.create:
                    parts.append(records.multi_header(OpCode.create, 0))
                    parts.append(records.create_response(r.path or ""))
                elif t in (OpCode.create2, OpCode.createTTL, OpCode.createContainer):
                    parts.append(records.multi_header(OpCode.create2, 0))
                    parts.append(records.create2_response(r.path or "", r.stat or b""))
                elif t in (OpCode.delete, OpCode.deleteContainer):
                    parts.append(records.multi_header(OpCode.delete, 0))
                elif t == OpCode.setData:
                    parts.append(records.multi_header(OpCode.setData, 0))
                    parts.append(r.stat or b"")
                elif t == OpCode.check:
                    parts.append(records.multi_header(OpCode.check, 0))
            parts.append(records.MULTI_DONE)
            return 0, b"".join(parts)
        if result.err:
            return result.err, None
        if op == OpCode.create:
            return 0, records.create_response(result.path or "")
        if op in (OpCode.create2, OpCode.createTTL, OpCode.createContainer):
            return 0, records.create2_response(result.path or "", result.stat or b"")
        if op in (OpCode.setData, OpCode.setACL):
            return 0, result.stat
        return 0, None

    # -- reads -------------------------------------------------------------------------

    def _readable(self, path: str, auth_ids: Sequence) -> "object":
        node = self.tree.get(path)
        if node is None:
            raise KeeperError(Err.NONODE)
        if not aclmod.check(node.acl, Perms.READ, auth_ids, self.config.skip_acl):
            raise KeeperError(Err.NOAUTH)
        return node

    def session_error(self, session_id: int) -> int:
        """The error a request of this session gets before anything else (checkSession)."""
        s = self.sessions.sessions.get(session_id)
        if s is None:
            return Err.UNKNOWNSESSION
        if s.closing:
            return Err.SESSIONEXPIRED
        return 0

    def read(self, session_id: int, op: int, req: tuple, auth_ids: Sequence,
             watcher: object, check_session: bool = True) -> Reply:
        """Answer a read-type request against the applied tree."""
        try:
            if check_session:
                err = self.session_error(session_id)
                if err:
                    return err, None
            return self._read(session_id, op, req, auth_ids, watcher)
        except KeeperError as e:
            return e.code, None
        except (ValueError, TypeError, AttributeError):
            return Err.MARSHALLINGERROR, None

    def _read(self, session_id: int, op: int, req: tuple, auth_ids: Sequence,
              watcher: object) -> Reply:
        tree = self.tree
        if op == OpCode.getData:
            path, watch = req
            node = self._readable(path, auth_ids)
            if watch:
                tree.data_watches.add(path, watcher)
            return 0, records.get_data_response(node.data, node.stat())  # type: ignore[attr-defined]
        if op == OpCode.exists:
            path, watch = req
            if "\x00" in path:
                raise KeeperError(Err.BADARGUMENTS)
            if watch:
                tree.data_watches.add(path, watcher)
            node = tree.get(path)
            if node is None:
                raise KeeperError(Err.NONODE)
            return 0, node.stat()
        if op in (OpCode.getChildren, OpCode.getChildren2):
            path, watch = req
            node = self._readable(path, auth_ids)
            if watch:
                tree.child_watches.add(path, watcher)
            body = encode_strings(list(node.children))  # type: ignore[attr-defined]
            if op == OpCode.getChildren2:
                body += node.stat()  # type: ignore[attr-defined]
            return 0, body
        if op == OpCode.sync:
            return 0, records.create_response(req[0])
        if op == OpCode.getACL:
            path = req[0]
            node = tree.get(path)
            if node is None:
                raise KeeperError(Err.NONODE)
            skip = self.config.skip_acl
            if not aclmod.check(node.acl, Perms.READ | Perms.ADMIN, auth_ids, skip):
                raise KeeperError(Err.NOAUTH)
            acl = list(node.acl)
            if not aclmod.check(node.acl, Perms.ADMIN, auth_ids, skip):
                acl = aclmod.mask_digests(acl)
            return 0, records.encode_acls(acl) + node.stat()
        if op == OpCode.getAllChildrenNumber:
            path = req[0]
            self._readable(path, auth_ids)
            return 0, pack_int(tree.all_children_number(path))
        if op == OpCode.getEphemerals:
            prefix = req[0]
            mine = tree.ephemerals.get(session_id, ())
            trimmed = java_trim(prefix) if prefix is not None else ""
            if not trimmed or trimmed == "/":
                found = list(mine)
            else:
                found = [p for p in mine if p.startswith(prefix)]
            return 0, encode_strings(found)
        if op == OpCode.multiRead:
            parts = []
            for sub_op, sub_req in req:
                try:
                    path = sub_req[0]
                    node = self._readable(path, auth_ids)
                    if sub_op == OpCode.getData:
                        parts.append(records.multi_header(OpCode.getData, 0))
                        parts.append(records.get_data_response(node.data, node.stat()))  # type: ignore[attr-defined]
                    else:
                        parts.append(records.multi_header(OpCode.getChildren, 0))
                        parts.append(encode_strings(list(node.children)))  # type: ignore[attr-defined]
                except KeeperError as e:
                    parts.append(records.multi_header(-1, e.code))
                    parts.append(pack_int(e.code))
            parts.append(records.MULTI_DONE)
            return 0, b"".join(parts)
        if op == OpCode.whoAmI:
            return 0, records.whoami_response(aclmod.client_infos(auth_ids))
        if op == OpCode.addWatch:
            path, mode = req
            # DataTree.addWatch: both tables, whatever the mode (a recursive
            # watch in the child table replaces a one-shot child watch there).
            if mode == AddWatchMode.PERSISTENT:
                tree.data_watches.add(path, watcher, PERSISTENT)
                tree.child_watches.add(path, watcher, PERSISTENT)
            elif mode == AddWatchMode.PERSISTENT_RECURSIVE:
                tree.data_watches.add(path, watcher, PERSISTENT_RECURSIVE)
                tree.child_watches.add(path, watcher, PERSISTENT_RECURSIVE)
            else:
                # AddWatchMode.fromInt throws: MARSHALLINGERROR.
                raise KeeperError(Err.MARSHALLINGERROR)
            return 0, pack_int(0)
        if op == OpCode.checkWatches:
            path, wtype = req
            if not self._has_watch(path, wtype, watcher):
                raise KeeperError(Err.NOWATCHER)
            return 0, None
        if op == OpCode.removeWatches:
            path, wtype = req
            if not self._remove_watch(path, wtype, watcher):
                raise KeeperError(Err.NOWATCHER)
            return 0, None
        if op in (OpCode.setWatches, OpCode.setWatches2):
            self.set_watches(req, watcher)
            return 0, None
        raise KeeperError(Err.UNIMPLEMENTED)

    def _has_watch(self, path: str, wtype: int, watcher: object) -> bool:
        tree = self.tree
        if path and path != "/" and "/" not in path:
            # PathParentIterator.next() throws on a path with no '/': MARSHALLINGERROR.
            raise KeeperError(Err.MARSHALLINGERROR)
        if wtype == WatcherType.Children:
            return tree.child_watches.contains(path, watcher)
        if wtype == WatcherType.Data:
            return tree.data_watches.contains(path, watcher)
        if wtype == WatcherType.Any:
            return tree.child_watches.contains(path, watcher) or tree.data_watches.contains(path, watcher)
        if wtype == WatcherType.Persistent:
            return tree.data_watches.mode_of(path, watcher) == PERSISTENT and tree.data_watches.has(path, watcher)
        if wtype == WatcherType.PersistentRecursive:
            return (tree.data_watches.mode_of(path, watcher) == PERSISTENT_RECURSIVE
                    and tree.data_watches.has(path, watcher))
        raise KeeperError(Err.MARSHALLINGERROR)

    def _remove_watch(self, path: str, wtype: int, watcher: object) -> bool:
        tree = self.tree
        if wtype == WatcherType.Children:
            return tree.child_watches.remove(path, watcher)
        if wtype == WatcherType.Data:
            return tree.data_watches.remove(path, watcher)
        if wtype == WatcherType.Any:
            a = tree.child_watches.remove(path, watcher)
            b = tree.data_watches.remove(path, watcher)
            return a or b
        if wtype == WatcherType.Persistent:
            a = tree.data_watches.remove_mode(path, watcher, PERSISTENT)
            b = tree.child_watches.remove_mode(path, watcher, PERSISTENT)
            return a or b
        if wtype == WatcherType.PersistentRecursive:
            a = tree.data_watches.remove_mode(path, watcher, PERSISTENT_RECURSIVE)
            b = tree.child_watches.remove_mode(path, watcher, PERSISTENT_RECURSIVE)
            return a or b
        raise KeeperError(Err.MARSHALLINGERROR)

    def set_watches(self, req: tuple, watcher: object) -> None:
        """Re-arm a reconnecting client's watches (DataTree.setWatches), firing what it missed."""
        rel, data_w, exist_w, child_w, persistent_w, recursive_w = req
        tree = self.tree
        for path in data_w:
            node = tree.get(path)
            if node is None:
                watcher.process_event(EventType.NodeDeleted, path)  # type: ignore[attr-defined]
            elif node.mzxid > rel:
                watcher.process_event(EventType.NodeDataChanged, path)  # type: ignore[attr-defined]
            else:
                tree.data_watches.add(path, watcher)
        for path in exist_w:
            if tree.get(path) is not None:
                watcher.process_event(EventType.NodeCreated, path)  # type: ignore[attr-defined]
            else:
                tree.data_watches.add(path, watcher)
        for path in child_w:
            node = tree.get(path)
            if node is None:
                watcher.process_event(EventType.NodeDeleted, path)  # type: ignore[attr-defined]
            elif node.pzxid > rel:
                watcher.process_event(EventType.NodeChildrenChanged, path)  # type: ignore[attr-defined]
            else:
                tree.child_watches.add(path, watcher)
        for path in persistent_w:
            tree.child_watches.add(path, watcher, PERSISTENT)
            tree.data_watches.add(path, watcher, PERSISTENT)
        for path in recursive_w:
            tree.child_watches.add(path, watcher, PERSISTENT_RECURSIVE)
            tree.data_watches.add(path, watcher, PERSISTENT_RECURSIVE)

    # -- sessions -------------------------------------------------------------------------

    def authenticate(self, scheme: Optional[str], auth: Optional[bytes],
                     remote_ip: str) -> Optional[List[Tuple[str, str]]]:
        """Ids an auth packet adds, or None for AUTHFAILED."""
        if scheme == "digest":
            if auth is None:
                return None  # new String(null) throws: AUTHFAILED
            # new String(authData): malformed bytes become U+FFFD, as Java decodes.
            d = aclmod.digest(auth.decode("utf-8", "replace"))
            ids = []
            if self.config.super_digest and d == self.config.super_digest:
                ids.append(("super", ""))
            ids.append(("digest", d))
            return ids
        if scheme == "ip":
            return [("ip", remote_ip)]
        return None

    def check_password(self, session_id: int, passwd: Optional[bytes]) -> bool:
        return session_id != 0 and passwd == session_password(session_id)

    def expired_sessions(self, now_ms: int) -> List[int]:
        return self.sessions.expired(now_ms)

    # -- containers and TTL nodes ------------------------------------------------------------

    def reapable(self, now_ms: int, limit: int = 10000) -> List[str]:
        """Containers and TTL nodes due for deletion (ContainerManager.getCandidates)."""
        out: List[str] = []
        tree = self.tree
        never_used = self.config.container_max_never_used_ms
        for path in list(tree.containers):
            node = tree.nodes.get(path)
            if node is None or node.children:
                continue
            if node.cversion > 0:
                out.append(path)
            elif never_used > 0 and now_ms - node.mtime > never_used:
                out.append(path)
        for path in list(tree.ttls):
            node = tree.nodes.get(path)
            if node is None or node.children:
                continue
            if now_ms - node.mtime > ttl_of(node.owner):
                out.append(path)
        return out[:limit]
