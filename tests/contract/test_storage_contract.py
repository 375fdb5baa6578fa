"""The IStorageBackend contract, run against every storage backend.

In the style of Tahoe-LAFS's ``test_istorageserver.py``: the tests live in
mixin classes that know nothing about any one backend; each backend gets one
small class that says how to build it (``make_backend(path)``), how to stop
and start it cleanly (``reopen(backend)``), how to pull the plug on it
(``crash(backend)``) and how to make its next write fail (``inject_failure``).
A new backend joins by adding one such class.

Records are real txns (:func:`zktwist.core.txn.encode`): the file log takes
the zxid from the bytes, so the bytes and the zxid must agree.

A failing test here is a backend breaking the contract in
``zktwist/interfaces.py``: fix the backend, not the test.
"""

from __future__ import annotations

import errno
import os
import random
import sqlite3
from pathlib import Path
from typing import Any, Iterable, List, Optional, Tuple

import pytest
from zope.interface.verify import verifyObject

from zktwist import config as zkconfig
from zktwist.core.txn import Txn, encode
from zktwist.interfaces import ISnapshotWriter, IStorageBackend, IStorageBackendFactory
from zktwist.proto.consts import OpCode
from zktwist.storage import filelog as filelog_module
from zktwist.storage import registry
from zktwist.storage.errors import CorruptLogError

Record = Tuple[int, bytes]

EPOCH = 1 << 32


# --------------------------------------------------------------------------- helpers


def zx(counter: int, epoch: int = 1) -> int:
    """A zxid as a leader makes them: epoch in the high 32 bits."""
    return (epoch << 32) | counter


def txn_payload(zxid: int, tag: bytes = b"") -> bytes:
    """A real setData txn (TxnHeader + SetDataTxn), as the server logs it."""
    return encode(Txn(0x1234, zxid & 0xFFFFFFFF, zxid, 1_700_000_000_000 + (zxid & 0xFFFF),
                      OpCode.setData, ("/node-%x" % zxid, b"value-%x%s" % (zxid, tag), 1)))


def recs(zxids: Iterable[int], tag: bytes = b"") -> List[Record]:
    return [(z, txn_payload(z, tag)) for z in zxids]


def span(first: int, last: int, tag: bytes = b"") -> List[Record]:
    """Records zx(first) .. zx(last) inclusive, in epoch 1."""
    return recs((zx(n) for n in range(first, last + 1)), tag)


def read_all(backend: Any, from_zxid: int = 0) -> List[Record]:
    return [(z, bytes(p)) for z, p in backend.read_txns(from_zxid)]


def zxids_of(records: Iterable[Record]) -> List[str]:
    """Readable zxids for assertion messages."""
    return ["0x%x" % z for z, _ in records]


def write_snapshot(backend: Any, zxid: int, data: bytes, chunk: int = 64 * 1024) -> None:
    writer = backend.begin_snapshot(zxid)
    for i in range(0, len(data), chunk):
        writer.write(data[i:i + chunk])
    writer.commit()


def snapshot_bytes(backend: Any, zxid: int) -> bytes:
    return b"".join(bytes(c) for c in backend.read_snapshot(zxid))


def snapshot_data(zxid: int, size: int = 3000) -> bytes:
    return random.Random(zxid).randbytes(size)


def assert_recovered_prefix(got: List[Record], synced: List[Record], unsynced: List[Record]) -> None:
    """After a crash: every synced record, then perhaps some of the unsynced ones, in order."""
    assert got[:len(synced)] == synced, (
        "synced records lost or changed by the crash: got %s, synced %s"
        % (zxids_of(got), zxids_of(synced)))
    rest = got[len(synced):]
    assert rest == unsynced[:len(rest)], (
        "after the synced records the crash left %s, not a prefix of the unsynced %s"
        % (zxids_of(rest), zxids_of(unsynced)))


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --------------------------------------------------------------------------- harness


class BackendHarness:
    """What each backend's class provides; the mixins below only use this."""

    backend_name = ""

    @pytest.fixture(autouse=True)
    def _harness(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir()
        self._live: List[Any] = []
        yield
        for backend in self._live:
            try:
                backend.close()
            except Exception:
                pass

    # -- provided by each backend's class ---------------------------------------------------

    def make_backend(self, path: Path) -> Any:
        """A new, unopened backend storing in ``path`` (through its plugin factory)."""
        cfg = zkconfig.from_text(
            "dataDir=%s\npreAllocSize=16\nstorage.backend=%s\n" % (path, self.backend_name),
            path=str(path / "zoo.cfg"))
        backend = registry.make_backend(cfg)
        self._live.append(backend)
        return backend

    def reopen(self, backend: Any) -> Any:
        """Stop cleanly (``close()``) and start again: an opened backend with the same data."""
        raise NotImplementedError

    def crash(self, backend: Any) -> Any:
        """Pull the plug (no ``close()``) and start again: an opened backend."""
        raise NotImplementedError

    def inject_failure(self, backend: Any, stage: str) -> None:
        """Make the next batch fail with ENOSPC while writing (``"write"``) or syncing (``"sync"``)."""
        raise NotImplementedError

    def damage(self, path: Path, zxid: int) -> List[str]:
        """Flip bits in the stored record ``zxid`` of the closed backend at ``path``.

        Returns strings the :class:`CorruptLogError` must contain (the place).
        """
        pytest.skip("%s keeps nothing on disk to damage" % self.backend_name)

    # -- shared ----------------------------------------------------------------------------------

    def open_backend(self) -> Any:
        backend = self.make_backend(self.data_dir)
        backend.open()
        return backend


class MemoryHarness(BackendHarness):
    """The in-memory backend: one object lives across restarts; ``crash()`` is its power cut."""

    backend_name = "memory"

    def reopen(self, backend: Any) -> Any:
        backend.close()
        backend.open()
        return backend

    def crash(self, backend: Any) -> Any:
        backend.crash()
        backend.open()
        return backend

    def inject_failure(self, backend: Any, stage: str) -> None:
        if stage == "write":
            backend.fail_next()
            return
        # "sync": let the batch's append through, then fail the operation after it.
        real_append = backend.append

        def append_then_fail(records: Any) -> None:
            del backend.append  # one shot
            real_append(records)
            backend.fail_next()

        backend.append = append_then_fail


class DiskHarness(BackendHarness):
    """A backend on a directory: restarting means a new instance on the same directory."""

    def reopen(self, backend: Any) -> Any:
        backend.close()
        self._live.remove(backend)
        return self.open_backend()

    def crash(self, backend: Any) -> Any:
        # The process dies: no close(), nothing flushed by the backend.  The
        # kernel then drops the dead process's descriptors and locks; in-process
        # that is :meth:`abandon`, after which the instance is never used again.
        self._live.remove(backend)
        self.abandon(backend)
        return self.open_backend()

    def abandon(self, backend: Any) -> None:
        """Release what the kernel would release when the process dies."""


class FileLogHarness(DiskHarness):
    backend_name = "filelog"

    def damage(self, path: Path, zxid: int) -> List[str]:
        version_dir = path / "version-2"
        for log_file in sorted(version_dir.glob("log.*")):
            data = bytearray(log_file.read_bytes())
            off = filelog_module.FILE_HEADER.size
            for rec_zxid, payload in filelog_module.scan_file(str(log_file)).records:
                if rec_zxid == zxid:
                    data[off + filelog_module.RECORD_HEAD.size + len(payload) // 2] ^= 0xFF
                    log_file.write_bytes(bytes(data))
                    return [log_file.name, "offset %d" % off]
                off += filelog_module.RECORD_HEAD.size + len(payload) + 1
        raise AssertionError("no record 0x%x under %s" % (zxid, version_dir))

    def abandon(self, backend: Any) -> None:
        fd = getattr(backend, "_fd", None)
        if fd is not None:
            os.close(fd)  # no fsync: what the page cache holds stays, as after kill -9
            backend._fd = None

    def inject_failure(self, backend: Any, stage: str) -> None:
        real_os = os
        state = {"armed": True}

        class FaultyOS:
            """``os`` as zktwist.storage.filelog sees it, with one failing call."""

            def __getattr__(self, name: str) -> Any:
                return getattr(real_os, name)

            @staticmethod
            def pwrite(fd: int, data: bytes, offset: int) -> int:
                if stage == "write" and state["armed"]:
                    state["armed"] = False
                    # A disk filling up mid-batch: half of it lands, then ENOSPC.
                    real_os.pwrite(fd, data[:len(data) // 2], offset)
                    raise _enospc()
                return real_os.pwrite(fd, data, offset)

            @staticmethod
            def fdatasync(fd: int) -> None:
                if stage == "sync" and state["armed"]:
                    state["armed"] = False
                    raise _enospc()
                real_os.fdatasync(fd)

        self.monkeypatch.setattr(filelog_module, "os", FaultyOS())


def _sqlite_skip_reason() -> Optional[str]:
    if "sqlite" in registry.available_backends():
        return None
    try:
        import zktwist.storage.sqlite  # noqa: F401
    except ImportError as e:
        return "the sqlite backend does not import yet: %s" % e
    return "the sqlite backend is not registered as a plugin"


class SQLiteHarness(DiskHarness):
    backend_name = "sqlite"

    @pytest.fixture(autouse=True)
    def _require_sqlite(self) -> None:
        reason = _sqlite_skip_reason()
        if reason:
            pytest.skip(reason)

    def damage(self, path: Path, zxid: int) -> List[str]:
        db = sqlite3.connect(str(path / "zktwist.sqlite3"), isolation_level=None)
        try:
            (payload,) = db.execute("SELECT payload FROM txns WHERE zxid = ?", (zxid,)).fetchone()
            bad = bytearray(payload)
            bad[len(bad) // 2] ^= 0xFF
            db.execute("UPDATE txns SET payload = ? WHERE zxid = ?", (bytes(bad), zxid))
        finally:
            db.close()
        return ["txns", "0x%x" % zxid]

    def abandon(self, backend: Any) -> None:
        # A dead process's SQLite connections vanish with their uncommitted
        # transactions and locks; closing them without commit() does the same.
        for conn in _sqlite_connections(backend):
            conn.close()

    def inject_failure(self, backend: Any, stage: str) -> None:
        if stage == "sync":
            hook = getattr(backend, "fail_next", None)
            if hook is None:
                pytest.skip("SQLiteBackend offers no fault-injection hook (fail_next)")
            hook()  # the batch's COMMIT (its fsync) fails with ENOSPC
            return
        # "write": the batch's INSERT finds the disk full, as SQLite reports it.
        if "_executemany" not in dir(backend):
            pytest.skip("SQLiteBackend has no _executemany to fail the batch's INSERT")

        def disk_full(sql: str, rows: Any) -> Any:
            del backend._executemany  # one shot
            raise sqlite3.OperationalError("database or disk is full")

        backend._executemany = disk_full


def _sqlite_connections(obj: Any, depth: int = 2) -> List[sqlite3.Connection]:
    found: List[sqlite3.Connection] = []
    if depth < 0:
        return found
    values = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    for value in values:
        if isinstance(value, sqlite3.Connection):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, sqlite3.Connection))
        elif hasattr(value, "__dict__") and type(value).__module__.startswith("zktwist"):
            found.extend(_sqlite_connections(value, depth - 1))
    return found


# --------------------------------------------------------------------------- the contract


class InterfaceContract:
    def test_provides_istoragebackend(self) -> None:
        backend = self.make_backend(self.data_dir)
        assert verifyObject(IStorageBackend, backend)
        backend.open()
        assert verifyObject(IStorageBackend, backend)
        assert backend.name == self.backend_name

    def test_factory_provides_istoragebackendfactory(self) -> None:
        factory = registry.backend_factories()[self.backend_name]
        assert verifyObject(IStorageBackendFactory, factory)
        assert factory.name == self.backend_name
        assert isinstance(factory.description, str) and "\n" not in factory.description

    def test_fresh_backend_is_empty(self) -> None:
        b = self.open_backend()
        assert b.last_zxid() == 0
        assert read_all(b) == []
        assert b.list_snapshots() == []
        assert b.get_meta("currentEpoch") is None

    def test_snapshot_writer_provides_isnapshotwriter(self) -> None:
        b = self.open_backend()
        writer = b.begin_snapshot(zx(7))
        assert verifyObject(ISnapshotWriter, writer)
        assert writer.zxid == zx(7)
        writer.abort()

    def test_sizes_keys(self) -> None:
        b = self.open_backend()
        sizes = b.sizes()
        assert set(sizes) == {"datadir_size", "logdir_size"}
        assert all(isinstance(v, int) and v >= 0 for v in sizes.values())
        b.append_and_sync(span(1, 20))
        grown = b.sizes()
        assert set(grown) == {"datadir_size", "logdir_size"}
        assert grown["logdir_size"] > 0
        write_snapshot(b, zx(20), snapshot_data(zx(20)))
        assert b.sizes()["datadir_size"] > 0

    def test_close_then_reopen(self) -> None:
        b = self.open_backend()
        b.append_and_sync(span(1, 3))
        b = self.reopen(b)
        assert read_all(b) == span(1, 3)
        b.close()


class RecordsContract:
    def test_append_sync_read_round_trip(self) -> None:
        b = self.open_backend()
        first, second = span(1, 3), span(4, 9)
        b.append(first)
        b.append(second)
        b.sync()
        assert read_all(b) == first + second
        assert b.last_zxid() == zx(9)
        b = self.reopen(b)
        assert read_all(b) == first + second
        assert b.last_zxid() == zx(9)

    def test_append_and_sync_group_commits(self) -> None:
        b = self.open_backend()
        expected: List[Record] = []
        for n in range(1, 40, 3):
            batch = span(n, n + 2)
            b.append_and_sync(batch)
            expected += batch
            assert b.last_zxid() == batch[-1][0]
        assert read_all(b) == expected
        b = self.reopen(b)
        assert read_all(b) == expected

    def test_payloads_round_trip_exactly(self) -> None:
        b = self.open_backend()
        big = [(zx(1), txn_payload(zx(1), b"x" * 200_000)), (zx(2), txn_payload(zx(2), b"\x00\x42" * 10))]
        b.append_and_sync(big)
        assert read_all(b) == big
        b = self.reopen(b)
        assert read_all(b) == big

    def test_read_txns_from_zxid_filters(self) -> None:
        b = self.open_backend()
        # Gaps and an epoch change, as after a leader election.
        zxids = [zx(1), zx(2), zx(5), zx(6), zx(1, epoch=2), zx(3, epoch=2), zx(1, epoch=5)]
        records = recs(zxids)
        # Rolled between batches: a file log then skips whole files before from_zxid.
        b.append_and_sync(records[:2])
        b.roll()
        b.append_and_sync(records[2:5])
        b.roll()
        b.append_and_sync(records[5:])
        for restart in (False, True):
            if restart:
                b = self.reopen(b)
            assert read_all(b, 0) == records
            for i, z in enumerate(zxids):
                assert read_all(b, z) == records[i:], "read_txns(0x%x)" % z
                assert read_all(b, z + 1) == records[i + 1:], "read_txns(0x%x)" % (z + 1)
            assert read_all(b, zx(4)) == records[2:]
            assert read_all(b, zx(0, epoch=2)) == records[4:]
            assert read_all(b, zx(1, epoch=6)) == []

    def test_last_zxid(self) -> None:
        b = self.open_backend()
        assert b.last_zxid() == 0
        b.append(span(1, 2))
        assert b.last_zxid() == zx(2), "last_zxid counts appended, not yet synced records"
        b.sync()
        b.append_and_sync(recs([zx(9, epoch=3)]))
        assert b.last_zxid() == zx(9, epoch=3)
        b = self.reopen(b)
        assert b.last_zxid() == zx(9, epoch=3)
        b = self.crash(b)
        assert b.last_zxid() == zx(9, epoch=3)

    def test_empty_batches_are_harmless(self) -> None:
        b = self.open_backend()
        b.append([])
        b.sync()
        b.append_and_sync([])
        assert b.last_zxid() == 0 and read_all(b) == []
        b.append_and_sync(span(1, 2))
        b.append([])
        b.append_and_sync([])
        assert b.last_zxid() == zx(2)
        b = self.reopen(b)
        assert read_all(b) == span(1, 2)

    @pytest.mark.parametrize("bad", ["same", "lower", "descending-batch"])
    def test_zxids_must_ascend(self, bad: str) -> None:
        """An append that would put zxids out of order is refused and changes nothing."""
        b = self.open_backend()
        good = span(1, 5)
        b.append_and_sync(good)
        batch = {
            "same": recs([zx(5)], b"again"),
            "lower": recs([zx(3)], b"again"),
            "descending-batch": recs([zx(7), zx(6)]),
        }[bad]
        try:
            b.append_and_sync(batch)
        except Exception:
            pass
        else:
            # Accepted: whatever it wrote must not cost the log its history.
            try:
                b = self.reopen(b)
            except Exception as e:
                pytest.fail("append_and_sync(%s) after last_zxid 0x%x was accepted, and then the "
                            "log no longer opens: %r" % (zxids_of(batch), zx(5), e))
            pytest.fail("append_and_sync(%s) after last_zxid 0x%x was accepted (reads back as %s)"
                        % (zxids_of(batch), zx(5), zxids_of(read_all(b))))
        assert b.last_zxid() == zx(5)
        assert read_all(b) == good
        b.append_and_sync(span(6, 7))  # still usable
        b = self.reopen(b)
        assert read_all(b) == span(1, 7)

    def test_roll_starts_new_segments(self) -> None:
        b = self.open_backend()
        b.roll()  # before anything was appended
        expected: List[Record] = []
        for n in (1, 4, 7):
            batch = span(n, n + 2)
            b.append_and_sync(batch)
            expected += batch
            b.roll()
            assert b.last_zxid() == batch[-1][0], "roll() does not change last_zxid"
        b.roll()  # twice in a row
        tail = span(10, 12)
        b.append(tail[:1])
        b.roll()  # with an unsynced record pending
        b.append(tail[1:])
        b.sync()
        expected += tail
        assert read_all(b) == expected
        assert read_all(b, zx(5)) == expected[4:]
        b = self.reopen(b)
        assert read_all(b) == expected
        assert b.last_zxid() == zx(12)
        b.append_and_sync(span(13, 13))
        assert read_all(b)[-2:] == span(12, 13)

    @pytest.mark.parametrize("to", [0, 1, 4, 6, 9, 12])
    def test_truncate_then_append_continues(self, to: int) -> None:
        """TRUNC to ``to``: records after it go, appends continue from there, durably."""
        b = self.open_backend()
        b.append_and_sync(span(1, 4))
        b.roll()
        b.append_and_sync(span(5, 8))
        b.roll()
        b.append_and_sync(span(9, 12))
        point = zx(to) if to else 0
        b.truncate(point)
        kept = span(1, to)
        assert read_all(b) == kept
        assert b.last_zxid() == point
        b.append_and_sync(span(to + 1, to + 3, b"after-trunc"))
        expected = kept + span(to + 1, to + 3, b"after-trunc")
        assert read_all(b) == expected
        assert b.last_zxid() == zx(to + 3)
        b = self.reopen(b)
        assert read_all(b) == expected
        assert b.last_zxid() == zx(to + 3)

    def test_truncate_is_durable_across_crash(self) -> None:
        b = self.open_backend()
        b.append_and_sync(span(1, 10))
        b.truncate(zx(6))
        b = self.crash(b)
        assert read_all(b) == span(1, 6)
        assert b.last_zxid() == zx(6)
        b.append_and_sync(span(7, 8, b"new"))
        b = self.reopen(b)
        assert read_all(b) == span(1, 6) + span(7, 8, b"new")

    def test_truncate_drops_unsynced_records_too(self) -> None:
        b = self.open_backend()
        b.append_and_sync(span(1, 4))
        b.append(span(5, 8))
        b.truncate(zx(6))
        assert read_all(b) == span(1, 6)
        b.append_and_sync(span(7, 7, b"new"))
        b = self.reopen(b)
        assert read_all(b) == span(1, 6) + span(7, 7, b"new")

    def test_truncate_below_the_first_record_empties_the_log(self) -> None:
        """TRUNC to a zxid before anything logged (here: the start of epoch 1)."""
        b = self.open_backend()
        b.append_and_sync(span(1, 5))
        b.truncate(zx(0))
        assert read_all(b) == []
        before = b.last_zxid()
        b = self.reopen(b)
        assert read_all(b) == []
        assert b.last_zxid() == before, (
            "last_zxid was 0x%x after truncate, 0x%x after reopen" % (before, b.last_zxid()))
        assert before == 0, "last_zxid of an empty log is 0"
        b.append_and_sync(recs([zx(1, epoch=2)]))
        b = self.reopen(b)
        assert read_all(b) == recs([zx(1, epoch=2)])

    def test_truncate_past_the_end_keeps_everything(self) -> None:
        b = self.open_backend()
        b.append_and_sync(span(1, 5))
        b.truncate(zx(50))
        assert read_all(b) == span(1, 5)
        assert b.last_zxid() == zx(5)
        b.append_and_sync(span(6, 6))
        b = self.reopen(b)
        assert read_all(b) == span(1, 6)


# Big enough that a backend writes part of an unfinished snapshot out (more than
# one 1 MiB chunk), not only buffers it.
PARTIAL_BIG = 2_500_000


class SnapshotContract:
    def test_commit_then_list_and_read(self) -> None:
        b = self.open_backend()
        b.append_and_sync(span(1, 10))
        data = random.Random(1).randbytes(1_300_000)  # more than one read chunk
        writer = b.begin_snapshot(zx(10))
        assert b.list_snapshots() == [], "a snapshot is invisible before commit()"
        for i in range(0, len(data), 100_000):
            writer.write(data[i:i + 100_000])
        assert b.list_snapshots() == []
        writer.commit()
        assert b.list_snapshots() == [zx(10)]
        assert snapshot_bytes(b, zx(10)) == data
        b = self.reopen(b)
        assert b.list_snapshots() == [zx(10)]
        assert snapshot_bytes(b, zx(10)) == data

    def test_empty_snapshot(self) -> None:
        b = self.open_backend()
        b.begin_snapshot(zx(3)).commit()
        assert b.list_snapshots() == [zx(3)]
        assert snapshot_bytes(b, zx(3)) == b""

    def test_list_snapshots_newest_first(self) -> None:
        b = self.open_backend()
        order = [zx(5), zx(2), zx(9), zx(1, epoch=2), zx(7)]
        for z in order:
            write_snapshot(b, z, snapshot_data(z))
        newest_first = sorted(order, reverse=True)
        assert b.list_snapshots() == newest_first
        b = self.reopen(b)
        assert b.list_snapshots() == newest_first
        for z in order:
            assert snapshot_bytes(b, z) == snapshot_data(z)

    @pytest.mark.parametrize("size", [15, PARTIAL_BIG])
    def test_aborted_snapshot_is_not_listed(self, size: int) -> None:
        b = self.open_backend()
        write_snapshot(b, zx(2), snapshot_data(zx(2)))
        writer = b.begin_snapshot(zx(5))
        writer.write(snapshot_data(zx(5), size))
        writer.abort()
        assert b.list_snapshots() == [zx(2)]
        b = self.reopen(b)
        assert b.list_snapshots() == [zx(2)]
        b = self.crash(b)
        assert b.list_snapshots() == [zx(2)]
        assert snapshot_bytes(b, zx(2)) == snapshot_data(zx(2))

    def test_snapshot_written_again_after_abort(self) -> None:
        b = self.open_backend()
        writer = b.begin_snapshot(zx(5))
        writer.write(b"first attempt")
        writer.abort()
        write_snapshot(b, zx(5), b"second attempt")
        assert b.list_snapshots() == [zx(5)]
        assert snapshot_bytes(b, zx(5)) == b"second attempt"

    @pytest.mark.parametrize("size", [15, PARTIAL_BIG])
    def test_uncommitted_snapshot_is_not_listed_after_reopen(self, size: int) -> None:
        b = self.open_backend()
        write_snapshot(b, zx(2), snapshot_data(zx(2)))
        writer = b.begin_snapshot(zx(5))
        writer.write(snapshot_data(zx(5), size))
        assert b.list_snapshots() == [zx(2)]
        b = self.reopen(b)
        assert b.list_snapshots() == [zx(2)]

    @pytest.mark.parametrize("size", [1000, PARTIAL_BIG])
    def test_uncommitted_snapshot_is_not_listed_after_crash(self, size: int) -> None:
        b = self.open_backend()
        b.append_and_sync(span(1, 6))
        write_snapshot(b, zx(2), snapshot_data(zx(2)))
        writer = b.begin_snapshot(zx(6))
        writer.write(snapshot_data(zx(6), size))
        b = self.crash(b)
        assert b.list_snapshots() == [zx(2)]
        assert snapshot_bytes(b, zx(2)) == snapshot_data(zx(2))
        # The interrupted snapshot can be taken again.
        write_snapshot(b, zx(6), snapshot_data(zx(6)))
        assert b.list_snapshots() == [zx(6), zx(2)]
        assert snapshot_bytes(b, zx(6)) == snapshot_data(zx(6))

    def test_committed_snapshot_survives_crash(self) -> None:
        b = self.open_backend()
        write_snapshot(b, zx(4), snapshot_data(zx(4)))
        b = self.crash(b)
        assert b.list_snapshots() == [zx(4)]
        assert snapshot_bytes(b, zx(4)) == snapshot_data(zx(4))


# Segments start at 1, 5, 9, 13 and 17 (roll() as when a snapshot starts);
# snapshots fall in the middle of a segment (3, 6, 18), on a segment's last
# record (8) and on a segment's first record (13).
SEGMENT_STARTS = (1, 5, 9, 13, 17)
LAST = 20
SNAPSHOTS = (3, 6, 8, 13, 18)


class PurgeContract:
    def build_history(self, b: Any) -> List[Record]:
        """Txns 1..20 in five segments, snapshots taken along the way."""
        history: List[Record] = []
        for n in range(1, LAST + 1):
            if n in SEGMENT_STARTS and n != 1:
                b.roll()
            rec = span(n, n)
            b.append_and_sync(rec)
            history += rec
            if n in SNAPSHOTS:
                write_snapshot(b, zx(n), snapshot_data(zx(n)))
        return history

    def check_after_purge(self, b: Any, retain: int, history: List[Record]) -> None:
        snaps = sorted((zx(n) for n in SNAPSHOTS), reverse=True)
        kept = snaps[:retain]
        assert b.list_snapshots() == kept
        for z in kept:
            assert snapshot_bytes(b, z) == snapshot_data(z)
        oldest = kept[-1]
        needed = [r for r in history if r[0] > oldest]
        got = read_all(b, oldest + 1)
        assert got == needed, (
            "purge(%d) kept snapshots %s; read_txns(0x%x) gives %s, needs %s"
            % (retain, zxids_of((z, b"") for z in kept), oldest + 1, zxids_of(got), zxids_of(needed)))
        assert b.last_zxid() == zx(LAST), "last_zxid went back after purge"

    @pytest.mark.parametrize("retain", [1, 2, 3, 4])
    def test_purge_keeps_newest_snapshots_and_the_txns_after_them(self, retain: int) -> None:
        b = self.open_backend()
        history = self.build_history(b)
        removed = b.purge(retain)
        assert isinstance(removed, list) and all(isinstance(r, str) for r in removed)
        assert removed, "purge(%d) with %d snapshots removed nothing" % (retain, len(SNAPSHOTS))
        self.check_after_purge(b, retain, history)
        b = self.reopen(b)
        self.check_after_purge(b, retain, history)
        b = self.crash(b)
        self.check_after_purge(b, retain, history)
        # Still appendable after the purge, and the log stays complete.
        more = span(LAST + 1, LAST + 3)
        b.append_and_sync(more)
        b = self.reopen(b)
        oldest = sorted(b.list_snapshots())[0]
        assert read_all(b, oldest + 1) == [r for r in history + more if r[0] > oldest]

    @pytest.mark.parametrize("retain", [5, 8])
    def test_purge_with_no_more_snapshots_than_retain_keeps_all_snapshots(self, retain: int) -> None:
        b = self.open_backend()
        history = self.build_history(b)
        b.purge(retain)
        self.check_after_purge(b, len(SNAPSHOTS), history)
        b = self.reopen(b)
        self.check_after_purge(b, len(SNAPSHOTS), history)

    def test_purge_twice(self) -> None:
        b = self.open_backend()
        history = self.build_history(b)
        b.purge(3)
        b.purge(3)
        self.check_after_purge(b, 3, history)
        b.purge(1)
        self.check_after_purge(b, 1, history)

    def test_last_zxid_never_goes_back_when_purge_leaves_no_txn(self) -> None:
        """A snapshot at the last zxid: the log before it may go, the last zxid may not."""
        b = self.open_backend()
        history = self.build_history(b)
        b.roll()
        write_snapshot(b, zx(LAST), snapshot_data(zx(LAST)))
        b.purge(1)
        assert b.list_snapshots() == [zx(LAST)]
        assert read_all(b, zx(LAST) + 1) == []
        assert b.last_zxid() == zx(LAST)
        b = self.reopen(b)
        assert b.last_zxid() == zx(LAST)
        b = self.crash(b)
        assert b.last_zxid() == zx(LAST)
        b.append_and_sync(span(LAST + 1, LAST + 2))
        b = self.reopen(b)
        assert b.last_zxid() == zx(LAST + 2)
        assert read_all(b, zx(LAST) + 1) == span(LAST + 1, LAST + 2)
        old = [r for r in read_all(b) if r[0] <= zx(LAST)]
        assert old == history[len(history) - len(old):], "purge left a gap in the log"

    def test_purge_keeps_writing_segment(self) -> None:
        b = self.open_backend()
        history = self.build_history(b)
        b.append(span(LAST + 1, LAST + 2))  # unsynced, in the open segment
        b.purge(2)
        b.sync()
        b = self.reopen(b)
        assert read_all(b, zx(13) + 1) == [r for r in history if r[0] > zx(13)] + span(LAST + 1, LAST + 2)


META_VALUES = ["3", "", "  leading spaces", "trailing spaces  ", "line\n", "two\nlines",
               "ünïcödé ε", "x" * 2000]


class MetaContract:
    def test_get_meta_of_a_missing_key(self) -> None:
        b = self.open_backend()
        assert b.get_meta("acceptedEpoch") is None
        b.set_meta("currentEpoch", "1")
        assert b.get_meta("acceptedEpoch") is None

    def test_set_then_get_and_overwrite(self) -> None:
        b = self.open_backend()
        b.set_meta("currentEpoch", "1")
        b.set_meta("acceptedEpoch", "2")
        assert b.get_meta("currentEpoch") == "1"
        assert b.get_meta("acceptedEpoch") == "2"
        b.set_meta("currentEpoch", "7")
        assert b.get_meta("currentEpoch") == "7"
        assert b.get_meta("acceptedEpoch") == "2"

    def test_meta_survives_reopen(self) -> None:
        b = self.open_backend()
        b.set_meta("currentEpoch", "4")
        b = self.reopen(b)
        assert b.get_meta("currentEpoch") == "4"

    def test_meta_is_durable_when_set_meta_returns(self) -> None:
        b = self.open_backend()
        b.set_meta("currentEpoch", "4")
        b.set_meta("acceptedEpoch", "5")
        b.append(span(1, 2))  # unsynced txns do not matter to metadata
        b = self.crash(b)
        assert b.get_meta("currentEpoch") == "4"
        assert b.get_meta("acceptedEpoch") == "5"
        b.set_meta("currentEpoch", "6")
        b = self.crash(b)
        assert b.get_meta("currentEpoch") == "6"

    def test_meta_values_round_trip_exactly(self) -> None:
        b = self.open_backend()
        keys = ["value%d" % i for i in range(len(META_VALUES))]
        for key, value in zip(keys, META_VALUES):
            b.set_meta(key, value)
        got = [b.get_meta(k) for k in keys]
        assert dict(zip(keys, got)) == dict(zip(keys, META_VALUES)), "before reopen"
        b = self.reopen(b)
        got = [b.get_meta(k) for k in keys]
        assert dict(zip(keys, got)) == dict(zip(keys, META_VALUES)), "after reopen"


class CrashContract:
    def test_crash_keeps_synced_records_and_stays_appendable(self) -> None:
        b = self.open_backend()
        synced = span(1, 5)
        b.append_and_sync(synced)
        unsynced = span(6, 9)
        b.append(unsynced)
        b = self.crash(b)
        got = read_all(b)
        assert_recovered_prefix(got, synced, unsynced)
        assert b.last_zxid() == got[-1][0]
        nxt = b.last_zxid() + 1
        more = recs([nxt, nxt + 1], b"after-crash")
        b.append_and_sync(more)
        assert read_all(b) == got + more
        b = self.reopen(b)
        assert read_all(b) == got + more

    def test_crash_after_sync_loses_nothing(self) -> None:
        b = self.open_backend()
        b.append(span(1, 3))
        b.sync()
        b.append_and_sync(span(4, 6))
        b = self.crash(b)
        assert read_all(b) == span(1, 6)
        assert b.last_zxid() == zx(6)

    def test_crash_with_only_unsynced_records(self) -> None:
        b = self.open_backend()
        unsynced = span(1, 3)
        b.append(unsynced)
        b = self.crash(b)
        got = read_all(b)
        assert_recovered_prefix(got, [], unsynced)
        assert b.last_zxid() == (got[-1][0] if got else 0)
        nxt = b.last_zxid() + 1 if got else zx(1)
        b.append_and_sync(recs([nxt]))
        b = self.reopen(b)
        assert read_all(b) == got + recs([nxt])

    def test_crash_in_a_fresh_segment(self) -> None:
        b = self.open_backend()
        synced = span(1, 4)
        b.append_and_sync(synced)
        b.roll()
        unsynced = span(5, 7)
        b.append(unsynced)
        b = self.crash(b)
        got = read_all(b)
        assert_recovered_prefix(got, synced, unsynced)
        nxt = b.last_zxid() + 1
        b.append_and_sync(recs([nxt]))
        b = self.reopen(b)
        assert read_all(b) == got + recs([nxt])

    def test_repeated_crashes(self) -> None:
        b = self.open_backend()
        b.append_and_sync(span(1, 2))
        for _ in range(3):
            b = self.crash(b)
        assert read_all(b) == span(1, 2)
        b.append_and_sync(span(3, 3))
        b = self.crash(b)
        assert read_all(b) == span(1, 3)


class FailureContract:
    """A failed ``append_and_sync`` (ENOSPC) takes the whole batch back."""

    @pytest.mark.parametrize("stage", ["write", "sync"])
    def test_failed_batch_is_taken_back_and_the_next_succeeds(self, stage: str) -> None:
        b = self.open_backend()
        good = span(1, 5)
        b.append_and_sync(good)
        self.inject_failure(b, stage)
        with pytest.raises(Exception):
            b.append_and_sync(span(6, 9, b"failed"))
        assert b.last_zxid() == zx(5), "the failed batch still counts in last_zxid"
        assert read_all(b) == good, "the failed batch is still readable"
        # The server retries the same zxids: they must go in as new.
        retry = span(6, 9, b"retry")
        b.append_and_sync(retry)
        assert read_all(b) == good + retry
        b = self.reopen(b)
        assert read_all(b) == good + retry
        assert b.last_zxid() == zx(9)

    @pytest.mark.parametrize("stage", ["write", "sync"])
    def test_failed_batch_is_gone_after_crash(self, stage: str) -> None:
        b = self.open_backend()
        good = span(1, 5)
        b.append_and_sync(good)
        self.inject_failure(b, stage)
        with pytest.raises(Exception):
            b.append_and_sync(span(6, 9, b"failed"))
        b = self.crash(b)
        assert read_all(b) == good
        assert b.last_zxid() == zx(5)
        b.append_and_sync(span(6, 7, b"retry"))
        b = self.reopen(b)
        assert read_all(b) == good + span(6, 7, b"retry")

    @pytest.mark.parametrize("stage", ["write", "sync"])
    def test_failed_first_batch_of_a_segment(self, stage: str) -> None:
        b = self.open_backend()
        good = span(1, 5)
        b.append_and_sync(good)
        b.roll()
        self.inject_failure(b, stage)
        with pytest.raises(Exception):
            b.append_and_sync(span(6, 9, b"failed"))
        assert read_all(b) == good
        retry = span(6, 9, b"retry")
        b.append_and_sync(retry)
        b = self.reopen(b)
        assert read_all(b) == good + retry

    @pytest.mark.parametrize("stage", ["write", "sync"])
    def test_failed_first_batch_of_a_segment_then_roll(self, stage: str) -> None:
        """A snapshot starts (roll) between the failed batch and its retry."""
        b = self.open_backend()
        good = span(1, 5)
        b.append_and_sync(good)
        b.roll()
        self.inject_failure(b, stage)
        with pytest.raises(Exception):
            b.append_and_sync(span(6, 9, b"failed"))
        b.roll()
        retry = span(6, 9, b"retry")
        b.append_and_sync(retry)
        b = self.reopen(b)
        assert read_all(b) == good + retry

    @pytest.mark.parametrize("stage", ["write", "sync"])
    def test_failed_very_first_batch(self, stage: str) -> None:
        b = self.open_backend()
        self.inject_failure(b, stage)
        with pytest.raises(Exception):
            b.append_and_sync(span(1, 3, b"failed"))
        assert b.last_zxid() == 0
        assert read_all(b) == []
        b = self.crash(b)
        assert read_all(b) == []
        b.append_and_sync(span(1, 3))
        b = self.reopen(b)
        assert read_all(b) == span(1, 3)


class RecoveryContract:
    def test_damaged_record_refuses_to_open(self) -> None:
        """A record before the tail is damaged: open() says where, never a shorter history."""
        b = self.open_backend()
        b.append_and_sync(span(1, 10))
        b.close()
        place = self.damage(self.data_dir, zx(3))
        fresh = self.make_backend(self.data_dir)
        with pytest.raises(CorruptLogError) as info:
            fresh.open()
        message = str(info.value)
        for part in place:
            assert part in message, "%r does not say %r" % (message, part)


class StorageBackendContract(InterfaceContract, RecordsContract, SnapshotContract, PurgeContract,
                             MetaContract, CrashContract, FailureContract, RecoveryContract):
    """Every test of the contract; a backend's class adds its harness."""


# --------------------------------------------------------------------------- the backends


class TestMemoryBackend(MemoryHarness, StorageBackendContract):
    pass


class TestFileLogBackend(FileLogHarness, StorageBackendContract):
    pass


class TestSQLiteBackend(SQLiteHarness, StorageBackendContract):
    pass
