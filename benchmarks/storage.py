#!/usr/bin/env python
"""Storage benchmark: durable writes, snapshots and restarts of Apache ZooKeeper 3.8 and
zktwist with each storage backend, interleaved, one command.

Three sides, each a standalone server on a free loopback port with the same zoo.cfg
(``benchmarks/ab.py``'s: tickTime=2000, forceSync=yes, maxClientCnxns=0, default
snapCount=100000) and a fresh temporary data dir: ``apache`` (Debian's 3.8.0, JVM
defaults), ``filelog`` and ``sqlite`` (``storage.backend``).  Every round runs every
side once per measurement, in turn (A B C A B C ...), so slow drifts of the machine hit
all sides alike.

* **Durable writes** (group commit): ``zktwist bench`` set 8x100 and create 8x100 on a
  fresh server, after ``--server-warmup`` seconds of the same load unmeasured (the
  JVM's JIT); ops/s and p99.
* **Snapshots and restarts**, per size (100k, 1M znodes): fill the tree with
  ``zktwist bench --workload fill`` (directories of 1000 znodes of 100 bytes), read the
  longest snapshot taken while the fill was being served (mntr ``max_snapshottime``);
  ``kill -9`` the server and start it again on its data: the seconds from exec to the
  first established session, and what mntr says the start-up did (snapshot load, txns
  replayed and their replay time, the whole database load, the start-up snapshot both
  servers write of the recovered tree); then stop it (SIGTERM) and start it once more,
  now from that snapshot alone.

Prints every run, then the medians per side; ``--json FILE`` keeps every figure.  Every
server started here is stopped and its data removed, also on Ctrl-C.

    .venv/bin/python benchmarks/storage.py                              # 3 rounds, 100k and 1M (~30 min)
    .venv/bin/python benchmarks/storage.py --rounds 1 --sizes 100k      # a quick look (~3 min)
    .venv/bin/python benchmarks/storage.py --sides filelog,sqlite --parts writes
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab  # noqa: E402  (benchmarks/ab.py: servers, bench runs, medians)

from zktwist.cli import bench  # noqa: E402

SIDES = ("apache", "filelog", "sqlite")
WRITE_WORKLOADS = ("set-8x100", "create-8x100")
SIZES = {"100k": "fill-100k", "1m": "fill-1m"}
PARTS = ("writes", "restarts")


def mntr(port: int) -> Dict[str, float]:
    """The numeric mntr values, keys without the ``zk_`` prefix."""
    out: Dict[str, float] = {}
    for key, value in bench.mntr("127.0.0.1", port, timeout=30.0).items():
        try:
            out[key[3:] if key.startswith("zk_") else key] = float(value)
        except ValueError:
            pass
    return out


def settled_mntr(port: int, quiet: float = 5.0, limit: float = 300.0) -> Dict[str, float]:
    """mntr once no snapshot has finished for ``quiet`` seconds (one may still be running
    when the fill's last reply arrives)."""
    deadline = time.monotonic() + limit
    m = mntr(port)
    since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.5)
        again = mntr(port)
        if again.get("cnt_snapshottime") != m.get("cnt_snapshottime"):
            since = time.monotonic()
        m = again
    return m


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


class StorageServer(ab.Server):
    """A server whose data dir outlives its process: started, killed and started again."""

    def __init__(self, side: str, java_opts: Sequence[str] = ()) -> None:
        super().__init__("apache" if side == "apache" else "zktwist", java_opts)
        self.side = side
        self.data = self.workdir / "data"
        self.data.mkdir()
        self.cfg = self.workdir / "zoo.cfg"
        extra = "storage.backend=%s\n" % side if side != "apache" else ""
        self.cfg.write_text(ab.zoo_cfg(self.data, self.port) + extra)

    def start(self, timeout: float = 900.0) -> float:  # type: ignore[override]
        """Start on the data dir; seconds from exec until a session can be established."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ab.ROOT), env.get("PYTHONPATH", "")) if p)
        t0 = time.perf_counter()
        with open(self.workdir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(self.command(self.cfg), cwd=str(self.workdir), env=env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = t0 + timeout
        while time.perf_counter() < deadline and self.proc.poll() is None:
            # A short handshake timeout: Apache ZooKeeper accepts connections while it loads
            # its data and may never answer one taken then (5 s added 5 s to two restarts).
            if ab._serving(self.port, handshake_timeout=0.5):
                return time.perf_counter() - t0
            time.sleep(0.02)
        tail = (self.workdir / "server.log").read_text(errors="replace")[-3000:]
        self.halt(signal.SIGKILL)
        raise RuntimeError("%s did not serve within %.0fs:\n%s" % (self.side, timeout, tail))

    def halt(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGTERM, or SIGKILL for a crash), keeping the data."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(60)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        """Stop the process and remove its data."""
        self.halt(signal.SIGKILL)
        super().stop()


# ---------------------------------------------------------------------------
# the measurements

def measure_writes(side: str, workload: str, args: argparse.Namespace,
                   java_opts: Sequence[str]) -> Dict[str, float]:
    srv = StorageServer(side, java_opts)
    try:
        srv.start()
        if args.server_warmup > 0:
            ab.run_one(workload, srv, args.server_warmup, 0.5)
        return ab.run_one(workload, srv, args.duration, args.warmup)
    finally:
        srv.stop()


#: mntr figures a start-up reports (3.8.0's ServerMetrics names, ms unless said)
STARTUP = {"max_startup_snap_load_time": "snap_load_ms", "max_startup_txns_loaded": "txns_replayed",
           "max_startup_txns_load_time": "replay_ms", "max_dbinittime": "db_load_ms",
           "max_snapshottime": "startup_snapshot_ms"}


def startup_figures(port: int, prefix: str) -> Dict[str, float]:
    m = mntr(port)
    return {prefix + name: m[key] for key, name in STARTUP.items() if key in m}


def measure_restarts(side: str, size: str, java_opts: Sequence[str]) -> Dict[str, float]:
    srv = StorageServer(side, java_opts)
    try:
        srv.start()
        figs = dict(ab.run_one(SIZES[size], srv, 0, 0))
        m = settled_mntr(srv.port)
        figs["snapshots_while_filling"] = m.get("cnt_snapshottime", 0) - 1  # minus the start-up one
        figs["max_snapshot_while_filling_ms"] = m.get("max_snapshottime", 0)
        figs["znodes"] = m.get("znode_count", 0)
        srv.halt(signal.SIGKILL)
        figs["data_mib"] = dir_bytes(srv.data) / 2**20
        figs["restart_after_kill_s"] = srv.start()
        figs.update(startup_figures(srv.port, "kill_"))
        srv.halt(signal.SIGTERM)
        figs["restart_from_snapshot_s"] = srv.start()
        figs.update(startup_figures(srv.port, "snap_"))
        after = mntr(srv.port).get("znode_count", 0)
        if after != figs["znodes"]:
            raise RuntimeError("%s came back with %d znodes, not %d" % (side, after, figs["znodes"]))
        return figs
    finally:
        srv.stop()


# ---------------------------------------------------------------------------
# output

def fmt(value: Optional[float], unit: str = "") -> str:
    if value is None or value != value:
        return "-"
    if unit == "ops":
        return "%.1fk/s" % (value / 1000)
    if unit == "s":
        return "%.2f s" % value
    if unit == "ms":
        return "%.1f ms" % value if value < 100 else "%.0f ms" % value
    if unit == "mib":
        return "%.0f MiB" % value
    return "%.0f" % value


#: (figure, unit, label) rows of the restart table
RESTART_ROWS = [
    ("fill_seconds", "s", "fill (pipelined creates)"),
    ("snapshots_while_filling", "", "snapshots taken while filling"),
    ("max_snapshot_while_filling_ms", "ms", "longest snapshot while serving the fill"),
    ("data_mib", "mib", "data on disk after the fill"),
    ("restart_after_kill_s", "s", "kill -9, restart: exec to first session"),
    ("kill_snap_load_ms", "ms", "  of which: snapshot load"),
    ("kill_txns_replayed", "", "  txns replayed after it"),
    ("kill_replay_ms", "ms", "  their replay"),
    ("kill_db_load_ms", "ms", "  whole database load"),
    ("kill_startup_snapshot_ms", "ms", "  start-up snapshot of the whole tree"),
    ("restart_from_snapshot_s", "s", "stop, restart from that snapshot: exec to first session"),
    ("snap_snap_load_ms", "ms", "  of which: snapshot load"),
]


def table(results: List[Dict[str, Any]], sides: Sequence[str]) -> str:
    med = ab.medians(results)
    lines = []
    writes = [w for w in WRITE_WORKLOADS if any(r["workload"] == w for r in results)]
    if writes:
        lines.append("| durable writes | " + " | ".join(sides) + " | sqlite / filelog |")
        lines.append("|---" * (len(sides) + 2) + "|")
        for w in writes:
            cells = []
            for side in sides:
                f = med.get((w, side), {})
                cells.append("%s, p99 %s" % (fmt(f.get("ops"), "ops"), fmt(f.get("p99"), "ms")))
            r = ab.ratio(med.get((w, "sqlite"), {}).get("ops"), med.get((w, "filelog"), {}).get("ops"))
            lines.append("| %s | %s | %s |" % (w, " | ".join(cells), "%.2fx" % r if r else "-"))
        lines.append("")
    for size in SIZES:
        key = "restart-" + size
        if not any(r["workload"] == key for r in results):
            continue
        lines.append("| %s znodes | %s |" % (size, " | ".join(sides)))
        lines.append("|---" * (len(sides) + 1) + "|")
        for fig, unit, label in RESTART_ROWS:
            cells = [fmt(med.get((key, side), {}).get(fig), unit) for side in sides]
            lines.append("| %s | %s |" % (label, " | ".join(cells)))
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sides", default=",".join(SIDES), help="comma-separated: apache, filelog, sqlite")
    p.add_argument("--parts", default=",".join(PARTS), help="writes, restarts or both")
    p.add_argument("--sizes", default=",".join(SIZES), help="tree sizes for restarts: 100k, 1m")
    p.add_argument("--duration", type=float, default=8.0, help="seconds measured per write run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--server-warmup", type=float, default=5.0,
                   help="seconds of the same write load, unmeasured, on each fresh server first")
    p.add_argument("--java-opts", default="", help="extra JVM options for Apache ZooKeeper")
    p.add_argument("--json", default="", metavar="FILE", help="write every figure as JSON")
    args = p.parse_args(argv)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    for name, chosen, known in (("sides", sides, SIDES), ("parts", parts, PARTS), ("sizes", sizes, SIZES)):
        bad = [c for c in chosen if c not in known]
        if bad:
            p.error("unknown %s: %s (choose from %s)" % (name, ", ".join(bad), ", ".join(known)))
    if "apache" in sides and not ab.ZOOKEEPER_JAR.exists():
        p.error("Apache ZooKeeper not found (%s); install Debian's zookeeper package" % ab.ZOOKEEPER_JAR)
    java_opts = args.java_opts.split()
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))

    jobs: List[tuple] = []  # (name, run(side) -> figures)
    if "writes" in parts:
        for w in WRITE_WORKLOADS:
            jobs.append((w, lambda side, w=w: measure_writes(side, w, args, java_opts)))
    if "restarts" in parts:
        for size in sizes:
            jobs.append(("restart-" + size, lambda side, size=size: measure_restarts(side, size, java_opts)))

    results: List[Dict[str, Any]] = []
    started = time.time()
    status = 0
    try:
        for rnd in range(1, args.rounds + 1):
            for name, run in jobs:
                for side in sides:
                    figs = run(side)
                    results.append({"workload": name, "server": side, "round": rnd, **figs})
                    shown = {k: round(v, 3) for k, v in sorted(figs.items())}
                    print("round %d %-14s %-8s %s" % (rnd, name, side, shown), flush=True)
    except KeyboardInterrupt:
        print("interrupted (figures so far below)", file=sys.stderr)
        status = 130
    if results:
        print()
        print("%d round(s), sides interleaved (%s); %s; load average now %s" % (
            args.rounds, " ".join(sides), time.strftime("%Y-%m-%d %H:%M"),
            " ".join(open("/proc/loadavg").read().split()[:3])))
        print("medians over rounds:\n")
        print(table(results, sides))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started, "rounds": args.rounds, "results": results}, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
