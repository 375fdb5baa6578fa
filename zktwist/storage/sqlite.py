"""The SQLite backend: one database per data dir, ``<dataDir>/zktwist.sqlite3``.

The database runs in WAL mode with ``synchronous=FULL`` (``NORMAL`` for txn
batches when ``forceSync=no``), so a COMMIT is the fsync and a torn write can
never leave half a transaction behind: SQLite's WAL keeps every commit whole
or absent.  What SQLite cannot see -- bit rot, a row edited or deleted by hand
-- the rows themselves catch: every txn row carries a CRC-32 over its zxid,
the zxid of the row before it and its bytes, so :meth:`SQLiteBackend.open`
finds a damaged row or a missing one and refuses to start, naming the table
and the zxid.

The schema (``docs/sqlite.md`` has every column and queries for operators):

* ``txns``: one row per txn, the exact bytes Apache ZooKeeper would log
  (:func:`zktwist.core.txn.encode`) plus columns decoded from its TxnHeader
  (session, cxid, time, type) and the path of single-path operations.
* ``snapshots`` + ``snapshot_chunks``: committed snapshots, each an opaque
  byte stream stored in chunks of :data:`CHUNK_SIZE`.  A snapshot being
  written has a ``snapshot_staging`` row; its commit publishes it in one
  transaction, and :meth:`~SQLiteBackend.open` throws away what a crash left
  in staging.
* ``meta``: the server's metadata (:meth:`~SQLiteBackend.set_meta`) and the
  backend's own keys under ``sqlite.`` (``sqlite.schema_version``,
  ``sqlite.base_zxid``).
* ``op_types`` and the view ``txn_log``: type names, for people.

Threading: one connection (``check_same_thread=False``) guarded by one lock;
no cursor outlives a locked section, so the storage thread's commits, the
snapshot thread's chunk writes and the reactor thread's reads interleave
safely.  ``append`` only buffers; ``sync`` writes the buffer in one
transaction.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import sqlite3
import struct
import threading
import time
import zlib
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from twisted.logger import Logger
from zope.interface import implementer

from zktwist.interfaces import ISnapshotWriter, IStorageBackend
from zktwist.proto.consts import OpCode
from zktwist.storage.util import check_ascending, fsync_dir
from zktwist.storage.errors import CorruptLogError, StorageError

log = Logger()

DB_NAME = "zktwist.sqlite3"
SCHEMA_VERSION = 1
CHUNK_SIZE = 1 << 20          # snapshot bytes per snapshot_chunks row
READ_BATCH = 1000             # txn rows per locked SELECT in read_txns
BUSY_TIMEOUT_MS = 10000       # an operator's shell holding a write lock
VACUUM_FREE_FRACTION = 0.5    # purge shrinks the file when more than this is free
TRIM_BATCH = 2000             # purged txn rows deleted per group commit (see purge)
INTERNAL_PREFIX = "sqlite."   # meta keys the backend keeps for itself
KEY_SCHEMA = INTERNAL_PREFIX + "schema_version"
KEY_BASE = INTERNAL_PREFIX + "base_zxid"
KEY_CREATED = INTERNAL_PREFIX + "created"

_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_HEADER = struct.Struct(">qiqqi")   # TxnHeader: session, cxid, zxid, time, type
_ZXIDS = struct.Struct(">qq")       # zxid, prev_zxid: covered by the row checksum
_PATH_LEN = struct.Struct(">i")

# Txn types whose record starts with the path (a jute ustring).
_PATH_TYPES = frozenset([
    OpCode.create, OpCode.create2, OpCode.createContainer, OpCode.createTTL,
    OpCode.delete, OpCode.deleteContainer, OpCode.setData, OpCode.setACL, OpCode.check,
])

SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE txns (
    zxid      INTEGER PRIMARY KEY,
    prev_zxid INTEGER NOT NULL,
    session   INTEGER,
    cxid      INTEGER,
    time      INTEGER,
    type      INTEGER,
    path      TEXT,
    payload   BLOB NOT NULL,
    checksum  INTEGER NOT NULL
);
CREATE TABLE snapshot_staging (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    zxid    INTEGER NOT NULL,
    started INTEGER NOT NULL
);
CREATE TABLE snapshots (
    zxid     INTEGER PRIMARY KEY,
    id       INTEGER NOT NULL UNIQUE,
    size     INTEGER NOT NULL,
    chunks   INTEGER NOT NULL,
    checksum INTEGER NOT NULL,
    created  INTEGER NOT NULL
);
CREATE TABLE snapshot_chunks (
    id       INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    data     BLOB NOT NULL,
    checksum INTEGER NOT NULL,
    PRIMARY KEY (id, seq)
);
CREATE TABLE op_types (
    type INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE VIEW txn_log AS
SELECT t.zxid                                                   AS zxid,
       printf('0x%x', t.zxid)                                   AS zxid_hex,
       strftime('%Y-%m-%d %H:%M:%f', t.time / 1000.0, 'unixepoch') AS utc,
       printf('0x%x', t.session)                                AS session_hex,
       t.session                                                AS session,
       t.cxid                                                   AS cxid,
       t.type                                                   AS type,
       coalesce(o.name, t.type)                                 AS op,
       t.path                                                   AS path,
       length(t.payload)                                        AS bytes
FROM txns t LEFT JOIN op_types o ON o.type = t.type;
"""


def op_type_names() -> List[Tuple[int, str]]:
    return sorted((v, k) for k, v in vars(OpCode).items()
                  if not k.startswith("_") and isinstance(v, int))


def row_checksum(zxid: int, prev_zxid: int, payload: bytes) -> int:
    """CRC-32 of the big-endian 64-bit zxid and prev_zxid followed by the txn bytes."""
    return zlib.crc32(payload, zlib.crc32(_ZXIDS.pack(zxid, prev_zxid)))


def decode_columns(payload: bytes) -> Tuple[Optional[int], Optional[int], Optional[int],
                                            Optional[int], Optional[str]]:
    """``(session, cxid, time, type, path)`` from a txn's TxnHeader and record.

    All None when the bytes are too short for a TxnHeader; path is None for
    types without a single path (multi, sessions, errors).  Paths are Java's
    modified UTF-8; what is not plain UTF-8 shows as U+FFFD.
    """
    if len(payload) < _HEADER.size:
        return None, None, None, None, None
    session, cxid, _zxid, t, type_ = _HEADER.unpack_from(payload, 0)
    path = None
    if type_ in _PATH_TYPES and len(payload) >= _HEADER.size + 4:
        n = _PATH_LEN.unpack_from(payload, _HEADER.size)[0]
        start = _HEADER.size + 4
        if 0 <= n <= len(payload) - start:
            path = payload[start:start + n].decode("utf-8", "replace")
    return session, cxid, t, type_, path


class CorruptRowError(CorruptLogError):
    """A row of the database is damaged or missing: refusing to start."""

    def __init__(self, path: str, table: str, zxid: int, reason: str) -> None:
        StorageError.__init__(
            self,
            "SQLite database %s is corrupt: table %s, row zxid 0x%x (%s); refusing to start "
            "with a shorter history. Restore the data directory from a backup or another "
            "server." % (path, table, zxid, reason))
        self.path = path
        self.offset = zxid
        self.reason = reason
        self.table = table
        self.zxid = zxid


class CorruptDatabaseError(CorruptLogError):
    """SQLite itself finds the file damaged (or it is not a database)."""

    def __init__(self, path: str, reason: str) -> None:
        StorageError.__init__(
            self,
            "SQLite database %s is damaged (%s); refusing to start with a shorter history. "
            "Restore the data directory from a backup or another server." % (path, reason))
        self.path = path
        self.offset = 0
        self.reason = reason


class SQLiteStorageError(StorageError):
    """An SQLite error, with the database and what was being done."""


@implementer(ISnapshotWriter)
class SQLiteSnapshotWriter:
    """Buffers to :data:`CHUNK_SIZE`, writes each chunk as it fills, publishes in :meth:`commit`.

    Chunks go to ``snapshot_chunks`` under a ``snapshot_staging`` id (without
    an fsync of their own: the publishing commit's fsync of the WAL covers
    them); only :meth:`commit`'s one transaction makes the snapshot visible.
    Nothing touches the database before the first full chunk, so
    :meth:`SQLiteBackend.begin_snapshot` is cheap enough for the reactor thread.
    """

    def __init__(self, backend: "SQLiteBackend", zxid: int) -> None:
        self.backend = backend
        self.zxid = zxid
        self._buf = bytearray()
        self._id: Optional[int] = None
        self._seq = 0
        self._size = 0
        self._crc = 0
        self._done = False

    def write(self, data: bytes) -> None:
        if self._done:
            raise StorageError("snapshot 0x%x is already committed or aborted" % self.zxid)
        self._buf += data
        self._size += len(data)
        self._crc = zlib.crc32(data, self._crc)
        while len(self._buf) >= CHUNK_SIZE:
            chunk = bytes(self._buf[:CHUNK_SIZE])
            del self._buf[:CHUNK_SIZE]
            self._flush(chunk)

    def _flush(self, chunk: bytes) -> None:
        self._id = self.backend._write_chunk(self._id, self.zxid, self._seq, chunk)
        self._seq += 1

    def commit(self) -> None:
        if self._done:
            raise StorageError("snapshot 0x%x is already committed or aborted" % self.zxid)
        final = bytes(self._buf)
        self.backend._publish_snapshot(self, final)
        self._buf = bytearray()
        self._done = True

    def abort(self) -> None:
        self._done = True
        self._buf = bytearray()
        if self._id is not None:
            staged, self._id = self._id, None
            self.backend._discard_staged(staged)


@implementer(IStorageBackend)
class SQLiteBackend:
    """Txns, snapshots and metadata in one SQLite database, ``<dataDir>/zktwist.sqlite3``."""

    name = "sqlite"

    def __init__(self, data_dir: str, log_dir: Optional[str] = None, fsync: bool = True) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir or data_dir
        self.path = os.path.join(data_dir, DB_NAME)
        self.fsync = fsync
        self._lock = threading.RLock()
        self._conn: Optional[sqlite3.Connection] = None
        self._sync_mode = ""
        self._pending: List[Tuple[int, bytes]] = []
        self._last_durable = 0
        self._base = 0
        self._trim_pending = False  # purged txn rows (zxid <= _base) are still in the table
        self._fail: Optional[BaseException] = None
        self.syncs = 0

    @classmethod
    def from_config(cls, config: Any) -> "SQLiteBackend":
        return cls(config.data_dir, config.data_log_dir, fsync=config.force_sync)

    # -- the connection -------------------------------------------------------------------

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Every statement goes through here (tests inject faults by replacing it)."""
        if self._fail is not None and sql == "COMMIT":
            error, self._fail = self._fail, None
            raise error
        assert self._conn is not None
        return self._conn.execute(sql, params)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        assert self._conn is not None
        return self._conn.executemany(sql, rows)

    def fail_next(self, error: Optional[BaseException] = None) -> None:
        """Make the next COMMIT raise ``error`` (ENOSPC by default), as a full disk would."""
        self._fail = error or OSError(errno.ENOSPC, "No space left on device")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000.0,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise SQLiteStorageError("cannot open SQLite database %s: %s" % (self.path, e)) from e
        self._sync_mode = ""
        return conn

    def _set_sync(self, mode: str) -> None:
        if mode != self._sync_mode:
            self._execute("PRAGMA synchronous=%s" % mode)
            self._sync_mode = mode

    def _conn_or_raise(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("SQLite database %s is not open" % self.path)
        return self._conn

    def _wrap(self, e: BaseException, what: str) -> BaseException:
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(e, sqlite3.DatabaseError) and code is not None and (code & 0xFF) in (
                _SQLITE_CORRUPT, _SQLITE_NOTADB):
            return CorruptDatabaseError(self.path, "%s, while %s" % (e, what))
        if isinstance(e, sqlite3.Error):
            return SQLiteStorageError("SQLite database %s: %s (while %s)" % (self.path, e, what))
        return e

    @contextlib.contextmanager
    def _transaction(self, what: str, sync: str = "FULL") -> Iterator[None]:
        """One write transaction; after an exception nothing of it stays and the connection works.

        ``sync`` is the synchronous level for this commit: FULL fsyncs the
        WAL (and so every frame written before it), NORMAL does not.
        """
        with self._lock:
            self._conn_or_raise()
            committing = False
            try:
                self._set_sync(sync)
                self._execute("BEGIN IMMEDIATE")
                yield
                committing = True
                self._execute("COMMIT")
            except BaseException as e:
                self._abandon(what, committing)
                wrapped = self._wrap(e, what)
                if wrapped is e:
                    raise
                raise wrapped from e

    def _abandon(self, what: str, committing: bool) -> None:
        """Roll back a failed transaction; if even that fails, start a new connection."""
        conn = self._conn
        if conn is None:
            return
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if committing:
                # A COMMIT that failed (say, its fsync) may have left whole frames
                # in the WAL past the last good commit; a restart's recovery could
                # bring them back.  A TRUNCATE checkpoint empties the WAL file.
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.warn("Rolling back a failed write to {path} ({what}) failed: {error}; "
                     "reopening the database", path=self.path, what=what, error=e)
            try:
                conn.close()
            except sqlite3.Error:
                pass
            self._conn = None
            try:
                self._conn = self._connect()
                self._configure(new=False)
            except BaseException as e2:
                log.error("Reopening {path} failed: {error}", path=self.path, error=e2)
                self._conn = None

    def _configure(self, new: bool) -> None:
        if new:
            # Only possible before the first table exists: lets purge give pages back.
            self._execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = self._execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError("SQLite database %s: cannot use WAL mode (journal_mode is %s); "
                               "is the data dir on a network file system?" % (self.path, mode))
        self._execute("PRAGMA busy_timeout=%d" % BUSY_TIMEOUT_MS)
        self._set_sync("FULL")

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[Optional[sqlite3.Connection]]:
        """A connection to read with, or None when there is no database yet.

        Open: the backend's own connection, under the lock.  Closed (a tool
        reading a data dir, a read after close, as the file log allows): a
        short-lived connection that never creates the file.
        """
        with self._lock:
            if self._conn is not None:
                try:
                    yield self._conn
                except sqlite3.Error as e:
                    raise self._wrap(e, what) from e
                return
        if not os.path.exists(self.path):
            yield None
            return
        try:
            conn = sqlite3.connect(pathlib.Path(self.path).absolute().as_uri() + "?mode=rw",
                                   uri=True, timeout=BUSY_TIMEOUT_MS / 1000.0,
                                   isolation_level=None)
        except sqlite3.Error as e:
            raise self._wrap(e, what) from e
        try:
            yield conn
        except sqlite3.Error as e:
            raise self._wrap(e, what) from e
        finally:
            conn.close()

    @property
    def _log_sync(self) -> str:
        return "FULL" if self.fsync else "NORMAL"

    # -- recovery ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create or check the database; a damaged or missing row raises CorruptRowError."""
        os.makedirs(self.data_dir, exist_ok=True)
        if os.path.abspath(self.log_dir) != os.path.abspath(self.data_dir):
            log.warn("storage.backend=sqlite keeps the log, snapshots and metadata in {db}; "
                     "dataLogDir {log_dir} is not used", db=self.path, log_dir=self.log_dir)
        existed = os.path.exists(self.path)
        with self._lock:
            self._conn = self._connect()
            try:
                new = self._execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
                self._configure(new)
                if new:
                    self._create_schema()
                else:
                    self._check_schema()
                self._clean_staging()
                self._base = int(self._get_meta(KEY_BASE) or 0)
                self._last_durable = self._verify_txns()
                self._verify_snapshots()
            except sqlite3.Error as e:
                self.close()
                raise self._wrap(e, "opening it") from e
            except BaseException:
                self.close()
                raise
            self._pending = []
        if not existed:
            fsync_dir(self.data_dir)

    def _create_schema(self) -> None:
        with self._transaction("creating the schema"):
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._execute(statement)
            self._executemany("INSERT INTO op_types(type, name) VALUES (?, ?)", op_type_names())
            self._executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
                (KEY_SCHEMA, str(SCHEMA_VERSION)), (KEY_BASE, "0"),
                (KEY_CREATED, str(int(time.time() * 1000)))])
        log.info("Created SQLite database {path} (schema version {v})", path=self.path,
                 v=SCHEMA_VERSION)

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._execute(
            "SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
        if "meta" not in tables:
            raise StorageError("%s is an SQLite database but not zktwist's (no meta table)"
                               % self.path)
        version = self._get_meta(KEY_SCHEMA)
        if version is None or not version.isdigit():
            raise CorruptDatabaseError(self.path, "meta %s is %r" % (KEY_SCHEMA, version))
        if int(version) > SCHEMA_VERSION:
            raise StorageError("SQLite database %s has schema version %s; this zktwist knows "
                               "only up to %d: upgrade zktwist" % (self.path, version,
                                                                    SCHEMA_VERSION))
        missing = {"txns", "snapshots", "snapshot_chunks", "snapshot_staging",
                   "op_types"} - tables
        if missing:
            raise CorruptDatabaseError(self.path, "missing tables: %s" % ", ".join(sorted(missing)))
        known = dict(self._execute("SELECT type, name FROM op_types").fetchall())
        if known != dict(op_type_names()):
            with self._transaction("updating op_types"):
                self._executemany("INSERT OR REPLACE INTO op_types(type, name) VALUES (?, ?)",
                                  op_type_names())

    def _clean_staging(self) -> None:
        """Throw away snapshots a crash left half written, and chunks nothing refers to."""
        staged = self._execute("SELECT id, zxid FROM snapshot_staging").fetchall()
        orphans = self._execute(
            "SELECT DISTINCT id FROM snapshot_chunks WHERE id NOT IN (SELECT id FROM snapshots) "
            "AND id NOT IN (SELECT id FROM snapshot_staging)").fetchall()
        if not staged and not orphans:
            return
        for sid, zxid in staged:
            log.warn("Removing unfinished snapshot 0x{zxid:x} from {path} (staging id {id})",
                     zxid=zxid, path=self.path, id=sid)
        for (sid,) in orphans:
            log.warn("Removing snapshot chunks no snapshot refers to from {path} (id {id})",
                     path=self.path, id=sid)
        with self._transaction("removing unfinished snapshots"):
            self._execute("DELETE FROM snapshot_chunks WHERE id NOT IN (SELECT id FROM snapshots)")
            self._execute("DELETE FROM snapshot_staging")

    def _verify_txns(self) -> int:
        """Check every txn row after the base: checksum, chain, decoded columns.

        Returns the last zxid.  Rows at or below the base are purged ones that
        :meth:`sync` had not yet deleted; they are not part of the log.
        """
        prev = self._base
        after = self._base
        first = True
        self._trim_pending = self._execute(
            "SELECT 1 FROM txns WHERE zxid <= ? LIMIT 1", (self._base,)).fetchone() is not None
        while True:
            rows = self._execute(
                "SELECT zxid, prev_zxid, session, cxid, time, type, path, payload, checksum "
                "FROM txns WHERE zxid > ? ORDER BY zxid LIMIT ?",
                (after, READ_BATCH)).fetchall()
            if not rows:
                return prev
            for zxid, prev_zxid, session, cxid, t, type_, path, payload, checksum in rows:
                self._check_row(zxid, prev_zxid, payload, checksum)
                if prev_zxid != prev:
                    if first:
                        reason = ("the first row follows 0x%x, but the log starts after 0x%x "
                                  "(%s): rows are missing" % (prev_zxid, prev, KEY_BASE))
                    else:
                        reason = ("it follows 0x%x, but the row before it is 0x%x: rows are "
                                  "missing" % (prev_zxid, prev))
                    raise CorruptRowError(self.path, "txns", zxid, reason)
                if (session, cxid, t, type_, path) != decode_columns(payload):
                    raise CorruptRowError(self.path, "txns", zxid,
                                          "the columns disagree with the payload's TxnHeader")
                prev = zxid
                first = False
            after = rows[-1][0]

    def _check_row(self, zxid: Any, prev_zxid: Any, payload: Any, checksum: Any) -> None:
        if not isinstance(zxid, int) or not isinstance(prev_zxid, int):
            raise CorruptRowError(self.path, "txns", zxid if isinstance(zxid, int) else -1,
                                  "zxid or prev_zxid is not an integer")
        if not isinstance(payload, bytes):
            raise CorruptRowError(self.path, "txns", zxid, "payload is not a BLOB")
        if checksum != row_checksum(zxid, prev_zxid, payload):
            raise CorruptRowError(self.path, "txns", zxid, "checksum mismatch")

    def _verify_snapshots(self) -> None:
        """Every committed snapshot has all its chunks (their bytes are checked when read)."""
        rows = self._execute(
            "SELECT s.zxid, s.size, s.chunks, count(c.seq), coalesce(sum(length(c.data)), 0), "
            "coalesce(max(c.seq), -1) FROM snapshots s LEFT JOIN snapshot_chunks c ON c.id = s.id "
            "GROUP BY s.zxid").fetchall()
        for zxid, size, chunks, count, total, top in rows:
            if count != chunks or total != size or top != chunks - 1:
                raise CorruptRowError(
                    self.path, "snapshots", zxid,
                    "%d of %d chunks, %d of %d bytes" % (count, chunks, total, size))

    # -- appending (storage thread) ---------------------------------------------------------

    def append(self, records: Sequence[Tuple[int, bytes]]) -> None:
        with self._lock:
            self._conn_or_raise()
            check_ascending(self.last_zxid(), records)
            self._pending.extend((z, bytes(p)) for z, p in records)

    def sync(self) -> None:
        """Write every appended record in one transaction; its COMMIT is the one fsync."""
        with self._lock:
            if not self._pending:
                return
            pending = self._pending
            rows = []
            prev = self._last_durable
            for zxid, payload in pending:
                session, cxid, t, type_, path = decode_columns(payload)
                rows.append((zxid, prev, session, cxid, t, type_, path, payload,
                             row_checksum(zxid, prev, payload)))
                prev = zxid
            trimmed = -1
            with self._transaction("appending %d txns 0x%x..0x%x"
                                   % (len(rows), pending[0][0], pending[-1][0]), self._log_sync):
                self._executemany(
                    "INSERT INTO txns(zxid, prev_zxid, session, cxid, time, type, path, payload, "
                    "checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                if self._trim_pending:
                    trimmed = self._execute(
                        "DELETE FROM txns WHERE zxid IN (SELECT zxid FROM txns WHERE zxid <= ? "
                        "ORDER BY zxid LIMIT ?)", (self._base, TRIM_BATCH)).rowcount
            if 0 <= trimmed < TRIM_BATCH:
                self._trim_pending = False
            self._last_durable = prev
            self._pending = []
            self.syncs += 1

    def append_and_sync(self, records: Sequence[Tuple[int, bytes]]) -> None:
        """One group commit: one transaction, one fsync; on failure nothing of ``records`` stays."""
        with self._lock:
            before = len(self._pending)
            self.append(records)
            try:
                self.sync()
            except BaseException:
                del self._pending[before:]
                raise

    def last_zxid(self) -> int:
        with self._lock:
            if self._pending:
                return self._pending[-1][0]
            return self._last_durable

    def read_txns(self, from_zxid: int = 0) -> Iterator[Tuple[int, bytes]]:
        """Logged txns from ``from_zxid`` on, checksums checked, then any not yet synced.

        Rows at or below the base (``sqlite.base_zxid``) are purged: never read.
        """
        after = from_zxid - 1
        first = True
        while True:
            with self._reading("reading txns") as conn:
                if conn is None:
                    return
                if first:
                    row = conn.execute("SELECT value FROM meta WHERE key = ?",
                                       (KEY_BASE,)).fetchone()
                    after = max(after, int(row[0]) if row and str(row[0]).isdigit() else 0)
                    first = False
                rows = conn.execute(
                    "SELECT zxid, prev_zxid, payload, checksum FROM txns WHERE zxid > ? "
                    "ORDER BY zxid LIMIT ?", (after, READ_BATCH)).fetchall()
                pending = ([r for r in self._pending if r[0] > after]
                           if len(rows) < READ_BATCH and conn is self._conn else [])
            for zxid, prev_zxid, payload, checksum in rows:
                self._check_row(zxid, prev_zxid, payload, checksum)
                yield zxid, payload
            if len(rows) < READ_BATCH:
                for record in pending:
                    yield record
                return
            after = rows[-1][0]

    def truncate(self, zxid: int) -> None:
        """Durably drop every txn after ``zxid`` and every snapshot after it."""
        with self._lock:
            self._conn_or_raise()
            base = min(self._base, zxid)
            with self._transaction("truncating to 0x%x" % zxid):
                self._execute("DELETE FROM txns WHERE zxid > ?", (zxid,))
                self._execute("DELETE FROM snapshot_chunks WHERE id IN "
                              "(SELECT id FROM snapshots WHERE zxid > ?)", (zxid,))
                self._execute("DELETE FROM snapshots WHERE zxid > ?", (zxid,))
                if base != self._base:
                    self._put_meta(KEY_BASE, str(base))
                last = self._execute("SELECT max(zxid) FROM txns").fetchone()[0]
            self._base = base
            self._last_durable = base if last is None or last < base else last
            self._pending = [r for r in self._pending if r[0] <= zxid]

    def roll(self) -> None:
        """Nothing to do: the log has no segments."""

    # -- snapshots --------------------------------------------------------------------------

    def begin_snapshot(self, zxid: int) -> SQLiteSnapshotWriter:
        self._conn_or_raise()
        return SQLiteSnapshotWriter(self, zxid)

    def _write_chunk(self, staged: Optional[int], zxid: int, seq: int, data: bytes) -> int:
        # No fsync: the publishing commit (FULL) syncs the WAL, and with it these frames.
        with self._transaction("writing snapshot 0x%x" % zxid, "NORMAL"):
            if staged is None:
                cur = self._execute("INSERT INTO snapshot_staging(zxid, started) VALUES (?, ?)",
                                    (zxid, int(time.time() * 1000)))
                staged = cur.lastrowid
                assert staged is not None
            self._execute("INSERT INTO snapshot_chunks(id, seq, data, checksum) "
                          "VALUES (?, ?, ?, ?)",
                          (staged, seq, data, zlib.crc32(data)))
        return staged

    def _publish_snapshot(self, writer: SQLiteSnapshotWriter, final: bytes) -> None:
        zxid = writer.zxid
        with self._transaction("committing snapshot 0x%x" % zxid):
            staged = writer._id
            if staged is None:
                cur = self._execute("INSERT INTO snapshot_staging(zxid, started) VALUES (?, ?)",
                                    (zxid, int(time.time() * 1000)))
                staged = cur.lastrowid
            seq = writer._seq
            if final or seq == 0:
                self._execute("INSERT INTO snapshot_chunks(id, seq, data, checksum) "
                              "VALUES (?, ?, ?, ?)", (staged, seq, final, zlib.crc32(final)))
                seq += 1
            # A snapshot of the same zxid taken again replaces the old one.
            self._execute("DELETE FROM snapshot_chunks WHERE id IN "
                          "(SELECT id FROM snapshots WHERE zxid = ?)", (zxid,))
            self._execute("DELETE FROM snapshots WHERE zxid = ?", (zxid,))
            self._execute("INSERT INTO snapshots(zxid, id, size, chunks, checksum, created) "
                          "VALUES (?, ?, ?, ?, ?, ?)",
                          (zxid, staged, writer._size, seq, writer._crc, int(time.time() * 1000)))
            self._execute("DELETE FROM snapshot_staging WHERE id = ?", (staged,))
        writer._id = None

    def _discard_staged(self, staged: int) -> None:
        with self._transaction("aborting a snapshot", "NORMAL"):
            self._execute("DELETE FROM snapshot_chunks WHERE id = ?", (staged,))
            self._execute("DELETE FROM snapshot_staging WHERE id = ?", (staged,))

    def list_snapshots(self) -> List[int]:
        with self._reading("listing snapshots") as conn:
            if conn is None:
                return []
            return [r[0] for r in conn.execute(
                "SELECT zxid FROM snapshots ORDER BY zxid DESC").fetchall()]

    def read_snapshot(self, zxid: int) -> Iterator[bytes]:
        """Yield the chunks of snapshot ``zxid``, each checked against its checksum."""
        with self._reading("reading snapshot 0x%x" % zxid) as conn:
            row = None if conn is None else conn.execute(
                "SELECT id, chunks, size, checksum FROM snapshots WHERE zxid = ?",
                (zxid,)).fetchone()
        if row is None:
            raise KeyError("no snapshot 0x%x in %s" % (zxid, self.path))
        sid, chunks, size, whole = row
        total = 0
        crc = 0
        for seq in range(chunks):
            with self._reading("reading snapshot 0x%x" % zxid) as conn:
                chunk = None if conn is None else conn.execute(
                    "SELECT data, checksum FROM snapshot_chunks WHERE id = ? AND seq = ?",
                    (sid, seq)).fetchone()
            if chunk is None:
                raise CorruptRowError(self.path, "snapshot_chunks", zxid,
                                      "chunk %d of %d is missing" % (seq, chunks))
            data, checksum = chunk
            if not isinstance(data, bytes) or zlib.crc32(data) != checksum:
                raise CorruptRowError(self.path, "snapshot_chunks", zxid,
                                      "checksum mismatch in chunk %d" % seq)
            total += len(data)
            crc = zlib.crc32(data, crc)
            if data:
                yield data
        if total != size or crc != whole:
            raise CorruptRowError(self.path, "snapshots", zxid,
                                  "the chunks hold %d bytes, checksum %d; the snapshot row says "
                                  "%d bytes, checksum %d" % (total, crc, size, whole))

    def purge(self, retain: int) -> List[str]:
        """Keep the ``retain`` newest snapshots and every txn after the oldest of them.

        The purged txns leave the log at once: the base (``sqlite.base_zxid``)
        moves past them, and nothing reads a row at or below it.  Their rows
        are deleted :data:`TRIM_BATCH` at a time by the group commits that
        follow (:meth:`sync`), not here: deleting a snapshot interval's rows
        in one transaction held every commit up for tens of ms.  Then the
        freed pages go back to the file system (incremental vacuum, then a
        TRUNCATE checkpoint of the WAL) when most of the file is free.
        """
        with self._lock:
            self._conn_or_raise()
            snaps = self.list_snapshots()
            if retain < 1 or len(snaps) <= retain:
                return []
            oldest = snaps[retain - 1]
            dropped = snaps[retain:]
            removed = ["snapshot 0x%x" % z for z in dropped]
            with self._transaction("purging up to snapshot 0x%x" % oldest):
                count, newest = self._execute(
                    "SELECT count(*), max(zxid) FROM txns WHERE zxid > ? AND zxid <= ?",
                    (self._base, oldest)).fetchone()
                self._execute("DELETE FROM snapshot_chunks WHERE id IN "
                              "(SELECT id FROM snapshots WHERE zxid < ?)", (oldest,))
                self._execute("DELETE FROM snapshots WHERE zxid < ?", (oldest,))
                base = self._base
                if count:
                    base = max(base, newest)
                    self._put_meta(KEY_BASE, str(base))
            if count:
                removed.append("%d txns up to 0x%x" % (count, newest))
                self._trim_pending = True
            self._base = base
            if self._last_durable < base:
                self._last_durable = base
            self._reclaim()
            return removed

    def _reclaim(self) -> None:
        """After a purge: empty the WAL, and shrink the file when most of it is free.

        Freed pages are reused by the next snapshot and txns, so in a steady
        state the file stays near its high-water mark without help.  Giving
        pages back means moving live pages off the end of the file (an
        incremental vacuum rewrites about as much as is live after the first
        free page), so it is done only when more than
        :data:`VACUUM_FREE_FRACTION` of the file is free: when the data shrank.
        """
        try:
            self._set_sync("FULL")
            free = self._execute("PRAGMA freelist_count").fetchone()[0]
            pages = self._execute("PRAGMA page_count").fetchone()[0]
            if free and free > pages * VACUUM_FREE_FRACTION:
                # executescript steps the pragma to the end; execute() frees one page per call.
                self._conn_or_raise().executescript("PRAGMA incremental_vacuum;")
            self._execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as e:
            log.warn("Could not give freed space in {path} back: {error}", path=self.path, error=e)

    # -- metadata ---------------------------------------------------------------------------

    def _get_meta(self, key: str) -> Optional[str]:
        row = self._execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _put_meta(self, key: str, value: str) -> None:
        self._execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> Optional[str]:
        with self._reading("reading meta %s" % key) as conn:
            if conn is None:
                return None
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` in one fsynced transaction (whatever forceSync says)."""
        if not key or key.startswith(INTERNAL_PREFIX):
            raise ValueError("bad metadata key %r (keys starting %r are the backend's own)"
                             % (key, INTERNAL_PREFIX))
        with self._transaction("setting meta %s" % key):
            self._put_meta(key, str(value))

    def sizes(self) -> Dict[str, int]:
        """The database file with its ``-wal`` and ``-shm``: the log and the snapshots both."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(self.path + suffix).st_size
            except OSError:
                pass
        return {"datadir_size": total, "logdir_size": total}

    def close(self) -> None:
        """Close the connection; appended but unsynced records are lost."""
        with self._lock:
            self._pending = []
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error as e:
                    log.warn("Closing {path}: {error}", path=self.path, error=e)
