"""The data tree: znodes, their Stat, and txn application (DataTree.java).

Plain Python, no I/O.  Applying a txn mutates the tree and fires watches on the
tree's two :class:`WatchManager` tables.
"""

from __future__ import annotations

import re
import struct
from typing import Dict, Iterable, List, Optional, Set, Tuple

from zktwist.core.watches import WatchManager
from zktwist.proto.consts import (
    CONTAINER_EPHEMERAL_OWNER,
    EventType,
    Perms,
)

ACL = Tuple[int, str, str]  # (perms, scheme, id)
ACLList = Tuple[ACL, ...]

OPEN_ACL_UNSAFE: ACLList = ((Perms.ALL, "world", "anyone"),)
READ_ACL_UNSAFE: ACLList = ((Perms.READ, "world", "anyone"),)

STAT = struct.Struct(">qqqqiiiqiiq")
ZERO_STAT = STAT.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

SYSTEM_PATHS = frozenset(("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"))
QUOTA_ROOT = "/zookeeper/quota"
LIMIT_NODE = "zookeeper_limits"
STAT_NODE = "zookeeper_stats"


def parse_stats(data: Optional[bytes]) -> Dict[str, int]:
    """StatsTrack(String): ``count=N,bytes=M[=;key=value...]``."""
    out: Dict[str, int] = {}
    if not data:
        return out
    text = data.decode("utf-8", "replace")
    for pair in re.split(r"[,;]+", text):
        if not pair:
            continue
        kv = [p for p in pair.split("=")]
        while len(kv) > 1 and kv[-1] == "":
            kv.pop()
        try:
            out[kv[0]] = int(kv[1]) if len(kv) > 1 and kv[1] else -1
        except ValueError:
            out[kv[0]] = -1
    return out


def format_stats(stats: Dict[str, int]) -> bytes:
    """StatsTrack.toString(): count and bytes first, then the other keys sorted."""
    text = "count=%d,bytes=%d" % (stats.get("count", -1), stats.get("bytes", -1))
    rest = sorted(k for k in stats if k not in ("count", "bytes"))
    if rest:
        text += "=" + "".join(";%s=%d" % (k, stats[k]) for k in rest)
    return text.encode("utf-8")


def i32(value: int) -> int:
    """Java int arithmetic: wrap to a signed 32-bit value."""
    return ((value + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ttl_owner(ttl: int) -> int:
    """ephemeralOwner for a TTL node (EphemeralType.TTL.toEphemeralOwner), as a signed long."""
    value = 0xFF00000000000000 | ttl
    return value - (1 << 64)


def ttl_of(owner: int) -> int:
    return (owner + (1 << 64)) & 0x000000FFFFFFFFFF


class NodeKind:
    PERSISTENT = 0
    EPHEMERAL = 1
    CONTAINER = 2
    TTL = 3


def kind_of(owner: int) -> int:
    if owner == 0:
        return NodeKind.PERSISTENT
    if owner == CONTAINER_EPHEMERAL_OWNER:
        return NodeKind.CONTAINER
    if owner < 0 and ((owner + (1 << 64)) >> 56) == 0xFF:
        return NodeKind.TTL
    return NodeKind.EPHEMERAL


class Node:
    """One znode.  ``cversion`` is the persisted count of child creations."""

    __slots__ = ("data", "acl", "czxid", "mzxid", "ctime", "mtime", "version",
                 "cversion", "aversion", "owner", "pzxid", "children", "_stat")

    def __init__(self, data: Optional[bytes], acl: ACLList, czxid: int, ctime: int,
                 owner: int) -> None:
        self.data = data
        self.acl = acl
        self.czxid = czxid
        self.mzxid = czxid
        self.ctime = ctime
        self.mtime = ctime
        self.version = 0
        self.cversion = 0
        self.aversion = 0
        self.owner = owner
        self.pzxid = czxid
        self.children: Set[str] = set()
        self._stat: Optional[bytes] = None

    def stat(self) -> bytes:
        """The 68-byte wire Stat, cached until the node changes."""
        s = self._stat
        if s is None:
            n = len(self.children)
            owner = self.owner
            if owner and kind_of(owner) != NodeKind.EPHEMERAL:
                owner = 0
            data = self.data
            s = self._stat = STAT.pack(
                self.czxid, self.mzxid, self.ctime, self.mtime, self.version,
                i32(2 * self.cversion - n), self.aversion, owner,
                0 if data is None else len(data), n, self.pzxid)
        return s

    def stat_tuple(self) -> Tuple[int, ...]:
        return STAT.unpack(self.stat())


class ApplyResult:
    """What applying one txn produced (ProcessTxnResult)."""

    __slots__ = ("type", "err", "path", "stat", "multi")

    def __init__(self, type_: int, err: int = 0, path: Optional[str] = None,
                 stat: Optional[bytes] = None,
                 multi: Optional[List["ApplyResult"]] = None) -> None:
        self.type = type_
        self.err = err
        self.path = path
        self.stat = stat
        self.multi = multi


class NoNodeError(Exception):
    pass


class NodeExistsError(Exception):
    pass


def split_path(path: str) -> Tuple[str, str]:
    i = path.rfind("/")
    parent = path[:i] or "/"
    return parent, path[i + 1:]


class DataTree:
    """All znodes by path, the ephemerals of each session, and the watch tables."""

    def __init__(self) -> None:
        self.nodes: Dict[str, Node] = {}
        self.ephemerals: Dict[int, Set[str]] = {}
        self.containers: Set[str] = set()
        self.ttls: Set[str] = set()
        self.data_watches = WatchManager()
        self.child_watches = WatchManager()
        self.last_zxid = 0
        self.approximate_data_size = 0
        # Paths with a soft quota (a zookeeper_limits node under /zookeeper/quota).
        self.quota_paths: Set[str] = set()
        root = Node(b"", OPEN_ACL_UNSAFE, 0, 0, 0)
        self.nodes["/"] = root
        zk = Node(b"", OPEN_ACL_UNSAFE, 0, 0, 0)
        self.nodes["/zookeeper"] = zk
        root.children.add("zookeeper")
        quota = Node(b"", OPEN_ACL_UNSAFE, 0, 0, 0)
        self.nodes["/zookeeper/quota"] = quota
        zk.children.add("quota")
        config = Node(b"", READ_ACL_UNSAFE, 0, 0, 0)
        config.aversion = -1  # setACL(config, READ_ACL_UNSAFE, -1) in DataTree.addConfigNode
        self.nodes["/zookeeper/config"] = config
        zk.children.add("config")

    # -- reads ---------------------------------------------------------------

    def get(self, path: str) -> Optional[Node]:
        if path == "":
            path = "/"
        return self.nodes.get(path)

    def node_count(self) -> int:
        """As Apache ZooKeeper counts it: the root is stored twice ("" and "/")."""
        return len(self.nodes) + 1

    def all_children_number(self, path: str) -> int:
        if path == "/":
            return len(self.nodes) - 1
        prefix = path + "/"
        return sum(1 for p in self.nodes if p.startswith(prefix))

    def ephemeral_count(self) -> int:
        return sum(len(s) for s in self.ephemerals.values())

    # -- mutations (called while applying txns) -----------------------------

    def create_node(self, path: str, data: Optional[bytes], acl: ACLList, owner: int,
                    parent_cversion: int, zxid: int, time: int) -> Node:
        parent_path, name = split_path(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            raise NoNodeError(path)
        if name in parent.children or path in self.nodes:
            raise NodeExistsError(path)
        if parent_cversion == -1:
            parent_cversion = parent.cversion + 1
        if parent_cversion > parent.cversion:
            parent.cversion = parent_cversion
            parent.pzxid = zxid
        node = Node(data, acl, zxid, time, owner)
        parent.children.add(name)
        parent._stat = None
        self.nodes[path] = node
        if data:
            self.approximate_data_size += len(data)
        self.approximate_data_size += len(path)
        if owner:
            kind = kind_of(owner)
            if kind == NodeKind.EPHEMERAL:
                eph = self.ephemerals.get(owner)
                if eph is None:
                    eph = self.ephemerals[owner] = set()
                eph.add(path)
            elif kind == NodeKind.CONTAINER:
                self.containers.add(path)
            else:
                self.ttls.add(path)
        if parent_path.startswith(QUOTA_ROOT):
            if name == LIMIT_NODE:
                self.quota_paths.add(parent_path[len(QUOTA_ROOT):])
            elif name == STAT_NODE:
                self._recount_quota(parent_path[len(QUOTA_ROOT):])
        if self.quota_paths:
            self._update_quota(path, len(data) if data else 0, 1)
        self.data_watches.trigger(path, EventType.NodeCreated, None, acl)
        self.child_watches.trigger(parent_path, EventType.NodeChildrenChanged, None, parent.acl)
        return node

    def delete_node(self, path: str, zxid: int) -> None:
        parent_path, name = split_path(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            raise NoNodeError(path)
        # DataTree.deleteNode updates the parent before it looks for the
        # child: a replayed delete of a node a fuzzy snapshot already lacks
        # must still move the parent's pzxid.
        parent.children.discard(name)
        if zxid > parent.pzxid:
            parent.pzxid = zxid
        parent._stat = None
        node = self.nodes.get(path)
        if node is None:
            raise NoNodeError(path)
        del self.nodes[path]
        self.approximate_data_size -= len(path) + (len(node.data) if node.data else 0)
        owner = node.owner
        if owner:
            kind = kind_of(owner)
            if kind == NodeKind.EPHEMERAL:
                eph = self.ephemerals.get(owner)
                if eph is not None:
                    eph.discard(path)
                    if not eph:
                        del self.ephemerals[owner]
            elif kind == NodeKind.CONTAINER:
                self.containers.discard(path)
            else:
                self.ttls.discard(path)
        if self.quota_paths:
            if parent_path.startswith("/zookeeper") and name == LIMIT_NODE:
                self.quota_paths.discard(parent_path[len(QUOTA_ROOT):])
            self._update_quota(path, -(len(node.data) if node.data else 0), -1)
        fired = self.data_watches.trigger(path, EventType.NodeDeleted, None, node.acl)
        self.child_watches.trigger(path, EventType.NodeDeleted, fired, node.acl)
        self.child_watches.trigger(parent_path, EventType.NodeChildrenChanged, None, parent.acl)

    def set_data(self, path: str, data: Optional[bytes], version: int, zxid: int,
                 time: int) -> Node:
        node = self.nodes.get(path)
        if node is None:
            raise NoNodeError(path)
        old = node.data
        node.data = data
        node.mtime = time
        node.mzxid = zxid
        node.version = version
        node._stat = None
        diff = (len(data) if data else 0) - (len(old) if old else 0)
        self.approximate_data_size += diff
        if self.quota_paths:
            self._update_quota(path, diff, 0)
        self.data_watches.trigger(path, EventType.NodeDataChanged, None, node.acl)
        return node

    def set_acl(self, path: str, acl: ACLList, version: int) -> Node:
        node = self.nodes.get(path)
        if node is None:
            raise NoNodeError(path)
        node.acl = acl
        node.aversion = version
        node._stat = None
        return node

    def kill_session(self, session_id: int, zxid: int, paths: Optional[Iterable[str]]) -> None:
        """Delete a closed session's ephemerals: those the txn lists, then any others it still owns."""
        own = self.ephemerals.pop(session_id, set())
        listed = list(paths) if paths is not None else []
        for path in listed:
            self._delete_quietly(path, zxid)
        for path in sorted(own.difference(listed)):
            self._delete_quietly(path, zxid)

    def _delete_quietly(self, path: str, zxid: int) -> None:
        try:
            self.delete_node(path, zxid)
        except NoNodeError:
            pass  # already gone (a replay over a fuzzy snapshot)

    def set_cversion_pzxid(self, path: str, new_cversion: int, zxid: int) -> None:
        """DataTree.setCversionPzxid, used when a replayed create meets an existing node."""
        if path.endswith("/"):
            path = path[:-1]
        node = self.get(path)
        if node is None:
            raise NoNodeError(path)
        if new_cversion == -1:
            new_cversion = node.cversion + 1
        if new_cversion > node.cversion:
            node.cversion = new_cversion
            node.pzxid = zxid
            node._stat = None

    # -- soft quotas (DataTree.updateQuotaStat / updateQuotaForPath) ----------

    def quota_prefix(self, path: str) -> Optional[str]:
        """The deepest path with a quota that ``path`` is in (PathTrie.findMaxPrefix)."""
        best = None
        for q in self.quota_paths:
            if (path == q or path.startswith(q + "/")) and q not in ("", "/"):
                if best is None or len(q) > len(best):
                    best = q
        return best

    def _stat_node_of(self, quota_path: str) -> Optional[Node]:
        return self.nodes.get(QUOTA_ROOT + quota_path + "/" + STAT_NODE)

    def _update_quota(self, path: str, bytes_diff: int, count_diff: int) -> None:
        prefix = self.quota_prefix(path)
        if prefix is None:
            return
        node = self._stat_node_of(prefix)
        if node is None:
            return
        stats = parse_stats(node.data)
        stats["count"] = stats.get("count", -1) + count_diff
        stats["bytes"] = stats.get("bytes", -1) + bytes_diff
        node.data = format_stats(stats)
        node._stat = None

    def _recount_quota(self, quota_path: str) -> None:
        node = self._stat_node_of(quota_path)
        if node is None:
            return
        count = size = 0
        stack = [quota_path]
        while stack:
            p = stack.pop()
            n = self.nodes.get(p)
            if n is None:
                continue
            count += 1
            size += len(n.data) if n.data else 0
            base = "" if p == "/" else p
            stack.extend(base + "/" + c for c in n.children)
        node.data = format_stats({"count": count, "bytes": size})
        node._stat = None

    # -- watches -------------------------------------------------------------

    def remove_watcher(self, watcher: object) -> None:
        self.data_watches.remove_watcher(watcher)
        self.child_watches.remove_watcher(watcher)

    def watch_count(self) -> int:
        return self.data_watches.watch_count() + self.child_watches.watch_count()
