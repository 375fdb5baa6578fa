"""An in-memory backend with real crash semantics, for tests and the simulator.

Everything lives in Python objects.  :meth:`MemoryBackend.crash` models a
power cut: what was appended but not yet synced is lost, a snapshot not yet
committed vanishes, and what was durable survives into the next
:meth:`open`.  ``fail_next`` injects one storage error (ENOSPC by default).
"""

from __future__ import annotations

import errno
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from zope.interface import implementer

from zktwist.interfaces import ISnapshotWriter, IStorageBackend
from zktwist.storage.util import check_ascending


@implementer(ISnapshotWriter)
class _MemorySnapshotWriter:
    def __init__(self, backend: "MemoryBackend", zxid: int) -> None:
        self.backend = backend
        self.zxid = zxid
        self._chunks: List[bytes] = []
        self._done = False

    def write(self, data: bytes) -> None:
        self.backend._maybe_fail()
        self._chunks.append(bytes(data))

    def commit(self) -> None:
        self.backend._maybe_fail()
        self.backend._snapshots[self.zxid] = b"".join(self._chunks)
        self._done = True

    def abort(self) -> None:
        self._chunks = []
        self._done = True


@implementer(IStorageBackend)
class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self._durable: List[Tuple[int, bytes]] = []
        self._pending: List[Tuple[int, bytes]] = []
        self._snapshots: Dict[int, bytes] = {}
        self._meta: Dict[str, str] = {}
        self._fail: Optional[OSError] = None
        self._floor = 0  # the newest zxid purge dropped
        self.opened = False
        self.syncs = 0

    @classmethod
    def from_config(cls, config: Any) -> "MemoryBackend":
        return cls()

    # -- faults --------------------------------------------------------------------

    def fail_next(self, error: Optional[OSError] = None) -> None:
        """Make the next storage operation raise ``error`` (ENOSPC by default)."""
        self._fail = error or OSError(errno.ENOSPC, "No space left on device")

    def _maybe_fail(self) -> None:
        if self._fail is not None:
            error, self._fail = self._fail, None
            raise error

    def crash(self) -> None:
        """Lose everything not yet durable, as a power cut would."""
        self._pending = []
        self.opened = False

    # -- IStorageBackend -------------------------------------------------------------

    def open(self) -> None:
        self._pending = []
        self.opened = True

    def append(self, records: Sequence[Tuple[int, bytes]]) -> None:
        self._maybe_fail()
        check_ascending(self.last_zxid(), records)
        self._pending.extend((z, bytes(p)) for z, p in records)

    def sync(self) -> None:
        self._maybe_fail()
        self._durable.extend(self._pending)
        self._pending = []
        self.syncs += 1

    def append_and_sync(self, records: Sequence[Tuple[int, bytes]]) -> None:
        before = len(self._pending)
        self.append(records)
        try:
            self.sync()
        except BaseException:
            del self._pending[before:]
            raise

    def last_zxid(self) -> int:
        if self._pending:
            return self._pending[-1][0]
        return self._durable[-1][0] if self._durable else self._floor

    def read_txns(self, from_zxid: int = 0) -> Iterator[Tuple[int, bytes]]:
        for zxid, payload in list(self._durable) + list(self._pending):
            if zxid >= from_zxid:
                yield zxid, payload

    def truncate(self, zxid: int) -> None:
        self._maybe_fail()
        self._durable = [r for r in self._durable if r[0] <= zxid]
        self._pending = [r for r in self._pending if r[0] <= zxid]
        for snap in [z for z in self._snapshots if z > zxid]:
            del self._snapshots[snap]

    def roll(self) -> None:
        pass

    def begin_snapshot(self, zxid: int) -> _MemorySnapshotWriter:
        return _MemorySnapshotWriter(self, zxid)

    def list_snapshots(self) -> List[int]:
        return sorted(self._snapshots, reverse=True)

    def read_snapshot(self, zxid: int) -> Iterator[bytes]:
        yield self._snapshots[zxid]

    def purge(self, retain: int) -> List[str]:
        keep = self.list_snapshots()[:max(retain, 1)]
        removed = ["snapshot 0x%x" % z for z in self._snapshots if z not in keep]
        for z in list(self._snapshots):
            if z not in keep:
                del self._snapshots[z]
        if keep:
            oldest = min(keep)
            dropped = [r for r in self._durable if r[0] <= oldest]
            if dropped:
                removed.append("%d txns up to 0x%x" % (len(dropped), dropped[-1][0]))
                self._floor = max(self._floor, dropped[-1][0])
            self._durable = [r for r in self._durable if r[0] > oldest]
        return removed

    def get_meta(self, key: str) -> Optional[str]:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self._maybe_fail()
        self._meta[key] = str(value)

    def sizes(self) -> Dict[str, int]:
        log = sum(len(p) for _, p in self._durable) + sum(len(p) for _, p in self._pending)
        snaps = sum(len(s) for s in self._snapshots.values())
        return {"datadir_size": snaps, "logdir_size": log}

    def close(self) -> None:
        self.opened = False
