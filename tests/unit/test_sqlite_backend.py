"""SQLiteBackend on a temporary directory: schema, recovery, damaged rows, snapshots, purge, faults.

The backend keeps everything in ``<dataDir>/zktwist.sqlite3`` (WAL mode,
``synchronous=FULL``).  These tests write real txns (:func:`zktwist.core.txn.encode`),
then look at the database with a plain ``sqlite3`` connection the way an
operator would, damage rows the way bit rot and hand edits do, kill writer
processes, and fill the disk.  The shared contract every backend meets is in
``tests/contract``; this file is about what is SQLite's own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from zope.interface.verify import verifyObject

from zktwist import config as zkconfig
from zktwist.core.txn import Txn, encode
from zktwist.interfaces import ISnapshotWriter, IStorageBackend, IStorageBackendFactory
from zktwist.proto.consts import OpCode
from zktwist.storage import registry
from zktwist.storage import sqlite as sqlite_module
from zktwist.storage.errors import CorruptLogError, StorageError
from zktwist.storage.sqlite import (
    CHUNK_SIZE,
    DB_NAME,
    SCHEMA_VERSION,
    SQLiteBackend,
    SQLiteStorageError,
    row_checksum,
)

Record = Tuple[int, bytes]
REPO = Path(__file__).resolve().parents[2]
SESSION = 0x100000ABCDEF0001


# --------------------------------------------------------------------------- helpers


def txn_payload(zxid: int, data: bytes = b"", session: int = SESSION,
                type_: int = OpCode.setData) -> bytes:
    """A real txn as the server logs it (setData by default)."""
    t = 1_700_000_000_000 + zxid
    if type_ == OpCode.setData:
        body: tuple = ("/node-%d" % zxid, data or (b"value-%d" % zxid), zxid)
    elif type_ == OpCode.create:
        body = ("/app/n-%d" % zxid, data, [(31, "world", "anyone")], False, zxid)
    elif type_ == OpCode.delete:
        body = ("/app/n-%d" % zxid,)
    elif type_ == OpCode.createSession:
        body = (30000,)
    elif type_ == OpCode.closeSession:
        body = (None,)
    else:
        raise ValueError(type_)
    return encode(Txn(session, zxid, zxid, t, type_, body))


def records(first: int, count: int, data: bytes = b"") -> List[Record]:
    return [(z, txn_payload(z, data)) for z in range(first, first + count)]


def opened(directory: Path, **kwargs: Any) -> SQLiteBackend:
    b = SQLiteBackend(str(directory), **kwargs)
    b.open()
    return b


def read_back(directory: Path, from_zxid: int = 0) -> List[Record]:
    b = opened(directory)
    try:
        return list(b.read_txns(from_zxid))
    finally:
        b.close()


def raw(directory: Path) -> sqlite3.Connection:
    """The database as an operator's sqlite3 shell sees it."""
    return sqlite3.connect(str(directory / DB_NAME), isolation_level=None)


def crash(b: SQLiteBackend) -> None:
    """What a dead process leaves: its connection gone, no close(), nothing flushed."""
    assert b._conn is not None
    b._conn.close()
    b._conn = None


def snapshot_bytes(b: SQLiteBackend, zxid: int) -> bytes:
    return b"".join(b.read_snapshot(zxid))


def write_snapshot(b: SQLiteBackend, zxid: int, data: bytes, piece: int = 100_000) -> None:
    w = b.begin_snapshot(zxid)
    for i in range(0, len(data), piece):
        w.write(data[i:i + piece])
    w.commit()


def blob(size: int, seed: int) -> bytes:
    import random
    return random.Random(seed).randbytes(size)


class Events:
    """Collects log events of at least ``level`` from twisted's global log publisher."""

    def __init__(self, level: Any) -> None:
        self.level = level
        self.events: list = []

    def __call__(self, event: dict) -> None:
        level = event.get("log_level")
        if level is not None and level >= self.level:
            self.events.append(event)

    def texts(self) -> List[str]:
        return [formatEvent(e) for e in self.events]


@pytest.fixture
def warnings_log() -> Iterator[Events]:
    w = Events(LogLevel.warn)
    globalLogPublisher.addObserver(w)
    try:
        yield w
    finally:
        globalLogPublisher.removeObserver(w)


# --------------------------------------------------------------------------- basics


def test_provides_the_interfaces(tmp_path):
    b = SQLiteBackend(str(tmp_path))
    assert verifyObject(IStorageBackend, b)
    b.open()
    try:
        assert verifyObject(IStorageBackend, b)
        assert verifyObject(ISnapshotWriter, b.begin_snapshot(1))
        assert b.name == "sqlite"
    finally:
        b.close()


def test_one_database_file_in_the_data_dir_in_wal_mode(tmp_path):
    b = opened(tmp_path / "data")
    try:
        b.append_and_sync(records(1, 3))
        assert (tmp_path / "data" / DB_NAME).is_file()
        assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
            DB_NAME, DB_NAME + "-shm", DB_NAME + "-wal"]
        assert b._conn is not None
        assert b._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert b._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert b._conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    finally:
        b.close()
    with raw(tmp_path / "data") as c:
        assert c.execute("SELECT value FROM meta WHERE key='sqlite.schema_version'"
                         ).fetchone()[0] == str(SCHEMA_VERSION)


def test_force_sync_off_uses_synchronous_normal_for_txns_only(tmp_path):
    b = opened(tmp_path, fsync=False)
    try:
        b.append_and_sync(records(1, 2))
        assert b._conn is not None
        assert b._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        b.set_meta("currentEpoch", "1")  # metadata is always fsynced
        assert b._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        b.close()
    assert read_back(tmp_path) == records(1, 2)


def test_empty_database_opens_with_nothing(tmp_path):
    b = opened(tmp_path)
    try:
        assert b.last_zxid() == 0
        assert list(b.read_txns(0)) == []
        assert b.list_snapshots() == []
        assert b.get_meta("currentEpoch") is None
    finally:
        b.close()


def test_append_sync_reopen_round_trip(tmp_path):
    b = opened(tmp_path)
    recs = records(1, 10)
    b.append(recs[:4])
    b.sync()
    b.append_and_sync(recs[4:])
    assert b.last_zxid() == 10
    assert list(b.read_txns(0)) == recs
    assert list(b.read_txns(6)) == recs[5:]
    b.close()
    b = opened(tmp_path)
    try:
        assert b.last_zxid() == 10
        assert list(b.read_txns(0)) == recs
        b.append_and_sync(records(11, 2))
        assert list(b.read_txns(10))[0][0] == 10
    finally:
        b.close()
    assert [z for z, _ in read_back(tmp_path)] == list(range(1, 13))


def test_many_rows_read_in_batches(tmp_path):
    b = opened(tmp_path)
    try:
        recs = records(1, 2500)
        for i in range(0, len(recs), 500):
            b.append_and_sync(recs[i:i + 500])
        b.append(records(2501, 3))  # appended, not yet synced: read too
        assert [z for z, _ in b.read_txns(0)] == list(range(1, 2504))
        assert [z for z, _ in b.read_txns(1999)] == list(range(1999, 2504))
    finally:
        b.close()


def test_rows_carry_decoded_header_columns(tmp_path):
    b = opened(tmp_path)
    recs = [(1, txn_payload(1, type_=OpCode.createSession)),
            (2, txn_payload(2, b"hello", type_=OpCode.create)),
            (3, txn_payload(3, b"v")),
            (4, txn_payload(4, type_=OpCode.delete)),
            (5, txn_payload(5, type_=OpCode.closeSession))]
    b.append_and_sync(recs)
    b.close()
    with raw(tmp_path) as c:
        rows = c.execute("SELECT zxid, prev_zxid, session, cxid, time, type, path, payload, "
                         "checksum FROM txns ORDER BY zxid").fetchall()
        view = c.execute("SELECT zxid_hex, op, path, session_hex, utc, bytes FROM txn_log "
                         "ORDER BY zxid").fetchall()
    assert [r[7] for r in rows] == [p for _, p in recs]
    assert [(r[0], r[1]) for r in rows] == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]
    assert {r[2] for r in rows} == {SESSION}
    assert [r[5] for r in rows] == [OpCode.createSession, OpCode.create, OpCode.setData,
                                    OpCode.delete, OpCode.closeSession]
    assert [r[6] for r in rows] == [None, "/app/n-2", "/node-3", "/app/n-4", None]
    assert rows[2][4] == 1_700_000_000_003
    assert all(r[8] == row_checksum(r[0], r[1], r[7]) for r in rows)
    assert [v[1] for v in view] == ["createSession", "create", "setData", "delete",
                                    "closeSession"]
    assert view[1][0] == "0x2" and view[1][2] == "/app/n-2"
    assert view[0][3] == "0x%x" % SESSION
    assert view[2][4] == "2023-11-14 22:13:20.003"
    assert view[2][5] == len(recs[2][1])


def test_short_payloads_are_stored_without_decoded_columns(tmp_path):
    b = opened(tmp_path)
    b.append_and_sync([(1, b"x" * 5), (2, b"")])
    b.close()
    assert read_back(tmp_path) == [(1, b"x" * 5), (2, b"")]


def test_zxids_must_ascend(tmp_path):
    b = opened(tmp_path)
    try:
        b.append_and_sync(records(5, 2))
        with pytest.raises(ValueError):
            b.append_and_sync(records(6, 1))
        with pytest.raises(ValueError):
            b.append_and_sync([(8, txn_payload(8)), (8, txn_payload(8))])
        assert b.last_zxid() == 6
        b.append_and_sync(records(7, 1))
    finally:
        b.close()


def test_reads_work_on_a_closed_backend_like_the_file_log(tmp_path):
    b = opened(tmp_path)
    b.append_and_sync(records(1, 3))
    write_snapshot(b, 2, b"snap")
    b.set_meta("k", "v")
    b.close()
    assert list(b.read_txns(0)) == records(1, 3)
    assert b.list_snapshots() == [2]
    assert snapshot_bytes(b, 2) == b"snap"
    assert b.get_meta("k") == "v"
    nowhere = SQLiteBackend(str(tmp_path / "never-created"))
    assert list(nowhere.read_txns(0)) == []
    assert nowhere.list_snapshots() == []
    assert not (tmp_path / "never-created").exists()


def test_writes_on_a_closed_backend_raise(tmp_path):
    b = opened(tmp_path)
    b.close()
    with pytest.raises(StorageError):
        b.append_and_sync(records(1, 1))
    with pytest.raises(StorageError):
        b.set_meta("k", "v")


def test_a_different_data_log_dir_is_not_used_and_says_so(tmp_path, warnings_log):
    b = opened(tmp_path / "data", log_dir=str(tmp_path / "log"))
    b.append_and_sync(records(1, 1))
    b.close()
    assert not (tmp_path / "log").exists()
    assert any("dataLogDir" in t for t in warnings_log.texts())


# --------------------------------------------------------------------------- crashes


def test_crash_keeps_committed_rows_only(tmp_path):
    b = opened(tmp_path)
    b.append_and_sync(records(1, 5))
    b.append(records(6, 3))          # never synced
    crash(b)
    b = opened(tmp_path)
    try:
        assert list(b.read_txns(0)) == records(1, 5)
        assert b.last_zxid() == 5
        b.append_and_sync(records(6, 2, b"again"))
    finally:
        b.close()
    assert read_back(tmp_path) == records(1, 5) + records(6, 2, b"again")


def _run_child(tmp_path: Path, body: str, **kwargs: Any) -> subprocess.Popen:
    script = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, %r)
        from zktwist.storage.sqlite import SQLiteBackend
        from tests.unit.test_sqlite_backend import records
        b = SQLiteBackend(%r)
        b.open()
    """) % (str(REPO), str(tmp_path)) + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            cwd=str(REPO), **kwargs)


def test_process_dying_between_insert_and_commit_leaves_nothing_of_the_batch(tmp_path):
    child = _run_child(tmp_path, """
        b.append_and_sync(records(1, 5))
        real = b._execute
        def die_at_commit(sql, params=()):
            if sql == "COMMIT":
                os._exit(9)   # the batch's rows are inserted, the COMMIT never runs
            return real(sql, params)
        b._execute = die_at_commit
        b.append_and_sync(records(6, 50))
    """)
    assert child.wait(60) == 9
    assert read_back(tmp_path) == records(1, 5)


@pytest.mark.parametrize("batch", [1, 7])
def test_kill_9_while_appending_keeps_every_acknowledged_batch_whole(tmp_path, batch):
    child = _run_child(tmp_path, """
        z = 1
        while True:
            b.append_and_sync(records(z, %d, b"x" * 100))
            z += %d
            sys.stdout.write("%%d\\n" %% (z - 1))
            sys.stdout.flush()
    """ % (batch, batch))
    assert child.stdout is not None
    acked = 0
    deadline = time.monotonic() + 30
    while acked < 40 * batch and time.monotonic() < deadline:
        acked = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    got = [z for z, _ in read_back(tmp_path)]
    assert got[:acked] == list(range(1, acked + 1)), "an acknowledged txn is missing"
    assert got == list(range(1, len(got) + 1))
    assert len(got) % batch == 0, "a batch came back in part"
    assert read_back(tmp_path) == records(1, len(got), b"x" * 100)


# --------------------------------------------------------------------------- damage


def _damage(tmp_path: Path, sql: str, *params: Any) -> None:
    with raw(tmp_path) as c:
        c.execute(sql, params)


def _log_of_ten(tmp_path: Path) -> None:
    b = opened(tmp_path)
    b.append_and_sync(records(1, 4))
    b.append_and_sync(records(5, 6))
    b.close()


@pytest.mark.parametrize("sql, zxid, reason", [
    # a flipped byte in the txn bytes
    ("UPDATE txns SET payload = CAST(substr(payload, 1, 40) || X'FF' || substr(payload, 42) "
     "AS BLOB) WHERE zxid = 5", 5, "checksum mismatch"),
    ("UPDATE txns SET checksum = checksum + 1 WHERE zxid = 3", 3, "checksum mismatch"),
    ("UPDATE txns SET zxid = 100 WHERE zxid = 10", 100, "checksum mismatch"),
    ("DELETE FROM txns WHERE zxid = 6", 7, "rows are missing"),
    ("DELETE FROM txns WHERE zxid = 1", 2, "rows are missing"),
    ("UPDATE txns SET type = 2 WHERE zxid = 4", 4, "columns disagree"),
    ("UPDATE txns SET path = '/elsewhere' WHERE zxid = 8", 8, "columns disagree"),
    ("UPDATE txns SET payload = 'text' WHERE zxid = 2", 2, "not a BLOB"),
])
def test_damaged_or_missing_row_refuses_to_start_naming_it(tmp_path, sql, zxid, reason):
    _log_of_ten(tmp_path)
    _damage(tmp_path, sql)
    with pytest.raises(CorruptLogError) as e:
        opened(tmp_path)
    message = str(e.value)
    assert "table txns, row zxid 0x%x" % zxid in message
    assert reason in message
    assert str(tmp_path / DB_NAME) in message
    assert "refusing to start" in message
    assert e.value.table == "txns" and e.value.zxid == zxid  # type: ignore[attr-defined]


def test_damaged_row_found_by_read_txns_too(tmp_path):
    b = opened(tmp_path)
    b.append_and_sync(records(1, 5))
    _damage(tmp_path, "UPDATE txns SET payload = CAST(X'00' || substr(payload, 2) AS BLOB) "
                      "WHERE zxid = 4")
    with pytest.raises(CorruptLogError, match="row zxid 0x4"):
        list(b.read_txns(0))
    b.close()


def test_flipped_byte_in_the_file_refuses_to_start(tmp_path):
    b = opened(tmp_path)
    b.append_and_sync(records(1, 20, b"MARKER-%d" % 7))
    b.close()  # the last close checkpoints the WAL into the file
    path = tmp_path / DB_NAME
    data = bytearray(path.read_bytes())
    at = data.find(b"/node-13")
    assert at > 0
    data[at + 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="row zxid 0xd"):
        opened(tmp_path)


def test_a_file_that_is_not_a_database_refuses_to_start(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not an SQLite database, it is garbage " * 200)
    with pytest.raises(CorruptLogError, match="not a database"):
        opened(tmp_path)


def test_someone_elses_sqlite_database_is_refused(tmp_path):
    with raw(tmp_path) as c:
        c.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(StorageError, match="not zktwist's"):
        opened(tmp_path)


def test_a_newer_schema_is_refused(tmp_path):
    opened(tmp_path).close()
    _damage(tmp_path, "UPDATE meta SET value = ? WHERE key = 'sqlite.schema_version'",
            str(SCHEMA_VERSION + 1))
    with pytest.raises(StorageError, match="upgrade zktwist"):
        opened(tmp_path)


# --------------------------------------------------------------------------- truncate


def test_truncate_drops_later_txns_and_snapshots_durably(tmp_path):
    b = opened(tmp_path)
    b.append_and_sync(records(1, 10))
    write_snapshot(b, 4, b"four")
    write_snapshot(b, 8, b"eight")
    b.append(records(11, 2))
    b.truncate(6)
    assert b.last_zxid() == 6
    assert [z for z, _ in b.read_txns(0)] == [1, 2, 3, 4, 5, 6]
    assert b.list_snapshots() == [4]
    crash(b)
    b = opened(tmp_path)
    try:
        assert [z for z, _ in b.read_txns(0)] == [1, 2, 3, 4, 5, 6]
        assert b.list_snapshots() == [4]
        b.append_and_sync(records(7, 3, b"new"))
    finally:
        b.close()
    assert read_back(tmp_path) == records(1, 6) + records(7, 3, b"new")
    with raw(tmp_path) as c:
        assert c.execute("SELECT count(*) FROM snapshot_chunks").fetchone()[0] == 1


def test_truncate_between_rows_and_past_the_end(tmp_path):
    b = opened(tmp_path)
    b.append_and_sync([(z, txn_payload(z)) for z in (1, 2, 5, 6)])
    b.truncate(100)
    assert b.last_zxid() == 6
    b.truncate(3)
    assert b.last_zxid() == 2
    b.append_and_sync(records(3, 1))
    b.truncate(0)
    assert b.last_zxid() == 0
    b.append_and_sync(records(1, 2, b"fresh"))
    b.close()
    assert read_back(tmp_path) == records(1, 2, b"fresh")


# --------------------------------------------------------------------------- snapshots


def test_snapshot_write_commit_list_read_across_chunks(tmp_path):
    b = opened(tmp_path)
    big = blob(2 * CHUNK_SIZE + 12345, 1)
    write_snapshot(b, 0x100000005, big)
    write_snapshot(b, 0x100000009, b"small")
    w = b.begin_snapshot(0x10000000A)
    w.commit()  # empty
    assert b.list_snapshots() == [0x10000000A, 0x100000009, 0x100000005]
    assert snapshot_bytes(b, 0x100000005) == big
    assert snapshot_bytes(b, 0x100000009) == b"small"
    assert snapshot_bytes(b, 0x10000000A) == b""
    chunks = list(b.read_snapshot(0x100000005))
    assert len(chunks) == 3 and len(chunks[0]) == CHUNK_SIZE
    with pytest.raises(KeyError):
        list(b.read_snapshot(7))
    b.close()
    b = opened(tmp_path)
    try:
        assert snapshot_bytes(b, 0x100000005) == big
    finally:
        b.close()
    with raw(tmp_path) as c:
        assert c.execute("SELECT zxid, size, chunks FROM snapshots ORDER BY zxid").fetchall() == [
            (0x100000005, len(big), 3), (0x100000009, 5, 1), (0x10000000A, 0, 1)]
        assert c.execute("SELECT count(*) FROM snapshot_staging").fetchone()[0] == 0


def test_aborted_and_uncommitted_snapshots_are_never_listed(tmp_path):
    b = opened(tmp_path)
    write_snapshot(b, 3, b"kept")
    w = b.begin_snapshot(5)
    w.write(blob(CHUNK_SIZE + 10, 2))  # one chunk reaches the database
    assert b.list_snapshots() == [3]
    w.abort()
    assert b.list_snapshots() == [3]
    with pytest.raises(StorageError):
        w.write(b"more")
    with raw(tmp_path) as c:
        assert c.execute("SELECT count(*) FROM snapshot_chunks").fetchone()[0] == 1
        assert c.execute("SELECT count(*) FROM snapshot_staging").fetchone()[0] == 0
    # Written again after the abort, under the same zxid.
    write_snapshot(b, 5, b"five")
    assert b.list_snapshots() == [5, 3]
    assert snapshot_bytes(b, 5) == b"five"
    b.close()


def test_snapshot_left_half_written_by_a_crash_is_removed(tmp_path, warnings_log):
    b = opened(tmp_path)
    write_snapshot(b, 3, b"kept")
    w = b.begin_snapshot(9)
    w.write(blob(2 * CHUNK_SIZE, 3))
    assert b.list_snapshots() == [3]
    crash(b)
    with raw(tmp_path) as c:
        assert c.execute("SELECT zxid FROM snapshot_staging").fetchall() == [(9,)]
    b = opened(tmp_path)
    try:
        assert b.list_snapshots() == [3]
        assert snapshot_bytes(b, 3) == b"kept"
    finally:
        b.close()
    assert any("unfinished snapshot 0x9" in t for t in warnings_log.texts())
    with raw(tmp_path) as c:
        assert c.execute("SELECT count(*) FROM snapshot_chunks").fetchone()[0] == 1
        assert c.execute("SELECT count(*) FROM snapshot_staging").fetchone()[0] == 0


def test_snapshot_taken_again_at_the_same_zxid_replaces_it(tmp_path):
    b = opened(tmp_path)
    write_snapshot(b, 4, b"first")
    write_snapshot(b, 4, b"second")
    assert b.list_snapshots() == [4]
    assert snapshot_bytes(b, 4) == b"second"
    b.close()
    with raw(tmp_path) as c:
        assert c.execute("SELECT count(*) FROM snapshot_chunks").fetchone()[0] == 1


def test_damaged_snapshot_chunk_is_named_when_read(tmp_path):
    b = opened(tmp_path)
    write_snapshot(b, 4, blob(CHUNK_SIZE + 100, 4))
    _damage(tmp_path, "UPDATE snapshot_chunks SET data = CAST(X'00' || substr(data, 2) AS BLOB) "
                      "WHERE seq = 1")
    with pytest.raises(CorruptLogError, match="table snapshot_chunks, row zxid 0x4.*chunk 1"):
        list(b.read_snapshot(4))
    b.close()


def test_snapshot_with_a_missing_chunk_refuses_to_start(tmp_path):
    b = opened(tmp_path)
    write_snapshot(b, 4, blob(CHUNK_SIZE + 100, 5))
    b.close()
    _damage(tmp_path, "DELETE FROM snapshot_chunks WHERE seq = 0")
    with pytest.raises(CorruptLogError, match="table snapshots, row zxid 0x4"):
        opened(tmp_path)


# --------------------------------------------------------------------------- purge


def _history(b: SQLiteBackend, snaps: List[int], last: int, snap_size: int = 1000) -> None:
    z = 1
    for s in snaps + [last]:
        b.append_and_sync(records(z, s - z + 1, b"p" * 100))
        z = s + 1
        if s != last:
            write_snapshot(b, s, blob(snap_size, s))


def test_purge_keeps_the_newest_snapshots_and_every_txn_after_the_oldest(tmp_path):
    b = opened(tmp_path)
    _history(b, [10, 20, 30, 40], 45)
    assert b.purge(5) == []
    assert b.purge(0) == []
    removed = b.purge(2)
    assert removed == ["snapshot 0x14", "snapshot 0xa", "30 txns up to 0x1e"]
    assert b.list_snapshots() == [40, 30]
    assert [z for z, _ in b.read_txns(0)] == list(range(31, 46))
    assert b.get_meta("sqlite.base_zxid") == "30"
    assert b.purge(2) == []
    b.close()
    b = opened(tmp_path)
    try:
        assert [z for z, _ in b.read_txns(0)] == list(range(31, 46))
        b.append_and_sync(records(46, 2))
    finally:
        b.close()
    assert [z for z, _ in read_back(tmp_path)] == list(range(31, 48))


def test_last_zxid_stays_when_purge_leaves_no_txn(tmp_path):
    b = opened(tmp_path)
    b.append_and_sync(records(1, 10))
    write_snapshot(b, 5, b"five")
    write_snapshot(b, 10, b"ten")
    assert b.purge(1) == ["snapshot 0x5", "10 txns up to 0xa"]
    assert b.last_zxid() == 10
    assert list(b.read_txns(0)) == []
    crash(b)
    b = opened(tmp_path)
    try:
        assert b.last_zxid() == 10
        with pytest.raises(ValueError):
            b.append_and_sync(records(10, 1))
        b.append_and_sync(records(11, 1))
    finally:
        b.close()
    assert [z for z, _ in read_back(tmp_path)] == [11]


def _rows_at_or_below(directory: Path, zxid: int) -> int:
    with contextlib.closing(raw(directory)) as db:
        return db.execute("SELECT count(*) FROM txns WHERE zxid <= ?", (zxid,)).fetchone()[0]


def test_purged_rows_are_deleted_a_batch_per_commit_and_never_read(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "TRIM_BATCH", 40)
    b = opened(tmp_path)
    try:
        _history(b, [100, 200], 250)
        assert b.purge(1) == ["snapshot 0x64", "200 txns up to 0xc8"]
        # Out of the log at once, still in the table: the purge deleted no row itself.
        assert _rows_at_or_below(tmp_path, 200) == 200
        assert [z for z, _ in b.read_txns(0)] == list(range(201, 251))
        assert [z for z, _ in b.read_txns(150)] == list(range(201, 251))
        # Each group commit deletes TRIM_BATCH of them along with its own rows.
        b.append_and_sync(records(251, 1))
        assert _rows_at_or_below(tmp_path, 200) == 160
        for z in range(252, 257):
            b.append_and_sync(records(z, 1))
        assert _rows_at_or_below(tmp_path, 200) == 0
        assert not b._trim_pending
    finally:
        b.close()
    assert [z for z, _ in read_back(tmp_path)] == list(range(201, 257))


def test_purged_rows_left_by_a_crash_are_skipped_and_deleted_later(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "TRIM_BATCH", 1000)
    b = opened(tmp_path)
    _history(b, [100, 200], 250)
    b.purge(1)
    crash(b)
    assert _rows_at_or_below(tmp_path, 200) == 200
    # A tool reading the closed database skips them too.
    assert [z for z, _ in SQLiteBackend(str(tmp_path)).read_txns(0)] == list(range(201, 251))
    b = opened(tmp_path)       # the chain is checked from the base: the leftovers are not in it
    try:
        assert b.last_zxid() == 250
        assert [z for z, _ in b.read_txns(0)] == list(range(201, 251))
        b.append_and_sync(records(251, 1))
        assert _rows_at_or_below(tmp_path, 200) == 0
    finally:
        b.close()


def test_truncate_below_the_base_with_purged_rows_left(tmp_path):
    b = opened(tmp_path)
    try:
        _history(b, [100, 200], 250)
        b.purge(1)
        b.truncate(150)
        assert b.last_zxid() == 150
        assert list(b.read_txns(0)) == []
        b.append_and_sync(records(151, 5))
        assert [z for z, _ in b.read_txns(0)] == list(range(151, 156))
    finally:
        b.close()
    assert [z for z, _ in read_back(tmp_path)] == list(range(151, 156))


def test_purge_gives_the_space_back(tmp_path):
    b = opened(tmp_path)
    _history(b, [100, 200, 300, 400, 500], 600, snap_size=2 * CHUNK_SIZE)
    before = b.sizes()["datadir_size"]
    b.purge(1)
    after = b.sizes()["datadir_size"]
    wal = os.path.getsize(str(tmp_path / DB_NAME) + "-wal")
    b.close()
    assert before > 10 * CHUNK_SIZE
    assert after < 3 * CHUNK_SIZE, "purge left %d of %d bytes" % (after, before)
    assert wal == 0, "the TRUNCATE checkpoint left a WAL of %d bytes" % wal


def test_sizes_count_the_database_and_its_wal(tmp_path):
    b = opened(tmp_path)
    try:
        empty = b.sizes()
        assert set(empty) == {"datadir_size", "logdir_size"}
        b.append_and_sync(records(1, 200, b"x" * 200))
        grown = b.sizes()
        assert grown["datadir_size"] > empty["datadir_size"] + 200 * 200
        assert grown["logdir_size"] == grown["datadir_size"]
        files = sum(os.path.getsize(p) for p in tmp_path.iterdir())
        assert grown["datadir_size"] == files
    finally:
        b.close()


# --------------------------------------------------------------------------- metadata


def test_metadata_is_durable_when_set_meta_returns(tmp_path):
    b = opened(tmp_path, fsync=False)
    b.set_meta("currentEpoch", "4")
    b.set_meta("acceptedEpoch", "5")
    b.set_meta("currentEpoch", "6")
    crash(b)
    b = opened(tmp_path)
    try:
        assert b.get_meta("currentEpoch") == "6"
        assert b.get_meta("acceptedEpoch") == "5"
        assert b.get_meta("nothing") is None
    finally:
        b.close()
    with raw(tmp_path) as c:
        assert c.execute("SELECT value FROM meta WHERE key='currentEpoch'").fetchone() == ("6",)


def test_the_backends_own_meta_keys_are_off_limits(tmp_path):
    b = opened(tmp_path)
    try:
        for key in ("sqlite.base_zxid", "sqlite.schema_version", ""):
            with pytest.raises(ValueError):
                b.set_meta(key, "1")
        assert b.get_meta("sqlite.schema_version") == str(SCHEMA_VERSION)
    finally:
        b.close()


# --------------------------------------------------------------------------- full disk


def test_fail_next_commit_takes_the_batch_back(tmp_path):
    b = opened(tmp_path)
    b.append_and_sync(records(1, 5))
    b.fail_next()
    with pytest.raises(OSError) as e:
        b.append_and_sync(records(6, 5, b"lost"))
    assert e.value.errno == errno.ENOSPC
    assert b.last_zxid() == 5
    assert list(b.read_txns(0)) == records(1, 5)
    with raw(tmp_path) as c:
        assert c.execute("SELECT max(zxid) FROM txns").fetchone()[0] == 5
    b.append_and_sync(records(6, 5, b"kept"))
    crash(b)
    assert read_back(tmp_path) == records(1, 5) + records(6, 5, b"kept")


@pytest.mark.parametrize("error", [
    sqlite3.OperationalError("database or disk is full"),
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_disk_full_during_the_insert_leaves_nothing_half_written(tmp_path, monkeypatch, error):
    b = opened(tmp_path)
    b.append_and_sync(records(1, 5))
    real = b._executemany

    def full(sql: str, rows: Any) -> Any:
        real(sql, rows[:len(rows) // 2])  # half the batch is in, then the disk is full
        raise error

    monkeypatch.setattr(b, "_executemany", full)
    with pytest.raises((SQLiteStorageError, OSError)) as e:
        b.append_and_sync(records(6, 10, b"lost"))
    if isinstance(error, sqlite3.Error):
        assert "database or disk is full" in str(e.value)
        assert str(tmp_path / DB_NAME) in str(e.value)
        assert "appending 10 txns 0x6..0xf" in str(e.value)
    monkeypatch.undo()
    assert b.last_zxid() == 5
    assert list(b.read_txns(0)) == records(1, 5)
    b.append_and_sync(records(6, 3, b"kept"))
    b.close()
    assert read_back(tmp_path) == records(1, 5) + records(6, 3, b"kept")


def test_a_really_full_database_fails_cleanly_and_recovers(tmp_path):
    """SQLite's own SQLITE_FULL (max_page_count), not a mock: the batch is all or nothing."""
    b = opened(tmp_path)
    b.append_and_sync(records(1, 5))
    assert b._conn is not None
    pages = b._conn.execute("PRAGMA page_count").fetchone()[0]
    b._conn.execute("PRAGMA max_page_count=%d" % (pages + 3))
    z = 6
    failed = None
    for _ in range(200):
        try:
            b.append_and_sync(records(z, 20, b"y" * 300))
        except SQLiteStorageError as e:
            failed = e
            break
        z += 20
    assert failed is not None and "database or disk is full" in str(failed)
    assert b.last_zxid() == z - 1
    assert [r[0] for r in b.read_txns(0)] == list(range(1, z))
    b._conn.execute("PRAGMA max_page_count=1000000")
    b.append_and_sync(records(z, 20, b"y" * 300))
    b.close()
    assert [r[0] for r in read_back(tmp_path)] == list(range(1, z + 20))


def test_a_connection_broken_mid_commit_is_replaced(tmp_path, monkeypatch, warnings_log):
    """When even the rollback fails, the backend reconnects and stays usable."""
    b = opened(tmp_path)
    b.append_and_sync(records(1, 3))
    real = b._execute

    def break_at_commit(sql: str, params: Any = ()) -> Any:
        if sql == "COMMIT":
            assert b._conn is not None
            b._conn.close()
            raise sqlite3.OperationalError("disk I/O error")
        return real(sql, params)

    monkeypatch.setattr(b, "_execute", break_at_commit)
    with pytest.raises(SQLiteStorageError, match="disk I/O error"):
        b.append_and_sync(records(4, 3, b"lost"))
    monkeypatch.undo()
    assert any("reopening the database" in t for t in warnings_log.texts())
    assert b.last_zxid() == 3
    b.append_and_sync(records(4, 3, b"kept"))
    b.close()
    assert read_back(tmp_path) == records(1, 3) + records(4, 3, b"kept")


def test_snapshot_commit_failure_keeps_it_unlisted(tmp_path):
    b = opened(tmp_path)
    w = b.begin_snapshot(7)
    w.write(blob(CHUNK_SIZE + 5, 7))
    b.fail_next()
    with pytest.raises(OSError):
        w.commit()
    assert b.list_snapshots() == []
    w.abort()
    write_snapshot(b, 7, b"seven")
    b.close()
    b = opened(tmp_path)
    try:
        assert b.list_snapshots() == [7]
        assert snapshot_bytes(b, 7) == b"seven"
    finally:
        b.close()


def test_set_meta_failure_keeps_the_old_value(tmp_path):
    b = opened(tmp_path)
    b.set_meta("currentEpoch", "1")
    b.fail_next()
    with pytest.raises(OSError):
        b.set_meta("currentEpoch", "2")
    assert b.get_meta("currentEpoch") == "1"
    b.close()


# --------------------------------------------------------------------------- threads


def test_storage_snapshot_and_reactor_threads_share_the_backend(tmp_path):
    """Group commits, snapshot chunks and reads at once: no errors, nothing lost."""
    b = opened(tmp_path)
    errors: List[BaseException] = []
    done = threading.Event()

    def guarded(fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
        return run

    def storage() -> None:
        for i in range(200):
            b.append_and_sync(records(1 + 5 * i, 5))
        done.set()

    def snapshots() -> None:
        n = 0
        while not done.is_set() or n < 2:
            n += 1
            write_snapshot(b, n, blob(CHUNK_SIZE + 1000, n), piece=300_000)

    def reader() -> None:
        while not done.is_set():
            list(b.read_txns(0))
            b.list_snapshots()
            b.get_meta("x")
            b.sizes()

    threads = [threading.Thread(target=guarded(f)) for f in (storage, snapshots, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert [z for z, _ in b.read_txns(0)] == list(range(1, 1001))
    n = b.list_snapshots()[0]
    assert snapshot_bytes(b, n) == blob(CHUNK_SIZE + 1000, n)
    b.close()
    assert [z for z, _ in read_back(tmp_path)] == list(range(1, 1001))


# --------------------------------------------------------------------------- the plugin


def test_found_as_a_plugin_and_built_from_the_config(tmp_path):
    factories = registry.backend_factories()
    assert "sqlite" in factories
    assert verifyObject(IStorageBackendFactory, factories["sqlite"])
    assert "sqlite" in registry.available_backends()
    cfg = zkconfig.from_text("dataDir=%s\nstorage.backend=sqlite\nforceSync=no\n"
                             % (tmp_path / "d"))
    b = factories["sqlite"].create(cfg)
    assert isinstance(b, SQLiteBackend)
    assert b.fsync is False
    b2 = registry.make_backend(cfg)
    assert isinstance(b2, SQLiteBackend)
    b.open()
    b.append_and_sync(records(1, 2))
    b.close()
    assert (tmp_path / "d" / DB_NAME).is_file()
    assert read_back(tmp_path / "d") == records(1, 2)


# --------------------------------------------------------------------------- the operator's guide


def _doc_queries() -> List[str]:
    text = (REPO / "docs" / "sqlite.md").read_text(encoding="utf-8")
    return [q.strip() for q in re.findall(r"```sql\n(.*?)```", text, re.S)]


def test_every_query_in_docs_sqlite_md_runs(tmp_path):
    queries = _doc_queries()
    assert len(queries) >= 2
    b = opened(tmp_path)
    now = int(time.time() * 1000)
    recs = []
    for z in range(1, 60):
        type_ = [OpCode.createSession, OpCode.create, OpCode.setData, OpCode.delete][z % 4]
        payload = bytearray(txn_payload(z, type_=type_, session=SESSION + z % 3))
        payload[20:28] = (now - 1000 * z).to_bytes(8, "big")  # TxnHeader.time
        recs.append((z, bytes(payload)))
    b.append_and_sync(recs)
    write_snapshot(b, 30, b"snap")
    b.close()
    with raw(tmp_path) as c:
        for q in queries:
            rows = c.execute(q).fetchall()
            assert rows, "no rows from the documented query:\n%s" % q


def test_documented_schema_names_every_column(tmp_path):
    opened(tmp_path).close()
    text = (REPO / "docs" / "sqlite.md").read_text(encoding="utf-8")
    with raw(tmp_path) as c:
        tables = [r[0] for r in c.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            assert "`%s`" % table in text, "docs/sqlite.md does not describe %s" % table
            for col in c.execute("PRAGMA table_info(%s)" % table):
                assert "`%s`" % col[1] in text, "docs/sqlite.md misses %s.%s" % (table, col[1])


def test_module_docstring_mentions_the_file_name():
    assert DB_NAME in (sqlite_module.__doc__ or "")
