"""FileLogBackend on a temporary directory: records, recovery, corruption, failed writes.

The backend keeps Apache ZooKeeper's ``version-2/log.<zxid>`` format: a 16-byte
file header, then per record ``long adler32``, ``int len``, the payload and the
end marker ``0x42``, in a preallocated (zero-filled) file.  These tests build
real txn payloads with :func:`zktwist.core.txn.encode`, damage the files the
way crashes and disks do, and check what :meth:`FileLogBackend.open` makes of
them.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import List, Tuple

import pytest
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface.verify import verifyObject

from zktwist.core.txn import Txn, encode
from zktwist.interfaces import IStorageBackend
from zktwist.proto.consts import OpCode
from zktwist.storage.errors import CorruptLogError, StorageError
from zktwist.storage.filelog import FileLogBackend

HEADER = 16          # ZKLG, version 2, dbid
RECORD_HEAD = 12     # long checksum + int length
PREALLOC = 16 * 1024  # small, so every test file stays tiny

Record = Tuple[int, bytes]


# --------------------------------------------------------------------------- helpers


def txn_payload(zxid: int, data: bytes = b"", session: int = 0x1234) -> bytes:
    """A real setData txn (TxnHeader + SetDataTxn) as the server would log it."""
    return encode(Txn(session, zxid, zxid, 1_700_000_000_000 + zxid, OpCode.setData,
                      ("/node-%d" % zxid, data or (b"value-%d" % zxid), zxid)))


def records(first: int, count: int, data: bytes = b"") -> List[Record]:
    return [(z, txn_payload(z, data)) for z in range(first, first + count)]


def backend_at(directory: Path, **kwargs) -> FileLogBackend:
    kwargs.setdefault("prealloc_size", PREALLOC)
    return FileLogBackend(str(directory), **kwargs)


def opened(directory: Path, **kwargs) -> FileLogBackend:
    b = backend_at(directory, **kwargs)
    b.open()
    return b


def write_log(directory: Path, *batches: List[Record]) -> FileLogBackend:
    """Open, append_and_sync every batch, close; returns the (closed) backend."""
    b = opened(directory)
    for batch in batches:
        b.append_and_sync(batch)
    b.close()
    return b


def read_back(directory: Path, from_zxid: int = 0) -> List[Record]:
    b = opened(directory)
    try:
        return list(b.read_txns(from_zxid))
    finally:
        b.close()


_images = iter(range(1 << 30))


def crash_image(directory: Path) -> Path:
    """A copy of the log directory as a crash would leave it right now.

    Reading the copy leaves the live backend's files alone (an open() may
    legitimately cut or remove what it finds torn).
    """
    image = directory.parent / ("%s-crash-%d" % (directory.name, next(_images)))
    shutil.copytree(directory, image)
    return image


def log_files(directory: Path) -> List[Path]:
    files = [p for p in (directory / "version-2").iterdir() if p.name.startswith("log.")]
    return sorted(files, key=lambda p: int(p.name[4:], 16))


def record_offsets(payloads: List[bytes]) -> List[Tuple[int, int]]:
    """``(start, end)`` of each record in a file that holds exactly these payloads."""
    out = []
    off = HEADER
    for p in payloads:
        end = off + RECORD_HEAD + len(p) + 1
        out.append((off, end))
        off = end
    return out


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


class Warnings:
    """Collects warning-or-worse events from twisted's global log publisher."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event: dict) -> None:
        level = event.get("log_level")
        if level is not None and level >= LogLevel.warn:
            self.events.append(event)

    def texts(self) -> List[str]:
        from twisted.logger import formatEvent
        return [formatEvent(e) for e in self.events]


@pytest.fixture
def warnings_log():
    w = Warnings()
    globalLogPublisher.addObserver(w)
    try:
        yield w
    finally:
        globalLogPublisher.removeObserver(w)


# --------------------------------------------------------------------------- basics


def test_provides_storage_backend_interface(tmp_path):
    b = backend_at(tmp_path)
    assert verifyObject(IStorageBackend, b)
    b.open()
    try:
        assert verifyObject(IStorageBackend, b)
        assert b.name == "filelog"
    finally:
        b.close()


def test_empty_log_opens_with_nothing(tmp_path):
    b = opened(tmp_path)
    try:
        assert b.last_zxid() == 0
        assert list(b.read_txns(0)) == []
        assert (tmp_path / "version-2").is_dir()
    finally:
        b.close()
    # Opening an empty log does not create files that a later open must read.
    assert read_back(tmp_path) == []


def test_append_sync_reopen_round_trip(tmp_path):
    first = records(1, 5)
    second = records(6, 3, data=b"\x00\x01\x02" * 100)
    b = opened(tmp_path)
    b.append(first[:2])
    b.sync()
    b.append_and_sync(first[2:])
    assert b.last_zxid() == 5
    b.append_and_sync(second)
    assert b.last_zxid() == 8
    b.close()

    again = opened(tmp_path)
    try:
        assert again.last_zxid() == 8
        assert list(again.read_txns(0)) == first + second
        assert list(again.read_txns(6)) == second
        assert list(again.read_txns(9)) == []
    finally:
        again.close()


def test_files_are_zookeeper_format(tmp_path):
    batch = records(1, 3)
    write_log(tmp_path, batch)
    (path,) = log_files(tmp_path)
    assert path.name == "log.1"
    data = path.read_bytes()
    assert data[:4] == b"ZKLG"
    assert struct.unpack(">iq", data[4:16]) == (2, 0)  # version 2, dbid 0
    off = HEADER
    for _, payload in batch:
        checksum, length = struct.unpack_from(">qi", data, off)
        assert length == len(payload)
        assert checksum == zlib.adler32(payload)
        assert data[off + RECORD_HEAD:off + RECORD_HEAD + length] == payload
        assert data[off + RECORD_HEAD + length] == 0x42
        off += RECORD_HEAD + length + 1
    # Preallocated: zeros after the last record.
    assert len(data) > off
    assert data[off:].strip(b"\x00") == b""


def test_new_file_per_open(tmp_path):
    write_log(tmp_path, records(1, 2))
    write_log(tmp_path, records(3, 4))
    # An open that appends nothing leaves no new file behind.
    write_log(tmp_path)
    write_log(tmp_path, records(7, 1), records(8, 2))
    names = [p.name for p in log_files(tmp_path)]
    assert names == ["log.1", "log.3", "log.7"]
    assert [z for z, _ in read_back(tmp_path)] == list(range(1, 10))
    assert [z for z, _ in read_back(tmp_path, 4)] == list(range(4, 10))


def test_file_name_is_first_zxid_in_hex(tmp_path):
    write_log(tmp_path, records(0x1F, 2))
    write_log(tmp_path, records(0x100, 1))
    assert [p.name for p in log_files(tmp_path)] == ["log.1f", "log.100"]


def test_records_survive_a_crash_after_sync(tmp_path):
    b = opened(tmp_path)
    batch = records(1, 4)
    b.append_and_sync(batch)
    # "Crash": the process goes away without close(); only the fd is dropped.
    os.close(b._fd)  # noqa: SLF001 - simulating the kernel closing it at exit
    b._fd = None  # noqa: SLF001
    assert read_back(tmp_path) == batch
    # And the next life appends after them.
    write_log(tmp_path, records(5, 2))
    assert [z for z, _ in read_back(tmp_path)] == [1, 2, 3, 4, 5, 6]


def test_records_survive_when_process_state_is_just_dropped(tmp_path):
    b = opened(tmp_path)
    batch = records(1, 3)
    b.append_and_sync(batch)
    other = opened(crash_image(tmp_path))  # the next life, while the first never closed
    try:
        assert list(other.read_txns(0)) == batch
        assert other.last_zxid() == 3
    finally:
        other.close()
        b.close()


def test_large_batches_grow_the_preallocation(tmp_path):
    big = records(1, 50, data=b"x" * 1500)  # well past PREALLOC
    write_log(tmp_path, big[:10], big[10:])
    assert read_back(tmp_path) == big


# --------------------------------------------------------------------------- torn tails


def _build_template(tmp_path: Path) -> Tuple[Path, List[Record], Tuple[int, int]]:
    """A log with one file of 4 records; returns (dir, records, (start, end) of the last)."""
    template = tmp_path / "template"
    batch = records(1, 4)
    write_log(template, batch[:2], batch[2:])
    offsets = record_offsets([p for _, p in batch])
    return template, batch, offsets[-1]


@pytest.mark.parametrize("how", ["truncate", "zero-fill"])
def test_torn_last_record_at_every_offset_is_cut_and_log_continues(tmp_path, warnings_log, how):
    """A crash mid-write leaves a prefix of the last record: open() drops just that record.

    ``truncate`` cuts the file there (as on a filesystem that lost the
    preallocation); ``zero-fill`` keeps the preallocated zeros after the prefix.
    """
    template, batch, (start, end) = _build_template(tmp_path)
    name = log_files(template)[-1].name
    problems = []
    for cut in range(start + 1, end):
        work = tmp_path / ("w%d" % cut)
        shutil.copytree(template, work)
        path = work / "version-2" / name
        if how == "truncate":
            os.truncate(path, cut)
        else:
            with open(path, "r+b") as f:
                f.seek(cut)
                f.write(b"\x00" * (end - cut))
        prefix = path.read_bytes()[start:cut]
        warnings_log.events.clear()

        b = backend_at(work)
        try:
            b.open()
        except CorruptLogError as e:
            problems.append("cut at %d: open() refused: %s" % (cut, e))
            continue
        got = list(b.read_txns(0))
        if got != batch[:-1]:
            problems.append("cut at %d: recovered zxids %r" % (cut, [z for z, _ in got]))
        if b.last_zxid() != batch[-2][0]:
            problems.append("cut at %d: last_zxid %d" % (cut, b.last_zxid()))
        if prefix.strip(b"\x00"):
            if not warnings_log.events:
                problems.append("cut at %d: a torn record (%d bytes left) was dropped "
                                "without a warning" % (cut, cut - start))
            # Cut, not just skipped: once a newer file exists these bytes
            # would be damage inside an older file.
            if path.read_bytes()[start:].strip(b"\x00"):
                problems.append("cut at %d: the torn bytes are still in %s after open()"
                                % (cut, path.name))
        # The log keeps working: the lost zxid is written again, then more.
        redo = [(batch[-1][0], txn_payload(batch[-1][0], b"redo"))] + records(5, 2)
        try:
            b.append_and_sync(redo)
        finally:
            b.close()
        try:
            after = read_back(work)
        except CorruptLogError as e:
            problems.append("cut at %d: reopen after append refused: %s" % (cut, e))
            continue
        if after != batch[:-1] + redo:
            problems.append("cut at %d: after append got zxids %r" % (cut, [z for z, _ in after]))
        shutil.rmtree(work)
    assert not problems, "\n".join(problems)


def test_torn_tail_warning_names_the_file(tmp_path, warnings_log):
    template, batch, (start, end) = _build_template(tmp_path)
    path = log_files(template)[-1]
    os.truncate(path, end - 3)
    b = opened(template)
    b.close()
    texts = warnings_log.texts()
    assert texts, "no warning logged for a torn tail"
    assert any(str(path) in t for t in texts), texts
    # The damaged bytes are gone from the file, the good records are intact.
    assert path.stat().st_size <= start or path.read_bytes()[start:].strip(b"\x00") == b""
    assert read_back(template) == batch[:-1]


def test_torn_tail_in_newest_file_keeps_older_files(tmp_path, warnings_log):
    write_log(tmp_path, records(1, 3))
    write_log(tmp_path, records(4, 3))
    newest = log_files(tmp_path)[-1]
    end = record_offsets([p for _, p in records(4, 3)])[-1][1]
    os.truncate(newest, end - 5)
    assert [z for z, _ in read_back(tmp_path)] == [1, 2, 3, 4, 5]
    assert warnings_log.events


@pytest.mark.parametrize("left", ["empty", "header", "partial-head", "partial-payload", "no-marker"])
def test_crash_before_first_record_of_a_new_file_was_durable(tmp_path, warnings_log, left):
    """kill -9 after a new log file was started but before its first record was synced.

    On restart the log ends at the previous file's last zxid, so the next txn
    has the zxid the dead file was named after: appending must still work, and
    the history must stay readable afterwards.
    """
    good = records(1, 3)
    write_log(tmp_path, good)
    b = opened(tmp_path)
    lost = records(4, 1, data=b"never synced")
    b.append(lost)  # starts log.4; no sync
    os.close(b._fd)  # noqa: SLF001 - the process dies
    b._fd = None  # noqa: SLF001
    newest = log_files(tmp_path)[-1]
    assert newest.name == "log.4"
    record_len = RECORD_HEAD + len(lost[0][1]) + 1
    keep = {"empty": 0, "header": HEADER, "partial-head": HEADER + 9,
            "partial-payload": HEADER + RECORD_HEAD + 7, "no-marker": HEADER + record_len - 1}[left]
    os.truncate(newest, keep)

    again = opened(tmp_path)
    assert again.last_zxid() == 3
    assert list(again.read_txns(0)) == good
    retry = records(4, 2, data=b"after the restart")
    again.append_and_sync(retry)  # the server preps zxid 4 again
    again.close()
    assert read_back(tmp_path) == good + retry
    write_log(tmp_path, records(6, 1))
    assert [z for z, _ in read_back(tmp_path)] == [1, 2, 3, 4, 5, 6]


# --------------------------------------------------------------------------- corruption


def _corruption_fixture(tmp_path: Path) -> Tuple[Path, List[Record], List[Tuple[int, int]]]:
    template = tmp_path / "template"
    batch = records(1, 5)
    write_log(template, batch)
    return template, batch, record_offsets([p for _, p in batch])


def _expect_refusal(work: Path, path: Path, offset: int) -> str:
    """open() must raise CorruptLogError naming ``path`` and ``offset``; '' if so, else why not."""
    b = backend_at(work)
    try:
        b.open()
    except CorruptLogError as e:
        msg = str(e)
        if str(path) not in msg:
            return "message does not name the file: %s" % msg
        if "offset %d" % offset not in msg:
            return "message does not name offset %d: %s" % (offset, msg)
        if e.offset != offset or os.path.abspath(e.path) != os.path.abspath(str(path)):
            return "error attributes (%r, %r) != (%r, %r)" % (e.path, e.offset, str(path), offset)
        return ""
    else:
        got = [z for z, _ in b.read_txns(0)]
        b.close()
        return "open() accepted the log; it now holds zxids %r" % got


def test_flipped_byte_in_earlier_record_refuses_to_start(tmp_path):
    template, batch, offsets = _corruption_fixture(tmp_path)
    name = log_files(template)[0].name
    start, end = offsets[1]  # the second of five records
    payload_start = start + RECORD_HEAD
    problems = []
    # Every byte of the record except its length field and the checksum's
    # high half (tested below): the checksum, the payload and the end marker.
    for pos in list(range(start + 4, start + 8)) + list(range(payload_start, end)):
        work = tmp_path / ("w%d" % pos)
        shutil.copytree(template, work)
        path = work / "version-2" / name
        flip_byte(path, pos)
        why = _expect_refusal(work, path, start)
        if why:
            problems.append("flip at %d: %s" % (pos, why))
        shutil.rmtree(work)
    assert not problems, "\n".join(problems)


def test_flipped_high_checksum_byte_in_earlier_record_refuses_to_start(tmp_path):
    """The checksum is a ``long``: Apache ZooKeeper compares all 8 bytes with Adler32's value.

    An Adler32 value has zero high bytes, so non-zero ones are damage too.
    """
    template, batch, offsets = _corruption_fixture(tmp_path)
    name = log_files(template)[0].name
    start, _ = offsets[1]
    problems = []
    for pos in range(start, start + 4):
        work = tmp_path / ("w%d" % pos)
        shutil.copytree(template, work)
        path = work / "version-2" / name
        flip_byte(path, pos)
        why = _expect_refusal(work, path, start)
        if why:
            problems.append("flip at %d (checksum byte %d): %s" % (pos, pos - start, why))
        shutil.rmtree(work)
    assert not problems, "\n".join(problems)


def test_flipped_byte_in_length_field_of_earlier_record_refuses_to_start(tmp_path):
    """A bit flip in an earlier record's length must not pass as a torn tail.

    Whatever length the damaged field claims, valid records follow the damaged
    one, so the history would get shorter: the server must refuse.
    """
    template, batch, offsets = _corruption_fixture(tmp_path)
    name = log_files(template)[0].name
    start, end = offsets[1]
    problems = []
    for pos in range(start + 8, start + RECORD_HEAD):
        for mask in (0xFF, 0x01, 0x40):
            work = tmp_path / ("w%d-%x" % (pos, mask))
            shutil.copytree(template, work)
            path = work / "version-2" / name
            with open(path, "r+b") as f:
                f.seek(pos)
                b = f.read(1)
                f.seek(pos)
                f.write(bytes([b[0] ^ mask]))
            why = _expect_refusal(work, path, start)
            if why:
                problems.append("length byte %d ^ 0x%02x: %s" % (pos - start - 8, mask, why))
            shutil.rmtree(work)
    assert not problems, "\n".join(problems)


def test_corruption_error_message_names_file_and_offset(tmp_path):
    template, batch, offsets = _corruption_fixture(tmp_path)
    path = log_files(template)[0]
    start, _ = offsets[2]
    flip_byte(path, start + RECORD_HEAD + 3)
    with pytest.raises(CorruptLogError) as info:
        opened(template)
    msg = str(info.value)
    assert str(path) in msg
    assert "offset %d" % start in msg
    assert isinstance(info.value, StorageError)
    # Refusing does not "repair" anything: the file is untouched, still refused.
    with pytest.raises(CorruptLogError):
        opened(template)


def test_damaged_first_record_refuses(tmp_path):
    template, batch, offsets = _corruption_fixture(tmp_path)
    path = log_files(template)[0]
    flip_byte(path, offsets[0][0] + RECORD_HEAD + 1)
    assert _expect_refusal(template, path, offsets[0][0]) == ""


def test_bad_file_header_refuses(tmp_path):
    template, _, _ = _corruption_fixture(tmp_path)
    path = log_files(template)[0]
    flip_byte(path, 1)
    with pytest.raises(CorruptLogError) as info:
        opened(template)
    assert str(path) in str(info.value)


def _two_files(tmp_path: Path) -> Tuple[Path, List[Record], List[Record]]:
    template = tmp_path / "template"
    a, b = records(1, 4), records(5, 3)
    write_log(template, a)
    write_log(template, b)
    assert len(log_files(template)) == 2
    return template, a, b


def test_flipped_byte_in_older_file_refuses(tmp_path):
    template, a, _ = _two_files(tmp_path)
    older = log_files(template)[0]
    offsets = record_offsets([p for _, p in a])
    start, end = offsets[1]
    flip_byte(older, start + RECORD_HEAD + 2)
    assert _expect_refusal(template, older, start) == ""


@pytest.mark.parametrize("how", ["truncate", "zero-fill", "flip"])
def test_damaged_tail_of_older_file_refuses(tmp_path, how):
    """Only the newest file may have a torn tail: the others were complete when a newer one began."""
    template, a, _ = _two_files(tmp_path)
    name = log_files(template)[0].name
    start, end = record_offsets([p for _, p in a])[-1]
    problems = []
    for cut in range(start + 1, end):
        work = tmp_path / ("w%d" % cut)
        shutil.copytree(template, work)
        path = work / "version-2" / name
        if how == "truncate":
            os.truncate(path, cut)
        elif how == "zero-fill":
            with open(path, "r+b") as f:
                f.seek(cut)
                f.write(b"\x00" * (end - cut))
        else:
            if cut < start + 4:
                continue  # the checksum's high half: see the test above
            flip_byte(path, cut)
        if not path.read_bytes()[start:].strip(b"\x00"):
            # Nothing of the record is left: indistinguishable from a file that
            # ended one record earlier (Apache ZooKeeper does not check zxid gaps).
            shutil.rmtree(work)
            continue
        why = _expect_refusal(work, path, start)
        if why:
            problems.append("%s at %d: %s" % (how, cut, why))
        shutil.rmtree(work)
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- failed writes


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_fdatasync_failure_takes_the_batch_back(tmp_path, monkeypatch):
    b = opened(tmp_path)
    good = records(1, 3)
    b.append_and_sync(good)
    lost = records(4, 2, data=b"never-acknowledged")
    monkeypatch.setattr(os, "fdatasync", _enospc)
    with pytest.raises(OSError) as info:
        b.append_and_sync(lost)
    assert info.value.errno == errno.ENOSPC
    assert b.last_zxid() == 3
    monkeypatch.undo()
    # The failed batch's zxids are prepped again by the server: same zxids, new txns.
    retry = records(4, 2, data=b"retried")
    b.append_and_sync(retry)
    assert b.last_zxid() == 5
    b.close()
    assert read_back(tmp_path) == good + retry


def test_fdatasync_failure_leaves_only_earlier_records_after_crash(tmp_path, monkeypatch):
    b = opened(tmp_path)
    good = records(1, 3)
    b.append_and_sync(good)
    monkeypatch.setattr(os, "fdatasync", _enospc)
    with pytest.raises(OSError):
        b.append_and_sync(records(4, 5))
    monkeypatch.undo()
    # Crash right after the failure: nothing of the failed batch is in the log.
    assert read_back(crash_image(tmp_path)) == good
    b.close()
    assert read_back(tmp_path) == good


def test_pwrite_failure_leaves_no_half_record(tmp_path, monkeypatch):
    b = opened(tmp_path)
    good = records(1, 3)
    b.append_and_sync(good)
    monkeypatch.setattr(os, "pwrite", _enospc)
    with pytest.raises(OSError):
        b.append_and_sync(records(4, 2))
    monkeypatch.undo()
    assert b.last_zxid() == 3
    assert read_back(crash_image(tmp_path)) == good
    retry = records(4, 2, data=b"retried")
    b.append_and_sync(retry)
    b.close()
    assert read_back(tmp_path) == good + retry


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_partial_pwrite_then_enospc_leaves_no_half_record(tmp_path, monkeypatch, fraction):
    """The disk takes part of the batch, then fails: the part must not survive as records."""
    b = opened(tmp_path)
    good = records(1, 3)
    b.append_and_sync(good)
    real_pwrite = os.pwrite
    calls = []

    def partial_then_fail(fd, data, offset):
        calls.append(len(data))
        if len(calls) == 1:
            real_pwrite(fd, bytes(data)[:max(1, int(len(data) * fraction))], offset)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", partial_then_fail)
    with pytest.raises(OSError):
        b.append_and_sync(records(4, 3, data=b"half-written"))
    assert b.last_zxid() == 3
    # A crash now: only the earlier records.
    assert read_back(crash_image(tmp_path)) == good
    retry = records(4, 1, data=b"short retry")  # shorter than what was half written
    b.append_and_sync(retry)
    more = records(5, 2)
    b.append_and_sync(more)
    b.close()
    monkeypatch.undo()
    assert read_back(tmp_path) == good + retry + more


def test_short_pwrite_is_an_error_and_leaves_no_half_record(tmp_path, monkeypatch):
    b = opened(tmp_path)
    good = records(1, 2)
    b.append_and_sync(good)
    real_pwrite = os.pwrite
    state = {"short": True}

    def short(fd, data, offset):
        if state["short"]:
            state["short"] = False
            return real_pwrite(fd, bytes(data)[:len(data) // 2], offset)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", short)
    with pytest.raises((OSError, StorageError)):
        b.append_and_sync(records(3, 2))
    assert read_back(crash_image(tmp_path)) == good
    retry = records(3, 2, data=b"again")
    b.append_and_sync(retry)
    b.close()
    monkeypatch.undo()
    assert read_back(tmp_path) == good + retry


def test_failure_on_the_first_append_of_a_file(tmp_path, monkeypatch):
    """ENOSPC while the new log file's first batch is written."""
    write_log(tmp_path, records(1, 2))
    b = opened(tmp_path)
    monkeypatch.setattr(os, "fdatasync", _enospc)
    with pytest.raises(OSError):
        b.append_and_sync(records(3, 2, data=b"lost"))
    monkeypatch.undo()
    assert [z for z, _ in read_back(crash_image(tmp_path))] == [1, 2]
    retry = records(3, 2, data=b"kept")
    b.append_and_sync(retry)
    b.close()
    assert read_back(tmp_path) == records(1, 2) + retry


def test_pwrite_failure_on_the_first_append_of_a_file(tmp_path, monkeypatch):
    write_log(tmp_path, records(1, 2))
    b = opened(tmp_path)
    monkeypatch.setattr(os, "pwrite", _enospc)
    with pytest.raises(OSError):
        b.append_and_sync(records(3, 2, data=b"lost"))
    monkeypatch.undo()
    assert [z for z, _ in read_back(crash_image(tmp_path))] == [1, 2]
    retry = records(3, 2, data=b"kept")
    b.append_and_sync(retry)
    b.close()
    assert read_back(tmp_path) == records(1, 2) + retry


def test_repeated_failures_then_success(tmp_path, monkeypatch):
    b = opened(tmp_path)
    good = records(1, 2)
    b.append_and_sync(good)
    for i in range(3):
        monkeypatch.setattr(os, "fdatasync", _enospc)
        with pytest.raises(OSError):
            b.append_and_sync(records(3, 4, data=b"attempt-%d" % i))
        monkeypatch.undo()
    final = records(3, 1, data=b"final")
    b.append_and_sync(final)
    b.close()
    assert read_back(tmp_path) == good + final
