"""``zktwist bench``: a pipelined load generator speaking ZooKeeper's protocol.

S sessions x K outstanding requests, spread over P client processes, against
any host:port -- so Apache ZooKeeper and zktwist are measured the same way.
Reports ops/s, latency percentiles, the CPU time the client used and the
server's (so a client-bound run is visible; both usually share the machine).

Besides the load workloads there is ``--workload fill``: create ``--znodes``
znodes of ``--value-size`` bytes and report the server's memory (RSS, and for
a JVM the heap used after a full GC, through ``jcmd``) before and after, per
znode.  ``--idle-sessions N`` keeps N more sessions connected (and pinging)
during a run, ``--watches W`` sets W data watches on znodes nobody changes
(held by the idle sessions, or by one extra session), so the latency of a
workload can be measured with a populated session and watch table.

``--server-pid auto`` finds the server process from the port (the local
owner of the listening socket, through /proc/net/tcp and /proc/*/fd).
``--json FILE`` (``-`` for stdout) writes every figure as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import resource
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from zktwist.proto.jute import encode_buffer, encode_ustring

_int = struct.Struct(">i")
_hdr = struct.Struct(">iqi")
WORKLOADS = ("get", "set", "create", "mix", "exists-watch", "fill")

OP_CREATE, OP_DELETE, OP_EXISTS, OP_GETDATA, OP_SETDATA, OP_PING = 1, 2, 3, 4, 5, 11
OP_SYNC = 9


def parse_hosts(text: str) -> List[Tuple[str, int]]:
    """``h1:p1,h2:p2`` -> [(h1, p1), (h2, p2)] (``--hosts``)."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if item:
            h, _, p = item.rpartition(":")
            out.append((h or "127.0.0.1", int(p)))
    if not out:
        raise ValueError("--hosts: no host:port given")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default="127.0.0.1:2181", help="host:port")
    p.add_argument("--hosts", default="",
                   help="host:port,host:port,...: an ensemble; load sessions go round-robin to "
                        "these servers (set-up, idle sessions and server figures use the first)")
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--outstanding", type=int, default=100, help="requests in flight per session")
    p.add_argument("--workload", choices=WORKLOADS, default="get")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measurement")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--processes", type=int, default=1, help="client processes")
    p.add_argument("--server-pid", default="",
                   help="report this process's CPU time (and memory for fill) too; "
                        "'auto': the local process listening on the server's port")
    p.add_argument("--idle-sessions", type=int, default=0,
                   help="extra sessions kept connected (pinging) during the run")
    p.add_argument("--watches", type=int, default=0,
                   help="data watches set (on znodes nobody changes) before the run")
    p.add_argument("--znodes", type=int, default=100000, help="fill: znodes to create")
    p.add_argument("--keep", action="store_true",
                   help="fill: leave the znodes in place (default: delete them afterwards)")
    p.add_argument("--json", default="", metavar="FILE", help="write the figures as JSON ('-': stdout)")


# ---------------------------------------------------------------------------
# wire helpers

def _frame(body: bytes) -> bytes:
    return _int.pack(len(body)) + body


OPEN_ACL = _int.pack(1) + _int.pack(31) + encode_ustring("world") + encode_ustring("anyone")


def create_body(path: str, data: bytes, flags: int = 0) -> bytes:
    return encode_ustring(path) + encode_buffer(data) + OPEN_ACL + _int.pack(flags)


def delete_body(path: str) -> bytes:
    return encode_ustring(path) + _int.pack(-1)


class Session:
    """A blocking raw-protocol session (set-up, idle sessions, fills)."""

    def __init__(self, host: str, port: int, timeout_ms: int = 30000,
                 handshake_timeout: Optional[float] = None) -> None:
        """``handshake_timeout``: seconds to wait for the session (a server that accepts
        connections while it is still loading its data may not answer at all)."""
        try:
            self.sock = socket.create_connection((host, port), timeout=handshake_timeout)
        except OSError as e:
            raise ConnectionError("cannot connect to %s:%d: %s" % (host, port, e))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = struct.pack(">iqiq", 0, 0, timeout_ms, 0) + encode_buffer(b"\x00" * 16) + b"\x00"
        self.buf = b""
        try:
            self.sock.sendall(_frame(req))
            self._read_exact_frame()
        except socket.timeout:
            self.sock.close()
            raise ConnectionError("%s:%d did not answer the handshake in %ss"
                                  % (host, port, handshake_timeout))
        except ConnectionError:
            self.sock.close()
            raise ConnectionError(
                "%s:%d closed a new connection (Apache ZooKeeper's maxClientCnxns is 60 per "
                "address by default; set maxClientCnxns=0 for many sessions)" % (host, port))
        self.sock.settimeout(None)
        self.xid = 0
        self.sent: deque = deque()

    def _read_exact_frame(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                n = _int.unpack_from(self.buf, 0)[0]
                if len(self.buf) >= 4 + n:
                    frame, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return frame
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data

    def call(self, op: int, body: bytes) -> Tuple[int, bytes]:
        self.xid += 1
        self.sock.sendall(_frame(struct.pack(">ii", self.xid, op) + body))
        while True:
            frame = self._read_exact_frame()
            xid, _, err = _hdr.unpack_from(frame, 0)
            if xid == self.xid:
                return err, frame[16:]

    def pipeline(self, requests: Iterable[Tuple[int, bytes]], window: int = 4000) -> List[int]:
        """Send ``requests`` with up to ``window`` in flight; the error code of each, in order."""
        errors: List[int] = []
        inflight = 0
        it = iter(requests)
        exhausted = False
        while True:
            batch: List[bytes] = []
            while not exhausted and inflight + len(batch) < window:
                try:
                    op, body = next(it)
                except StopIteration:
                    exhausted = True
                    break
                self.xid += 1
                batch.append(_frame(struct.pack(">ii", self.xid, op) + body))
            if batch:
                self.sock.sendall(b"".join(batch))
                inflight += len(batch)
            if inflight == 0:
                return errors
            # read at least half a window's replies before sending more
            target = max(1, inflight // 2) if not exhausted else inflight
            got = 0
            while got < target:
                frame = self._read_exact_frame()
                xid, _, err = _hdr.unpack_from(frame, 0)
                if xid < 0:  # watch event (-1) or ping (-2)
                    continue
                errors.append(err)
                got += 1
            inflight -= got

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# processes: CPU, memory, finding the server

def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0.0 if it cannot be read)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


_proc_cpu = proc_cpu  # the old private name


def proc_rss(pid: int) -> int:
    """VmRSS of ``pid`` in bytes (0 if it cannot be read)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def proc_name(pid: int) -> str:
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def listening_inodes(port: int, tables: Sequence[str] = ("/proc/net/tcp", "/proc/net/tcp6")) -> List[int]:
    """Socket inodes in LISTEN state (0A) on local ``port``, from /proc/net/tcp{,6}."""
    inodes = []
    for table in tables:
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        inodes.extend(parse_listening_inodes(lines, port))
    return inodes


def parse_listening_inodes(lines: Iterable[str], port: int) -> List[int]:
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) < 10 or parts[3] != "0A":
            continue
        local_port = int(parts[1].rsplit(":", 1)[1], 16)
        if local_port == port:
            out.append(int(parts[9]))
    return out


def find_listening_pid(port: int) -> int:
    """The pid of the local process holding a socket listening on ``port`` (0 if none is visible)."""
    wanted = set("socket:[%d]" % i for i in listening_inodes(port))
    if not wanted:
        return 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = "/proc/%s/fd" % entry
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in wanted:
                    return int(entry)
            except OSError:
                continue
    return 0


_HEAP_USED = re.compile(r"\bused (\d+)K", re.I)


def parse_heap_used(text: str) -> int:
    """Bytes used of the Java heap from ``jcmd <pid> GC.heap_info`` output (first 'used NK')."""
    m = _HEAP_USED.search(text)
    return int(m.group(1)) * 1024 if m else 0


def java_heap_used(pid: int, full_gc: bool = True) -> int:
    """Heap in use after a full GC (``jcmd GC.run`` then ``GC.heap_info``); 0 if jcmd fails."""
    try:
        if full_gc:
            subprocess.run(["jcmd", str(pid), "GC.run"], capture_output=True, timeout=120, check=True)
        out = subprocess.run(["jcmd", str(pid), "GC.heap_info"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return parse_heap_used(out)


def four_letter(host: str, port: int, word: str, timeout: float = 10.0) -> str:
    """Send a four-letter word; the whole answer (the server closes the connection after it)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode())
        chunks: List[bytes] = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(data)


def mntr(host: str, port: int, timeout: float = 10.0) -> Dict[str, str]:
    """``mntr`` as {key: value}, keys as printed (``zk_...``)."""
    out: Dict[str, str] = {}
    for line in four_letter(host, port, "mntr", timeout).splitlines():
        key, _, value = line.partition("\t")
        out[key] = value
    return out


def server_memory(pid: int) -> Dict[str, int]:
    mem = {"rss": proc_rss(pid)}
    if proc_name(pid) == "java":
        mem["heap_used"] = java_heap_used(pid)
        mem["rss"] = proc_rss(pid)
    return mem


def _resolve_pid(spec: Any, port: int) -> int:
    if spec in (None, "", 0, "0"):
        return 0
    if str(spec) == "auto":
        pid = find_listening_pid(port)
        if not pid:
            print("warning: no local process found listening on port %d; no server figures" % port,
                  file=sys.stderr)
        return pid
    return int(spec)


def machine_cpu() -> float:
    """CPU seconds all CPUs have spent busy since boot (/proc/stat: all but idle and iowait)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    busy = sum(fields[:8]) - fields[3] - (fields[4] if len(fields) > 4 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    """CPU seconds of this process and its reaped children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def _thread_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------------------
# idle sessions and watches

class IdleSessions:
    """N sessions that stay connected, pinging from a thread; optionally holding watches."""

    def __init__(self, host: str, port: int, n: int, ping_interval: float = 3.0) -> None:
        self.sessions: List[Session] = []
        for _ in range(n):
            self.sessions.append(Session(host, port))
        self._stop = threading.Event()
        self._interval = ping_interval
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "IdleSessions":
        if self.sessions:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        ping = _frame(struct.pack(">ii", -2, OP_PING))
        while not self._stop.wait(self._interval):
            for s in self.sessions:
                try:
                    s.sock.sendall(ping)
                    s.sock.setblocking(False)
                    try:
                        while s.sock.recv(1 << 16):  # earlier pings' replies
                            pass
                    except BlockingIOError:
                        pass
                    finally:
                        s.sock.setblocking(True)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for s in self.sessions:
            s.close()


def watch_paths(base: str, n: int) -> List[str]:
    return ["%s/w%d" % (base, i) for i in range(n)]


def set_watches(holders: Sequence[Session], paths: Sequence[str]) -> int:
    """getData with watch=1 on every path, spread round-robin over ``holders``; errors."""
    errors = 0
    for h, sess in enumerate(holders):
        mine = paths[h::len(holders)]
        errs = sess.pipeline((OP_GETDATA, encode_ustring(p) + b"\x01") for p in mine)
        errors += sum(1 for e in errs if e)
    return errors


# ---------------------------------------------------------------------------
# the load workloads

def _request(workload: str, path: str, value: bytes, rng: random.Random,
             base: str) -> Tuple[int, bytes]:
    if workload == "get" or (workload == "mix" and rng.random() < 0.9):
        return OP_GETDATA, encode_ustring(path) + b"\x00"
    if workload in ("set", "mix"):
        return OP_SETDATA, encode_ustring(path) + encode_buffer(value) + _int.pack(-1)
    if workload == "exists-watch":
        return OP_EXISTS, encode_ustring(path) + b"\x01"
    return OP_CREATE, create_body(base + "/e-", value, 3)


def _worker(host: str, port: int, paths: List[str], base: str, args: Dict, ready: Any,
            go: Any, t0: Any, out: Any) -> None:
    rng = random.Random(os.getpid())
    value = b"x" * args["value_size"]
    try:
        addrs = args.get("addrs") or [(host, port)]
        first, stride = args.get("index0", 0), args.get("stride", 1)
        sessions = [Session(*addrs[(first + j * stride) % len(addrs)]) for j in range(len(paths))]
        if len(addrs) > 1:
            for s, path in zip(sessions, paths):
                s.call(OP_SYNC, encode_ustring(path))  # see the set-up's creates on this member
    except ConnectionError as e:
        ready.put(str(e))
        return
    ready.put("")
    go.wait()
    sel = selectors.DefaultSelector()
    for i, s in enumerate(sessions):
        s.sock.setblocking(False)
        sel.register(s.sock, selectors.EVENT_READ, i)
    k = args["outstanding"]
    workload = args["workload"]
    start = t0.value
    measure_from = start + args["warmup"]
    stop_at = measure_from + args["duration"]
    latencies: List[float] = []
    errors = 0
    cpu_from: Optional[float] = None

    for i in range(len(sessions)):
        batch = []
        s = sessions[i]
        for _ in range(k):
            s.xid += 1
            op, body = _request(workload, paths[i], value, rng, base)
            s.sent.append((time.perf_counter(), op))
            batch.append(_frame(struct.pack(">ii", s.xid, op) + body))
        s.sock.setblocking(True)
        s.sock.sendall(b"".join(batch))
        s.sock.setblocking(False)
    done = False
    while not done:
        for key, _ in sel.select(0.5):
            i = key.data
            s = sessions[i]
            try:
                data = s.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("server closed the connection")
            s.buf += data
            buf = s.buf
            off = 0
            now = time.perf_counter()
            if cpu_from is None and now >= measure_from:
                cpu_from = _thread_cpu()
            out_frames = []
            while len(buf) - off >= 4:
                n = _int.unpack_from(buf, off)[0]
                if len(buf) - off - 4 < n:
                    break
                xid, _, err = _hdr.unpack_from(buf, off + 4)
                body = buf[off + 20:off + 4 + n]
                off += 4 + n
                if xid == -1:
                    continue
                t_sent, op = s.sent.popleft()
                if err:
                    errors += 1
                if now >= measure_from:
                    if now >= stop_at:
                        done = True
                        continue
                    latencies.append(now - t_sent)
                nxt: Optional[Tuple[int, bytes]] = None
                if op == OP_CREATE and not err:
                    created = body[4:4 + _int.unpack_from(body, 0)[0]]
                    nxt = (OP_DELETE, encode_buffer(created) + _int.pack(-1))
                s.xid += 1
                if nxt is None:
                    nxt = _request(workload, paths[i], value, rng, base)
                s.sent.append((now, nxt[0]))
                out_frames.append(_frame(struct.pack(">ii", s.xid, nxt[0]) + nxt[1]))
            s.buf = buf[off:]
            if out_frames and not done:
                s.sock.setblocking(True)
                s.sock.sendall(b"".join(out_frames))
                s.sock.setblocking(False)
        if time.perf_counter() > stop_at + 5:
            break
    cpu = _thread_cpu() - (cpu_from if cpu_from is not None else _thread_cpu())
    for s in sessions:
        s.sock.close()
    out.put((latencies, errors, cpu))


def pct(sorted_vals: Sequence[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


_pct = pct


def _sleep_until(t: float) -> None:
    while True:
        d = t - time.perf_counter()
        if d <= 0:
            return
        time.sleep(min(d, 0.5))


def _load(args: argparse.Namespace, host: str, port: int, base: str, setup: Session,
          server_pid: int) -> Dict[str, Any]:
    value = b"v" * args.value_size
    paths = []
    for i in range(args.sessions):
        p = "%s/n%d" % (base, i)
        setup.call(OP_CREATE, create_body(p, value))
        paths.append(p)
    res: Dict[str, Any] = {}
    idle: Optional[IdleSessions] = None
    wpaths: List[str] = []
    try:
        if args.idle_sessions or args.watches:
            # without idle sessions, one extra session holds the watches
            idle = IdleSessions(host, port, args.idle_sessions or 1)
        if args.watches:
            wpaths = watch_paths(base, args.watches)
            errs = setup.pipeline((OP_CREATE, create_body(p, value)) for p in wpaths)
            assert idle is not None
            res["watch_errors"] = sum(1 for e in errs if e) + set_watches(idle.sessions, wpaths)
        procs = max(1, min(args.processes, args.sessions))
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        ready = ctx.Queue()
        go = ctx.Event()
        t0 = ctx.Value("d", 0.0)
        opts = {"outstanding": args.outstanding, "workload": args.workload,
                "value_size": args.value_size, "warmup": args.warmup, "duration": args.duration}
        workers = []
        for w in range(procs):
            if getattr(args, "hosts", ""):
                opts = dict(opts, addrs=parse_hosts(args.hosts), index0=w, stride=procs)
            pr = ctx.Process(target=_worker, args=(host, port, paths[w::procs], base, opts,
                                                   ready, go, t0, queue))
            pr.start()
            workers.append(pr)
        if idle is not None:
            idle.start()  # after the fork: no thread is copied into the workers
        problems = [ready.get() for _ in workers]
        if any(problems):
            go.set()
            for pr in workers:
                pr.join()
            raise ConnectionError(next(p for p in problems if p))
        t0.value = time.perf_counter() + 0.02
        go.set()
        measure_from = t0.value + args.warmup
        _sleep_until(measure_from)
        s_cpu0 = proc_cpu(server_pid) if server_pid else 0.0
        m_cpu0 = machine_cpu()
        w0 = time.perf_counter()
        _sleep_until(measure_from + args.duration)
        s_cpu1 = proc_cpu(server_pid) if server_pid else 0.0
        m_cpu1 = machine_cpu()
        window = time.perf_counter() - w0
        latencies: List[float] = []
        errors = 0
        client_cpu = 0.0
        for _ in workers:
            lat, err, cpu = queue.get()
            latencies.extend(lat)
            errors += err
            client_cpu += cpu
        for pr in workers:
            pr.join()
    finally:
        if idle is not None:
            idle.stop()
    latencies.sort()
    res.update({
        "ops": len(latencies) / args.duration,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "p999_ms": pct(latencies, 0.999) * 1000,
        "errors": errors,
        "client_cpu_pct": 100 * client_cpu / args.duration,
        # every CPU's busy time in the window, in % of one CPU: minus client and server it
        # is what else ran on the machine (noise from other work)
        "machine_cpu_pct": 100 * (m_cpu1 - m_cpu0) / window,
        "cpus": os.cpu_count() or 0,
    })
    if server_pid:
        res["server_cpu_pct"] = 100 * (s_cpu1 - s_cpu0) / window
        res["other_cpu_pct"] = max(0.0, res["machine_cpu_pct"] - res["server_cpu_pct"]
                                   - res["client_cpu_pct"])
    try:
        setup.pipeline([(OP_DELETE, delete_body(p)) for p in paths + wpaths])
    except ConnectionError:
        pass
    return res


# ---------------------------------------------------------------------------
# fill: memory per znode

def fill_paths(base: str, n: int, fanout: int = 1000) -> Tuple[List[str], List[str]]:
    """(directories, leaves): ``base/dNNNN/nNNNNNNN``, ``fanout`` leaves per directory."""
    dirs = ["%s/d%04d" % (base, d) for d in range((n + fanout - 1) // fanout)]
    leaves = ["%s/n%07d" % (dirs[i // fanout], i) for i in range(n)]
    return dirs, leaves


def _fill(args: argparse.Namespace, setup: Session, base: str, server_pid: int) -> Dict[str, Any]:
    value = b"v" * args.value_size
    dirs, leaves = fill_paths(base, args.znodes)
    res: Dict[str, Any] = {"znodes": args.znodes}
    before = server_memory(server_pid) if server_pid else {}
    s_cpu0 = proc_cpu(server_pid) if server_pid else 0.0
    t = time.perf_counter()
    errs = setup.pipeline((OP_CREATE, create_body(d, b"")) for d in dirs)
    errs += setup.pipeline((OP_CREATE, create_body(p, value)) for p in leaves)
    took = time.perf_counter() - t
    res["errors"] = sum(1 for e in errs if e)
    res["ops"] = (len(dirs) + len(leaves)) / took if took > 0 else 0.0
    res["fill_seconds"] = took
    if server_pid:
        res["server_cpu_pct"] = 100 * (proc_cpu(server_pid) - s_cpu0) / took
        after = server_memory(server_pid)
        res["rss_before"] = before.get("rss", 0)
        res["rss_after"] = after.get("rss", 0)
        res["rss_per_znode"] = (res["rss_after"] - res["rss_before"]) / args.znodes
        if "heap_used" in after:
            res["heap_before"] = before.get("heap_used", 0)
            res["heap_after"] = after["heap_used"]
            res["heap_per_znode"] = (res["heap_after"] - res["heap_before"]) / args.znodes
    if not args.keep:
        t = time.perf_counter()
        setup.pipeline((OP_DELETE, delete_body(p)) for p in leaves)
        setup.pipeline((OP_DELETE, delete_body(d)) for d in dirs)
        res["delete_seconds"] = time.perf_counter() - t
    return res


# ---------------------------------------------------------------------------

def format_result(args: argparse.Namespace, res: Dict[str, Any]) -> List[str]:
    lines = []
    if args.workload == "fill":
        lines.append("server=%s workload=fill znodes=%d value=%dB" % (
            args.server, args.znodes, args.value_size))
        lines.append("creates/s=%.0f in %.1fs errors=%d" % (res["ops"], res["fill_seconds"], res["errors"]))
        if "rss_after" in res:
            lines.append("server rss: %.1f MiB -> %.1f MiB, %.0f B/znode" % (
                res["rss_before"] / 2**20, res["rss_after"] / 2**20, res["rss_per_znode"]))
        if "heap_after" in res:
            lines.append("server java heap used after full GC: %.1f MiB -> %.1f MiB, %.0f B/znode" % (
                res["heap_before"] / 2**20, res["heap_after"] / 2**20, res["heap_per_znode"]))
        if res.get("server_pid"):
            lines.append("server_cpu=%.0f%% (pid %d)" % (res["server_cpu_pct"], res["server_pid"]))
        return lines
    extra = ""
    if args.idle_sessions or args.watches:
        extra = " idle_sessions=%d watches=%d" % (args.idle_sessions, args.watches)
    lines.append("server=%s workload=%s sessions=%d outstanding=%d processes=%d value=%dB duration=%.0fs%s" % (
        args.server, args.workload, args.sessions, args.outstanding, args.processes,
        args.value_size, args.duration, extra))
    lines.append("ops/s=%.0f p50=%.2fms p99=%.2fms p999=%.2fms errors=%d" % (
        res["ops"], res["p50_ms"], res["p99_ms"], res["p999_ms"], res["errors"]))
    line = "client_cpu=%.0f%% (load workers, measured window)" % res["client_cpu_pct"]
    if res.get("server_pid"):
        line += " server_cpu=%.0f%% (pid %d)" % (res["server_cpu_pct"], res["server_pid"])
    line += " client_total_cpu=%.1fs (incl. set-up and idle sessions)" % res["client_total_cpu_s"]
    lines.append(line)
    line = "machine_cpu=%.0f%% of %d CPUs x 100%%" % (res["machine_cpu_pct"], res["cpus"])
    if "other_cpu_pct" in res:
        line += " (other processes: %.0f%%)" % res["other_cpu_pct"]
    lines.append(line)
    return lines


def run_bench(args: argparse.Namespace) -> int:
    if getattr(args, "hosts", ""):
        args.server = "%s:%d" % parse_hosts(args.hosts)[0]
    host, _, port_s = args.server.rpartition(":")
    port = int(port_s)
    cpu_start = _self_cpu()
    server_pid = _resolve_pid(getattr(args, "server_pid", ""), port)
    base = "/zktwist-bench-%d" % os.getpid()
    setup = Session(host, port)
    setup.call(OP_CREATE, create_body(base, b""))
    try:
        if args.workload == "fill":
            res = _fill(args, setup, base, server_pid)
        else:
            res = _load(args, host, port, base, setup, server_pid)
        if args.workload != "fill" or not args.keep:
            setup.call(OP_DELETE, delete_body(base))
    finally:
        setup.close()
    res["server_pid"] = server_pid
    res["client_total_cpu_s"] = _self_cpu() - cpu_start
    res["config"] = {k: getattr(args, k) for k in (
        "server", "workload", "sessions", "outstanding", "processes", "duration", "warmup",
        "value_size", "idle_sessions", "watches", "znodes")}
    for line in format_result(args, res):
        print(line)
    if args.json:
        text = json.dumps(res, sort_keys=True)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 1 if res.get("errors") or res.get("watch_errors") else 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="zktwist bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run_bench(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
