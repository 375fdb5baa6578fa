"""The file-log backend: Apache ZooKeeper's ``version-2/log.<zxid>`` format.

Each file starts with a 16-byte header (``ZKLG``, version 2, dbid 0); each
record is ``long adler32(payload)``, ``int len``, the payload (TxnHeader + txn
record) and the end marker ``0x42``.  Files are preallocated with zeros, so a
zero length marks the end.  On open every record is checked: a damaged record
followed only by zeros in the newest file is a torn tail and is cut off (with
a log line); damage anywhere else refuses to start.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from twisted.logger import Logger
from zope.interface import implementer

from zktwist.interfaces import ISnapshotWriter, IStorageBackend
from zktwist.storage.util import check_ascending, dir_size, fsync_dir
from zktwist.storage.errors import CorruptLogError, StorageError

log = Logger()

MAGIC = 0x5A4B4C47  # "ZKLG"
FILE_HEADER = struct.Struct(">iiq")
RECORD_HEAD = struct.Struct(">qi")
END_OF_RECORD = 0x42
TXN_ZXID = struct.Struct(">q")  # zxid sits at offset 12 of the TxnHeader
DEFAULT_PREALLOC = 64 * 1024 * 1024


def log_name(zxid: int) -> str:
    return "log.%x" % zxid


def _zxid_of_name(name: str) -> Optional[int]:
    if not name.startswith("log."):
        return None
    try:
        return int(name[4:], 16)
    except ValueError:
        return None


def encode_record(payload: bytes) -> bytes:
    return RECORD_HEAD.pack(zlib.adler32(payload), len(payload)) + payload + b"\x42"


class _Scan:
    """The valid records of one log file, and where they end."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records: List[Tuple[int, bytes]] = []
        self.end = FILE_HEADER.size
        self.torn_at: Optional[int] = None
        self.torn_reason = ""


def _valid_record_at(data: "bytes | bytearray", off: int, limit: int) -> bool:
    """Is there a whole, checksummed record at ``off`` (ending by ``limit``)?"""
    if off + RECORD_HEAD.size > limit:
        return False
    checksum, length = RECORD_HEAD.unpack_from(data, off)
    start = off + RECORD_HEAD.size
    if length <= 0 or start + length + 1 > limit or data[start + length] != END_OF_RECORD:
        return False
    return zlib.adler32(data[start:start + length]) == checksum


def _later_record_exists(data: "bytes | bytearray", off: int, limit: int) -> bool:
    """Any valid record starting after ``off``?  If so, the damage is not a torn tail."""
    for p in range(off + 1, limit - RECORD_HEAD.size):
        if _valid_record_at(data, p, limit):
            return True
    return False


# How far past the end of the good records a scan looks for more data: a
# record is at most jute.maxbuffer plus headers, so a damaged record's
# successor starts well within this window.
TAIL_WINDOW = 4 * 1024 * 1024


def scan_file(path: str, max_record: int = 1 << 30) -> _Scan:
    """Check every record of one log file.

    A damaged record with no valid record after it is a torn tail
    (``torn_at``); one followed by a valid record is corruption and raises.
    Only the records and a window after them are read, not the whole
    preallocated file (64 MiB of zeros by default).
    """
    scan = _Scan(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = bytearray(f.read(min(size, TAIL_WINDOW)))

        def ensure(n: int) -> None:
            want = min(n, size)
            while len(data) < want:
                chunk = f.read(max(want - len(data), 1 << 20))
                if not chunk:
                    break
                data.extend(chunk)

        if size < FILE_HEADER.size:
            scan.torn_at = 0
            scan.torn_reason = "short file header" if bytes(data).strip(b"\x00") else "empty file"
            scan.end = 0
            return scan
        magic, version, _ = FILE_HEADER.unpack_from(data, 0)
        if magic != MAGIC or version != 2:
            ensure(TAIL_WINDOW)
            if not bytes(data).strip(b"\x00"):
                scan.torn_at = 0
                scan.torn_reason = "file header never written"
                scan.end = 0
                return scan
            raise CorruptLogError(path, 0, "bad file header")
        off = FILE_HEADER.size
        while True:
            ensure(off + RECORD_HEAD.size)
            if off >= size:
                break
            reason = ""
            start = off + RECORD_HEAD.size
            length = 0
            if off + RECORD_HEAD.size > size:
                reason = "partial record header"
            else:
                checksum, length = RECORD_HEAD.unpack_from(data, off)
                if length == 0 and checksum == 0:
                    reason = "end"
                elif length <= 0 or length > max_record:
                    reason = "bad record length %d" % length
                else:
                    ensure(start + length + 1)
                    if start + length + 1 > size:
                        reason = "record runs past the end of the file"
                    elif data[start + length] != END_OF_RECORD:
                        reason = "missing end-of-record marker"
                    elif zlib.adler32(data[start:start + length]) != checksum:
                        reason = "checksum mismatch"
            if reason:
                # Look at a window after this point: anything there?
                window_end = min(size, off + TAIL_WINDOW)
                ensure(window_end)
                limit = off + len(bytes(data[off:window_end]).rstrip(b"\x00"))
                if reason == "end" and limit <= off:
                    break  # preallocated zeros: the end of the log
                if reason == "end":
                    reason = "data after the end-of-log marker"
                if _later_record_exists(data, off, limit):
                    raise CorruptLogError(path, off, reason)
                scan.torn_at = off
                scan.torn_reason = reason
                break
            payload = bytes(data[start:start + length])
            zxid = TXN_ZXID.unpack_from(payload, 12)[0] if length >= 20 else -1
            scan.records.append((zxid, payload))
            off = start + length + 1
    scan.end = off if scan.torn_at is None else scan.torn_at
    return scan


def snapshot_file_name(zxid: int) -> str:
    return "snapshot.%x" % zxid


def _meta_name(key: str) -> str:
    if not key or "/" in key or key.startswith((".", "log.", "snapshot.")):
        raise ValueError("bad metadata key %r" % key)
    return key


@implementer(ISnapshotWriter)
class FileSnapshotWriter:
    """Writes ``snapshot.<zxid>.tmp``; :meth:`commit` fsyncs and renames it into place."""

    def __init__(self, snap_dir: str, zxid: int) -> None:
        self.zxid = zxid
        self.path = os.path.join(snap_dir, snapshot_file_name(zxid))
        self.tmp = self.path + ".tmp"
        self._f = open(self.tmp, "wb")

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def commit(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.tmp, self.path)
        fsync_dir(os.path.dirname(self.path))

    def abort(self) -> None:
        try:
            self._f.close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


@implementer(IStorageBackend)
class FileLogBackend:
    """Txn log files in ``<dataLogDir>/version-2``, snapshots and metadata in ``<dataDir>/version-2``.

    The layout and formats are Apache ZooKeeper's, so a ``version-2``
    directory can move between the two servers.
    """

    name = "filelog"

    def __init__(self, data_dir: str, log_dir: Optional[str] = None,
                 prealloc_size: int = DEFAULT_PREALLOC, fsync: bool = True) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir or data_dir
        self.version_dir = os.path.join(self.log_dir, "version-2")
        self.snap_dir = os.path.join(self.data_dir, "version-2")
        self.prealloc_size = prealloc_size
        self.fsync = fsync
        self._files: List[Tuple[int, str]] = []
        self._fd: Optional[int] = None
        self._pos = 0
        self._prealloc_end = 0
        self._last_zxid = 0
        self._opened = False

    @classmethod
    def from_config(cls, config: Any) -> "FileLogBackend":
        return cls(config.data_dir, config.data_log_dir, prealloc_size=config.prealloc_size,
                   fsync=config.force_sync)

    # -- recovery -------------------------------------------------------------------

    def _list_files(self) -> List[Tuple[int, str]]:
        out = []
        for name in os.listdir(self.version_dir):
            z = _zxid_of_name(name)
            if z is not None:
                out.append((z, os.path.join(self.version_dir, name)))
        out.sort()
        return out

    def open(self) -> None:
        os.makedirs(self.version_dir, exist_ok=True)
        os.makedirs(self.snap_dir, exist_ok=True)
        for name in os.listdir(self.snap_dir):
            if name.startswith("snapshot.") and name.endswith(".tmp"):
                os.unlink(os.path.join(self.snap_dir, name))  # an unfinished snapshot
        self._files = self._list_files()
        last = 0
        for i, (_, path) in enumerate(list(self._files)):
            scan = scan_file(path)
            newest = i == len(self._files) - 1
            if scan.torn_at is not None:
                if not newest:
                    raise CorruptLogError(path, scan.torn_at, scan.torn_reason)
                if not scan.records:
                    # Killed before the file's first record was durable: the
                    # file holds nothing, and its name is the next zxid's.
                    log.warn("Removing {path}: it holds no complete record ({reason})",
                             path=path, reason=scan.torn_reason)
                    os.unlink(path)
                    fsync_dir(self.version_dir)
                    self._files.pop()
                    continue
                log.warn("Cutting a torn record off the end of {path} at offset {offset} ({reason})",
                         path=path, offset=scan.torn_at, reason=scan.torn_reason)
                with open(path, "r+b") as f:
                    f.truncate(max(scan.torn_at, 0))
                    f.flush()
                    os.fsync(f.fileno())
            elif newest and not scan.records:
                log.warn("Removing {path}: it holds no record", path=path)
                os.unlink(path)
                fsync_dir(self.version_dir)
                self._files.pop()
                continue
            for zxid, _ in scan.records:
                if zxid <= last:
                    raise CorruptLogError(path, 0, "zxid 0x%x out of order after 0x%x" % (zxid, last))
                last = zxid
        self._last_zxid = last
        self._opened = True

    def read_txns(self, from_zxid: int = 0) -> Iterator[Tuple[int, bytes]]:
        files = self._list_files()
        # A file is named by its first zxid: the newest file that starts at or before
        # from_zxid may hold it, every older file holds only earlier txns.
        first = 0
        for i, (start, _) in enumerate(files):
            if start <= from_zxid:
                first = i
        for _, path in files[first:]:
            for zxid, payload in scan_file(path).records:
                if zxid >= from_zxid:
                    yield zxid, payload

    # -- appending (storage thread) --------------------------------------------------

    def _start_file(self, first_zxid: int) -> None:
        path = os.path.join(self.version_dir, log_name(first_zxid))
        if os.path.exists(path) and not scan_file(path).records:
            os.unlink(path)  # left by a batch that failed before anything in it was durable
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, FILE_HEADER.pack(MAGIC, 2, 0))
            self._pos = FILE_HEADER.size
            self._prealloc_end = 0
            self._preallocate(fd, 0)
            os.fsync(fd)
            fsync_dir(self.version_dir)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        self._fd = fd
        self._files.append((first_zxid, path))

    def _preallocate(self, fd: int, need: int) -> None:
        if self._pos + need + 4096 <= self._prealloc_end:
            return
        new_end = self._prealloc_end
        while self._pos + need + 4096 > new_end:
            new_end += self.prealloc_size
        try:
            os.posix_fallocate(fd, self._prealloc_end, new_end - self._prealloc_end)
        except (AttributeError, OSError):
            os.ftruncate(fd, new_end)
        self._prealloc_end = new_end

    def append(self, records: Sequence[Tuple[int, bytes]]) -> None:
        if not records:
            return
        check_ascending(self._last_zxid, records)
        if self._fd is None:
            self._start_file(records[0][0])
        fd = self._fd
        assert fd is not None
        blob = b"".join(encode_record(payload) for _, payload in records)
        start = self._pos
        try:
            self._preallocate(fd, len(blob))
            written = os.pwrite(fd, blob, start)
            if written != len(blob):
                raise StorageError("short write to the transaction log")
        except BaseException:
            # Leave no half record behind: zero what may have been written.
            try:
                os.pwrite(fd, b"\x00" * len(blob), start)
            except OSError:
                pass
            if start == FILE_HEADER.size:
                self._drop_empty_file()
            raise
        self._pos = start + len(blob)
        self._last_zxid = records[-1][0]

    def sync(self) -> None:
        if self._fd is not None and self.fsync:
            os.fdatasync(self._fd)

    def append_and_sync(self, records: Sequence[Tuple[int, bytes]]) -> None:
        """One group commit: write the batch, then one fdatasync."""
        if records and self._fd is None:
            self._start_file(records[0][0])
        start = self._pos
        last = self._last_zxid
        self.append(records)
        try:
            self.sync()
        except BaseException:
            # The batch is not durable: take it back so the log never holds
            # txns whose clients were told they failed.
            try:
                if self._fd is not None:
                    os.pwrite(self._fd, b"\x00" * (self._pos - start), start)
            except OSError:
                pass
            self._pos = start
            self._last_zxid = last
            if start == FILE_HEADER.size:
                self._drop_empty_file()
            raise

    def _drop_empty_file(self) -> None:
        """Close and remove the current file: it holds no durable record."""
        if self._fd is None or not self._files:
            return
        os.close(self._fd)
        self._fd = None
        _, path = self._files.pop()
        try:
            os.unlink(path)
            fsync_dir(self.version_dir)
        except OSError:
            pass

    def last_zxid(self) -> int:
        return self._last_zxid

    def roll(self) -> None:
        """The next append starts a new log file (FileTxnLog.rollLog)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def truncate(self, zxid: int) -> None:
        """Drop every txn after ``zxid``, and the snapshots after it (FileTxnSnapLog.truncateLog)."""
        self.roll()
        for start, path in reversed(self._list_files()):
            if start > zxid:
                os.unlink(path)
                continue
            scan = scan_file(path)
            keep_end = FILE_HEADER.size
            off = FILE_HEADER.size
            for rec_zxid, payload in scan.records:
                off += RECORD_HEAD.size + len(payload) + 1
                if rec_zxid <= zxid:
                    keep_end = off
            with open(path, "r+b") as f:
                f.truncate(keep_end)
                f.flush()
                os.fsync(f.fileno())
            break
        for snap in self.list_snapshots():
            if snap > zxid:
                os.unlink(os.path.join(self.snap_dir, snapshot_file_name(snap)))
        fsync_dir(self.version_dir)
        self._files = self._list_files()
        last = 0
        for _, path in reversed(self._files):
            recs = scan_file(path).records
            if recs:
                last = recs[-1][0]
                break
        self._last_zxid = last

    # -- snapshots -----------------------------------------------------------------------

    def begin_snapshot(self, zxid: int) -> "FileSnapshotWriter":
        return FileSnapshotWriter(self.snap_dir, zxid)

    def list_snapshots(self) -> List[int]:
        out = []
        for name in os.listdir(self.snap_dir):
            if name.startswith("snapshot.") and not name.endswith(".tmp"):
                try:
                    out.append(int(name[len("snapshot."):], 16))
                except ValueError:
                    pass
        return sorted(out, reverse=True)

    def read_snapshot(self, zxid: int) -> Iterator[bytes]:
        with open(os.path.join(self.snap_dir, snapshot_file_name(zxid)), "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    return
                yield chunk

    def purge(self, retain: int) -> List[str]:
        """Keep the ``retain`` newest snapshots and the log files they need (PurgeTxnLog)."""
        retain = max(retain, 1)
        snaps = self.list_snapshots()
        if len(snaps) <= retain:
            return []
        keep = snaps[:retain]
        oldest = keep[-1]
        removed = []
        for z in snaps[retain:]:
            name = snapshot_file_name(z)
            os.unlink(os.path.join(self.snap_dir, name))
            removed.append(name)
        files = self._list_files()
        # The newest log file starting at or before the oldest kept snapshot may
        # hold txns after it: keep it and everything newer.
        needed = [start for start, _ in files if start <= oldest]
        cutoff = needed[-1] if needed else None
        current = self._files[-1][1] if (self._fd is not None and self._files) else None
        for start, path in files:
            if cutoff is not None and start < cutoff and path != current:
                os.unlink(path)
                removed.append(os.path.basename(path))
        if removed:
            fsync_dir(self.snap_dir)
            fsync_dir(self.version_dir)
            self._files = [f for f in self._files if os.path.exists(f[1])]
        return removed

    # -- metadata ----------------------------------------------------------------------------

    def get_meta(self, key: str) -> Optional[str]:
        try:
            with open(os.path.join(self.snap_dir, _meta_name(key)), encoding="utf-8",
                      newline="") as f:
                value = f.read()
                return value[:-1] if value.endswith("\n") else value
        except FileNotFoundError:
            return None

    def set_meta(self, key: str, value: str) -> None:
        """Write ``<dataDir>/version-2/<key>`` durably (temp file, fsync, rename, fsync dir)."""
        path = os.path.join(self.snap_dir, _meta_name(key))
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write("%s\n" % value)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(self.snap_dir)

    def sizes(self) -> Dict[str, int]:
        return {"datadir_size": dir_size(self.data_dir), "logdir_size": dir_size(self.log_dir)}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
