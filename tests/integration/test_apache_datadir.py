"""Data directories shared with Apache ZooKeeper 3.8, both ways.

* Apache ZooKeeper (low snapCount: many fuzzy snapshots and log files) runs a
  varied kazoo workload and is stopped with SIGTERM; zktwist's snapshot loader
  and file-log reader rebuild the tree from every one of its snapshots plus
  the later log entries, and the result is what kazoo read from ZooKeeper
  before it stopped (every path, data, Stat and ACL).
* A snapshot written by zktwist (alone, and a fuzzy one followed by zktwist's
  own ``log.*`` file) is what ZooKeeper starts from; what kazoo reads from it
  is zktwist's tree.

Skipped without Debian's zookeeper package (a failure under CI=true).
"""

from __future__ import annotations

import os
import random
import struct
import time
from collections import namedtuple
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError
from kazoo.protocol.serialization import Create, read_string
from kazoo.security import OPEN_ACL_UNSAFE, make_acl, make_digest_acl

from tests.conftest import require_apache_zookeeper
from tests.support.processes import ApacheZooKeeperProcess, four_letter
from tests.unit.test_core_support import LOCAL_IP
from tests.unit.test_snapshot import (
    ACL_VARIANTS,
    DIGEST,
    KINDS,
    Fuzzer,
    Parsed,
    Recording,
    apache_delete,
    core_from_snapshot,
)
from zktwist.core.database import ZooKeeperCore
from zktwist.core.tree import DataTree
from zktwist.core.txn import decode, encode
from zktwist.proto.consts import OpCode
from zktwist.storage.filelog import FileLogBackend
from zktwist.storage.snapshot import (
    UNRESOLVED_ACL,
    load_snapshot,
    snapshot_chunks,
    snapshot_name,
    zxid_of_snapshot_name,
)

pytestmark = pytest.mark.differential
__all__ = ["apache_delete"]  # a fixture (3.8's deleteNode semantics for replay)

View = Dict[str, Tuple[Optional[bytes], Tuple[int, ...], Tuple[Tuple[int, str, str], ...]]]
MAX_ZXID = (1 << 63) - 1


@pytest.fixture(autouse=True)
def _need_apache() -> None:
    require_apache_zookeeper()


# --------------------------------------------------------------------------- helpers

class CreateContainer(namedtuple("CreateContainer", "path data acl")):
    """kazoo has no createContainer (op 19): CreateRequest with flags 4, Create2Response."""

    type = 19

    def serialize(self) -> bytearray:
        return Create(self.path, self.data, self.acl, 4).serialize()

    @classmethod
    def deserialize(cls, data: bytes, offset: int) -> str:
        return read_string(data, offset)[0]  # type: ignore[no-any-return]


class CreateTTL(namedtuple("CreateTTL", "path data acl ttl")):
    """createTTL (op 21): CreateTTLRequest (flags 5, long ttl), Create2Response."""

    type = 21

    def serialize(self) -> bytearray:
        return Create(self.path, self.data, self.acl, 5).serialize() + struct.pack(">q", self.ttl)

    @classmethod
    def deserialize(cls, data: bytes, offset: int) -> str:
        return read_string(data, offset)[0]  # type: ignore[no-any-return]


def call(client: KazooClient, request: object) -> object:
    result = client.handler.async_result()
    client._call(request, result)
    return result.get(timeout=10)


def start(server: ApacheZooKeeperProcess) -> None:
    """Start, then wait until ZooKeeper serves: it listens before it has loaded its data,
    and a client connecting in that window can hang until its read timeout."""
    server.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            if four_letter(server.port, "srvr", timeout=2).startswith("Zookeeper version"):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("Apache ZooKeeper never served; log:\n" + server.log_text())
        time.sleep(0.05)


def connect(port: int, auth: bool = True) -> KazooClient:
    client = KazooClient(hosts="127.0.0.1:%d" % port, timeout=30,
                         auth_data=[("digest", "bob:secret")] if auth else None)
    client.start(timeout=20)
    return client


def stop(client: Optional[KazooClient]) -> None:
    if client is not None:
        try:
            client.stop()
            client.close()
        except Exception:
            pass


def kazoo_view(client: KazooClient) -> View:
    """Every node as a client sees it: data, Stat, ACL."""
    out: View = {}
    todo = ["/"]
    while todo:
        path = todo.pop()
        data, stat = client.get(path)
        acls, _ = client.get_acls(path)
        out[path] = (data, tuple(stat), tuple((a.perms, a.id.scheme, a.id.id) for a in acls))
        base = "" if path == "/" else path
        todo.extend(base + "/" + c for c in client.get_children(path))
    return out


def tree_view(tree: DataTree) -> View:
    return {path: (n.data, n.stat_tuple(), tuple((int(p), s, i) for p, s, i in n.acl))
            for path, n in tree.nodes.items()}


def assert_same_view(got: View, want: View) -> None:
    assert sorted(got) == sorted(want)
    for path in want:
        assert got[path] == want[path], path


def version_dir(server: ApacheZooKeeperProcess) -> Path:
    return server.data_dir / "version-2"


def snapshots(directory: Path) -> List[Tuple[int, Path]]:
    out = []
    for name in os.listdir(directory):
        z = zxid_of_snapshot_name(name)
        if z is not None:
            out.append((z, directory / name))
    return sorted(out, reverse=True)


def rebuild(data_dir: Path, snap_zxid: int, snap_path: Path) -> ZooKeeperCore:
    """Recovery as zktwist would do it: the snapshot, then every logged txn after its zxid."""
    with open(snap_path, "rb") as f:
        snap = load_snapshot(iter(lambda: f.read(65536), b""), snap_zxid)
    core = core_from_snapshot(snap)
    for zxid, payload in FileLogBackend(str(data_dir)).read_txns(snap_zxid + 1):
        txn = decode(payload)
        assert txn.zxid == zxid > snap_zxid
        core.replay(txn, txn.time)
    for path in snap.unresolved_acls:  # every dangling ACL reference was set again
        assert path not in core.tree.nodes or core.tree.nodes[path].acl is not UNRESOLVED_ACL
    return core


def resolved_records(raw: bytes) -> List[tuple]:
    """A snapshot's node records with ACL references replaced by the ACLs, sorted.

    The data of quota stats nodes is left out: a fuzzy snapshot may hold a stale count,
    which loading recounts (DataTree.setupQuota).
    """
    p = Parsed(raw)
    acls = {ref: tuple((pm, s.decode(), i.decode()) for pm, s, i in acl)
            for ref, acl in p.acls.items()}
    acls[-1] = ((31, "world", "anyone"),)
    return sorted((path, None if path.endswith(b"/zookeeper_stats") else data,
                   acls.get(tail[0], UNRESOLVED_ACL), tail[1:]) for path, data, tail in p.nodes)


# --------------------------------------------------------------------------- Apache -> zktwist

def workload(port: int) -> Tuple[KazooClient, List[KazooClient]]:
    """Creates (sequential, ephemeral, container, TTL), sets, deletes, ACLs, multis, errors."""
    zk = connect(port)
    eph1 = connect(port, auth=False)
    eph2 = connect(port, auth=False)
    bob = make_digest_acl("bob", "secret", all=True)
    local = make_acl("ip", "127.0.0.1", all=True)
    reader = make_acl("world", "anyone", read=True)
    zk.create("/app", b"top")
    zk.create("/app/cfg", b"v0", acl=[bob, reader])
    zk.create("/app/null", None)
    zk.create("/app/empty", b"")
    zk.create("/app/create2", b"c2", include_data=True)  # a create2 txn
    for i in range(40):
        zk.create("/app/n%02d" % i, bytes(range(i)), acl=[local] if i % 3 == 0 else None)
    for _ in range(5):
        zk.create("/app/seq-", b"s", sequence=True)
    eph1.create("/app/eph1-a", b"e", ephemeral=True)
    eph1.create("/app/eph1-seq-", b"e", ephemeral=True, sequence=True)
    eph2.create("/app/eph2-a", b"e", ephemeral=True)
    eph2.create("/app/n01/eph2-b", None, ephemeral=True)
    call(zk, CreateContainer("/app/cont", b"c", OPEN_ACL_UNSAFE))
    zk.create("/app/cont/kid", b"k")
    call(zk, CreateContainer("/app/cont-empty", b"", OPEN_ACL_UNSAFE))
    call(zk, CreateTTL("/app/ttl", b"t", OPEN_ACL_UNSAFE, 600000))
    zk.create("/zookeeper/quota/app/zookeeper_limits", b"count=1000,bytes=-1", makepath=True)
    zk.create("/zookeeper/quota/app/zookeeper_stats", b"count=0,bytes=0")
    zk.create("/app/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10", b"deep", makepath=True)
    for name in ("caf\u00e9", "\u4e2d\u6587", "a b"):
        zk.create("/app/" + name, name.encode())
    for i in range(0, 40, 2):
        zk.set("/app/n%02d" % i, b"set-%d" % i)
    for i in range(5):
        zk.set("/app/cfg", b"v%d" % (i + 1), version=i)
    zk.set("/app/null", None)
    for i in range(1, 40, 4):
        zk.delete("/app/n%02d" % i, recursive=i == 1)
    zk.set_acls("/app/n02", [bob, local])
    zk.set_acls("/app/n04", [reader, local], version=0)
    zk.set_acls("/app/cfg", [bob, reader, local])
    t = zk.transaction()
    t.create("/app/m1", b"m")
    t.set_data("/app/n00", b"multi")
    t.delete("/app/n03")
    t.check("/app/n06", 1)
    results = t.commit()
    assert not any(isinstance(r, Exception) for r in results), results
    t = zk.transaction()  # fails: an error txn inside a multi
    t.create("/app/m2", b"m")
    t.check("/app/n06", 99)
    assert any(isinstance(r, BadVersionError) for r in t.commit())
    with pytest.raises(NodeExistsError):  # an error txn
        zk.create("/app/m1")
    for i in range(8):
        zk.create("/app/late%d" % i, b"x" * (i * 50))
        zk.set("/app", b"top-%d" % i)
    eph2.stop()  # closeSession with its ephemerals
    eph2.close()
    zk.delete("/app/late0")
    zk.create("/app/late0", b"again")
    return zk, [eph1]


@pytest.mark.usefixtures("apache_delete")
def test_apache_datadir_rebuilds_in_zktwist(tmp_path):
    server = ApacheZooKeeperProcess(workdir=tmp_path / "apache", extra_config={
        "snapCount": "8", "preAllocSize": "64", "zookeeper.extendedTypesEnabled": "true"})
    start(server)
    clients: List[KazooClient] = []
    try:
        zk, others = workload(server.port)
        clients = [zk, *others]
        view = kazoo_view(zk)
        sessions = {c.client_id[0] for c in clients}
        server.stop()  # SIGTERM, clients still connected: their ephemerals stay
    finally:
        for c in clients:
            stop(c)
        server.cleanup()
    vdir = version_dir(server)
    snaps = snapshots(vdir)
    logs = [n for n in os.listdir(vdir) if n.startswith("log.")]
    assert len(snaps) >= 5 and len(logs) >= 5, os.listdir(vdir)

    # every log entry decodes, and is zktwist's encoding plus 3.8's TxnDigest (int 2, long)
    # (but for error txns)
    count = last_logged = 0
    for last_logged, payload in FileLogBackend(str(server.data_dir)).read_txns(0):
        txn = decode(payload)
        ours = encode(txn)
        assert payload[:len(ours)] == ours, txn
        digest = payload[len(ours):]
        if txn.type == OpCode.error:  # no digest: the tree does not change
            assert digest == b"", txn
        else:
            assert len(digest) == 12 and digest[:4] == b"\0\0\0\2", txn
        count += 1
    assert count > 100

    # every snapshot (fuzzy: written while the workload ran) plus the later txns is the tree
    for zxid, path in snaps:
        core = rebuild(server.data_dir, zxid, path)
        assert_same_view(tree_view(core.tree), view)
        assert sessions <= set(core.sessions.sessions)
        assert core.tree.last_zxid == last_logged

    # what zktwist writes from each loaded snapshot holds the same records as ZooKeeper's file
    for zxid, path in snaps:
        raw = path.read_bytes()
        snap = load_snapshot([raw])  # zxid unknown: no node dropped
        ours = b"".join(snapshot_chunks(snap.tree, snap.sessions, MAX_ZXID))
        assert resolved_records(ours) == resolved_records(raw), path.name
        assert sorted(Parsed(ours).sessions) == sorted(Parsed(raw).sessions)

    # ZooKeeper's first snapshot (an empty tree) and zktwist's of an empty tree: same bytes
    # but for the order of /zookeeper's two children (a Java HashSet's order)
    first = (vdir / "snapshot.0").read_bytes()
    fresh = b"".join(snapshot_chunks(DataTree(), {}, 0))
    a, b = Parsed(first), Parsed(fresh)
    assert len(first) == len(fresh) and first[:a.nodes_start] == fresh[:b.nodes_start]
    assert sorted(a.nodes) == sorted(b.nodes) and a.digest == b.digest == (0, 2, 0)


# --------------------------------------------------------------------------- zktwist -> Apache

def start_apache_on(workdir: Path) -> ApacheZooKeeperProcess:
    server = ApacheZooKeeperProcess(workdir=workdir, extra_config={
        "zookeeper.extendedTypesEnabled": "true"})
    start(server)
    return server


def check_startup_snapshot(vdir: Path, h: Recording) -> None:
    """ZooKeeper snapshots what it loaded (ZooKeeperServer.loadData): back in zktwist, that
    is the tree and the sessions zktwist wrote."""
    zxid, path = snapshots(vdir)[0]
    assert zxid == h.tree.last_zxid
    snap = load_snapshot([path.read_bytes()], zxid)
    assert snap.sessions == h.session_map()
    assert_same_view(tree_view(snap.tree), tree_view(h.tree))


def zktwist_tree() -> Recording:
    """A varied zktwist tree whose sessions outlive the test once ZooKeeper restores them."""
    h = Recording(timeout=120000)
    s2 = h.new_session(120000)
    h.mk("/app", b"top")
    h.mk("/app/null", None)
    h.mk("/app/empty", b"")
    for i, acl in enumerate(ACL_VARIANTS):
        h.mk("/acl%d" % i, b"%d" % i, acl=acl)
    h.mk("/authacl", b"a", acl=[(31, "auth", "")], auth=[LOCAL_IP, DIGEST])
    for sid in (h.sid, s2):
        h.mk("/app/eph-%x" % (sid & 0xFFFF), b"e", flags=1, sid=sid)
    h.mk("/app/seq-", b"s", flags=2)
    h.mk("/app/eseq-", b"s", flags=3, sid=s2)
    h.mk("/c1", b"container", op=OpCode.createContainer, flags=4)
    h.mk("/c1/child", b"")
    h.mk("/ttl", b"t", op=OpCode.createTTL, flags=5, ttl=600000)
    h.mk("/zookeeper/quota/app", b"")
    h.mk("/zookeeper/quota/app/zookeeper_limits", b"count=100,bytes=-1")
    h.mk("/zookeeper/quota/app/zookeeper_stats", b"count=0,bytes=0")
    deep = "/app"
    for d in range(20):
        deep += "/d%d" % d
        h.mk(deep, b"%d" % d)
    for name in ("caf\u00e9", "\u4e2d\u6587", "a b"):
        h.mk("/" + name, name.encode("utf-8"))
    for i in range(5):
        h.set_data("/app", b"v%d" % i)
    h.set_acl("/acl3", [(31, "ip", "127.0.0.1")])
    h.delete("/app/empty")
    h.mk("/app/empty", b"")
    return h


def test_apache_starts_from_a_zktwist_snapshot(tmp_path):
    h = zktwist_tree()
    tree = h.tree
    vdir = tmp_path / "apache" / "data" / "version-2"
    vdir.mkdir(parents=True)
    (vdir / snapshot_name(tree.last_zxid)).write_bytes(
        b"".join(snapshot_chunks(tree, h.session_map(), tree.last_zxid, 5)))
    server = start_apache_on(tmp_path / "apache")
    zk = None
    try:
        zk = connect(server.port)
        assert_same_view(kazoo_view(zk), tree_view(tree))
    finally:
        stop(zk)
        server.cleanup()
    check_startup_snapshot(vdir, h)


def test_apache_starts_from_a_fuzzy_zktwist_snapshot_and_zktwist_log(tmp_path):
    """The snapshot is taken while writes land; ZooKeeper replays zktwist's log after it."""
    h = zktwist_tree()
    rng = random.Random(99)
    fz = Fuzzer(h, rng.randint)
    fz.session_timeouts = (120000, 120000)
    for _ in range(200):
        fz.step(rng.choice(["create"] * 4 + ["eph", "container", "ttl", "set", "acl"]))
    zxid = h.tree.last_zxid
    gen = snapshot_chunks(h.tree, h.session_map(), zxid, 3)
    chunks = []
    for _ in range(1500):
        kind = rng.choice(KINDS)
        if kind == "next":
            chunks.append(next(gen, b""))
        else:
            fz.step(kind)
    chunks.extend(gen)
    data_dir = tmp_path / "apache" / "data"
    log = FileLogBackend(str(data_dir), prealloc_size=1 << 20, fsync=False)
    log.open()
    log.append_and_sync([(t.zxid, encode(t)) for t in h.txns])
    log.close()
    (data_dir / "version-2" / snapshot_name(zxid)).write_bytes(b"".join(chunks))
    assert len(h.txns) > 800 and h.tree.last_zxid > zxid + 500
    server = start_apache_on(tmp_path / "apache")
    zk = None
    try:
        zk = connect(server.port)
        assert_same_view(kazoo_view(zk), tree_view(h.tree))
    finally:
        stop(zk)
        server.cleanup()
    check_startup_snapshot(data_dir / "version-2", h)
