"""zktwist.server.peerstore: storage effects on a backend, and a peer's recovery from it.

The same functions run in production and in the simulator, so they are
checked against both the in-memory backend (with its crash model) and the
file-log backend in a temporary directory.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

from zktwist.core.database import CoreConfig
from zktwist.core.tree import OPEN_ACL_UNSAFE
from zktwist.core.txn import Txn
from zktwist.proto.consts import OpCode
from zktwist.quorum.effects import AppendTxns, Reload, SetMeta, TruncateLog, WriteSnapshot
from zktwist.server.peerstore import is_storage_op, recover_peer, run_storage_op
from zktwist.storage.filelog import FileLogBackend
from zktwist.storage.memory import MemoryBackend
from zktwist.storage.snapshot import snapshot_chunks

E1 = 1 << 32
E2 = 2 << 32


def create(zxid: int, path: str, data: bytes = b"x", pcv: int = 1) -> Txn:
    return Txn(0, 0, zxid, 1000, OpCode.create, (path, data, OPEN_ACL_UNSAFE, False, pcv))


def set_data(zxid: int, path: str, data: bytes, version: int) -> Txn:
    return Txn(0, 0, zxid, 1000, OpCode.setData, (path, data, version))


@pytest.fixture(params=["memory", "filelog"])
def make_backend(request: Any, tmp_path: Any) -> Iterator[Callable[[], Any]]:
    """A factory that opens the same durable store again (as a restart does)."""
    opened: List[Any] = []
    memory = MemoryBackend()

    def make() -> Any:
        if request.param == "memory":
            b: Any = memory
        else:
            b = FileLogBackend(str(tmp_path / "data"), prealloc_size=16 * 1024)
        b.open()
        opened.append(b)
        return b

    yield make
    for b in opened:
        b.close()


def test_append_meta_and_recover(make_backend: Callable[[], Any]) -> None:
    b = make_backend()
    run_storage_op(b, AppendTxns(1, (create(E1 + 1, "/a"), create(E1 + 2, "/b", pcv=2))))
    run_storage_op(b, SetMeta(2, "acceptedEpoch", "2"))
    run_storage_op(b, SetMeta(3, "currentEpoch", "1"))
    run_storage_op(b, AppendTxns(4, (set_data(E1 + 3, "/a", b"y", 1),)))
    b.close()
    core, accepted, current, recent = recover_peer(make_backend(), CoreConfig(), 5000)
    assert (accepted, current) == (2, 1)
    assert core.last_zxid == E1 + 3
    assert core.tree.get("/a").data == b"y"  # type: ignore[union-attr]
    assert [t.zxid for t in recent] == [E1 + 1, E1 + 2, E1 + 3]


def test_fresh_backend_recovers_empty(make_backend: Callable[[], Any]) -> None:
    core, accepted, current, recent = recover_peer(make_backend(), CoreConfig(), 0)
    assert (core.last_zxid, accepted, current, recent) == (0, 0, 0, [])


def test_window_keeps_newest(make_backend: Callable[[], Any]) -> None:
    b = make_backend()
    run_storage_op(b, AppendTxns(1, tuple(create(E1 + i, "/n%d" % i, pcv=i) for i in range(1, 11))))
    _, _, _, recent = recover_peer(b, CoreConfig(), 0, window=3)
    assert [t.zxid & 0xFFFF for t in recent] == [8, 9, 10]


def test_truncate_and_reload(make_backend: Callable[[], Any]) -> None:
    b = make_backend()
    run_storage_op(b, AppendTxns(1, (create(E1 + 1, "/a"), create(E1 + 2, "/b", pcv=2))))
    run_storage_op(b, TruncateLog(2, E1 + 1))
    run_storage_op(b, AppendTxns(3, (create(E2 + 1, "/c", pcv=2),)))
    core, _, _, recent = recover_peer(b, CoreConfig(), 0)
    assert core.tree.get("/b") is None and core.tree.get("/c") is not None
    assert [t.zxid for t in recent] == [E1 + 1, E2 + 1]
    run_storage_op(b, Reload(4, E1 + 1))
    core, _, _, recent = recover_peer(b, CoreConfig(), 0)
    assert core.last_zxid == E1 + 1 and core.tree.get("/c") is None


def test_write_snapshot_replaces_the_log(make_backend: Callable[[], Any]) -> None:
    """SNAP: a diverged log is replaced by the leader's snapshot; older entries never reach DIFF."""
    b = make_backend()
    run_storage_op(b, AppendTxns(1, (create(E1 + 1, "/diverged"), create(E1 + 2, "/d2", pcv=2))))
    leader = recover_peer(MemoryBackend(), CoreConfig(), 0)[0]
    leader.apply(create(E2 + 5, "/fromleader"), 0)
    data = b"".join(snapshot_chunks(leader.tree, {}, E2 + 5))
    run_storage_op(b, WriteSnapshot(2, E2 + 5, data))
    run_storage_op(b, AppendTxns(3, (set_data(E2 + 6, "/fromleader", b"z", 1),)))
    core, _, _, recent = recover_peer(make_backend(), CoreConfig(), 0)
    assert core.tree.get("/diverged") is None
    assert core.tree.get("/fromleader").data == b"z"  # type: ignore[union-attr]
    assert [t.zxid for t in recent] == [E2 + 6]


def test_memory_crash_loses_only_what_was_not_run() -> None:
    b = MemoryBackend()
    b.open()
    run_storage_op(b, AppendTxns(1, (create(E1 + 1, "/a"),)))
    b.append([(E1 + 2, b"never synced")])
    b.crash()
    b.open()
    core, _, _, _ = recover_peer(b, CoreConfig(), 0)
    assert core.last_zxid == E1 + 1


def test_is_storage_op() -> None:
    assert is_storage_op(SetMeta(1, "currentEpoch", "1"))
    assert not is_storage_op(object())
    with pytest.raises(TypeError):
        run_storage_op(MemoryBackend(), object())
