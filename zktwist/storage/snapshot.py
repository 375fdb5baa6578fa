"""Snapshots in Apache ZooKeeper 3.8's ``version-2/snapshot.<zxid>`` format.

A snapshot file is one Adler32-checked stream of jute values
(FileSnap.serialize, SerializeUtils.serializeSnapshot, DataTree.serialize)::

    FileHeader      int magic "ZKSN", int version 2, long dbid -1
    sessions        int count, then count x (long id, int timeout)
    ACL cache       int count, then count x (long ref, vector<ACL>)
                    (ReferenceCountedACLCache: refs are longs from 1; -1, which
                    is never in the map, stands for OPEN_ACL_UNSAFE)
    nodes           count x (ustring path, DataNode: buffer data, long acl ref,
                    StatPersisted), parents before children, the root as ""
    "/"             ustring: end of the nodes
    seal            long Adler32 of every byte so far, ustring "/"
    ZxidDigest      long zxid, int digestVersion, long digest (digest.enabled,
                    true by default in 3.8: written after the seal)
    seal            long Adler32 of every byte so far (first seal included), "/"

Snapshots are *fuzzy*: :func:`snapshot_chunks` walks the live tree a slice at
a time while the server keeps applying txns, exactly as ZooKeeper's snapshot
thread does.  The file is named after ``zxid``, the last applied zxid when the
walk starts; replaying every logged txn after ``zxid`` over the loaded
snapshot gives the tree the server had (txns are applied idempotently enough:
a replayed create meeting its node moves the parent's cversion/pzxid, a
replayed delete of a node the walk already missed is a no-op, setData and
setACL carry absolute values).

Both directions are byte-compatible with 3.8.0: ZooKeeper loads what
:func:`snapshot_chunks` writes and :func:`load_snapshot` loads what ZooKeeper
writes (also ``snapshot.<zxid>.gz``, zookeeper.snapshot.compression.method=gz).

Everything here is pure: no reactor, no file I/O.  The caller writes the
chunks to ``snapshot.<zxid>`` (preferably to a temporary name, fsynced, then
renamed) and feeds a file's bytes to :func:`load_snapshot`.
"""

from __future__ import annotations

import gc
import re
import struct
import zlib
from operator import attrgetter
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

from zktwist.core.tree import (
    LIMIT_NODE,
    OPEN_ACL_UNSAFE,
    QUOTA_ROOT,
    READ_ACL_UNSAFE,
    STAT_NODE,
    SYSTEM_PATHS,
    ACLList,
    DataTree,
    Node,
    NodeKind,
    format_stats,
    kind_of,
)
from zktwist.proto.jute import java_utf8
from zktwist.storage.errors import StorageError

__all__ = [
    "DIGEST_VERSION", "SNAP_MAGIC", "UNRESOLVED_ACL", "Snapshot", "SnapshotError", "load_snapshot",
    "snapshot_chunks", "snapshot_name", "zxid_of_snapshot_name",
]

SNAP_MAGIC = 0x5A4B534E  # "ZKSN"
SNAP_VERSION = 2
SNAP_DBID = -1
OPEN_ACL_REF = -1  # ReferenceCountedACLCache.OPEN_UNSAFE_ACL_ID
DIGEST_VERSION = 2  # DigestCalculator.DIGEST_VERSION in 3.8

_FILE_HEADER = struct.Struct(">iiq")
_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_SESSION = struct.Struct(">qi")
_INT_LONG = struct.Struct(">iq")
# DataNode after the data buffer: long acl, then StatPersisted (czxid, mzxid,
# ctime, mtime, version, cversion, aversion, ephemeralOwner, pzxid).
_NODE_TAIL = struct.Struct(">qqqqqiiiqq")
_ZXID_DIGEST = struct.Struct(">qiq")
_END_PATH = b"\x00\x00\x00\x01/"  # ustring "/": end of nodes, and each seal's path
_NULL = _INT.pack(-1)
_MASK64 = (1 << 64) - 1
#: The ACL of a loaded node whose ACL reference was not in the snapshot's ACL
#: cache, until the log is replayed: no permission for anyone (an empty list
#: would mean no check at all).
UNRESOLVED_ACL: ACLList = ((0, "world", "anyone"),)
_SNAPSHOT_NAME = re.compile(r"snapshot\.([0-9a-fA-F]{1,16})(\.gz)?")
_get_acl = attrgetter("acl")


class SnapshotError(StorageError):
    """A snapshot cannot be used: bad magic, truncated, corrupt or checksum mismatch.

    Recovery should fall back to an older snapshot (as FileSnap.deserialize does).
    """

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__("snapshot unusable at offset %d: %s" % (offset, reason))
        self.reason = reason
        self.offset = offset


# -- names -------------------------------------------------------------------------------------

def snapshot_name(zxid: int) -> str:
    """``snapshot.<zxid in lower-case hex>`` (Util.makeSnapshotName, uncompressed)."""
    return "snapshot.%x" % (zxid & _MASK64)


def zxid_of_snapshot_name(name: str) -> Optional[int]:
    """The zxid in a snapshot file name, or None if the name is not one this module reads.

    ``snapshot.<hex>`` and ``snapshot.<hex>.gz`` are accepted (Util.getZxidFromName);
    ``.snappy`` snapshots are not readable here, so they give None.
    """
    m = _SNAPSHOT_NAME.fullmatch(name)
    if m is None:
        return None
    zxid = int(m.group(1), 16)
    if zxid >= 1 << 63:  # Long.parseLong(.., 16) refuses it
        return None
    return zxid


# -- writing -----------------------------------------------------------------------------------

def _encode_acl_list(acl: ACLList) -> bytes:
    parts = [_INT.pack(len(acl))]
    for perms, scheme, ident in acl:
        parts.append(_INT.pack(perms))
        for text in (scheme, ident):
            if text is None:  # only from a loaded file that had a null string
                parts.append(_NULL)
            else:
                raw = java_utf8(text)
                parts.append(_INT.pack(len(raw)))
                parts.append(raw)
    return b"".join(parts)


def _wrap32(v: int) -> int:
    return ((v + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def _wrap64(v: int) -> int:
    return ((v + (1 << 63)) & _MASK64) - (1 << 63)


def _node_tail_slow(ref: int, n: Node) -> bytes:
    """Java's int/long wrap-around, for values out of range (never seen in practice)."""
    return _NODE_TAIL.pack(ref, _wrap64(n.czxid), _wrap64(n.mzxid), _wrap64(n.ctime),
                           _wrap64(n.mtime), _wrap32(n.version), _wrap32(n.cversion),
                           _wrap32(n.aversion), _wrap64(n.owner), _wrap64(n.pzxid))


def snapshot_chunks(tree: DataTree, sessions: Dict[int, int], zxid: int,
                    nodes_per_chunk: int = 2000) -> Iterator[bytes]:
    """The bytes of ``snapshot.<zxid>``, a slice at a time, while ``tree`` keeps changing.

    ``zxid`` is the snapshot's name: the last zxid applied to ``tree`` when
    ``sessions`` (session id -> timeout, copied now) was taken; txns applied
    since then are fine as long as the log holds every txn after ``zxid``.
    Concatenated, the chunks are the file.  Each ``next()`` serializes at most
    ``nodes_per_chunk`` nodes, so the caller can yield to the reactor in
    between and apply txns meanwhile.  Some chunks may be empty: the first
    few collect the ACLs in use (16 x ``nodes_per_chunk`` nodes each), and
    copying a child set of more than 8 x ``nodes_per_chunk`` names gets a
    ``next()`` of its own.  The call itself copies the list of nodes (a few
    ms per million).

    Fuzziness, as in DataTree.serializeNode: the walk is depth-first from the
    root, parents before children; a node's child names are copied when the
    node is written, a child that is gone when its turn comes is skipped, and
    a node's fields are read when it is written.  Nodes created after ``zxid``
    (czxid > zxid, so not in the tree this snapshot is named after) are left
    out with their subtrees: replaying their creates rebuilds them.

    ACL references: the ACL cache written at the start numbers (from 1) the
    ACLs of the nodes present when this was called; OPEN_ACL_UNSAFE is -1.
    A node whose ACL was changed during the walk to one that is not in that
    map is written with -1 (OPEN_ACL_UNSAFE).  That is safe only because
    such a change is a setACL txn with a zxid above ``zxid``: replaying the
    log after the snapshot's zxid (which recovery always does) restores the
    right ACL before any client can see the node.  A snapshot must therefore
    never be used without the log that follows it.

    The ZxidDigest written after the first seal is the empty one (zxid 0),
    which 3.8 reads as "no digest to compare" (zktwist keeps no tree digest).
    """
    if nodes_per_chunk < 1:
        raise ValueError("nodes_per_chunk must be at least 1")
    # Taken now, not when the generator first runs: this is the state at ``zxid``.
    session_items = list(sessions.items())
    node_list = list(tree.nodes.values())
    return _chunks(tree, session_items, node_list, zxid, nodes_per_chunk)


def _chunks(tree: DataTree, session_items: List[Tuple[int, int]], node_list: List[Node],
            zxid: int, per_chunk: int) -> Iterator[bytes]:
    adler = 1
    # 1. header and sessions
    parts = [_FILE_HEADER.pack(SNAP_MAGIC, SNAP_VERSION, SNAP_DBID), _INT.pack(len(session_items))]
    parts.extend(_SESSION.pack(sid, timeout) for sid, timeout in session_items)
    del session_items
    head = b"".join(parts)

    # 2. the ACLs in use: scanned from the list of nodes taken at the start, in
    # slices (collecting is much cheaper per node than serializing).
    seen: Set[ACLList] = set()
    scan = per_chunk * 16
    while node_list:
        # from the end, dropping what was scanned (freeing a big list at once takes time)
        seen.update(map(_get_acl, node_list[-scan:]))
        del node_list[-scan:]
        if node_list:
            adler = zlib.adler32(head, adler)
            yield head
            head = b""
    seen.discard(OPEN_ACL_UNSAFE)
    refs: Dict[ACLList, int] = {}
    parts = [head, _INT.pack(len(seen))]
    for ref, acl in enumerate(sorted(seen, key=repr), 1):
        refs[acl] = ref
        parts.append(_LONG.pack(ref))
        parts.append(_encode_acl_list(acl))
    refs[OPEN_ACL_UNSAFE] = OPEN_ACL_REF
    del seen

    # 3. the nodes, depth-first, a slice at a time
    nodes_get = tree.nodes.get
    pack_int = _INT.pack
    pack_tail = _NODE_TAIL.pack
    refs_get = refs.get
    last_acl: Optional[ACLList] = None
    last_ref = OPEN_ACL_REF
    # A frame is [child path prefix, copied child names (None: not copied yet), next index,
    # the node].  Copying a big child set takes a slice of its own.
    stack: List[list] = [["", [""], 0, None]]
    big = per_chunk * 8
    written = 0
    while stack:
        append = parts.append
        while stack and written < per_chunk:
            frame = stack[-1]
            names = frame[1]
            if names is None:
                names = frame[1] = list(frame[3].children)
                frame[3] = None
                written = per_chunk
                break
            i = frame[2]
            if i >= len(names):
                stack.pop()
                continue
            frame[2] = i + 1
            path = frame[0] + names[i]
            node = nodes_get(path or "/")
            if node is None or node.czxid > zxid:
                continue
            raw = path.encode("ascii") if path.isascii() else java_utf8(path)
            append(pack_int(len(raw)))
            append(raw)
            data = node.data
            if data is None:
                append(_NULL)
            else:
                append(pack_int(len(data)))
                append(data)
            acl = node.acl
            if acl is not last_acl:
                last_ref = refs_get(acl, OPEN_ACL_REF)
                last_acl = acl
            try:
                append(pack_tail(last_ref, node.czxid, node.mzxid, node.ctime, node.mtime,
                                 node.version, node.cversion, node.aversion, node.owner,
                                 node.pzxid))
            except struct.error:
                append(_node_tail_slow(last_ref, node))
            written += 1
            children = node.children
            if children:
                if len(children) > big:
                    stack.append([path + "/", None, 0, node])
                    written = per_chunk  # end the slice here: the copy gets the next one
                else:
                    stack.append([path + "/", list(children), 0, None])
        if not stack:
            break
        chunk = b"".join(parts)
        adler = zlib.adler32(chunk, adler)
        yield chunk
        parts = []
        written = 0

    # 4. "/", the seal, the (empty) ZxidDigest and the second seal
    parts.append(_END_PATH)
    chunk = b"".join(parts)
    adler = zlib.adler32(chunk, adler)
    seal = _LONG.pack(adler) + _END_PATH
    adler = zlib.adler32(seal, adler)
    digest = _ZXID_DIGEST.pack(0, DIGEST_VERSION, 0)
    adler = zlib.adler32(digest, adler)
    yield chunk + seal + digest + _LONG.pack(adler) + _END_PATH


# -- reading -----------------------------------------------------------------------------------

class Snapshot:
    """A loaded snapshot: the tree (every bookkeeping structure rebuilt), sessions, zxid.

    ``zxid`` is the zxid the caller passed (from the file name), or None.
    ``digest`` is the ZxidDigest found after the seal as (zxid, version,
    digest), or None when there was none (or an empty one).
    ``unresolved_acls`` lists the nodes loaded with :data:`UNRESOLVED_ACL`
    (see :func:`load_snapshot`); replaying the log must replace each of them.
    """

    def __init__(self, tree: DataTree, sessions: Dict[int, int], zxid: Optional[int],
                 digest: Optional[Tuple[int, int, int]], size: int,
                 unresolved_acls: Optional[List[str]] = None) -> None:
        self.tree = tree
        self.sessions = sessions
        self.zxid = zxid
        self.digest = digest
        self.size = size
        self.unresolved_acls = unresolved_acls or []

    def __repr__(self) -> str:
        return "Snapshot(zxid=%s, nodes=%d, sessions=%d)" % (
            "None" if self.zxid is None else "0x%x" % self.zxid, len(self.tree.nodes),
            len(self.sessions))


class _Input:
    """Chunks as one checked stream: ``need(n)`` makes n bytes available at ``pos``."""

    __slots__ = ("_it", "buf", "pos", "end", "base", "_ck", "adler")

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = _maybe_gunzip(iter(chunks))
        self.buf = b""
        self.pos = 0
        self.end = 0
        self.base = 0  # offset in the stream of buf[0]
        self._ck = 0   # buf[:_ck] has been added to ``adler``
        self.adler = 1

    def offset(self) -> int:
        return self.base + self.pos

    def need(self, n: int) -> None:
        if self.pos + n <= self.end:
            return
        buf = self.buf
        pos = self.pos
        # checksum what is about to be dropped, keep the rest
        self.adler = zlib.adler32(memoryview(buf)[self._ck:pos], self.adler)
        parts = [buf[pos:]]
        have = self.end - pos
        want = max(n, 1 << 20)
        for chunk in self._it:
            if chunk:
                parts.append(bytes(chunk))
                have += len(chunk)
                if have >= want:
                    break
        self.base += pos
        self.buf = b"".join(parts)
        self.pos = 0
        self._ck = 0
        self.end = len(self.buf)
        if n > self.end:
            raise SnapshotError("truncated: %d more bytes needed" % (n - self.end),
                                self.base + self.end)

    def at_eof(self) -> bool:
        if self.pos < self.end:
            return False
        try:
            self.need(1)
        except SnapshotError:
            return True
        return False

    def checksum(self) -> int:
        """Adler32 of every byte before ``pos``."""
        self.adler = zlib.adler32(memoryview(self.buf)[self._ck:self.pos], self.adler)
        self._ck = self.pos
        return self.adler

    def read_int(self) -> int:
        self.need(4)
        v: int = _INT.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def read_long(self) -> int:
        self.need(8)
        v: int = _LONG.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return v

    def raw(self, n: int) -> bytes:
        self.need(n)
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return v

    def ustring(self) -> Optional[str]:
        n = self.read_int()
        if n < 0:
            return None
        return _decode(self.raw(n))


def _maybe_gunzip(it: Iterator[bytes]) -> Iterator[bytes]:
    """Pass a plain stream through; inflate a gzip one (snapshot.<zxid>.gz)."""
    first = b""
    for chunk in it:
        first += chunk
        if len(first) >= 2:
            break
    if first[:2] != b"\x1f\x8b":
        if first:
            yield first
        yield from it
        return
    inflater = zlib.decompressobj(31)
    try:
        out = inflater.decompress(first)
        if out:
            yield out
        for chunk in it:
            out = inflater.decompress(chunk)
            if out:
                yield out
        out = inflater.flush()
    except zlib.error as e:
        raise SnapshotError("bad gzip stream: %s" % e, 0) from e
    if out:
        yield out


def _decode(raw: bytes) -> str:
    """A jute ustring as Java's ``new String(bytes, UTF_8)`` reads it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "zktwist-java-replace")  # registered by zktwist.proto.jute


def _read_acl_list(src: _Input) -> ACLList:
    n = src.read_int()
    if n < 0:
        raise SnapshotError("missing ACL vector", src.offset())
    out = []
    for _ in range(n):
        perms = src.read_int()
        scheme = src.ustring()
        ident = src.ustring()
        out.append((perms, scheme, ident))
    return tuple(out)  # type: ignore[arg-type]


def _new_node() -> Node:
    node: Node = Node.__new__(Node)
    node.children = set()
    node._stat = None
    return node


def load_snapshot(chunks: Iterable[bytes], zxid: Optional[int] = None) -> Snapshot:
    """Read a snapshot (the bytes of a ``snapshot.*`` file, in any chunking).

    ``zxid`` is the snapshot's zxid from its file name (:func:`zxid_of_snapshot_name`);
    when given, the tree's ``last_zxid`` is set to it, as FileSnap.deserialize does.

    Raises :class:`SnapshotError` on a bad magic number, truncation, a checksum
    mismatch or a tree that does not hold together.

    ACL references missing from the ACL cache: ZooKeeper writes the cache
    first, then walks the tree while txns keep landing, so a node whose ACL
    was set (setACL, or create) after the cache was written refers to an ACL
    the file does not hold -- and that txn's zxid is above the snapshot's.
    Such a node is dropped with its subtree when it was created after
    ``zxid`` (replaying its create rebuilds it); otherwise it is loaded with
    :data:`UNRESOLVED_ACL` (world, no permissions: only super may touch it),
    listed in ``Snapshot.unresolved_acls``, until replaying the setACL after
    ``zxid`` gives it its ACL.  ZooKeeper itself keeps the dangling reference,
    which fails every access, until the same replay.
    """
    src = _Input(chunks)
    # Millions of new nodes and sets, no cycles: the cyclic GC would rescan the growing
    # tree again and again (it costs 60% of the time), so it is off while loading.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(src, zxid)
    except struct.error as e:  # pragma: no cover - need() guards every unpack
        raise SnapshotError("malformed: %s" % e, src.offset()) from e
    finally:
        if gc_was_enabled:
            gc.enable()


def _load(src: _Input, zxid: Optional[int]) -> Snapshot:
    magic, version, _dbid = _FILE_HEADER.unpack(src.raw(_FILE_HEADER.size))
    if magic != SNAP_MAGIC:
        raise SnapshotError("bad magic 0x%08x (not a snapshot)" % (magic & 0xFFFFFFFF), 0)
    # FileSnap does not check the version; nothing but 2 has ever been written.
    sessions: Dict[int, int] = {}
    count = src.read_int()
    while count > 0:
        src.need(12)
        sid, timeout = _SESSION.unpack_from(src.buf, src.pos)
        src.pos += 12
        sessions[sid] = timeout
        count -= 1

    # ACL cache
    acls: Dict[int, ACLList] = {}
    interned: Dict[ACLList, ACLList] = {OPEN_ACL_UNSAFE: OPEN_ACL_UNSAFE,
                                        READ_ACL_UNSAFE: READ_ACL_UNSAFE}
    count = src.read_int()
    while count > 0:
        ref = src.read_long()
        acl_list = _read_acl_list(src)
        acls[ref] = interned.setdefault(acl_list, acl_list)
        count -= 1
    acls[OPEN_ACL_REF] = OPEN_ACL_UNSAFE

    tree = DataTree()
    nodes: Dict[str, Node] = {}
    tree.nodes = nodes
    ephemerals = tree.ephemerals
    containers = tree.containers
    ttls = tree.ttls
    quota_paths = tree.quota_paths
    dropped: Set[str] = set()
    unresolved: List[str] = []
    size = 0
    acls_get = acls.get
    unpack_int = _INT.unpack_from
    unpack_tail = _NODE_TAIL.unpack_from
    tail_size = _NODE_TAIL.size

    while True:
        src.need(4)
        buf, pos = src.buf, src.pos
        plen = unpack_int(buf, pos)[0]
        if plen < 0:
            raise SnapshotError("null path", src.offset())
        src.need(8 + plen)
        buf, pos = src.buf, src.pos
        start = pos + 4
        raw = buf[start:start + plen]
        if raw == b"/":
            src.pos = start + 1
            break
        dlen = unpack_int(buf, start + plen)[0]
        body = start + plen + 4
        rec_end = body + (dlen if dlen > 0 else 0) + tail_size
        if rec_end > src.end:
            src.need(rec_end - pos)
            buf, pos = src.buf, src.pos
            start = pos + 4
            body = start + plen + 4
            rec_end = body + (dlen if dlen > 0 else 0) + tail_size
        offset = src.base + pos
        if dlen < 0:
            data: Optional[bytes] = None
            tail = body
        else:
            tail = body + dlen
            data = buf[body:tail]
        (ref, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner,
         pzxid) = unpack_tail(buf, tail)
        src.pos = rec_end

        try:
            path = raw.decode("utf-8")
        except UnicodeDecodeError:
            path = _decode(raw)
        slash = path.rfind("/")
        if slash < 0:
            if path:
                raise SnapshotError("path %r has no '/'" % path, offset)
            key = "/"
            parent: Optional[Node] = None
        else:
            key = path
            parent_key = path[:slash] or "/"
            parent = nodes.get(parent_key)
            if parent is None:
                if parent_key in dropped:
                    dropped.add(key)
                    continue
                raise SnapshotError("parent %s of %s is missing" % (parent_key, path), offset)
        if key in nodes:
            raise SnapshotError("%s appears twice" % path, offset)
        acl = acls_get(ref)
        if acl is None:
            if zxid is not None and czxid > zxid:
                dropped.add(key)
                continue
            acl = UNRESOLVED_ACL
            unresolved.append(key)

        node = _new_node()
        node.data = data
        node.acl = acl
        node.czxid = czxid
        node.mzxid = mzxid
        node.ctime = ctime
        node.mtime = mtime
        node.version = version
        node.cversion = cversion
        node.aversion = aversion
        node.owner = owner
        node.pzxid = pzxid
        nodes[key] = node
        if parent is None:
            continue
        name = path[slash + 1:]
        parent.children.add(name)
        if key not in SYSTEM_PATHS:
            size += len(path) + (dlen if dlen > 0 else 0)
        if owner:
            kind = kind_of(owner)
            if kind == NodeKind.EPHEMERAL:
                eph = ephemerals.get(owner)
                if eph is None:
                    eph = ephemerals[owner] = set()
                eph.add(key)
            elif kind == NodeKind.CONTAINER:
                containers.add(key)
            else:
                ttls.add(key)
        if name == LIMIT_NODE and path.startswith(QUOTA_ROOT):
            parent_path = path[:slash]
            if parent_path.startswith(QUOTA_ROOT):
                quota_paths.add(parent_path[len(QUOTA_ROOT):])

    # the seal: Adler32 of everything so far, then "/"
    _check_seal(src, "")

    # the ZxidDigest and its seal, absent in snapshots of older servers (or digest.enabled=false)
    digest: Optional[Tuple[int, int, int]] = None
    if not src.at_eof():
        dzxid = src.read_long()
        dversion = src.read_int()
        if dversion < 2:
            text = src.ustring()
            try:
                dvalue = _wrap64(int(text, 16)) if text else 0
            except ValueError:
                raise SnapshotError("bad digest %r" % text, src.offset()) from None
        else:
            dvalue = src.read_long()
        _check_seal(src, " after the digest")
        if dzxid > 0:
            digest = (dzxid, dversion, dvalue)

    if "/" not in nodes:
        raise SnapshotError("no root node", src.offset())
    _add_missing_system_nodes(tree)
    size += _recount_quotas(tree)
    tree.approximate_data_size = size
    if zxid is not None:
        tree.last_zxid = zxid
    return Snapshot(tree, sessions, zxid, digest, src.offset(), unresolved)


def _check_seal(src: _Input, where: str) -> None:
    """SnapStream.checkSealIntegrity: the Adler32 so far, then "/" (which
    SnapStream.isValidSnapshot requires at the end of the file)."""
    offset = src.offset()
    expected = src.checksum()
    stored = src.read_long()
    if stored != expected:
        raise SnapshotError("checksum mismatch%s: stored 0x%x, computed 0x%x"
                            % (where, stored & _MASK64, expected), offset)
    if src.raw(5) != _END_PATH:
        raise SnapshotError("no \"/\" after the checksum%s" % where, offset + 8)


def _add_missing_system_nodes(tree: DataTree) -> None:
    """Every 3.5+ snapshot has them; an older one gets them as a new DataTree has them."""
    nodes = tree.nodes
    for path, name, parent, acl in (("/zookeeper", "zookeeper", "/", OPEN_ACL_UNSAFE),
                                     ("/zookeeper/quota", "quota", "/zookeeper", OPEN_ACL_UNSAFE),
                                     ("/zookeeper/config", "config", "/zookeeper",
                                      READ_ACL_UNSAFE)):
        if path not in nodes and parent in nodes:
            node = Node(b"", acl, 0, 0, 0)
            if path == "/zookeeper/config":
                node.aversion = -1
            nodes[path] = node
            nodes[parent].children.add(name)
            nodes[parent]._stat = None


def _count_subtree(tree: DataTree, path: str) -> Tuple[int, int]:
    """DataTree.getCounts: nodes and data bytes of a subtree ("" is the root)."""
    count = size = 0
    nodes = tree.nodes
    stack = [path]
    while stack:
        p = stack.pop()
        n = nodes.get(p or "/")
        if n is None:
            continue
        count += 1
        size += len(n.data) if n.data else 0
        stack.extend(p + "/" + c for c in n.children)
    return count, size


def _recount_quotas(tree: DataTree) -> int:
    """DataTree.setupQuota/traverseNode: recount the stats node of every quota.

    As ZooKeeper does on load: every leaf ``.../zookeeper_limits`` below
    /zookeeper/quota gets its subtree counted into the sibling
    ``zookeeper_stats`` node.  Returns the change in data size.
    """
    nodes = tree.nodes
    if QUOTA_ROOT not in nodes:
        return 0
    end = "/" + LIMIT_NODE
    diff = 0
    stack = [QUOTA_ROOT]
    while stack:
        path = stack.pop()
        node = nodes.get(path)
        if node is None:
            continue
        if node.children:
            stack.extend(sorted((path + "/" + c for c in node.children), reverse=True))
            continue
        if not path.endswith(end):
            continue
        real = path[len(QUOTA_ROOT):path.index(end)]
        stat_node = nodes.get(QUOTA_ROOT + real + "/" + STAT_NODE)
        if stat_node is None:
            continue
        count, size = _count_subtree(tree, real)
        old = stat_node.data
        stat_node.data = format_stats({"count": count, "bytes": size})
        stat_node._stat = None
        diff += len(stat_node.data) - (len(old) if old else 0)
    return diff
