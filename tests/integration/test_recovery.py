"""Recovery from snapshots plus logs when the newest snapshot is gone or damaged, autopurge, log gaps.

Each test runs a real zktwist process with a small ``snapCount`` until it has
written several snapshots, records every acknowledged write (data and the
Stat from the reply) and the whole subtree as a client reads it, stops the
server (SIGTERM), damages its data directory and starts a new process on it:

(a) the newest snapshot deleted: the server loads the older one and replays
    the logs after it -- every acknowledged write is there with its Stat;
(b) the newest snapshot corrupted (a byte flipped in its middle): the same,
    and the log says the damaged snapshot was skipped;
(c) after many snapshots the data directory holds at most
    ``autopurge.snapRetainCount`` (3 by default) snapshots and only the logs
    they need: zktwist purges by default;
(d) a gap in the log after the snapshot the server must start from (the
    newer snapshots deleted too: zktwist, like Apache ZooKeeper, snapshots at
    start-up, so the newest snapshot only needs the last life's log): the
    server refuses to start, exits non-zero, and its last log lines name the
    problem in one clear line (no traceback).

(a)-(c) run for every storage backend, (d) for the file log (a whole
``log.<zxid>`` file gone) and for SQLite (a run of ``txns`` rows gone).  The file log keeps snapshots as
``<dataDir>/version-2/snapshot.<zxid hex>`` files.  The SQLite backend keeps
them in ``<dataDir>/zktwist.sqlite3`` (zktwist/storage/sqlite.py):
``snapshots(zxid, id, size, chunks, checksum, created)`` names each committed
snapshot and ``snapshot_chunks(id, seq, data, checksum)`` holds its bytes;
the backend has no public call to delete or damage one snapshot, so these
tests edit those two tables with the ``sqlite3`` module while the server is
down.  Snapshot zxids come from the backend API
(:func:`zktwist.storage.registry.make_backend` + ``list_snapshots``).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from kazoo.client import KazooClient

from tests.integration.conftest import TARGET, wait_until
from tests.integration.test_durability import (
    backend_config,
    new_client,
    require_backend,
    require_module,
    stop_client,
)
from tests.support.processes import PROJECT_ROOT, ZKTwistProcess

pytestmark = pytest.mark.skipif(
    TARGET == "apache", reason="checks zktwist's storage backends, log lines and default autopurge")

BACKENDS = ("filelog", "sqlite")

#: snapCount for these tests: a snapshot every 100-199 txns.
SNAP_COUNT = 200

SNAPSHOT_WRITTEN = re.compile(r"Snapshot 0x([0-9a-f]+) written")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    require_backend(request.param)
    # Recovery from snapshots needs the snapshot format module.
    require_module("snapshot", "snapshots: zktwist/server/snapshots.py writes none without it")
    return request.param


# --------------------------------------------------------------------------- the server


class Server:
    """One data directory, served by successive zktwist processes on one port."""

    def __init__(self, workdir: Path, backend: str, **extra: str) -> None:
        self.workdir = workdir
        self.backend = backend
        self.config = backend_config(backend, SNAP_COUNT, **extra)
        self.proc: Optional[ZKTwistProcess] = None
        self.port: Optional[int] = None
        self.log_path = workdir / "server.log"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def version_dir(self) -> Path:
        return self.data_dir / "version-2"

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def start(self) -> None:
        from tests.integration.conftest import wait_until_serving

        self.proc = ZKTwistProcess(workdir=self.workdir, port=self.port, extra_config=self.config)
        self.proc.start()
        self.port = self.proc.port
        try:
            wait_until_serving(self.port, timeout=20)
        except BaseException:
            self.proc.kill()
            raise

    def client(self) -> KazooClient:
        assert self.port is not None, "start the server first"
        return new_client(self.port)

    def stop(self) -> None:
        """SIGTERM: a clean stop (it writes no snapshot of its own)."""
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def cleanup(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc = None

    def snapshots_written(self) -> List[int]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [int(z, 16) for z in SNAPSHOT_WRITTEN.findall(text)]

    def start_expecting_failure(self, timeout: float = 30.0) -> Tuple[int, str]:
        """Run a process that should refuse to start; return its exit status and its log."""
        proc = ZKTwistProcess(workdir=self.workdir, port=self.port, extra_config=self.config)
        config = proc.write_config()
        offset = self.log_size()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.log_path, "ab") as log:
            child = subprocess.Popen(proc.command(config), cwd=str(self.workdir), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=env)
        proc.proc = child
        deadline = time.monotonic() + timeout
        try:
            while child.poll() is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the server neither served nor exited within {timeout}s")
                try:
                    with socket.create_connection(("127.0.0.1", proc.port), timeout=0.2):
                        pass
                except OSError:
                    time.sleep(0.05)
                    continue
                raise AssertionError("the server started serving clients")
        except AssertionError as e:
            proc.kill()
            raise AssertionError(f"{e} although its log has a gap; it logged:\n"
                                 f"{self.log_since(offset)[-3000:]}") from None
        return child.returncode, self.log_since(offset)


@contextlib.contextmanager
def opened_backend(server: Server) -> Iterator[object]:
    """The server's storage backend, through the plugin registry, opened while the server is down."""
    from zktwist.config import load
    from zktwist.storage.registry import make_backend

    # zoo.cfg as the next process will get it (a copied data dir has a stale one).
    config = ZKTwistProcess(workdir=server.workdir, port=server.port,
                            extra_config=server.config).write_config()
    backend = make_backend(load(str(config)))
    backend.open()
    try:
        yield backend
    finally:
        backend.close()


def list_snapshots(server: Server) -> List[int]:
    with opened_backend(server) as backend:
        return list(backend.list_snapshots())  # type: ignore[attr-defined]


def sqlite_path(server: Server) -> Path:
    from zktwist.storage.sqlite import DB_NAME

    return server.data_dir / DB_NAME


def delete_newest_snapshot(server: Server, zxid: int) -> None:
    if server.backend == "filelog":
        path = server.version_dir / ("snapshot.%x" % zxid)
        assert path.exists(), sorted(p.name for p in server.version_dir.iterdir())
        path.unlink()
        return
    with contextlib.closing(sqlite3.connect(str(sqlite_path(server)))) as db:
        with db:
            (sid,) = db.execute("SELECT id FROM snapshots WHERE zxid = ?", (zxid,)).fetchone()
            db.execute("DELETE FROM snapshot_chunks WHERE id = ?", (sid,))
            db.execute("DELETE FROM snapshots WHERE zxid = ?", (zxid,))


def flip_byte_in_snapshot(server: Server, zxid: int) -> None:
    """Flip every bit of the byte in the middle of snapshot ``zxid`` (bit rot)."""
    if server.backend == "filelog":
        path = server.version_dir / ("snapshot.%x" % zxid)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    with contextlib.closing(sqlite3.connect(str(sqlite_path(server)))) as db:
        with db:
            sid, size = db.execute("SELECT id, size FROM snapshots WHERE zxid = ?",
                                   (zxid,)).fetchone()
            rows = db.execute("SELECT seq, length(data) FROM snapshot_chunks WHERE id = ? "
                              "ORDER BY seq", (sid,)).fetchall()
            middle = size // 2
            for seq, length in rows:
                if middle < length:
                    break
                middle -= length
            (data,) = db.execute("SELECT data FROM snapshot_chunks WHERE id = ? AND seq = ?",
                                 (sid, seq)).fetchone()
            data = bytearray(data)
            data[middle] ^= 0xFF
            db.execute("UPDATE snapshot_chunks SET data = ? WHERE id = ? AND seq = ?",
                       (bytes(data), sid, seq))


def log_files(server: Server) -> List[int]:
    """Start zxids of the file log's ``log.<hex>`` files, oldest first."""
    out = []
    for p in server.version_dir.iterdir():
        if p.name.startswith("log."):
            out.append(int(p.name[4:], 16))
    return sorted(out)


# --------------------------------------------------------------------------- the load


class Load:
    """Pipelined creates and setData under one base path, every reply recorded."""

    def __init__(self, client: KazooClient, base: str) -> None:
        self.client = client
        self.base = base
        self.acked: Dict[str, Tuple[bytes, tuple]] = {}   # path -> (data, Stat) of the last ack
        self.paths: List[str] = []
        self.writes = 0
        self.max_zxid = 0
        client.ensure_path(base)

    def run(self, count: int, window: int = 64) -> None:
        """``count`` writes (about a third creates), ``window`` at a time; all must succeed."""
        pending: List[Tuple[str, bytes, str, Any]] = []

        def settle(limit: int) -> None:
            while len(pending) > limit:
                path, value, kind, ar = pending.pop(0)
                result = ar.get(timeout=20)
                stat = result[1] if kind == "create" else result
                self.acked[path] = (value, tuple(stat))
                self.max_zxid = max(self.max_zxid, stat.mzxid)
                self.writes += 1

        for i in range(count):
            if not self.paths or i % 3 == 0:
                path = f"{self.base}/n{len(self.paths):05d}"
                self.paths.append(path)
                value = f"{path}#0:{uuid.uuid4().hex}".encode()
                pending.append((path, value, "create",
                                self.client.create_async(path, value, include_data=True)))
            else:
                path = self.paths[(i * 7919) % len(self.paths)]
                # Never two writes to one path in flight: the last reply is the last write.
                if any(p == path for p, _, _, _ in pending):
                    settle(0)
                value = f"{path}#{i}:{uuid.uuid4().hex}".encode()
                pending.append((path, value, "set", self.client.set_async(path, value)))
            settle(window)
        settle(0)

    def read_tree(self, client: Optional[KazooClient] = None) -> Dict[str, Tuple[bytes, tuple]]:
        client = client or self.client
        children = client.get_children(self.base)
        pending = {c: client.get_async(f"{self.base}/{c}") for c in children}
        out = {self.base: (lambda d, s: (d, tuple(s)))(*client.get(self.base))}
        for c, ar in pending.items():
            data, stat = ar.get(timeout=20)
            out[f"{self.base}/{c}"] = (data, tuple(stat))
        return out

    def check(self, client: KazooClient, before: Dict[str, Tuple[bytes, tuple]]) -> List[str]:
        """Every acknowledged write is there with its Stat, and the tree is as it was."""
        problems = []
        after = self.read_tree(client)
        for path, (value, stat) in self.acked.items():
            if path not in after:
                problems.append(f"{path}: acknowledged write lost (node missing)")
            elif after[path] != (value, stat):
                problems.append(f"{path}: acknowledged {value!r} {stat}, found {after[path]}")
        if after != before:
            missing = sorted(set(before) - set(after))
            extra = sorted(set(after) - set(before))
            changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
            problems.append(f"the tree differs from the one read before the stop: missing "
                            f"{missing[:5]}, extra {extra[:5]}, changed "
                            f"{[(p, before[p], after[p]) for p in changed[:3]]}")
        return problems


def fill_until_snapshots(server: Server, load: Load, snapshots: int, batch: int = 150,
                         limit: int = 40) -> None:
    """Write until the server has logged ``snapshots`` snapshots, then a little more."""
    for _ in range(limit):
        if len(server.snapshots_written()) >= snapshots:
            break
        load.run(batch)
        time.sleep(0.05)  # the snapshot is written off the reactor thread
    else:
        raise AssertionError(f"only {len(server.snapshots_written())} snapshots after "
                             f"{load.writes} writes with snapCount={SNAP_COUNT}")
    # Writes after the newest snapshot: recovery must replay them from the log.
    load.run(60)


def check_restart(server: Server, load: Load, before: Dict[str, Tuple[bytes, tuple]],
                  context: str) -> str:
    """Start a new process, check every acknowledged write; return what the new life logged."""
    offset = server.log_size()
    try:
        server.start()
    except Exception as e:
        raise AssertionError(f"the server did not start ({context}); the new life logged:\n"
                             f"{server.log_since(offset)[-4000:]}") from e
    client = server.client()
    try:
        problems = load.check(client, before)
        # The next write gets a zxid after every acknowledged one.
        stat = client.create(f"{load.base}-probe", b"", include_data=True)[1]
        if stat.czxid <= load.max_zxid:
            problems.append(f"a new write got zxid 0x{stat.czxid:x}, not above the acknowledged "
                            f"0x{load.max_zxid:x}")
        client.delete(f"{load.base}-probe")
    finally:
        stop_client(client)
    text = server.log_since(offset)
    assert not problems, "\n".join(problems[:20]) + "\nthe new life logged:\n" + text[-3000:]
    return text


@pytest.fixture
def server(tmp_path, backend) -> Iterator[Server]:
    s = Server(tmp_path / "server", backend)
    try:
        yield s
    finally:
        s.cleanup()


def loaded_server(server: Server, snapshots: int = 3) -> Tuple[Load, Dict[str, Tuple[bytes, tuple]]]:
    """Start, write until ``snapshots`` snapshots, read the tree, stop cleanly."""
    server.start()
    client = server.client()
    try:
        load = Load(client, f"/recovery-{uuid.uuid4().hex[:8]}")
        fill_until_snapshots(server, load, snapshots)
        before = load.read_tree()
    finally:
        stop_client(client)
    server.stop()
    return load, before


# --------------------------------------------------------------------------- (a) and (b)


def test_newest_snapshot_deleted_recovers_from_older_one_and_logs(server):
    load, before = loaded_server(server)
    snaps = list_snapshots(server)
    assert len(snaps) >= 2, f"need two retained snapshots, have {snaps}"
    newest, older = snaps[0], snaps[1]
    delete_newest_snapshot(server, newest)
    assert list_snapshots(server) == snaps[1:]

    text = check_restart(server, load, before,
                         f"snapshot 0x{newest:x} deleted, 0x{older:x} and the logs after it intact")
    assert f"Loaded snapshot 0x{older:x}" in text, (
        f"expected recovery from the older snapshot 0x{older:x}; the new life logged:\n{text[-3000:]}")
    assert "Traceback" not in text, text[-3000:]
    print(f"recovered {load.writes} acknowledged writes ({len(load.acked)} nodes) from snapshot "
          f"0x{older:x} + logs after deleting 0x{newest:x} ({server.backend})")


def test_corrupt_newest_snapshot_is_skipped_for_the_older_one(server):
    load, before = loaded_server(server)
    snaps = list_snapshots(server)
    assert len(snaps) >= 2, f"need two retained snapshots, have {snaps}"
    newest, older = snaps[0], snaps[1]
    flip_byte_in_snapshot(server, newest)

    text = check_restart(server, load, before,
                         f"snapshot 0x{newest:x} damaged, 0x{older:x} and the logs after it intact")
    skipped = [line for line in text.splitlines()
               if f"0x{newest:x}" in line and re.search(r"(?i)skip|damaged|corrupt", line)]
    assert skipped, (f"no log line says the damaged snapshot 0x{newest:x} was skipped; "
                     f"the new life logged:\n{text[-3000:]}")
    assert f"Loaded snapshot 0x{older:x}" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    print(f"skipped damaged 0x{newest:x}, recovered {load.writes} acknowledged writes from "
          f"0x{older:x} ({server.backend}): {skipped[0].strip()}")


# --------------------------------------------------------------------------- (c) autopurge


def test_autopurge_keeps_three_snapshots_and_the_logs_they_need_by_default(server):
    """No autopurge.* settings: zktwist keeps snapRetainCount=3 snapshots by default."""
    assert not any(k.startswith("autopurge") for k in server.config)
    load, before = loaded_server(server, snapshots=8)
    written = server.snapshots_written()
    assert len(written) >= 8
    snaps = list_snapshots(server)
    assert 1 <= len(snaps) <= 3, f"{len(written)} snapshots written, {len(snaps)} kept: {snaps}"
    assert snaps == sorted(written, reverse=True)[:len(snaps)], (snaps, written)
    oldest = snaps[-1]

    if server.backend == "filelog":
        names = sorted(p.name for p in server.version_dir.iterdir())
        assert len([n for n in names if n.startswith("snapshot.")]) == len(snaps), names
        assert not [n for n in names if n.endswith(".tmp")], names
        starts = log_files(server)
        # Kept: the newest log file starting at or before the oldest kept
        # snapshot (it may hold the txns right after it), and every newer one.
        assert starts and starts[0] <= oldest + 1, (
            f"the txns after snapshot 0x{oldest:x} are gone: {names}")
        assert len([s for s in starts if s <= oldest]) <= 1, (
            f"log files only snapshots older than 0x{oldest:x} needed are still there: {names}")
    else:
        with contextlib.closing(sqlite3.connect(str(sqlite_path(server)))) as db:
            first, count = db.execute("SELECT min(zxid), count(*) FROM txns").fetchone()
            chunk_ids = {r[0] for r in db.execute("SELECT DISTINCT id FROM snapshot_chunks")}
            snap_ids = {r[0] for r in db.execute("SELECT id FROM snapshots")}
        assert chunk_ids == snap_ids, (chunk_ids, snap_ids)
        assert first is not None and first <= oldest + 1, (
            f"the txns after snapshot 0x{oldest:x} are gone (first txn 0x{first or 0:x})")
        assert count < load.writes, (
            f"{count} txns kept after {load.writes} writes: old txns were never purged")

    # What was kept is enough: recover from the oldest kept snapshot alone.
    for zxid in snaps[:-1]:
        delete_newest_snapshot(server, zxid)
    text = check_restart(server, load, before,
                         f"only the oldest kept snapshot 0x{oldest:x} and the kept logs")
    assert f"Loaded snapshot 0x{oldest:x}" in text, text[-3000:]
    print(f"{len(written)} snapshots written, kept {[hex(z) for z in snaps]} ({server.backend})")


# --------------------------------------------------------------------------- (d) log gaps

TRACEBACK = re.compile(r'Traceback \(most recent call last\)|\bFile "[^"]+", line \d+')


@pytest.fixture(scope="module")
def gap_templates(tmp_path_factory):
    """Per backend, a stopped data dir: three snapshots, then two short lives.

    Like Apache ZooKeeper, zktwist writes a snapshot when it starts, so the
    newest snapshot only ever needs the log of the last life.  The tests
    below therefore delete the snapshots newer than the oldest retained one:
    the server must then start from that one and needs every txn after it,
    spread over (file log) the file holding the first txns after it, the
    files of the two short lives (each life starts a new one), the newest
    last.  Built once per backend, copied per test.
    """
    built: Dict[str, Path] = {}

    def get(backend: str) -> Path:
        if backend not in built:
            server = Server(tmp_path_factory.mktemp(f"gap-{backend}") / "server", backend)
            try:
                load, _ = loaded_server(server)
                for _ in range(2):
                    server.start()
                    client = server.client()
                    try:
                        load.client = client
                        load.run(20)  # well below snapCount/2: no snapshot but the start-up one
                    finally:
                        stop_client(client)
                    server.stop()
            finally:
                server.cleanup()
            built[backend] = server.workdir
        return built[backend]

    return get


def keep_only_oldest_snapshot(server: Server) -> int:
    """Delete every snapshot but the oldest retained one; return its zxid."""
    snaps = list_snapshots(server)
    assert len(snaps) >= 2, f"expected several retained snapshots: {[hex(z) for z in snaps]}"
    for zxid in snaps[:-1]:
        delete_newest_snapshot(server, zxid)
    assert list_snapshots(server) == snaps[-1:]
    return snaps[-1]


def delete_middle_txn_rows(server: Server, after: int) -> Tuple[int, int]:
    """SQLite: delete a run of txn rows in the middle of those after snapshot ``after``."""
    with contextlib.closing(sqlite3.connect(str(sqlite_path(server)))) as db:
        with db:
            zxids = [r[0] for r in db.execute(
                "SELECT zxid FROM txns WHERE zxid > ? ORDER BY zxid", (after,))]
            assert len(zxids) >= 30, [hex(z) for z in zxids]
            lo, hi = zxids[len(zxids) // 3], zxids[2 * len(zxids) // 3]
            db.execute("DELETE FROM txns WHERE zxid BETWEEN ? AND ?", (lo, hi))
    return lo, hi


@pytest.mark.parametrize("backend_name,which", [
    ("filelog", "first-after-snapshot"),
    ("filelog", "middle"),
    ("sqlite", "middle"),
])
def test_log_gap_refuses_to_start_with_a_clear_error(tmp_path, gap_templates, backend_name, which):
    """Txns the snapshot to start from needs are gone: exit status != 0 and one clear error line.

    Only the oldest retained snapshot is left (the newer ones deleted), and
    some of the txns after it: the file log loses a whole ``log.<zxid>``
    file -- the one holding the first txns after the snapshot, or one in the
    middle (neither that one nor the newest); SQLite loses a run of rows of
    ``txns`` in the middle of those after the snapshot.
    """
    require_backend(backend_name)
    require_module("snapshot", "snapshots")
    import shutil

    workdir = tmp_path / "server"
    shutil.copytree(gap_templates(backend_name), workdir)
    server = Server(workdir, backend_name)
    try:
        snap = keep_only_oldest_snapshot(server)
        if backend_name == "filelog":
            starts = log_files(server)
            holding_next = max(s for s in starts if s <= snap + 1)
            later = [s for s in starts if s > holding_next]
            assert len(later) >= 2, (
                f"expected two log files after the one holding txn 0x{snap + 1:x}: "
                f"{[hex(s) for s in starts]}")
            victim = holding_next if which == "first-after-snapshot" else later[-2]
            assert victim != starts[-1]
            (server.version_dir / ("log.%x" % victim)).unlink()
            what = f"log.{victim:x} deleted, snapshot 0x{snap:x} needs it"
        else:
            lo, hi = delete_middle_txn_rows(server, snap)
            what = f"txns rows 0x{lo:x}..0x{hi:x} deleted, snapshot 0x{snap:x} needs them"

        status, text = server.start_expecting_failure()
        lines = [line for line in text.splitlines() if line.strip()]
        tail = "\n".join(lines[-20:])
        assert status != 0, f"the server exited with status 0 ({what}):\n{tail}"
        assert not TRACEBACK.search(tail), (
            f"{what}: the server refused to start (status {status}) but its last log lines hold "
            f"a traceback instead of one clear error line:\n{tail}")
        assert re.search(r"(?i)(error|refus|cannot start)", tail) and re.search(
            r"(?i)(log|txn|transaction)", tail), (
            f"{what}: no clear error line naming the missing txns in the last lines:\n{tail}")
        print(f"{what} ({which}): exit status {status}; last line: {lines[-1]}")
    finally:
        server.cleanup()
