"""Operator tools for a server's stored data: ``log dump``, ``snapshot dump``,
``storage verify`` and ``storage convert``.

Every tool reads the data of any storage backend without changing it:

* the file log is read with :func:`zktwist.storage.filelog.scan_file` (its
  :meth:`~zktwist.storage.filelog.FileLogBackend.open` would cut a torn tail
  and remove unfinished snapshots);
* any other backend is opened on a private copy of its directories (so its
  own recovery runs, and whatever it would repair is repaired on the copy),
  unless the backend offers a read-only mode (``open_readonly()``).

Exit codes: 0 ok, 1 a problem was found (or an operation refused), 2 a usage
error.  Errors are one line on stderr, never a traceback (set
``ZKTWIST_DEBUG=1`` to get the traceback too).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from twisted.logger import ILogObserver
from zope.interface import implementer

from zktwist.config import ConfigError, ServerConfig
from zktwist.storage.errors import CorruptLogError, StorageError

Record = Tuple[int, bytes]

SQLITE_FILE = "zktwist.sqlite3"
MASK64 = (1 << 64) - 1
DATA_REPR_LIMIT = 60
BATCH = 1000
CONVERT_PREALLOC = 64 * 1024


class UsageError(Exception):
    """A bad command line: exit 2."""


class ToolError(Exception):
    """A problem with the data or an operation refused: exit 1."""


# -- formatting ------------------------------------------------------------------------------

def hexz(value: int) -> str:
    return "0x%x" % (value & MASK64)


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC (the number itself if out of range)."""
    try:
        t = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            milliseconds=ms)
    except (OverflowError, ValueError):
        return str(ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def fmt_data(data: Optional[bytes]) -> str:
    if data is None:
        return "None"
    if len(data) <= DATA_REPR_LIMIT:
        return repr(bytes(data))
    return "%r...(%d bytes)" % (bytes(data[:DATA_REPR_LIMIT]), len(data))


def fmt_path(path: Optional[str]) -> str:
    if path is None:
        return "None"
    if path and path.isprintable() and " " not in path:
        return path
    return repr(path)


PERM_LETTERS = (("c", 4), ("d", 8), ("r", 1), ("w", 2), ("a", 16))


def fmt_perms(perms: int) -> str:
    letters = "".join(c for c, bit in PERM_LETTERS if perms & bit)
    extra = perms & ~31
    if extra or not letters:
        letters += "(%d)" % perms if letters else str(perms)
    return letters


def fmt_acl(acl: Optional[Iterable[Tuple[int, str, str]]]) -> str:
    if acl is None:
        return "None"
    return "[" + ",".join("%s:%s(%s)" % (scheme, ident, fmt_perms(perms))
                          for perms, scheme, ident in acl) + "]"


def fmt_err(code: int) -> str:
    from zktwist.proto.consts import ERROR_NAMES

    return "%s(%d)" % (ERROR_NAMES.get(code, "?"), code)


def type_name(type_: int) -> str:
    from zktwist.proto.consts import NAMES

    return str(NAMES.get(type_, "type%d" % type_))


def fmt_body(type_: int, body: tuple) -> str:
    from zktwist.proto.consts import OpCode

    if type_ in (OpCode.create, OpCode.create2):
        path, data, acl, ephemeral, pcv = body
        return "path=%s data=%s acl=%s ephemeral=%s parent_cversion=%d" % (
            fmt_path(path), fmt_data(data), fmt_acl(acl), "yes" if ephemeral else "no", pcv)
    if type_ == OpCode.createContainer:
        path, data, acl, pcv = body
        return "path=%s data=%s acl=%s parent_cversion=%d" % (
            fmt_path(path), fmt_data(data), fmt_acl(acl), pcv)
    if type_ == OpCode.createTTL:
        path, data, acl, pcv, ttl = body
        return "path=%s data=%s acl=%s parent_cversion=%d ttl=%d" % (
            fmt_path(path), fmt_data(data), fmt_acl(acl), pcv, ttl)
    if type_ in (OpCode.delete, OpCode.deleteContainer):
        return "path=%s" % fmt_path(body[0])
    if type_ in (OpCode.setData, OpCode.reconfig):
        path, data, version = body
        return "path=%s data=%s version=%d" % (fmt_path(path), fmt_data(data), version)
    if type_ == OpCode.setACL:
        path, acl, version = body
        return "path=%s acl=%s version=%d" % (fmt_path(path), fmt_acl(acl), version)
    if type_ == OpCode.check:
        return "path=%s version=%d" % (fmt_path(body[0]), body[1])
    if type_ == OpCode.createSession:
        return "timeout=%d" % body[0]
    if type_ == OpCode.closeSession:
        if body[0] is None:
            return ""
        return "ephemerals=[%s]" % ",".join(fmt_path(p) for p in body[0])
    if type_ == OpCode.error:
        return "err=%s" % fmt_err(body[0])
    if type_ == OpCode.multi:
        subs = body[0]
        return "ops=%d [%s]" % (len(subs), " | ".join(
            ("%s %s" % (type_name(t), fmt_body(t, b))).rstrip() for t, b in subs))
    return repr(body)


def fmt_txn(zxid: int, payload: bytes) -> str:
    """One human-readable line for one logged txn."""
    from zktwist.core.txn import decode

    try:
        txn = decode(payload)
    except Exception as e:  # a txn this version cannot read: show it, do not stop
        return "%s undecodable (%s): %s" % (hexz(zxid), e, payload[:64].hex())
    line = "%s session=%s cxid=%d time=%s %s %s" % (
        hexz(zxid), hexz(txn.session_id), txn.cxid, iso_ms(txn.time), type_name(txn.type),
        fmt_body(txn.type, txn.body))
    if txn.zxid != zxid:
        line += " (header zxid %s)" % hexz(txn.zxid)
    return line.rstrip()


def parse_zxid(text: str) -> int:
    """A zxid as snapshot names write it: hex, with or without ``0x``."""
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    try:
        value = int(t, 16)
    except ValueError:
        raise UsageError("--zxid: expected a hex zxid such as 0x1a2, got %r" % text)
    if value < 0:
        raise UsageError("--zxid: expected a hex zxid such as 0x1a2, got %r" % text)
    return value


# -- finding the data --------------------------------------------------------------------------

def detect_backend(directory: str) -> str:
    """``sqlite`` if DIR holds zktwist.sqlite3, ``filelog`` if it has a version-2 directory."""
    has_sqlite = os.path.isfile(os.path.join(directory, SQLITE_FILE))
    has_v2 = os.path.isdir(os.path.join(directory, "version-2"))
    if has_sqlite and has_v2:
        raise UsageError("%s holds both %s and a version-2 directory; say which with --backend "
                         "sqlite or --backend filelog" % (directory, SQLITE_FILE))
    if has_sqlite:
        return "sqlite"
    if has_v2:
        return "filelog"
    raise UsageError("%s holds no zktwist data (no %s file, no version-2 directory); "
                     "name the backend with --backend or give --config" % (directory, SQLITE_FILE))


def check_backend_name(name: str) -> None:
    from zktwist.storage.registry import backend_factories

    factories = backend_factories()
    if name not in factories:
        raise UsageError("unknown storage backend %r (available: %s)" % (
            name, ", ".join(sorted(factories))))
    if name == "memory":
        raise UsageError("the memory backend keeps nothing on disk: there is nothing to read")


def config_for_dir(directory: str, backend: str) -> ServerConfig:
    cfg = ServerConfig()
    cfg.path = "<command line>"
    cfg.data_dir = directory
    cfg.data_log_dir = directory
    cfg.storage_backend = backend
    cfg.finish()
    return cfg


def _config_file(config_path: str, directory: Optional[str], both: str,
                 backend: Optional[str]) -> ServerConfig:
    """A data location named by a config file (``--config``/``--to-config``), not also by a
    directory; ``backend`` (``--backend``/``--to``) overrides its storage.backend."""
    from zktwist.config import load

    if directory:
        raise UsageError(both)
    try:
        cfg = load(config_path)
    except ConfigError as e:
        raise UsageError(str(e))
    if backend:
        cfg.storage_backend = backend
    return cfg


def resolve_source(directory: Optional[str], backend: Optional[str],
                   config_path: Optional[str]) -> ServerConfig:
    """The config of the data to read: from --config, or DIR plus --backend (or detection)."""
    if config_path:
        cfg = _config_file(config_path, directory, "give either DIR or --config, not both",
                           backend)
        dirs = [cfg.data_dir] + ([cfg.data_log_dir] if cfg.storage_backend == "filelog" else [])
        for d in dirs:
            if not os.path.isdir(d):
                raise UsageError("%s: %s is not a directory" % (config_path, d))
        check_backend_name(cfg.storage_backend)
        db = os.path.join(cfg.data_dir, SQLITE_FILE)
        if cfg.storage_backend == "sqlite" and not os.path.isfile(db):
            raise UsageError("%s: storage.backend is sqlite, but there is no %s" % (config_path, db))
        return cfg
    if not directory:
        raise UsageError("give a data directory (DIR) or --config FILE")
    directory = os.path.normpath(directory)
    if not os.path.isdir(directory):
        raise UsageError("%s is not a directory" % directory)
    if os.path.basename(directory) == "version-2":
        directory = os.path.dirname(directory) or "."
    name = backend or detect_backend(directory)
    check_backend_name(name)
    if name == "sqlite" and not os.path.isfile(os.path.join(directory, SQLITE_FILE)):
        raise UsageError("%s has no %s" % (directory, SQLITE_FILE))
    return config_for_dir(directory, name)


def describe(cfg: ServerConfig) -> str:
    if cfg.storage_backend == "filelog" and cfg.data_log_dir and os.path.abspath(cfg.data_log_dir) != os.path.abspath(cfg.data_dir):
        return "%s data in %s (log in %s)" % (cfg.storage_backend, cfg.data_dir, cfg.data_log_dir)
    return "%s data in %s" % (cfg.storage_backend, cfg.data_dir)


@implementer(ILogObserver)
class _CollectWarnings:
    """Twisted log events at warn level or above, while a backend opens."""

    def __init__(self) -> None:
        self.messages: List[str] = []

    def __enter__(self) -> "_CollectWarnings":
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        from twisted.logger import globalLogPublisher

        globalLogPublisher.removeObserver(self)

    def __call__(self, event: Dict[str, Any]) -> None:
        from twisted.logger import LogLevel, formatEvent

        level = event.get("log_level")
        if level is not None and level >= LogLevel.warn:
            self.messages.append(formatEvent(event))


# -- reading a backend without changing it ------------------------------------------------------

class Report:
    """What a check found: problems (exit 1), notes, and counts for the summary."""

    def __init__(self) -> None:
        self.problems: List[str] = []
        self.notes: List[str] = []
        self.lines: List[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def note(self, text: str) -> None:
        self.notes.append(text)


def _meta_file_keys(directory: str) -> List[str]:
    keys = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith((".", "log.", "snapshot.")) or name.endswith(".tmp"):
            continue
        if os.path.isfile(os.path.join(directory, name)):
            keys.append(name)
    return keys


class StorageReader:
    """Read access to one backend's records, snapshots and metadata."""

    name = ""
    location = ""

    def list_snapshots(self) -> List[int]:
        raise NotImplementedError

    def read_snapshot(self, zxid: int) -> Iterator[bytes]:
        raise NotImplementedError

    def read_txns(self, from_zxid: int = 0) -> Iterator[Record]:
        raise NotImplementedError

    def meta(self) -> Dict[str, str]:
        raise NotImplementedError

    def segment_starts(self) -> Optional[List[int]]:
        """The first zxid of each log segment, where the backend has segments."""
        return None

    def check_log(self, report: Report) -> Tuple[int, int]:
        """Check every record; returns (records, last zxid)."""
        raise NotImplementedError

    def explain(self, e: BaseException) -> str:
        """A storage error met while reading, as one line."""
        return describe_error(e)

    def close(self) -> None:
        pass


def check_sequence(records: Iterable[Record], where: Callable[[], str],
                   report: Report, state: Dict[str, int]) -> None:
    """zxids must grow, without gaps inside an epoch (the server hands them out one by one)."""
    last = state.get("last", 0)
    for zxid, payload in records:
        if zxid <= last:
            report.problem("%s: zxid %s out of order after %s" % (where(), hexz(zxid), hexz(last)))
        elif last and zxid >> 32 == last >> 32 and zxid != last + 1:
            report.problem("%s: txns %s..%s are missing (gap before %s)" % (
                where(), hexz(last + 1), hexz(zxid - 1), hexz(zxid)))
        try:
            from zktwist.core.txn import decode

            header_zxid = decode(payload).zxid
        except Exception as e:
            report.problem("%s: txn %s cannot be decoded: %s" % (where(), hexz(zxid), e))
        else:
            if header_zxid != zxid:
                report.problem("%s: txn %s carries zxid %s in its header" % (
                    where(), hexz(zxid), hexz(header_zxid)))
        last = max(last, zxid)
        state["count"] = state.get("count", 0) + 1
    state["last"] = last


class FileLogReader(StorageReader):
    """The file log, read with scan_file: nothing is cut, removed or created."""

    name = "filelog"

    def __init__(self, cfg: ServerConfig) -> None:
        from zktwist.storage.filelog import FileLogBackend

        self.backend = FileLogBackend(cfg.data_dir, cfg.data_log_dir)
        self.location = describe(cfg)
        if not os.path.isdir(self.backend.version_dir) and not os.path.isdir(self.backend.snap_dir):
            raise UsageError("%s has no version-2 directory" % cfg.data_log_dir)

    def files(self) -> List[Tuple[int, str]]:
        if not os.path.isdir(self.backend.version_dir):
            return []
        return self.backend._list_files()

    def list_snapshots(self) -> List[int]:
        if not os.path.isdir(self.backend.snap_dir):
            return []
        return list(self.backend.list_snapshots())

    def read_snapshot(self, zxid: int) -> Iterator[bytes]:
        return self.backend.read_snapshot(zxid)

    def read_txns(self, from_zxid: int = 0) -> Iterator[Record]:
        from zktwist.storage.filelog import scan_file

        files = self.files()
        for i, (_, path) in enumerate(files):
            scan = scan_file(path)
            if scan.torn_at is not None and i != len(files) - 1:
                # open() refuses this; so do the tools.
                raise CorruptLogError(path, scan.torn_at, scan.torn_reason)
            for zxid, payload in scan.records:
                if zxid >= from_zxid:
                    yield zxid, payload

    def meta(self) -> Dict[str, str]:
        out: Dict[str, str] = {}
        for key in _meta_file_keys(self.backend.snap_dir):
            value = self.backend.get_meta(key)
            if value is not None:
                out[key] = value
        return out

    def segment_starts(self) -> Optional[List[int]]:
        return [start for start, _ in self.files()]

    def check_log(self, report: Report) -> Tuple[int, int]:
        from zktwist.storage.filelog import scan_file

        files = self.files()
        state: Dict[str, int] = {}
        for i, (start, path) in enumerate(files):
            newest = i == len(files) - 1
            try:
                scan = scan_file(path)
            except CorruptLogError as e:
                report.problem("corrupt record in %s at offset %d: %s" % (e.path, e.offset, e.reason))
                continue
            except OSError as e:
                report.problem("cannot read %s: %s" % (path, e.strerror or e))
                continue
            if scan.torn_at is not None:
                if not newest:
                    # Only the newest file can end in a torn write: the server refuses this.
                    report.problem("damaged record in %s at offset %d (%s), and it is not the "
                                   "newest log file" % (path, scan.torn_at, scan.torn_reason))
                elif not scan.records:
                    report.note("%s holds no complete record (%s); the server removes it at "
                                "its next start" % (path, scan.torn_reason))
                else:
                    report.note("%s ends in a torn record at offset %d (%s), as after a crash; "
                                "the server cuts it off at its next start"
                                % (path, scan.torn_at, scan.torn_reason))
            elif newest and not scan.records:
                report.note("%s holds no record; the server removes it at its next start" % path)
            if scan.records and scan.records[0][0] < start:
                report.problem("%s: first txn %s is older than the file's name says"
                               % (path, hexz(scan.records[0][0])))
            check_sequence(scan.records, lambda: path, report, state)
        for name in sorted(os.listdir(self.backend.snap_dir)) if os.path.isdir(
                self.backend.snap_dir) else []:
            if name.startswith("snapshot.") and name.endswith(".tmp"):
                report.note("%s is an unfinished snapshot; the server removes it at its next start"
                            % os.path.join(self.backend.snap_dir, name))
        report.lines.append("log: %d files, %d records checked%s" % (
            len(files), state.get("count", 0),
            (", last zxid %s" % hexz(state["last"])) if state.get("last") else ""))
        return state.get("count", 0), state.get("last", 0)


# Backends whose reads (read_txns, list_snapshots, read_snapshot, get_meta) work
# without open() -- on a closed backend, changing nothing -- so the tools can
# read them in place.  Any other backend is opened on a private copy.
READS_WITHOUT_OPEN = frozenset(["sqlite"])


def describe_error(e: BaseException, tmp: Optional[str] = None, real: str = "") -> str:
    """A storage error as one line for the tools, the copy's path put back to the original's."""
    if isinstance(e, CorruptLogError):
        path = e.path
        if tmp and path.startswith(tmp):
            path = real + path[len(os.path.join(tmp, "data")):]
        table = getattr(e, "table", None)
        if table is not None:
            return "corrupt row in %s: table %s, row zxid %s: %s" % (
                path, table, hexz(getattr(e, "zxid", e.offset)), e.reason)
        if type(e) is not CorruptLogError:
            return "damaged database %s: %s" % (path, e.reason)
        return "corrupt record in %s at offset %d: %s" % (path, e.offset, e.reason)
    text = _one_line(e)
    if tmp:
        text = text.replace(os.path.join(tmp, "data"), real).replace(tmp, "<copy>")
    return text


class BackendReader(StorageReader):
    """Any other backend: read in place if it can be read without open(), else opened on a copy.

    ``check`` (for verify) always opens a copy, so the backend's own recovery
    checks run -- and whatever it would repair is repaired on the copy only.
    """

    def __init__(self, cfg: ServerConfig, report: Optional[Report] = None,
                 check: bool = False) -> None:
        from zktwist.storage.registry import make_backend

        self.name = cfg.storage_backend
        self.location = describe(cfg)
        self.data_dir = cfg.data_dir
        self._tmp: Optional[str] = None
        self.backend: Any = None
        if not check and self.name in READS_WITHOUT_OPEN:
            self.backend = make_backend(cfg)
            return
        with _CollectWarnings() as warnings:
            try:
                self._tmp = tempfile.mkdtemp(prefix="zktwist-%s-" % self.name)
                copy_cfg = _copied_config(cfg, self._tmp)
                backend = make_backend(copy_cfg)
                backend.open()
                self.backend = backend
            except StorageError as e:
                text = describe_error(e, self._tmp, cfg.data_dir)
                self.close()
                if report is None:
                    raise ToolError(text)
                report.problem(text)
        for message in warnings.messages:
            if report is not None:
                report.note("opening a copy: %s" % describe_error(
                    Exception(message), self._tmp, cfg.data_dir))

    def list_snapshots(self) -> List[int]:
        return list(self.backend.list_snapshots()) if self.backend else []

    def read_snapshot(self, zxid: int) -> Iterator[bytes]:
        return iter(self.backend.read_snapshot(zxid))

    def read_txns(self, from_zxid: int = 0) -> Iterator[Record]:
        if self.backend is None:
            return iter(())
        return iter(self.backend.read_txns(from_zxid))

    def meta(self) -> Dict[str, str]:
        if self.backend is None:
            return {}
        return backend_meta(self.backend, self.name)

    def explain(self, e: BaseException) -> str:
        return describe_error(e, self._tmp, self.data_dir)

    def check_log(self, report: Report) -> Tuple[int, int]:
        if self.backend is None:
            return 0, 0
        state: Dict[str, int] = {}
        try:
            check_sequence(self.backend.read_txns(0), lambda: self.location, report, state)
        except StorageError as e:
            report.problem(describe_error(e, self._tmp, self.data_dir))
        report.lines.append("log: %d records checked%s" % (
            state.get("count", 0),
            (", last zxid %s" % hexz(state["last"])) if state.get("last") else ""))
        return state.get("count", 0), state.get("last", 0)

    def close(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception:
                pass
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


# Apache ZooKeeper's own metadata files (quorum epochs), for backends that cannot list their keys.
WELL_KNOWN_META = ("acceptedEpoch", "currentEpoch")


def backend_meta(backend: Any, name: str) -> Dict[str, str]:
    """Every metadata key and value the server stored (not a backend's internal keys)."""
    keys_of = getattr(backend, "meta_keys", None)
    db = getattr(backend, "path", None)
    if keys_of is not None:
        keys = list(keys_of())
    elif name == "sqlite" and db:
        keys = _sqlite_meta_keys(db)
    else:
        keys = list(WELL_KNOWN_META)
    out: Dict[str, str] = {}
    for key in keys:
        value = backend.get_meta(key)
        if value is not None:
            out[key] = value
    return out


def _sqlite_connect_ro(path: str) -> Any:
    import pathlib
    import sqlite3

    return sqlite3.connect(pathlib.Path(path).absolute().as_uri() + "?mode=ro", uri=True,
                           timeout=10.0)


def _sqlite_meta_keys(path: str) -> List[str]:
    """The server's metadata keys in a zktwist SQLite database (not the backend's own)."""
    import sqlite3

    if not os.path.exists(path):
        return []
    try:
        conn = _sqlite_connect_ro(path)
        try:
            rows = conn.execute("SELECT key FROM meta ORDER BY key").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StorageError("SQLite database %s: cannot list its metadata: %s" % (path, e))
    return [str(r[0]) for r in rows if not str(r[0]).startswith("sqlite.")]


def _copied_config(cfg: ServerConfig, tmp: str) -> ServerConfig:
    """cfg with its data (and log) directory copied below ``tmp``.

    An SQLite database is copied with SQLite's online backup (a consistent
    copy even while a server writes to it); anything else file by file.
    """
    import copy

    new = copy.copy(cfg)
    new.data_dir = os.path.join(tmp, "data")
    db = os.path.join(cfg.data_dir, SQLITE_FILE)
    if cfg.storage_backend == "sqlite" and os.path.isfile(db):
        import sqlite3

        os.makedirs(new.data_dir)
        try:
            src = _sqlite_connect_ro(db)
            try:
                dst = sqlite3.connect(os.path.join(new.data_dir, SQLITE_FILE))
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
        except sqlite3.OperationalError as e:
            raise StorageError("cannot copy %s: %s" % (db, e))
        except sqlite3.DatabaseError:
            # Not even SQLite can read it: let the backend say what it makes of a plain copy.
            shutil.rmtree(new.data_dir)
            shutil.copytree(cfg.data_dir, new.data_dir, symlinks=True)
        new.data_log_dir = new.data_dir
        return new
    shutil.copytree(cfg.data_dir, new.data_dir, symlinks=True)
    if os.path.abspath(cfg.data_log_dir) == os.path.abspath(cfg.data_dir):
        new.data_log_dir = new.data_dir
    else:
        new.data_log_dir = os.path.join(tmp, "log")
        shutil.copytree(cfg.data_log_dir, new.data_log_dir, symlinks=True)
    return new


def open_reader(cfg: ServerConfig, report: Optional[Report] = None,
                check: bool = False) -> StorageReader:
    """A reader of ``cfg``'s data that changes nothing; ``check`` also runs the backend's own checks."""
    if cfg.storage_backend == "filelog":
        return FileLogReader(cfg)
    return BackendReader(cfg, report, check)


# -- log dump / snapshot dump -------------------------------------------------------------------

def cmd_log_dump(args: argparse.Namespace) -> int:
    cfg = resolve_source(args.dir, args.backend, args.config)
    reader = open_reader(cfg)
    try:
        out = sys.stdout
        for zxid, payload in reader.read_txns(0):
            out.write(fmt_txn(zxid, payload) + "\n")
    finally:
        reader.close()
    return 0


def load(reader: StorageReader, zxid: int) -> Any:
    from zktwist.storage.snapshot import load_snapshot

    return load_snapshot(reader.read_snapshot(zxid), zxid)


def fmt_node(path: str, node: Any) -> str:
    (czxid, mzxid, ctime, mtime, version, cversion, aversion, _owner, data_length,
     num_children, pzxid) = node.stat_tuple()
    return ("%s data=%s czxid=%s mzxid=%s ctime=%s mtime=%s version=%d cversion=%d aversion=%d "
            "ephemeralOwner=%s dataLength=%d numChildren=%d pzxid=%s acl=%s" % (
                fmt_path(path), fmt_data(node.data), hexz(czxid), hexz(mzxid), iso_ms(ctime),
                iso_ms(mtime), version, cversion, aversion, hexz(node.owner), data_length,
                num_children, hexz(pzxid), fmt_acl(node.acl)))


def cmd_snapshot_dump(args: argparse.Namespace) -> int:
    from zktwist.storage.snapshot import SnapshotError

    cfg = resolve_source(args.dir, args.backend, args.config)
    zxid = parse_zxid(args.zxid) if args.zxid is not None else None
    reader = open_reader(cfg)
    try:
        snaps = reader.list_snapshots()
        if not snaps:
            raise ToolError("%s has no snapshot" % reader.location)
        if zxid is None:
            zxid = snaps[0]
        elif zxid not in snaps:
            raise ToolError("%s has no snapshot %s (it has: %s)" % (
                reader.location, hexz(zxid), ", ".join(hexz(z) for z in snaps)))
        try:
            snap = load(reader, zxid)
        except SnapshotError as e:
            raise ToolError("snapshot %s: %s" % (hexz(zxid), e))
        nodes = snap.tree.nodes
        out = sys.stdout
        out.write("snapshot %s: %d znodes, %d sessions\n" % (
            hexz(zxid), len(nodes), len(snap.sessions)))
        for path in sorted(nodes):
            out.write(fmt_node(path, nodes[path]) + "\n")
        for sid, timeout in sorted(snap.sessions.items(), key=lambda kv: kv[0] & MASK64):
            out.write("session %s timeout=%d\n" % (hexz(sid), timeout))
    finally:
        reader.close()
    return 0


# -- verify -------------------------------------------------------------------------------------

def check_snapshots(reader: StorageReader, report: Report) -> List[int]:
    """Load every snapshot; returns the zxids of the good ones, newest first."""
    from zktwist.storage.snapshot import SnapshotError

    good = []
    snaps = reader.list_snapshots()
    for zxid in snaps:
        try:
            load(reader, zxid)
        except SnapshotError as e:
            report.problem("snapshot %s: %s" % (hexz(zxid), e))
            continue
        except (StorageError, OSError, KeyError) as e:
            report.problem("snapshot %s cannot be read: %s" % (hexz(zxid), reader.explain(e)))
            continue
        good.append(zxid)
    report.lines.append("snapshots: %d checked%s%s" % (
        len(snaps), (" (%s)" % ", ".join(hexz(z) for z in snaps)) if snaps else "",
        ", %d damaged" % (len(snaps) - len(good)) if len(good) != len(snaps) else ""))
    return good


def check_replay(reader: StorageReader, report: Report, last_logged: int,
                 good_snaps: List[int]) -> Optional[Any]:
    """Recover a fresh core from the newest good snapshot and the log after it."""
    from zktwist.core.database import CoreConfig, ZooKeeperCore
    from zktwist.server.snapshots import recover

    now = int(time.time() * 1000)
    core = ZooKeeperCore(CoreConfig(), now)
    try:
        snap_zxid, replayed = recover(core, reader, now)
    except (StorageError, ValueError, KeyError, IndexError, TypeError) as e:
        report.problem("replay as the server would start: %s" % reader.explain(e))
        return None
    if good_snaps and good_snaps[0] > last_logged and last_logged:
        report.problem("snapshot %s is newer than the last logged txn %s: the log lost txns"
                       % (hexz(good_snaps[0]), hexz(last_logged)))
    if not snap_zxid:
        first = next(iter(reader.read_txns(0)), None)
        if first is not None and first[0] & 0xFFFFFFFF != 1:
            report.problem("the log starts at %s and no snapshot covers the txns before it"
                           % hexz(first[0]))
    report.lines.append("replay: %s + %d txns -> last zxid %s, %d znodes, %d sessions" % (
        ("snapshot %s" % hexz(snap_zxid)) if snap_zxid else "no snapshot", replayed,
        hexz(core.last_zxid), len(core.tree.nodes), len(core.sessions.sessions)))
    return core


def verify(cfg: ServerConfig) -> Report:
    report = Report()
    report.lines.append(reader_title(cfg))
    reader = open_reader(cfg, report, check=True)
    try:
        if isinstance(reader, BackendReader) and reader.backend is None:
            return report
        _, last = reader.check_log(report)
        log_ok = not report.problems
        good = check_snapshots(reader, report)
        if log_ok:
            # Recovery skips a damaged snapshot for an older one: replay as the server would.
            check_replay(reader, report, last, good)
    finally:
        reader.close()
    return report


def reader_title(cfg: ServerConfig) -> str:
    return "verifying %s" % describe(cfg)


def print_report(report: Report) -> int:
    for line in report.lines:
        print(line)
    for note in report.notes:
        print("note: %s" % note)
    for problem in report.problems:
        print("PROBLEM: %s" % problem)
    if report.problems:
        print("%d problem%s found" % (len(report.problems), "" if len(report.problems) == 1 else "s"))
        return 1
    print("OK")
    return 0


def cmd_storage_verify(args: argparse.Namespace) -> int:
    cfg = resolve_source(args.dir, args.backend, args.config)
    return print_report(verify(cfg))


# -- convert ------------------------------------------------------------------------------------

def _digest(chunks: Iterable[bytes]) -> Tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for c in chunks:
        h.update(c)
        n += len(c)
    return n, h.hexdigest()


def resolve_destination(directory: Optional[str], backend: Optional[str],
                        config_path: Optional[str]) -> ServerConfig:
    if config_path:
        cfg = _config_file(config_path, directory,
                           "give either DST_DIR or --to-config, not both", backend)
    else:
        if not directory:
            raise UsageError("give a destination directory (DST_DIR) or --to-config FILE")
        if not backend:
            raise UsageError("name the destination backend with --to (or give --to-config)")
        directory = os.path.normpath(directory)
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise UsageError("%s is not a directory" % directory)
        cfg = config_for_dir(directory, backend)
    check_backend_name(cfg.storage_backend)
    return cfg


def _same_place(a: ServerConfig, b: ServerConfig) -> bool:
    dirs_a = {os.path.realpath(a.data_dir), os.path.realpath(a.data_log_dir)}
    dirs_b = {os.path.realpath(b.data_dir), os.path.realpath(b.data_log_dir)}
    return bool(dirs_a & dirs_b)


def _has_data(backend: Any) -> Optional[str]:
    first = next(iter(backend.read_txns(0)), None)
    if first is not None:
        return "txns from %s" % hexz(first[0])
    if backend.last_zxid():
        return "txns up to %s" % hexz(backend.last_zxid())
    snaps = backend.list_snapshots()
    if snaps:
        return "snapshots %s" % ", ".join(hexz(z) for z in snaps)
    return None


def _destination_data(cfg: ServerConfig) -> Optional[str]:
    """What data the destination already holds, found without opening (so changing) it."""
    if cfg.storage_backend == "filelog":
        found = []
        for d in sorted({cfg.data_dir, cfg.data_log_dir}):
            v2 = os.path.join(d, "version-2")
            names = os.listdir(v2) if os.path.isdir(v2) else []
            if any(n.startswith("log.") for n in names):
                found.append("log files in %s" % v2)
            if any(n.startswith("snapshot.") for n in names):
                found.append("snapshots in %s" % v2)
            keys = _meta_file_keys(v2)
            if keys:
                found.append("metadata %s in %s" % (", ".join(keys), v2))
        return "; ".join(found) or None
    if cfg.storage_backend in READS_WITHOUT_OPEN:
        reader = BackendReader(cfg)
        try:
            return _has_data(reader.backend) or (
                "metadata %s" % ", ".join(sorted(reader.meta())) if reader.meta() else None)
        finally:
            reader.close()
    return None


def _boundaries(reader: StorageReader, snaps: List[int]) -> List[int]:
    starts = reader.segment_starts()
    if starts is not None:
        return sorted(starts)
    return sorted(z + 1 for z in snaps)


def copy_all(reader: StorageReader, dst: Any) -> Tuple[int, int, int]:
    """Copy every txn, snapshot and metadata key; returns (txns, snapshots, keys)."""
    snaps = reader.list_snapshots()
    bounds = _boundaries(reader, snaps)
    b = 0
    count = 0
    last = 0
    batch: List[Record] = []

    def flush() -> None:
        if batch:
            dst.append_and_sync(list(batch))
            del batch[:]

    for zxid, payload in reader.read_txns(0):
        crossed = False
        while b < len(bounds) and bounds[b] <= zxid:
            if bounds[b] > last:
                crossed = True
            b += 1
        if crossed and count:
            flush()
            dst.roll()
        batch.append((zxid, payload))
        last = zxid
        count += 1
        if len(batch) >= BATCH:
            flush()
    flush()
    dst.roll()
    for zxid in sorted(snaps):
        writer = dst.begin_snapshot(zxid)
        try:
            for chunk in reader.read_snapshot(zxid):
                writer.write(chunk)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    meta = reader.meta()
    for key in sorted(meta):
        dst.set_meta(key, meta[key])
    return count, len(snaps), len(meta)


def compare(src: StorageReader, dst: StorageReader, report: Report) -> None:
    """Same txns (zxids and bytes), same snapshots (bytes), same metadata."""
    n = 0
    for a, b in itertools.zip_longest(src.read_txns(0), dst.read_txns(0)):
        if a is None or b is None:
            have = a or b
            assert have is not None
            report.problem("the destination has %s txn %s" % (
                "an extra" if a is None else "no", hexz(have[0])))
            break
        if a[0] != b[0] or a[1] != b[1]:
            report.problem("txn %s differs in the destination (there: %s)" % (hexz(a[0]), hexz(b[0])))
            break
        n += 1
    src_snaps = src.list_snapshots()
    dst_snaps = dst.list_snapshots()
    if src_snaps != dst_snaps:
        report.problem("the destination has snapshots %s, the source %s" % (
            ", ".join(map(hexz, dst_snaps)) or "none", ", ".join(map(hexz, src_snaps)) or "none"))
    else:
        for z in src_snaps:
            if _digest(src.read_snapshot(z)) != _digest(dst.read_snapshot(z)):
                report.problem("snapshot %s differs in the destination" % hexz(z))
    src_meta = src.meta()
    dst_meta = dst.meta()
    for key, value in src_meta.items():
        if dst_meta.get(key) != value:
            report.problem("metadata %s: %r in the source, %r in the destination" % (
                key, value, dst_meta.get(key)))
    report.lines.append("compared with the source: %d txns, %d snapshots, %d metadata keys "
                        "identical" % (
        n, len(src_snaps), len(src_meta)))


def cmd_storage_convert(args: argparse.Namespace) -> int:
    from zktwist.storage.registry import make_backend

    dirs = list(args.dirs)
    src_dir: Optional[str] = None
    dst_dir: Optional[str] = None
    want = (0 if args.config else 1) + (0 if args.to_config else 1)
    if len(dirs) != want:
        raise UsageError("expected %s, got %d director%s" % (
            " and ".join(n for n, given in (("SRC_DIR", not args.config),
                                            ("DST_DIR", not args.to_config)) if given) or
            "no directory (both --config and --to-config are given)",
            len(dirs), "y" if len(dirs) == 1 else "ies"))
    if not args.config:
        src_dir = dirs.pop(0)
    if not args.to_config:
        dst_dir = dirs.pop(0)
    src_cfg = resolve_source(src_dir, args.from_backend, args.config)
    dst_cfg = resolve_destination(dst_dir, args.to_backend, args.to_config)
    if _same_place(src_cfg, dst_cfg):
        raise UsageError("the source and the destination share a directory; convert into a "
                         "new directory and then move it into place")

    # 1. the source must be sound: never copy a damaged history.
    src_report = verify(src_cfg)
    if src_report.problems:
        for problem in src_report.problems:
            print("PROBLEM: %s" % problem)
        raise ToolError("the source has problems (see above); nothing was converted")
    for note in src_report.notes:
        print("note (source): %s" % note)

    # 2. an empty destination.  Its log files are never appended to again (a
    # server starts a new one), so they need no preallocation.
    dst_cfg.prealloc_size = CONVERT_PREALLOC
    what = _destination_data(dst_cfg)
    if what is not None:
        raise ToolError("the destination %s already has data (%s); refusing to convert "
                        "into it" % (describe(dst_cfg), what))
    for d in {dst_cfg.data_dir, dst_cfg.data_log_dir}:
        os.makedirs(d, exist_ok=True)
    dst = make_backend(dst_cfg)
    with _CollectWarnings():
        dst.open()
    try:
        what = _has_data(dst)
        if what is None:
            if dst_cfg.storage_backend == "filelog":
                found = _meta_file_keys(os.path.join(dst_cfg.data_dir, "version-2"))
            else:
                found = list(backend_meta(dst, dst_cfg.storage_backend))
            what = "metadata (%s)" % ", ".join(found) if found else None
        if what is not None:
            raise ToolError("the destination %s already has data (%s); refusing to convert "
                            "into it" % (describe(dst_cfg), what))
        reader = open_reader(src_cfg)
        try:
            txns, snaps, keys = copy_all(reader, dst)
        except BaseException:
            print("zktwist: the destination %s is incomplete: remove it before trying again"
                  % describe(dst_cfg), file=sys.stderr)
            raise
        finally:
            reader.close()
    finally:
        dst.close()

    # 3. read the destination back
    report = verify(dst_cfg)
    report.lines.insert(0, "converted %d txns, %d snapshots, %d metadata keys from %s to %s" % (
        txns, snaps, keys, describe(src_cfg), describe(dst_cfg)))
    if not report.problems:
        src_reader = open_reader(src_cfg)
        dst_reader = open_reader(dst_cfg)
        try:
            compare(src_reader, dst_reader, report)
        finally:
            src_reader.close()
            dst_reader.close()
    return print_report(report)


# -- argument parsing ---------------------------------------------------------------------------

def add_source_arguments(p: argparse.ArgumentParser, dir_help: str) -> None:
    p.add_argument("dir", nargs="?", metavar="DIR", help=dir_help)
    p.add_argument("--backend", metavar="NAME",
                   help="storage backend (default: detected: %s in DIR means sqlite, "
                        "a version-2 directory means filelog)" % SQLITE_FILE)
    p.add_argument("--config", metavar="FILE",
                   help="read dataDir, dataLogDir and storage.backend from this zoo.cfg "
                        "instead of DIR")


def add_parsers(sub: Any, log_sub: Any) -> None:
    """Add ``log dump``, ``snapshot dump``, ``storage verify`` and ``storage convert``."""
    dump = log_sub.add_parser("dump", help="print every logged txn, one per line")
    add_source_arguments(dump, "the data directory (dataDir; a version-2 directory also works)")
    dump.set_defaults(func=run(cmd_log_dump))

    snap = sub.add_parser("snapshot", help="snapshot tools")
    snap_sub = snap.add_subparsers(dest="snapshot_command", metavar="COMMAND")
    sdump = snap_sub.add_parser("dump", help="print the znodes and sessions of a snapshot")
    add_source_arguments(sdump, "the data directory (dataDir)")
    sdump.add_argument("--zxid", metavar="Z",
                       help="the snapshot to print, in hex as its name has it "
                            "(default: the newest)")
    sdump.set_defaults(func=run(cmd_snapshot_dump))

    st = sub.add_parser("storage", help="check or convert a server's stored data")
    st_sub = st.add_subparsers(dest="storage_command", metavar="COMMAND")
    ver = st_sub.add_parser(
        "verify", help="check every record, every snapshot and a full replay (read-only)")
    add_source_arguments(ver, "the data directory (dataDir)")
    ver.set_defaults(func=run(cmd_storage_verify))

    conv = st_sub.add_parser(
        "convert", help="copy every txn, snapshot and metadata key into another backend",
        description="zktwist storage convert --from filelog --to sqlite SRC_DIR DST_DIR: "
                    "copies the data of a stopped server into a new, empty destination, "
                    "keeping zxids and bytes, then reads the destination back and compares.")
    conv.add_argument("dirs", nargs="*", metavar="DIR",
                      help="SRC_DIR DST_DIR (SRC_DIR is left out with --config, DST_DIR with "
                           "--to-config)")
    conv.add_argument("--from", dest="from_backend", metavar="NAME",
                      help="the source backend (default: detected)")
    conv.add_argument("--to", dest="to_backend", metavar="NAME", help="the destination backend")
    conv.add_argument("--config", metavar="FILE", help="the source's zoo.cfg (instead of SRC_DIR)")
    conv.add_argument("--to-config", metavar="FILE",
                      help="the destination's zoo.cfg (instead of DST_DIR; --to overrides its "
                           "storage.backend)")
    conv.set_defaults(func=run(cmd_storage_convert))

    for p, name in ((snap, "snapshot"), (st, "storage")):
        p.set_defaults(func=_missing_command(p, name))


def _missing_command(parser: argparse.ArgumentParser, name: str) -> Callable[[argparse.Namespace], int]:
    def func(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2
    return func


def run(cmd: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a tool: usage errors exit 2, problems 1, both as one line on stderr."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return cmd(args)
        except UsageError as e:
            print("zktwist: error: %s" % e, file=sys.stderr)
            return 2
        except ToolError as e:
            print("zktwist: %s" % e, file=sys.stderr)
            return 1
        except BrokenPipeError:
            # `zktwist log dump DIR | head`: stop quietly.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except OSError:
                pass
            return 1
        except CorruptLogError as e:
            print("zktwist: %s" % describe_error(e), file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("zktwist: interrupted", file=sys.stderr)
            return 130
        except (StorageError, OSError) as e:
            if os.environ.get("ZKTWIST_DEBUG"):
                raise
            print("zktwist: error: %s" % _one_line(e), file=sys.stderr)
            return 1
        except Exception as e:
            if os.environ.get("ZKTWIST_DEBUG"):
                raise
            print("zktwist: error: %s: %s (set ZKTWIST_DEBUG=1 for a traceback)"
                  % (type(e).__name__, _one_line(e)), file=sys.stderr)
            return 1

    wrapped.__name__ = cmd.__name__
    return wrapped


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = e.filename if e.filename is not None else ""
        return "%s%s" % ("%s: " % where if where else "", e.strerror)
    return " ".join(str(e).split()) or type(e).__name__


__all__: Sequence[str] = ["add_parsers", "fmt_txn", "verify"]
