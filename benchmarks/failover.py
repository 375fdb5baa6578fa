"""Failover time of a 3-node (or N-node) ensemble: kill -9 the leader, time the next write.

Starts an ensemble of real processes on loopback (Apache ZooKeeper 3.8 from
Debian's package, or zktwist under twistd, through ``tests/support/ensemble.py``),
then for each of R rounds:

1. one raw-protocol writer per follower (its own session, on that member
   only) issues setData back to back, one outstanding;
2. the leader gets SIGKILL at ``t_kill``; a writer whose connection drops
   reattaches its session (same id and password) on the same member every
   ``--retry-ms``, and resends (``--client kazoo``: a stock kazoo client
   that knows every member does its own reconnecting instead);
3. the round's figures: ``first`` = from ``t_kill`` to the first acknowledged
   write *issued after the kill* on any member, ``all`` = to the moment every
   surviving member has acknowledged one such write;
4. the killed member is restarted and the ensemble waits until all members
   serve again (and ``--settle`` seconds) before the next round.

Reports median, p90 and max of both over the rounds (and each round), as
text and optionally JSON.  Example::

    python benchmarks/failover.py --kind apache --rounds 20
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.ensemble import Ensemble  # noqa: E402

_int = struct.Struct(">i")
OP_CREATE, OP_SETDATA = 1, 5


def _ustr(b: bytes) -> bytes:
    return _int.pack(len(b)) + b


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _read_frame(sock: socket.socket) -> bytes:
    (n,) = _int.unpack(_read_exactly(sock, 4))
    return _read_exactly(sock, n)


class RawSession:
    """A ZooKeeper session over one socket that can reattach after the socket drops."""

    def __init__(self, port: int, timeout_ms: int = 10000, io_timeout: float = 5.0) -> None:
        self.port = port
        self.timeout_ms = timeout_ms
        self.io_timeout = io_timeout
        self.session_id = 0
        self.passwd = b"\x00" * 16
        self.sock: Optional[socket.socket] = None
        self.xid = 0
        self.reattached = 0
        self.expired = 0

    def connect(self) -> None:
        """(Re)attach the session; raises OSError/ConnectionError if the member does not serve."""
        self.close()
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.io_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            body = (struct.pack(">iqiq", 0, 0, self.timeout_ms, self.session_id)
                    + _ustr(self.passwd) + b"\x00")
            sock.sendall(_int.pack(len(body)) + body)
            reply = _read_frame(sock)
        except BaseException:
            sock.close()
            raise
        _, negotiated, sid, plen = struct.unpack(">iiqi", reply[:20])
        if negotiated <= 0:          # the session expired: start a new one
            sock.close()
            self.expired += 1
            self.session_id, self.passwd = 0, b"\x00" * 16
            raise ConnectionError("session expired")
        if self.session_id:
            if sid != self.session_id:
                raise AssertionError(f"reattach gave session {sid:#x}, not {self.session_id:#x}")
            self.reattached += 1
        self.session_id, self.passwd = sid, reply[20:20 + plen]
        self.sock = sock

    def call(self, op: int, body: bytes) -> int:
        """One request; its error code (raises on a dropped connection)."""
        assert self.sock is not None
        self.xid += 1
        self.sock.sendall(_int.pack(8 + len(body)) + struct.pack(">ii", self.xid, op) + body)
        while True:
            frame = _read_frame(self.sock)
            xid, _, err = struct.unpack(">iqi", frame[:16])
            if xid == self.xid:
                return err

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


class Writer(threading.Thread):
    """setData on ``path`` back to back through one member; records (sent, acked) times."""

    def __init__(self, sid: int, port: int, path: bytes, retry: float) -> None:
        super().__init__(name=f"writer-{sid}", daemon=True)
        self.sid = sid
        self.session = RawSession(port)
        self.path = path
        self.retry = retry
        self.acks: List[Tuple[float, float]] = []
        self.failures = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        value = _ustr(b"x" * 32)
        body = _ustr(self.path) + value + _int.pack(-1)
        while not self.stopping.is_set():
            if self.session.sock is None:
                try:
                    self.session.connect()
                except (OSError, ConnectionError, struct.error):
                    self.session.close()
                    self.stopping.wait(self.retry)
                    continue
            sent = time.monotonic()
            try:
                err = self.session.call(OP_SETDATA, body)
            except (OSError, ConnectionError, struct.error):
                self.session.close()
                self.failures += 1
                continue
            acked = time.monotonic()
            if err == 0:
                with self.lock:
                    self.acks.append((sent, acked))
            else:
                self.failures += 1
                self.stopping.wait(self.retry)
        self.session.close()

    def first_ack_after(self, t: float) -> Optional[float]:
        with self.lock:
            for sent, acked in self.acks:
                if sent >= t:
                    return acked
        return None


class KazooWriter(Writer):
    """The same, through a stock kazoo client that knows every member (its own first)."""

    def __init__(self, sid: int, hosts: str, path: bytes, retry: float) -> None:
        super().__init__(sid, 0, path, retry)
        import logging

        from kazoo.client import KazooClient
        logging.getLogger("kazoo").setLevel(logging.CRITICAL)   # a reconnect per kill is expected
        self.client = KazooClient(hosts=hosts, timeout=10.0, randomize_hosts=False)
        self.client.start(timeout=30)

    def run(self) -> None:
        from kazoo.exceptions import KazooException
        path = self.path.decode()
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                self.client.set_async(path, b"x" * 32).get(timeout=5)
            except (KazooException, Exception):
                self.failures += 1
                self.stopping.wait(self.retry)
                continue
            with self.lock:
                self.acks.append((sent, time.monotonic()))
        self.client.stop()
        self.client.close()


def summarize(values: List[float]) -> Dict[str, float]:
    s = sorted(values)
    if not s:
        return {"n": 0}
    return {"n": len(s), "median": statistics.median(s), "p90": s[min(len(s) - 1, int(0.9 * len(s)))],
            "min": s[0], "max": s[-1], "mean": statistics.fmean(s)}


def setup_paths(ens: Ensemble, paths: List[bytes]) -> None:
    leader = ens.wait_for_leader(30, all_serving=True)
    s = RawSession(ens[leader].port)
    s.connect()
    try:
        for p in [b"/failover-bench"] + paths:
            acl = _int.pack(1) + _int.pack(31) + _ustr(b"world") + _ustr(b"anyone")
            err = s.call(OP_CREATE, _ustr(p) + _ustr(b"") + acl + _int.pack(0))
            if err not in (0, -110):   # -110: exists
                raise RuntimeError(f"create {p!r}: error {err}")
    finally:
        s.close()


def one_round(ens: Ensemble, retry: float, deadline: float, client: str = "raw") -> Dict[str, Any]:
    """Kill the leader once; the round's figures."""
    leader = ens.wait_for_leader(60, all_serving=True)
    survivors = [sid for sid in ens.members if sid != leader]
    if client == "kazoo":
        writers: List[Writer] = [
            KazooWriter(sid, ens.hosts_of([sid] + [s for s in ens.members if s != sid]),
                        b"/failover-bench/w%d" % sid, retry) for sid in survivors]
    else:
        writers = [Writer(sid, ens[sid].port, b"/failover-bench/w%d" % sid, retry) for sid in survivors]
    for w in writers:
        w.start()
    try:
        t0 = time.monotonic()
        while not all(w.acks for w in writers):      # everyone writing before the kill
            if time.monotonic() - t0 > 30:
                raise TimeoutError("writers did not start writing")
            time.sleep(0.01)
        time.sleep(0.3)
        t_kill = ens.kill(leader)
        firsts: Dict[int, float] = {}
        while len(firsts) < len(writers) and time.monotonic() - t_kill < deadline:
            for w in writers:
                if w.sid not in firsts:
                    t = w.first_ack_after(t_kill)
                    if t is not None:
                        firsts[w.sid] = t - t_kill
            time.sleep(0.005)
    finally:
        for w in writers:
            w.stopping.set()
        for w in writers:
            w.join(10)
    new_leader = ens.leader()
    return {
        "killed": leader, "new_leader": new_leader,
        "first": min(firsts.values()) if firsts else None,
        "all": max(firsts.values()) if len(firsts) == len(writers) else None,
        "per_member": {str(k): v for k, v in sorted(firsts.items())},
        "reattached": sum(w.session.reattached for w in writers),
        "expired": sum(w.session.expired for w in writers),
        "failed_requests": sum(w.failures for w in writers),
    }


def run(args: argparse.Namespace) -> Dict[str, Any]:
    ens = Ensemble(args.kind, size=args.size, proxy=args.proxy, tick_time=args.tick_time,
                   init_limit=args.init_limit, sync_limit=args.sync_limit)
    rounds: List[Dict[str, Any]] = []
    try:
        ens.start()
        setup_paths(ens, [b"/failover-bench/w%d" % sid for sid in ens.members])
        for r in range(args.rounds):
            res = one_round(ens, args.retry_ms / 1000.0, args.deadline, args.client)
            rounds.append(res)
            print("round %2d: killed %d -> leader %s  first write %s  all members %s  %s" % (
                r + 1, res["killed"], res["new_leader"],
                "%.3fs" % res["first"] if res["first"] is not None else "none",
                "%.3fs" % res["all"] if res["all"] is not None else "none",
                " ".join("%s:%.3f" % kv for kv in res["per_member"].items())), flush=True)
            ens.restart(res["killed"])
            ens.wait_for_leader(60, all_serving=True)
            time.sleep(args.settle)
    finally:
        ens.cleanup()
    out = {
        "kind": args.kind, "size": args.size, "proxy": args.proxy, "client": args.client,
        "tickTime": args.tick_time, "initLimit": args.init_limit, "syncLimit": args.sync_limit,
        "first": summarize([r["first"] for r in rounds if r["first"] is not None]),
        "all": summarize([r["all"] for r in rounds if r["all"] is not None]),
        "rounds": rounds,
        "no_write_within_deadline": sum(1 for r in rounds if r["first"] is None),
        "loadavg": os.getloadavg(),
    }
    for key, label in (("first", "kill -> first acknowledged write"),
                       ("all", "kill -> a write acknowledged on every survivor")):
        s = out[key]
        if s.get("n"):
            print("%s: median %.3fs p90 %.3fs max %.3fs min %.3fs (n=%d)" % (
                label, s["median"], s["p90"], s["max"], s["min"], s["n"]))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=("apache", "zktwist"), default="apache")
    p.add_argument("--size", type=int, default=3)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--tick-time", type=int, default=500)
    p.add_argument("--init-limit", type=int, default=10)
    p.add_argument("--sync-limit", type=int, default=4)
    p.add_argument("--retry-ms", type=float, default=10.0, help="reconnect / retry interval")
    p.add_argument("--deadline", type=float, default=30.0, help="give a round up after this many seconds")
    p.add_argument("--settle", type=float, default=1.0, help="seconds between a rejoin and the next kill")
    p.add_argument("--client", choices=("raw", "kazoo"), default="raw",
                   help="raw: reattach on the same member every --retry-ms; kazoo: a stock "
                        "KazooClient knowing every member (its own first), --retry-ms between failures")
    p.add_argument("--proxy", action="store_true", help="route peer links through the fault proxy")
    p.add_argument("--json", default="", metavar="FILE")
    args = p.parse_args(argv)
    out = run(args)
    if args.json:
        text = json.dumps(out, sort_keys=True, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0 if out["first"].get("n") == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
