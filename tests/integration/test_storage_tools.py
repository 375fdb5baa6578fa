"""The operator tools on a real server's data: log dump, snapshot dump, storage verify/convert.

A zktwist server with ``snapCount=50`` takes a few hundred kazoo writes (in
waves, so it snapshots several times and autopurge removes the oldest
snapshots and logs), then stops; its data directory is what every test reads.
The tools run as the console script, in subprocesses, the way an operator
runs them.  Nothing here may change the data it reads: tests that damage
data work on a copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tests.integration.conftest import target_is_apache, wait_until_serving
from tests.support.processes import PROJECT_ROOT, ZKTwistProcess

kazoo_client = pytest.importorskip("kazoo.client")

pytestmark = pytest.mark.skipif(target_is_apache(), reason="zktwist's own storage tools")

HAVE_SQLITE = importlib.util.find_spec("zktwist.storage.sqlite") is not None
needs_sqlite = pytest.mark.skipif(
    not HAVE_SQLITE, reason="zktwist/storage/sqlite.py (the sqlite backend) is not there yet")

NODES = 240
WAVE = 20


def zktwist_command() -> List[str]:
    script = Path(sys.executable).parent / "zktwist"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "zktwist.cli.main"]


def run(*args: str, check: Optional[int] = 0) -> subprocess.CompletedProcess:
    """``zktwist ARGS`` from the checkout; asserts the exit status unless ``check`` is None."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    env.pop("ZKTWIST_DEBUG", None)
    result = subprocess.run(zktwist_command() + [str(a) for a in args], capture_output=True,
                            text=True, timeout=60, env=env, cwd=str(PROJECT_ROOT))
    assert "Traceback" not in result.stderr, result.stderr
    if check is not None:
        assert result.returncode == check, (
            "zktwist %s exited %d\nstdout:\n%s\nstderr:\n%s" % (
                " ".join(map(str, args)), result.returncode, result.stdout[-3000:],
                result.stderr[-3000:]))
    return result


def tree_digest(path: Path) -> Dict[str, str]:
    """Every file below ``path`` with the hash of its bytes."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class Source:
    """The stopped server's data, and what the clients left in it."""

    def __init__(self, workdir: Path, data_dir: Path, config: Path, expected: Dict[str, bytes],
                 created: List[str]) -> None:
        self.workdir = workdir
        self.data_dir = data_dir
        self.config = config
        self.expected = expected
        self.created = created


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Source:
    from kazoo.security import make_digest_acl

    workdir = tmp_path_factory.mktemp("tools-source")
    server = ZKTwistProcess(workdir=workdir, extra_config={
        "snapCount": "50", "preAllocSize": "256"})
    server.start()
    created: List[str] = []
    try:
        wait_until_serving(server.port)
        zk = kazoo_client.KazooClient(hosts=server.address, timeout=10.0)
        zk.start(timeout=10)
        try:
            zk.create("/tools", b"root of the tools test")
            created.append("/tools")
            # Waves of pipelined creates: each wave is acknowledged before the next,
            # so the snapshotter gets its turns in between.
            for start in range(0, NODES, WAVE):
                pending = []
                for i in range(start, min(start + WAVE, NODES)):
                    path = "/tools/n%03d" % i
                    pending.append(zk.create_async(path, b"value-%d" % i + b"x" * (i % 90)))
                    created.append(path)
                for p in pending:
                    p.get(timeout=10)
            for i in range(0, NODES, 7):
                zk.set("/tools/n%03d" % i, b"changed-%d" % i)
            for i in range(1, NODES, 31):
                zk.delete("/tools/n%03d" % i)
            zk.create("/tools/secret", b"s3cret", acl=[make_digest_acl("ops", "pw", all=True)])
            created.append("/tools/secret")
            tx = zk.transaction()
            tx.create("/tools/multi-a", b"A")
            tx.create("/tools/multi-b", b"B")
            tx.set_data("/tools/n002", b"set in a multi")
            tx.check("/tools/n004", 0)
            tx.commit()
            created += ["/tools/multi-a", "/tools/multi-b"]
            zk.create("/tools/last", b"the very last create")
            created.append("/tools/last")
            zk.create("/tools/eph", b"gone at close", ephemeral=True)
            expected: Dict[str, bytes] = {}
            zk.add_auth("digest", "ops:pw")
            for child in zk.get_children("/tools"):
                if child != "eph":
                    expected["/tools/" + child] = zk.get("/tools/" + child)[0]
            expected["/tools"] = zk.get("/tools")[0]
        finally:
            zk.stop()
            zk.close()
    finally:
        server.stop()
    data_dir = server.data_dir
    assert (data_dir / "version-2").is_dir()
    return Source(workdir, data_dir, workdir / "zoo.cfg", expected, created)


# -- log dump ----------------------------------------------------------------------------------

def test_log_dump_shows_every_txn_decoded(source):
    out = run("log", "dump", source.data_dir).stdout
    lines = out.splitlines()
    assert lines, "no txns dumped"
    for line in lines:
        assert re.match(r"0x[0-9a-f]+ session=0x[0-9a-f]+ cxid=-?\d+ "
                        r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \w+", line), line
    zxids = [int(line.split()[0], 16) for line in lines]
    assert zxids == sorted(zxids) and len(set(zxids)) == len(zxids)
    # The newest creates are logged (older ones may be purged with their snapshots).
    assert "create path=/tools/last data=b'the very last create' acl=[world:anyone(cdrwa)]" in out
    assert re.search(r"create path=/tools/secret data=b's3cret' acl=\[digest:ops:\S+\(cdrwa\)\]",
                     out)
    multi = [line for line in lines if " multi " in line]
    assert len(multi) == 1
    assert ("ops=4 [create path=/tools/multi-a data=b'A'" in multi[0]
            and "| setData path=/tools/n002 data=b'set in a multi' version=" in multi[0]
            and "| create path=/tools/multi-b data=b'B'" in multi[0]
            # a check txn carries the version after the op, as ZooKeeper's does
            and "| check path=/tools/n004 version=1]" in multi[0]), multi[0]
    assert re.search(r"closeSession ephemerals=\[/tools/eph\]$", out, re.M)
    # Long data is shown truncated, with its length.
    assert re.search(r"data=b'value-\d+x+'\.\.\.\(\d+ bytes\)", out) or NODES < 60


def test_log_dump_takes_the_config_or_the_version_2_dir(source):
    by_dir = run("log", "dump", source.data_dir).stdout
    assert run("log", "dump", "--config", source.config).stdout == by_dir
    assert run("log", "dump", source.data_dir / "version-2").stdout == by_dir
    assert run("log", "dump", "--backend", "filelog", source.data_dir).stdout == by_dir


# -- snapshot dump -----------------------------------------------------------------------------

def snapshot_zxids(data_dir: Path) -> List[int]:
    return sorted((int(p.name.split(".")[1], 16) for p in (data_dir / "version-2").glob("snapshot.*")
                   if not p.name.endswith(".tmp")), reverse=True)


def test_snapshot_dump_shows_nodes_stats_acls_and_sessions(source):
    snaps = snapshot_zxids(source.data_dir)
    assert len(snaps) >= 2, "the server took fewer snapshots than the test needs"
    out = run("snapshot", "dump", source.data_dir).stdout
    lines = out.splitlines()
    assert lines[0].startswith("snapshot 0x%x: " % snaps[0])
    nodes = {line.split()[0]: line for line in lines[1:] if line.startswith("/")}
    for path in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config", "/tools",
                 "/tools/n000", "/tools/n199"):
        assert path in nodes, path
    line = nodes["/tools/n000"]
    for field in ("data=", "czxid=0x", "mzxid=0x", "ctime=", "mtime=", "version=", "cversion=",
                  "aversion=", "ephemeralOwner=0x0", "dataLength=", "numChildren=0", "pzxid=0x",
                  "acl=[world:anyone(cdrwa)]"):
        assert field in line, (field, line)
    assert "acl=[world:anyone(r)]" in nodes["/zookeeper/config"]
    assert re.search(r"^session 0x[0-9a-f]+ timeout=\d+$", out, re.M), out[-500:]
    # Every node the clients left is in the newest snapshot or created in the log after it.
    log_out = run("log", "dump", source.data_dir).stdout
    logged = set(re.findall(r"create path=(\S+)", log_out))
    missing = [p for p in source.expected if p not in nodes and p not in logged]
    assert not missing, missing
    # An older snapshot by its zxid (hex, with or without 0x).
    older = run("snapshot", "dump", "--zxid", "%x" % snaps[-1], source.data_dir).stdout
    assert older.splitlines()[0].startswith("snapshot 0x%x: " % snaps[-1])
    assert run("snapshot", "dump", "--zxid", "0x%x" % snaps[-1], "--config",
               source.config).stdout == older
    bad = run("snapshot", "dump", "--zxid", "0xfffffff", source.data_dir, check=1)
    assert "no snapshot 0xfffffff" in bad.stderr and len(bad.stderr.splitlines()) == 1


# -- verify --------------------------------------------------------------------------------------

def test_verify_passes_and_changes_nothing(source):
    before = tree_digest(source.data_dir)
    out = run("storage", "verify", source.data_dir).stdout
    assert out.rstrip().endswith("OK"), out
    assert re.search(r"log: \d+ files, \d+ records checked, last zxid 0x[0-9a-f]+", out), out
    assert re.search(r"snapshots: [2-9]\d* checked", out), out
    m = re.search(r"replay: snapshot 0x[0-9a-f]+ \+ \d+ txns -> last zxid 0x[0-9a-f]+, "
                  r"(\d+) znodes", out)
    assert m, out
    # /, /zookeeper, quota, config + the test's nodes
    assert int(m.group(1)) == 4 + len(source.expected)
    assert run("storage", "verify", "--config", source.config).stdout == out  # same by config
    assert tree_digest(source.data_dir) == before


def test_verify_names_a_flipped_byte_by_file_and_offset(source, tmp_path):
    damaged = tmp_path / "data"
    shutil.copytree(source.data_dir, damaged)
    first_log = sorted((damaged / "version-2").glob("log.*"),
                       key=lambda p: int(p.name[4:], 16))[0]
    with open(first_log, "r+b") as f:
        f.seek(16)
        _, length = struct.unpack(">qi", f.read(12))
        assert length > 20
        f.seek(16 + 12 + 10)  # inside the first record's TxnHeader
        byte = f.read(1)
        f.seek(16 + 12 + 10)
        f.write(bytes([byte[0] ^ 0x40]))
    before = tree_digest(damaged)
    result = run("storage", "verify", damaged, check=1)
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert problems == ["PROBLEM: corrupt record in %s at offset 16: checksum mismatch"
                        % first_log], result.stdout
    assert tree_digest(damaged) == before
    # log dump stops there with one line, too
    dump = run("log", "dump", damaged, check=1)
    assert dump.stderr.strip() == "zktwist: corrupt record in %s at offset 16: checksum mismatch" \
        % first_log


def test_verify_reports_a_torn_tail_without_cutting_it(source, tmp_path):
    torn = tmp_path / "data"
    shutil.copytree(source.data_dir, torn)
    newest = sorted((torn / "version-2").glob("log.*"), key=lambda p: int(p.name[4:], 16))[-1]
    data = newest.read_bytes()
    end = len(data.rstrip(b"\x00"))
    newest.write_bytes(data[:end - 3] + b"\x00" * (len(data) - end + 3))  # lose the end marker
    before = tree_digest(torn)
    out = run("storage", "verify", torn).stdout
    # The newest file may hold one record only (the server snapshots and rolls
    # the log at start-up): then the torn record is all it has.
    assert ("note: %s ends in a torn record at offset" % newest in out
            or "note: %s holds no complete record" % newest in out), out
    assert out.rstrip().endswith("OK")
    assert tree_digest(torn) == before


def test_verify_reports_a_damaged_snapshot(source, tmp_path):
    damaged = tmp_path / "data"
    shutil.copytree(source.data_dir, damaged)
    newest = max(snapshot_zxids(damaged))
    snap = damaged / "version-2" / ("snapshot.%x" % newest)
    data = bytearray(snap.read_bytes())
    # Damage a znode's data, not a length field: a flipped length reads as a
    # truncation (also a PROBLEM, but not the checksum path this test is about).
    where = data.find(b"root of the tools test")
    assert where > 0
    data[where + 5] ^= 0xFF
    snap.write_bytes(bytes(data))
    out = run("storage", "verify", damaged, check=1).stdout
    assert re.search(r"^PROBLEM: snapshot 0x%x: .*checksum mismatch" % newest, out, re.M), out
    # the server would fall back to the older snapshot; verify says what that gives
    assert re.search(r"^replay: snapshot 0x[0-9a-f]+ \+ \d+ txns", out, re.M), out


# -- usage errors ----------------------------------------------------------------------------------

def test_usage_errors_are_one_line_and_exit_2(source, tmp_path):
    for args in (["storage", "verify", tmp_path / "missing"],
                 ["storage", "verify", tmp_path],  # no data in it
                 ["log", "dump", "--backend", "nosuch", source.data_dir],
                 ["log", "dump", source.data_dir, "--config", source.config],
                 ["snapshot", "dump", "--zxid", "xyz", source.data_dir],
                 ["storage", "convert", source.data_dir, tmp_path / "out"],
                 ["storage", "convert", "--to", "filelog", source.data_dir, source.data_dir],
                 ["storage", "verify", "--config", tmp_path / "missing.cfg"],
                 ["storage", "verify", "--no-such-option"]):
        result = run(*args, check=2)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert result.stderr.startswith("zktwist"), result.stderr


# -- convert ---------------------------------------------------------------------------------------

@needs_sqlite
def test_convert_round_trip_and_serve_the_sqlite_copy(source, tmp_path):
    original_dump = run("log", "dump", source.data_dir).stdout
    original_snap = run("snapshot", "dump", source.data_dir).stdout
    before = tree_digest(source.data_dir)

    workdir = tmp_path / "sqlite-server"
    sq = workdir / "data"
    out = run("storage", "convert", "--from", "filelog", "--to", "sqlite",
              source.data_dir, sq).stdout
    assert "compared with the source: %d txns" % len(original_dump.splitlines()) in out, out
    assert out.rstrip().endswith("OK"), out
    assert (sq / "zktwist.sqlite3").is_file()
    assert tree_digest(source.data_dir) == before  # the source is only read

    # the sqlite copy: detected by its file, same txns, same snapshot, verifies
    assert run("log", "dump", sq).stdout == original_dump
    assert run("snapshot", "dump", sq).stdout == original_snap
    verified = run("storage", "verify", sq).stdout
    assert verified.rstrip().endswith("OK") and "verifying sqlite data" in verified

    # refuses a destination with data in it
    refused = run("storage", "convert", "--to", "sqlite", source.data_dir, sq, check=1)
    assert "already has data" in refused.stderr

    # and back: sqlite -> filelog, identical log dump
    back = tmp_path / "filelog-again"
    run("storage", "convert", "--to", "filelog", sq, back)
    assert run("log", "dump", back).stdout == original_dump
    assert run("snapshot", "dump", back).stdout == original_snap
    assert run("storage", "verify", back).stdout.rstrip().endswith("OK")
    snap_bytes = {p.name: p.read_bytes() for p in (source.data_dir / "version-2").glob("snapshot.*")}
    assert {p.name: p.read_bytes() for p in (back / "version-2").glob("snapshot.*")} == snap_bytes

    # a server on the converted sqlite directory serves the same data
    server = ZKTwistProcess(workdir=workdir, extra_config={"storage.backend": "sqlite"})
    server.start()
    try:
        wait_until_serving(server.port)
        zk = kazoo_client.KazooClient(hosts=server.address, timeout=10.0)
        zk.start(timeout=10)
        try:
            zk.add_auth("digest", "ops:pw")
            children = set(zk.get_children("/tools"))
            assert {"/tools/" + c for c in children} | {"/tools"} == set(source.expected)
            got = {p: zk.get(p)[0] for p in source.expected}
            assert got == source.expected
            zk.create("/tools/after-convert", b"new")  # and it keeps going
        finally:
            zk.stop()
            zk.close()
    finally:
        server.stop()
    assert "after-convert" in run("log", "dump", sq).stdout


@needs_sqlite
def test_convert_by_config_and_verify_sqlite_damage(source, tmp_path):
    import sqlite3

    sq = tmp_path / "sq"
    run("storage", "convert", "--config", source.config, "--to", "sqlite", sq)
    db = sq / "zktwist.sqlite3"
    conn = sqlite3.connect(str(db))
    try:
        (zxid, payload), = conn.execute(
            "SELECT zxid, payload FROM txns ORDER BY zxid LIMIT 1 OFFSET 3").fetchall()
        damaged = bytearray(payload)
        damaged[-1] ^= 0x01
        conn.execute("UPDATE txns SET payload = ? WHERE zxid = ?", (bytes(damaged), zxid))
        conn.commit()
    finally:
        conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    result = run("storage", "verify", sq, check=1)
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1, result.stdout
    assert str(db) in problems[0] and "0x%x" % zxid in problems[0], problems
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


@needs_sqlite
def test_apache_zookeeper_starts_from_a_filelog_converted_back_from_sqlite(source, tmp_path):
    from tests.conftest import require_apache_zookeeper
    from tests.support.processes import ApacheZooKeeperProcess

    require_apache_zookeeper()
    sq = tmp_path / "sq"
    workdir = tmp_path / "apache"
    run("storage", "convert", "--to", "sqlite", source.data_dir, sq)
    run("storage", "convert", "--to", "filelog", sq, workdir / "data")
    server = ApacheZooKeeperProcess(workdir=workdir)
    server.start(timeout=60)
    try:
        wait_until_serving(server.port, timeout=60)
        zk = kazoo_client.KazooClient(hosts=server.address, timeout=10.0)
        zk.start(timeout=10)
        try:
            zk.add_auth("digest", "ops:pw")
            assert {p: zk.get(p)[0] for p in source.expected} == source.expected
        finally:
            zk.stop()
            zk.close()
    finally:
        server.stop()
