#!/usr/bin/env python
"""Reactor stall while zktwist takes a fuzzy snapshot of a big tree.

Runs a real ``twistd -n zktwist`` process on a free loopback port with a
temporary dataDir and measures what the issue asks of snapshots: "taken while
writes continue (fuzzy, replay-safe) without stalling the reactor for more
than 50 ms at 1M znodes".

Phases (each timed; every process started here is stopped at the end):

1. **load** -- start with ``snapCount`` 3,000,000 (no snapshot while
   loading) and create ``--nodes`` znodes of ``--value-size`` bytes with
   pipelined multis of ``--batch`` creates (raw protocol, no client library),
   under ``/bench/dNNNN/`` directories of ``--fanout`` children (``--fanout 0``:
   all under ``/bench``).  The server's RSS is sampled empty, at 100k znodes
   and at the end.
2. **restart** -- stop the server, restart it with a small ``snapCount``.
   Start-up replays the whole log, then writes a snapshot synchronously
   before serving: both parts are timed (the start-up snapshot is seen as
   ``snapshot.<zxid>.tmp`` in ``<dataDir>/version-2``).
3. **measure** -- a writer process does setData at ``--write-rate``/s on
   random znodes (which makes the server snapshot after snapCount/2 ..
   snapCount txns), while a probe process on its own session sends a getData
   (or a ping, ``--probe ping``) every ``--probe-interval`` seconds, open loop
   (a stalled reactor makes every probe sent meanwhile late, so percentiles
   are not flattered by coordinated omission).  Snapshots are detected by
   polling ``version-2`` for ``snapshot.*.tmp`` every millisecond; probes are
   split into "during a snapshot" (in flight at any moment between the .tmp
   appearing and the snapshot file being renamed into place) and "outside".
   Runs until ``--snapshots`` snapshots have completed and at least
   ``--min-measure`` seconds have passed.
4. **recover** -- restart once more: now start-up loads the big snapshot,
   replays the few thousand txns after it and writes its own snapshot.

Usage (from the checkout, with the project's virtualenv)::

    .venv/bin/python benchmarks/snapshot_stall.py                 # 1M znodes, a few minutes
    .venv/bin/python benchmarks/snapshot_stall.py --nodes 100000  # quick variant
    .venv/bin/python benchmarks/snapshot_stall.py --py-spy /tmp/snap.svg   # profile phase 3

``--json FILE`` writes every figure as JSON (``--samples``: every probe and
write too); ``--keep`` keeps the work directory (server logs, the dataDir).
Exit status 1 when the worst probe latency during a snapshot exceeds
``--bound-ms`` (50), 0 otherwise.

Diagnostics (zktwist itself is never modified):

* ``--trace`` runs the server under a bootstrap that times, in the server,
  every ``snapshot_chunks()`` call and slice (wall, thread CPU and time spent
  waiting for a CPU from ``/proc/self/task/*/schedstat``), every reactor turn
  longer than 15 ms and every notable garbage collection; the lines are
  printed with the report, on the benchmark's clock.
* ``--nice N`` runs the server and the probe at niceness N (negative needs
  root): on a machine where other work competes for the CPUs it shows what
  the stall would be without that competition.
* ``--cpu-hogs N`` adds N busy-loop processes during the measurement (a
  reproducible oversubscribed machine).
* ``--pace-ms MS`` / ``--slice-nodes N`` are experiments for a fix: the
  reactor idles MS after every slice (by sleeping in the snapshot thread's
  write, which the reactor waits for), or slices hold N nodes instead of 2000.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from typing import Any, Dict, List, Optional, Sequence, Tuple

from zktwist.cli.bench import create_body, four_letter, mntr
from zktwist.proto.jute import encode_buffer, encode_ustring

_int = struct.Struct(">i")
_reply = struct.Struct(">iqi")  # xid, zxid, err
_multi_hdr = struct.Struct(">i?i")

OP_CREATE, OP_GETDATA, OP_SETDATA, OP_PING, OP_MULTI = 1, 4, 5, 11, 14
PING_XID = -2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- a minimal raw ZooKeeper client ----------------------------------------------------------

def _frame(body: bytes) -> bytes:
    return _int.pack(len(body)) + body


def multi_create_body(paths: Sequence[str], data: bytes) -> bytes:
    parts = []
    for p in paths:
        parts.append(_multi_hdr.pack(OP_CREATE, False, -1))
        parts.append(create_body(p, data))
    parts.append(_multi_hdr.pack(-1, True, -1))
    return b"".join(parts)


class Conn:
    """One session over a blocking socket; replies are read frame by frame."""

    def __init__(self, port: int, timeout_ms: int = 30000) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = struct.pack(">iqiq", 0, 0, timeout_ms, 0) + encode_buffer(b"\x00" * 16) + b"\x00"
        self.sock.sendall(_frame(req))
        self.buf = bytearray()
        self.read_frame()
        self.xid = 0

    def read_frame(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                n = _int.unpack_from(self.buf, 0)[0]
                if len(self.buf) >= 4 + n:
                    frame = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return frame
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data

    def frames(self) -> List[bytes]:
        """Every complete frame already buffered (after one recv)."""
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            n = _int.unpack_from(self.buf, 0)[0]
            if len(self.buf) < 4 + n:
                break
            out.append(bytes(self.buf[4:4 + n]))
            del self.buf[:4 + n]
        return out

    def request(self, op: int, body: bytes) -> bytes:
        self.xid += 1
        return _frame(struct.pack(">ii", self.xid, op) + body)

    def call(self, op: int, body: bytes) -> Tuple[int, bytes]:
        self.sock.sendall(self.request(op, body))
        while True:
            frame = self.read_frame()
            xid, _, err = _reply.unpack_from(frame, 0)
            if xid == self.xid:
                return err, frame[16:]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- the server process ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SnapWatcher:
    """Polls ``version-2`` for ``snapshot.<zxid>.tmp``: (name, start, end) of each snapshot."""

    def __init__(self, snap_dir: str, interval: float = 0.001) -> None:
        self.snap_dir = snap_dir
        self.interval = interval
        self.windows: List[Dict[str, Any]] = []
        self._open: Dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "SnapWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def completed(self) -> int:
        return sum(1 for w in self.windows if w["end"] is not None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                names = os.listdir(self.snap_dir)
            except FileNotFoundError:
                names = []
            now = time.monotonic()
            tmps = {n[:-4] for n in names if n.startswith("snapshot.") and n.endswith(".tmp")}
            for name in tmps:
                if name not in self._open:
                    self._open[name] = now
                    self.windows.append({"name": name, "start": now, "end": None})
            for name in list(self._open):
                if name not in tmps:
                    del self._open[name]
                    for w in self.windows:
                        if w["name"] == name and w["end"] is None:
                            w["end"] = now
                            w["ok"] = name in names
                            try:
                                w["size"] = os.path.getsize(os.path.join(self.snap_dir, name))
                            except OSError:
                                w["size"] = None
            time.sleep(self.interval)


# With --trace, the server runs under this bootstrap (nothing else changes): every
# snapshot_chunks() call and every slice (next()) it yields is timed, and so is every
# garbage collection; one "TRACE ..." line per snapshot / notable collection goes to
# the server log.
TRACE_BOOTSTRAP = r"""
import gc, os, sys, threading, time
import zktwist.storage.snapshot as _S

_orig = _S.snapshot_chunks
_clock = time.perf_counter
_cpu = time.thread_time
_fds = {}


def _rq():
    # seconds this thread has waited on a run queue (for a CPU), from schedstat
    tid = threading.get_native_id()
    fd = _fds.get(tid)
    if fd is None:
        try:
            fd = _fds[tid] = os.open("/proc/self/task/%d/schedstat" % tid, os.O_RDONLY)
        except OSError:
            return 0.0
    os.lseek(fd, 0, 0)
    return int(os.read(fd, 200).split()[1]) / 1e9


def _say(line):
    sys.stdout.write("TRACE t=%.4f " % time.monotonic() + line + "\n")
    sys.stdout.flush()


def snapshot_chunks(tree, sessions, zxid, nodes_per_chunk=2000):
    t0 = _clock()
    c0 = _cpu()
    it = _orig(tree, sessions, zxid, nodes_per_chunk)
    setup = (_clock() - t0) * 1e3
    setup_cpu = (_cpu() - c0) * 1e3

    def traced():
        # per slice: wall ms, this thread's CPU ms, ms it waited for a CPU (run queue);
        # the rest of the wall time it slept (the GIL, page faults, ...)
        slices = []
        while True:
            t, c, q = _clock(), _cpu(), _rq()
            try:
                chunk = next(it)
            except StopIteration:
                break
            slices.append(((_clock() - t) * 1e3, (_cpu() - c) * 1e3, (_rq() - q) * 1e3))
            _turn["slices"] += 1
            _turn["slice_ms"] += slices[-1][0]
            yield chunk
        s = sorted(x[0] for x in slices)
        cpu = sorted(x[1] for x in slices)
        top = sorted(range(len(slices)), key=lambda i: -slices[i][0])[:5]
        _say("snapshot 0x%x per_chunk=%d nodes=%d setup_ms=%.2f (cpu %.2f) slices=%d "
             "total_ms=%.0f (cpu %.0f, runqueue %.0f) p50_ms=%.2f p99_ms=%.2f max_ms=%.2f "
             "max_cpu_ms=%.2f worst(#slice:wall/cpu/runqueue)=%s" % (
                 zxid, nodes_per_chunk, len(tree.nodes), setup, setup_cpu, len(s), sum(s), sum(cpu),
                 sum(x[2] for x in slices), s[len(s) // 2], s[min(len(s) - 1, int(len(s) * 0.99))],
                 s[-1], cpu[-1], ",".join("#%d:%.1f/%.1f/%.1f" % ((i,) + slices[i]) for i in top)))

    return traced()


_S.snapshot_chunks = snapshot_chunks
_gc_t = [0.0]


def _gc(phase, info):
    if phase == "start":
        _gc_t[0] = _clock()
        return
    ms = (_clock() - _gc_t[0]) * 1e3
    if threading.current_thread() is threading.main_thread():
        _turn["gc_ms"] += ms
    if info["generation"] == 2 or ms > 2:
        _say("gc gen=%d ms=%.2f collected=%d" % (info["generation"], ms, info["collected"]))


# Reactor turns: from epoll returning to the reactor polling again, everything the
# reactor thread does in between (events, timed calls, callbacks from threads, and
# so snapshot slices).  Every turn longer than SNAPBENCH_TURN_MS is logged.
_turn = {"t": 0.0, "c": 0.0, "q": 0.0, "n": 0, "slices": 0, "slice_ms": 0.0, "gc_ms": 0.0}
_turn_min = float(os.environ.get("SNAPBENCH_TURN_MS") or 15) / 1e3


class _TimedPoller:
    def __init__(self, poller):
        self._p = poller

    def __getattr__(self, name):
        return getattr(self._p, name)

    def poll(self, timeout=-1, maxevents=-1):
        now = _clock()
        busy = now - _turn["t"]
        if _turn["t"] and busy > _turn_min:
            _say("turn wall_ms=%.1f cpu_ms=%.1f runqueue_ms=%.1f events=%d slices=%d "
                 "slice_ms=%.1f gc_ms=%.1f" % (
                     busy * 1e3, (_cpu() - _turn["c"]) * 1e3, (_rq() - _turn["q"]) * 1e3,
                     _turn["n"], _turn["slices"], _turn["slice_ms"], _turn["gc_ms"]))
        events = self._p.poll(timeout, maxevents)
        _turn.update(t=_clock(), c=_cpu(), q=_rq(), n=len(events), slices=0, slice_ms=0.0,
                     gc_ms=0.0)
        return events


import twisted.internet.epollreactor as _er

_er_init = _er.EPollReactor.__init__


def _er_init_timed(self, *a, **kw):
    _er_init(self, *a, **kw)
    self._poller = _TimedPoller(self._poller)


_er.EPollReactor.__init__ = _er_init_timed
gc.callbacks.append(_gc)

# Experiments (--pace-ms, --slice-nodes): not zktwist's behaviour, what a fix could do.
_pace = float(os.environ.get("SNAPBENCH_PACE_MS") or 0) / 1e3
_slice = int(os.environ.get("SNAPBENCH_SLICE_NODES") or 0)
if _slice:
    import zktwist.server.snapshots as _snaps
    _init = _snaps.Snapshotter.__init__

    def _init_slice(self, *a, **kw):
        _init(self, *a, **kw)
        self.nodes_per_slice = _slice

    _snaps.Snapshotter.__init__ = _init_slice
if _pace:
    # the reactor waits for each chunk's write on the snapshot thread before the next
    # slice: sleeping there leaves the reactor idle between slices
    import zktwist.storage.filelog as _fl
    _write = _fl.FileSnapshotWriter.write

    def _paced_write(self, data):
        _write(self, data)
        time.sleep(_pace)

    _fl.FileSnapshotWriter.write = _paced_write
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
run()
"""


class Server:
    """``twistd -n zktwist --config <workdir>/zoo.cfg``, logging to a file."""

    def __init__(self, workdir: str, port: int, python: str, trace: bool = False) -> None:
        self.workdir = workdir
        self.port = port
        self.python = python
        self.trace = trace
        self.env: Dict[str, str] = {}
        self.nice = 0
        self.data_dir = os.path.join(workdir, "data")
        self.snap_dir = os.path.join(self.data_dir, "version-2")
        self.proc: Optional[subprocess.Popen] = None
        self.runs = 0
        self.log_path = ""

    def write_config(self, snap_count: int) -> str:
        path = os.path.join(self.workdir, "zoo.cfg")
        with open(path, "w") as f:
            f.write("tickTime=2000\n"
                    "dataDir=%s\n"
                    "clientPort=%d\n"
                    "clientPortAddress=127.0.0.1\n"
                    "maxClientCnxns=0\n"
                    "4lw.commands.whitelist=ruok,srvr,mntr\n"
                    "snapCount=%d\n" % (self.data_dir, self.port, snap_count))
        return path

    def start(self, snap_count: int, timeout: float = 600.0) -> Dict[str, Any]:
        """Start and wait until it serves; returns start-up timings."""
        cfg = self.write_config(snap_count)
        self.runs += 1
        self.log_path = os.path.join(self.workdir, "server-%d.log" % self.runs)
        twistd = os.path.join(os.path.dirname(self.python), "twistd")
        if self.trace:
            cmd = [self.python, "-c", TRACE_BOOTSTRAP]
        elif os.path.exists(twistd):
            cmd = [twistd]
        else:
            cmd = [self.python, "-c", "from twisted.scripts.twistd import run; run()"]
        cmd += ["-n", "--pidfile=", "zktwist", "--config", cfg]
        watcher = SnapWatcher(self.snap_dir).start()
        t0 = time.monotonic()
        env = dict(os.environ, PYTHONPATH=REPO)
        env.update(self.env)
        with open(self.log_path, "wb") as logf:
            nice = self.nice
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=logf, stderr=subprocess.STDOUT,
                                         env=env, preexec_fn=(lambda: os.nice(nice)) if nice else None)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("server exited with %s; see %s" % (self.proc.returncode,
                                                                        self.log_path))
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError("server did not serve within %.0fs" % timeout)
                try:
                    if four_letter("127.0.0.1", self.port, "ruok", 1.0).startswith("imok"):
                        break
                except OSError:
                    pass
                time.sleep(0.01)
        finally:
            watcher.stop()
        serving = time.monotonic()
        out: Dict[str, Any] = {"serving_s": serving - t0}
        snaps = [w for w in watcher.windows if w["end"] is not None]
        if snaps:
            w = snaps[-1]
            out["startup_snapshot_s"] = w["end"] - w["start"]
            out["before_startup_snapshot_s"] = w["start"] - t0
            out["startup_snapshot_bytes"] = w.get("size")
        text = self.log()
        m = re.search(r"Loaded snapshot 0x([0-9a-f]+) \((\d+) znodes", text)
        if m:
            out["loaded_snapshot_znodes"] = int(m.group(2))
        m = re.search(r"recovered (\d+) txns", text)
        if m:
            out["replayed_txns"] = int(m.group(1))
        return out

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


# -- phase 1: loading ------------------------------------------------------------------------

def leaf_path(i: int, fanout: int) -> str:
    if fanout <= 0:
        return "/bench/n%07d" % i
    return "/bench/d%04d/n%07d" % (i // fanout, i)


def load(port: int, nodes: int, fanout: int, value_size: int, batch: int, outstanding: int,
         on_progress: Any) -> Dict[str, Any]:
    conn = Conn(port)
    value = b"v" * value_size
    err, _ = conn.call(OP_CREATE, create_body("/bench", b""))
    if err:
        raise RuntimeError("create /bench: error %d (use a fresh dataDir)" % err)
    err, _ = conn.call(OP_CREATE, create_body("/probe", b"p" * value_size))
    dirs = ["/bench/d%04d" % d for d in range((nodes + fanout - 1) // fanout)] if fanout > 0 else []
    for i in range(0, len(dirs), batch):
        err, body = conn.call(OP_MULTI, multi_create_body(dirs[i:i + batch], b""))
        if err or _multi_hdr.unpack_from(body, 0)[0] == -1:
            raise RuntimeError("creating directories failed (error %d)" % err)
    t0 = time.monotonic()
    sent = 0
    done = 0
    inflight: deque = deque()
    next_report = 0
    while done < nodes:
        while sent < nodes and len(inflight) < outstanding:
            n = min(batch, nodes - sent)
            body = multi_create_body([leaf_path(i, fanout) for i in range(sent, sent + n)], value)
            conn.sock.sendall(conn.request(OP_MULTI, body))
            inflight.append(n)
            sent += n
        frame = conn.read_frame()
        xid, _, err = _reply.unpack_from(frame, 0)
        if err or _multi_hdr.unpack_from(frame, 16)[0] == -1:
            raise RuntimeError("multi create failed (error %d, first result %r)"
                               % (err, _multi_hdr.unpack_from(frame, 16)))
        done += inflight.popleft()
        if done >= next_report:
            on_progress(done)
            next_report = done + max(batch, nodes // 20)
    elapsed = time.monotonic() - t0
    conn.close()
    return {"load_s": elapsed, "creates_per_s": nodes / elapsed if elapsed else 0.0}


# -- phase 3: writer and probe processes -----------------------------------------------------

def writer_proc(port: int, nodes: int, fanout: int, value_size: int, rate: float,
                max_outstanding: int, stop_evt: Any, out: Any) -> None:
    """setData at ``rate``/s on random znodes, at most ``max_outstanding`` in flight."""
    rng = random.Random(42)
    conn = Conn(port)
    conn.sock.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(conn.sock, selectors.EVENT_READ)
    inflight: deque = deque()
    samples: List[Tuple[float, float]] = []
    errors = 0
    interval = 1.0 / rate
    next_send = time.monotonic()
    while not stop_evt.is_set():
        now = time.monotonic()
        while now >= next_send and len(inflight) < max_outstanding:
            value = (b"%020d" % rng.getrandbits(60)).ljust(value_size, b"w")[:value_size]
            path = leaf_path(rng.randrange(nodes), fanout)
            conn.sock.sendall(conn.request(OP_SETDATA, encode_ustring(path) + encode_buffer(value) + _int.pack(-1)))
            inflight.append(now)
            next_send += interval
            if next_send < now - 1.0:  # fell far behind: do not burst to catch up
                next_send = now
        wait = max(0.0, min(0.05, next_send - time.monotonic()))
        if len(inflight) >= max_outstanding:
            wait = 0.05
        if sel.select(wait):
            now = time.monotonic()
            for frame in conn.frames():
                xid, _, err = _reply.unpack_from(frame, 0)
                if xid < 0:
                    continue
                t_sent = inflight.popleft()
                if err:
                    errors += 1
                samples.append((t_sent, now - t_sent))
    conn.close()
    out.put(("writer", samples, errors))


def hog_proc(stop_evt: Any) -> None:
    """Burn a CPU until told to stop (simulates other work on the machine)."""
    n = 0
    while not stop_evt.is_set():
        for _ in range(100000):
            n += 1


def probe_proc(port: int, interval: float, kind: str, nice: int, stop_evt: Any, out: Any) -> None:
    """One request every ``interval`` s on a fixed schedule, whatever the replies do."""
    if nice:
        os.nice(nice)
    conn = Conn(port, timeout_ms=60000)
    conn.sock.settimeout(None)
    sent: deque = deque()
    samples: List[Tuple[float, float]] = []
    lock = threading.Lock()
    done = threading.Event()

    def receiver() -> None:
        try:
            while not done.is_set():
                frames = conn.frames()
                now = time.monotonic()
                for frame in frames:
                    xid = _reply.unpack_from(frame, 0)[0]
                    if kind == "get" and xid < 0:
                        continue
                    with lock:
                        t_sent = sent.popleft()
                    samples.append((t_sent, now - t_sent))
        except (OSError, ConnectionError, IndexError):
            pass

    rx = threading.Thread(target=receiver, daemon=True)
    rx.start()
    body = encode_ustring("/probe") + b"\x00"
    t_next = time.monotonic()
    while not stop_evt.is_set():
        now = time.monotonic()
        if now < t_next:
            time.sleep(t_next - now)
        if kind == "ping":
            msg = _frame(struct.pack(">ii", PING_XID, OP_PING))
        else:
            msg = conn.request(OP_GETDATA, body)
        with lock:
            sent.append(time.monotonic())
            conn.sock.sendall(msg)
        t_next += interval
        if t_next < time.monotonic():  # this process was descheduled: keep the grid
            t_next = time.monotonic() + interval
    time.sleep(0.5)  # let the last replies arrive
    done.set()
    conn.close()
    rx.join(2.0)
    out.put(("probe", samples, len(sent)))


# -- statistics ------------------------------------------------------------------------------

def pct(sorted_vals: List[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def summarize(lat: List[float]) -> Dict[str, Any]:
    s = sorted(lat)
    return {"n": len(s), "p50_ms": pct(s, 0.5) * 1e3, "p99_ms": pct(s, 0.99) * 1e3,
            "p999_ms": pct(s, 0.999) * 1e3, "max_ms": (s[-1] * 1e3) if s else float("nan")}


def split(samples: List[Tuple[float, float]], windows: List[Tuple[float, float]],
          slack: float) -> Tuple[List[float], List[float]]:
    """A request is "during" a snapshot when it was in flight at any moment of one."""
    during, outside = [], []
    for t, lat in samples:
        if any(t <= b + slack and t + lat >= a - slack for a, b in windows):
            during.append(lat)
        else:
            outside.append(lat)
    return during, outside


def where(t: float, lat: float, windows: List[Tuple[float, float]]) -> Dict[str, Any]:
    """Where a request sent at ``t`` and answered at ``t + lat`` falls against the snapshots."""
    if not windows:
        return {"where": "no snapshot"}
    a, b = min(windows, key=lambda w: 0 if w[0] <= t + lat and t <= w[1]
               else min(abs(t - w[0]), abs(t - w[1])))
    if t + lat < a:
        return {"where": "answered %.3f s before a snapshot started" % (a - t - lat)}
    if t > b:
        return {"where": "sent %.3f s after a snapshot ended" % (t - b)}
    if t < a:
        return {"where": "in flight as a snapshot started"}
    if t + lat > b:
        return {"where": "in flight as a snapshot ended (%.3f s in)" % (t - a)}
    return {"where": "%.3f s into a %.2f s snapshot" % (t - a, b - a)}


# -- the run ---------------------------------------------------------------------------------

def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return "%.1f %s" % (n, unit)
        n /= 1024.0
    return str(n)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    workdir = args.workdir or tempfile.mkdtemp(prefix="zktwist-snapbench-")
    os.makedirs(workdir, exist_ok=True)
    port = args.port or free_port()
    server = Server(workdir, port, args.python, args.trace)
    res: Dict[str, Any] = {"nodes": args.nodes, "fanout": args.fanout, "value_size": args.value_size,
                           "workdir": workdir, "port": port, "write_rate": args.write_rate,
                           "probe": args.probe, "probe_interval": args.probe_interval,
                           "snap_count": args.snap_count, "experiments": []}
    try:
        res["git"] = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        res["git"] = "?"
    if args.nice:
        res["experiments"].append("server and probe at nice %d" % args.nice)
    if args.cpu_hogs:
        res["experiments"].append("%d CPU hog(s) while measuring" % args.cpu_hogs)
    if args.pace_ms:
        res["experiments"].append("pace %g ms between slices" % args.pace_ms)
    if args.slice_nodes:
        res["experiments"].append("%d nodes per slice" % args.slice_nodes)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    children: List[Any] = []
    spy: Optional[subprocess.Popen] = None
    try:
        # 1. load
        say("[load] workdir %s, port %d" % (workdir, port))
        st = server.start(3000000)
        res["empty_start_s"] = st["serving_s"]
        res["rss_empty"] = rss_bytes(server.pid)
        rss_at: Dict[int, int] = {}
        marks = sorted({m for m in (100000, args.nodes) if m <= args.nodes})

        def progress(done: int) -> None:
            for m in marks:
                if done >= m and m not in rss_at:
                    rss_at[m] = rss_bytes(server.pid)
            say("[load] %d/%d znodes, RSS %s" % (done, args.nodes, human(rss_bytes(server.pid))))

        res.update(load(port, args.nodes, args.fanout, args.value_size, args.batch,
                        args.outstanding, progress))
        time.sleep(0.5)
        rss_at[args.nodes] = rss_bytes(server.pid)
        stats = mntr("127.0.0.1", port)
        res["znode_count"] = int(stats.get("zk_znode_count", "0"))
        res["approximate_data_size"] = int(stats.get("zk_approximate_data_size", "0"))
        for m, v in sorted(rss_at.items()):
            res["rss_at_%d" % m] = v
            res["rss_per_znode_at_%d" % m] = (v - res["rss_empty"]) / m
        say("[load] %d znodes in %.1fs (%.0f creates/s), RSS %s (%.0f B/znode over empty)"
            % (res["znode_count"], res["load_s"], res["creates_per_s"], human(rss_at[args.nodes]),
               res["rss_per_znode_at_%d" % args.nodes]))
        server.stop()

        # 2. restart: replay the whole log, then the synchronous start-up snapshot
        server.nice = args.nice
        if args.pace_ms:
            server.env["SNAPBENCH_PACE_MS"] = str(args.pace_ms)
        if args.slice_nodes:
            server.env["SNAPBENCH_SLICE_NODES"] = str(args.slice_nodes)
        say("[restart] replaying the log, then the start-up snapshot ...")
        st = server.start(args.snap_count)
        res["restart_from_log"] = st
        res["rss_after_restart"] = rss_bytes(server.pid)
        say("[restart] serving after %.2fs (start-up snapshot %.2fs of it), RSS %s"
            % (st["serving_s"], st.get("startup_snapshot_s", float("nan")),
               human(res["rss_after_restart"])))

        # 3. measure
        say("[measure] writer %d setData/s, probe %s every %.1f ms, until %d snapshot(s) ..."
            % (args.write_rate, args.probe, args.probe_interval * 1e3, args.snapshots))
        ctx = multiprocessing.get_context("fork")
        stop_evt = ctx.Event()
        queue = ctx.Queue()
        watcher = SnapWatcher(server.snap_dir).start()
        cpu0 = cpu_seconds(server.pid)
        probe = ctx.Process(target=probe_proc, args=(port, args.probe_interval, args.probe,
                                                      args.nice, stop_evt, queue), daemon=True)
        probe.start()
        children.append(probe)
        time.sleep(0.3)
        writer = ctx.Process(target=writer_proc, args=(port, args.nodes, args.fanout, args.value_size,
                                                        args.write_rate, args.writer_outstanding,
                                                        stop_evt, queue), daemon=True)
        hog_stop = ctx.Event()
        for _ in range(args.cpu_hogs):
            hog = ctx.Process(target=hog_proc, args=(hog_stop,), daemon=True)
            hog.start()
            children.append(hog)
        load_before = os.getloadavg()[0]
        t_measure = time.monotonic()
        writer.start()
        children.append(writer)
        if args.py_spy:
            spy = subprocess.Popen([os.path.join(os.path.dirname(args.python), "py-spy"), "record",
                                    "--pid", str(server.pid), "--rate", str(args.py_spy_rate), "--nonblocking",
                                    "--idle", "--threads",
                                    "--format", args.py_spy_format, "-o", args.py_spy],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rss_peak = 0
        deadline = t_measure + args.max_measure
        while time.monotonic() < deadline:
            rss_peak = max(rss_peak, rss_bytes(server.pid))
            if (watcher.completed() >= args.snapshots
                    and time.monotonic() - t_measure >= args.min_measure
                    and not any(w["end"] is None for w in watcher.windows)):
                break
            if server.proc is None or server.proc.poll() is not None:
                raise RuntimeError("server died; see %s" % server.log_path)
            time.sleep(0.05)
        t_end = time.monotonic()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
            spy = None
        stop_evt.set()
        hog_stop.set()
        got: Dict[str, Any] = {}
        for _ in range(2):
            kind, samples, extra = queue.get(timeout=60)
            got[kind] = (samples, extra)
        for p in children:
            p.join(10)
        children = []
        watcher.stop()
        cpu1 = cpu_seconds(server.pid)
        res["measure_s"] = t_end - t_measure
        # the 1-minute load average (it includes this benchmark's own ~2 busy processes):
        # much above the core count means other work was competing for the CPUs
        res["loadavg_1m"] = [load_before, os.getloadavg()[0]]
        res["cpus"] = os.cpu_count()
        res["server_cpu_during_measure"] = (cpu1 - cpu0) / (t_end - t_measure)
        res["rss_peak_during_snapshots"] = rss_peak
        windows = [(w["start"], w["end"]) for w in watcher.windows if w["end"] is not None]
        res["snapshots"] = [{"name": w["name"], "duration_s": w["end"] - w["start"],
                             "bytes": w.get("size")}
                            for w in watcher.windows if w["end"] is not None]
        res["snapshot_log_durations_s"] = [float(x) for x in re.findall(
            r"Snapshot 0x[0-9a-f]+ written in ([0-9.]+)s", server.log())]
        res["trace"] = []
        for t, line in re.findall(r"TRACE t=([0-9.]+) (.*)", server.log()):
            rel = float(t) - t_measure
            if rel >= -1.0:  # the measurement phase, not start-up
                res["trace"].append("%+8.3fs %s" % (rel, line))
        psamples, probes_sent = got["probe"]
        wsamples, werrors = got["writer"]
        # probes sent in the last 0.5 s with no answer are not "lost": stop_evt came first
        pd, po = split(psamples, windows, args.slack)
        wd, wo = split(wsamples, windows, args.slack)
        res["probe_during"] = summarize(pd)
        res["probe_outside"] = summarize(po)
        res["probe_sent"] = probes_sent
        res["probe_answered"] = len(psamples)
        res["writes_during"] = summarize(wd)
        res["writes_outside"] = summarize(wo)
        res["writes_per_s"] = len(wsamples) / res["measure_s"]
        res["write_errors"] = werrors
        # the worst probes, placed relative to the nearest snapshot
        worst = sorted(psamples, key=lambda s: -s[1])[:args.worst]
        res["worst_probes"] = [dict(latency_ms=lat * 1e3, **where(t, lat, windows)) for t, lat in worst]
        res["windows"] = [(a - t_measure, b - t_measure) for a, b in windows]
        if args.samples:
            res["probe_samples"] = [(round(t - t_measure, 6), round(lat, 6)) for t, lat in psamples]
            res["write_samples"] = [(round(t - t_measure, 6), round(lat, 6)) for t, lat in wsamples]
        say("[measure] %d snapshot(s): %s; probe during max %.1f ms, outside max %.1f ms"
            % (len(res["snapshots"]), ", ".join("%.2fs" % s["duration_s"] for s in res["snapshots"]),
               res["probe_during"]["max_ms"], res["probe_outside"]["max_ms"]))

        # 4. restart once more: recovery from the big snapshot
        server.stop()
        say("[recover] restarting from the snapshot ...")
        st = server.start(args.snap_count)
        res["restart_from_snapshot"] = st
        res["rss_after_recovery"] = rss_bytes(server.pid)
        say("[recover] serving after %.2fs (start-up snapshot %.2fs of it)"
            % (st["serving_s"], st.get("startup_snapshot_s", float("nan"))))
        snaps = sorted((n for n in os.listdir(server.snap_dir)
                        if n.startswith("snapshot.") and not n.endswith(".tmp")),
                       key=lambda n: int(n.split(".")[1], 16))
        res["snapshot_file_bytes"] = os.path.getsize(os.path.join(server.snap_dir, snaps[-1]))
        server.stop()
    finally:
        if spy is not None:
            spy.kill()
            spy.wait()
        for p in children:
            if p.is_alive():
                p.terminate()
                p.join(5)
        server.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return res


def report(res: Dict[str, Any], bound_ms: float) -> str:
    n = res["nodes"]
    pd, po = res["probe_during"], res["probe_outside"]
    lines = [
        "zktwist snapshot stall: %d znodes (%d in the tree), %d-byte values, fanout %s%s"
        % (n, res["znode_count"], res["value_size"], res["fanout"] or "flat",
           "".join(" [%s]" % e for e in res.get("experiments", ()))),
        "",
        "%-44s %s" % ("zktwist (git describe)", res.get("git", "?")),
        "%-44s %s" % ("load (multis of creates)", "%.1f s, %.0f creates/s" % (res["load_s"],
                                                                        res["creates_per_s"])),
    ]
    for key in sorted(k for k in res if k.startswith("rss_at_")):
        m = int(key[len("rss_at_"):])
        lines.append("%-44s %s (%.0f B/znode over the empty server's %s)"
                     % ("RSS at %d znodes" % m, human(res[key]), res["rss_per_znode_at_%d" % m],
                        human(res["rss_empty"])))
    rl, rs = res["restart_from_log"], res["restart_from_snapshot"]

    def startup(st: Dict[str, Any]) -> str:
        nan = float("nan")
        return "%.2f s to serving = %.2f s recovery + %.2f s start-up snapshot" % (
            st["serving_s"], st.get("before_startup_snapshot_s", nan),
            st.get("startup_snapshot_s", nan))

    lines += [
        "%-44s %s" % ("restart, replaying the log (%s txns)" % rl.get("replayed_txns", "?"),
                      startup(rl)),
        "%-44s %s" % ("restart from the snapshot (+%s txns)" % rs.get("replayed_txns", "?"),
                      startup(rs)),
        "%-44s %s" % ("(empty server start-up)", "%.2f s" % res["empty_start_s"]),
        "%-44s %s" % ("RSS after restart / after recovery", "%s / %s" % (
            human(res["rss_after_restart"]), human(res["rss_after_recovery"]))),
        "%-44s %s" % ("snapshot file", human(res["snapshot_file_bytes"]) +
                      " (%.0f B/znode)" % (res["snapshot_file_bytes"] / max(1, res["znode_count"]))),
        "%-44s %s" % ("snapshots while serving", ", ".join(
            "%.2f s" % s["duration_s"] for s in res["snapshots"]) or "none"),
        "%-44s %s" % ("writes (setData/s, p99 during / outside)", "%.0f/s, %.1f / %.1f ms" % (
            res["writes_per_s"], res["writes_during"]["p99_ms"], res["writes_outside"]["p99_ms"])),
        "%-44s %s" % ("server CPU while measuring", "%.0f%%" % (100 * res["server_cpu_during_measure"])),
        "%-44s %s" % ("load average (1 min) before / after", "%.2f / %.2f on %s CPUs" % (
            res["loadavg_1m"][0], res["loadavg_1m"][1], res["cpus"])),
        "",
        "probe latency (ms)      n      p50      p99     p999      max",
        "during snapshots  %7d %8.2f %8.2f %8.2f %8.2f" % (pd["n"], pd["p50_ms"], pd["p99_ms"],
                                                          pd["p999_ms"], pd["max_ms"]),
        "outside           %7d %8.2f %8.2f %8.2f %8.2f" % (po["n"], po["p50_ms"], po["p99_ms"],
                                                          po["p999_ms"], po["max_ms"]),
        "",
        "worst probes:",
    ] + ["  %6.1f ms  %s" % (w["latency_ms"], w["where"]) for w in res["worst_probes"]] + [
    ] + (["", "snapshots (s from the start of the measurement): " + ", ".join(
        "%.3f-%.3f" % w for w in res["windows"]), "server trace (same clock):"] + ["  " + t for t in res.get("trace", [])]
         if res.get("trace") else []) + [
        "50 ms bound during snapshots: %s (worst %.1f ms)"
        % ("HOLDS" if pd["max_ms"] <= bound_ms else "VIOLATED", pd["max_ms"]),
    ]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000000, help="znodes to load (default 1M)")
    p.add_argument("--fanout", type=int, default=1000,
                   help="children per /bench/dNNNN directory; 0 = all under /bench")
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--batch", type=int, default=1000, help="creates per multi while loading")
    p.add_argument("--outstanding", type=int, default=4, help="multis in flight while loading")
    p.add_argument("--snap-count", type=int, default=10000,
                   help="snapCount after loading (a snapshot every snapCount/2..snapCount txns)")
    p.add_argument("--write-rate", type=float, default=2000, help="setData/s during the measurement")
    p.add_argument("--writer-outstanding", type=int, default=32)
    p.add_argument("--probe", choices=("get", "ping"), default="get")
    p.add_argument("--probe-interval", type=float, default=0.002, help="seconds between probes")
    p.add_argument("--snapshots", type=int, default=2, help="snapshots to wait for")
    p.add_argument("--min-measure", type=float, default=10.0, help="seconds, at least")
    p.add_argument("--max-measure", type=float, default=180.0, help="seconds, at most")
    p.add_argument("--slack", type=float, default=0.0,
                   help="seconds around a snapshot still counted as during it")
    p.add_argument("--bound-ms", type=float, default=50.0)
    p.add_argument("--port", type=int, default=0, help="default: a free loopback port")
    p.add_argument("--workdir", help="default: a temporary directory, removed afterwards")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter of the virtualenv with zktwist (twistd next to it is used)")
    p.add_argument("--trace", action="store_true",
                   help="run the server under a bootstrap that times every snapshot slice and GC")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness of the server (from the restart on) and the probe; negative "
                        "(root only) keeps other work on a busy machine from preempting them")
    p.add_argument("--cpu-hogs", type=int, default=0,
                   help="busy-loop processes while measuring (an oversubscribed machine)")
    p.add_argument("--pace-ms", type=float, default=0,
                   help="experiment (implies --trace): leave the reactor idle this long after "
                        "each snapshot slice")
    p.add_argument("--slice-nodes", type=int, default=0,
                   help="experiment (implies --trace): Snapshotter.nodes_per_slice instead of 2000")
    p.add_argument("--py-spy", metavar="FILE", help="py-spy record the server while measuring")
    p.add_argument("--py-spy-format", default="flamegraph", choices=("flamegraph", "speedscope", "raw"))
    p.add_argument("--py-spy-rate", type=int, default=500, help="samples per second")
    p.add_argument("--json", metavar="FILE", help="write every figure here")
    p.add_argument("--samples", action="store_true",
                   help="with --json: every probe and write (send time, latency) too")
    p.add_argument("--worst", type=int, default=8, help="worst probes to list")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.nodes < 1:
        p.error("--nodes must be positive")
    if args.pace_ms or args.slice_nodes:
        args.trace = True
    res = run(args)
    print(report(res, args.bound_ms))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2, sort_keys=True)
    return 0 if res["probe_during"]["max_ms"] <= args.bound_ms else 1


if __name__ == "__main__":
    sys.exit(main())
