"""``zktwist bench``: a pipelined load generator speaking ZooKeeper's protocol.

S sessions x K outstanding requests, spread over P client processes, against
any host:port -- so Apache ZooKeeper and zktwist are measured the same way.
Reports ops/s, latency percentiles and the CPU time the client used (so a
client-bound run is visible).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import selectors
import socket
import struct
import time
from collections import deque
from typing import Dict, List, Optional, Tuple

_int = struct.Struct(">i")
_hdr = struct.Struct(">iqi")
WORKLOADS = ("get", "set", "create", "mix", "exists-watch")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default="127.0.0.1:2181", help="host:port")
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--outstanding", type=int, default=100, help="requests in flight per session")
    p.add_argument("--workload", choices=WORKLOADS, default="get")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measurement")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--processes", type=int, default=1, help="client processes")
    p.add_argument("--server-pid", type=int, default=0, help="report this process's CPU time too")


def _frame(body: bytes) -> bytes:
    return _int.pack(len(body)) + body


def _ustr(s: str) -> bytes:
    b = s.encode()
    return _int.pack(len(b)) + b


def _buf(b: bytes) -> bytes:
    return _int.pack(len(b)) + b


OPEN_ACL = _int.pack(1) + _int.pack(31) + _ustr("world") + _ustr("anyone")


class Session:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = struct.pack(">iqiq", 0, 0, 30000, 0) + _buf(b"\x00" * 16) + b"\x00"
        self.sock.sendall(_frame(req))
        self.buf = b""
        self._read_exact_frame()
        self.xid = 0
        self.sent: deque = deque()

    def _read_exact_frame(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                n = _int.unpack_from(self.buf, 0)[0]
                if len(self.buf) >= 4 + n:
                    frame, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return frame
            data = self.sock.recv(65536)
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


def _request(workload: str, path: str, value: bytes, rng: random.Random,
             base: str) -> Tuple[int, bytes]:
    if workload == "get" or (workload == "mix" and rng.random() < 0.9):
        return 4, _ustr(path) + b"\x00"
    if workload in ("set", "mix"):
        return 5, _ustr(path) + _buf(value) + _int.pack(-1)
    if workload == "exists-watch":
        return 3, _ustr(path) + b"\x01"
    return 1, _ustr(base + "/e-") + _buf(value) + OPEN_ACL + _int.pack(3)


def _worker(host: str, port: int, paths: List[str], base: str, args: Dict, out: "multiprocessing.Queue") -> None:
    rng = random.Random(os.getpid())
    value = b"x" * args["value_size"]
    sessions = [Session(host, port) for _ in paths]
    sel = selectors.DefaultSelector()
    for i, s in enumerate(sessions):
        s.sock.setblocking(False)
        sel.register(s.sock, selectors.EVENT_READ, i)
    k = args["outstanding"]
    workload = args["workload"]
    start = time.perf_counter()
    measure_from = start + args["warmup"]
    stop_at = measure_from + args["duration"]
    latencies: List[float] = []
    errors = 0
    cpu0 = os.times()

    def send(i: int, extra: Optional[Tuple[int, bytes]] = None) -> None:
        s = sessions[i]
        s.xid += 1
        op, body = extra if extra else _request(workload, paths[i], value, rng, base)
        s.sent.append((time.perf_counter(), op))
        s.sock.send(_frame(struct.pack(">ii", s.xid, op) + body))

    for i in range(len(sessions)):
        batch = []
        for _ in range(k):
            s = sessions[i]
            s.xid += 1
            op, body = _request(workload, paths[i], value, rng, base)
            s.sent.append((time.perf_counter(), op))
            batch.append(_frame(struct.pack(">ii", s.xid, op) + body))
        sessions[i].sock.sendall(b"".join(batch))
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
                t0, op = s.sent.popleft()
                if err:
                    errors += 1
                if now >= measure_from:
                    latencies.append(now - t0)
                if now >= stop_at:
                    done = True
                    continue
                nxt: Optional[Tuple[int, bytes]] = None
                if op == 1 and not err:
                    created = body[4:4 + _int.unpack_from(body, 0)[0]]
                    nxt = (2, _buf(created) + _int.pack(-1))
                s.xid += 1
                if nxt is None:
                    nxt = _request(workload, paths[i], value, rng, base)
                s.sent.append((now, nxt[0]))
                out_frames.append(_frame(struct.pack(">ii", s.xid, nxt[0]) + nxt[1]))
            s.buf = buf[off:]
            if out_frames:
                s.sock.setblocking(True)
                s.sock.sendall(b"".join(out_frames))
                s.sock.setblocking(False)
        if time.perf_counter() > stop_at + 5:
            break
    cpu1 = os.times()
    for s in sessions:
        s.sock.close()
    out.put((latencies, errors, (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)))


def _proc_cpu(pid: int) -> float:
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _pct(sorted_vals: List[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def run_bench(args: argparse.Namespace) -> int:
    host, _, port_s = args.server.rpartition(":")
    port = int(port_s)
    base = "/zktwist-bench-%d" % os.getpid()
    setup = Session(host, port)
    value = b"v" * args.value_size
    setup.call(1, _ustr(base) + _buf(b"") + OPEN_ACL + _int.pack(0))
    paths = []
    for i in range(args.sessions):
        p = "%s/n%d" % (base, i)
        setup.call(1, _ustr(p) + _buf(value) + OPEN_ACL + _int.pack(0))
        paths.append(p)
    procs = max(1, min(args.processes, args.sessions))
    queue: "multiprocessing.Queue" = multiprocessing.Queue()
    workers = []
    opts = {"outstanding": args.outstanding, "workload": args.workload, "value_size": args.value_size,
            "warmup": args.warmup, "duration": args.duration}
    server_cpu0 = _proc_cpu(args.server_pid) if args.server_pid else 0.0
    for w in range(procs):
        mine = paths[w::procs]
        pr = multiprocessing.Process(target=_worker, args=(host, port, mine, base, opts, queue))
        pr.start()
        workers.append(pr)
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
    server_cpu = (_proc_cpu(args.server_pid) - server_cpu0) if args.server_pid else 0.0
    latencies.sort()
    ops = len(latencies) / args.duration
    print("server=%s workload=%s sessions=%d outstanding=%d value=%dB duration=%.0fs" % (
        args.server, args.workload, args.sessions, args.outstanding, args.value_size, args.duration))
    print("ops/s=%.0f p50=%.2fms p99=%.2fms p999=%.2fms errors=%d" % (
        ops, _pct(latencies, 0.5) * 1000, _pct(latencies, 0.99) * 1000,
        _pct(latencies, 0.999) * 1000, errors))
    total_time = args.duration + args.warmup
    line = "client_cpu=%.0f%%" % (100 * client_cpu / total_time)
    if args.server_pid:
        line += " server_cpu=%.0f%%" % (100 * server_cpu / total_time)
    print(line)
    try:
        for p in paths:
            setup.call(2, _ustr(p) + _int.pack(-1))
        setup.call(2, _ustr(base) + _int.pack(-1))
    except ConnectionError:
        pass
    return 0
