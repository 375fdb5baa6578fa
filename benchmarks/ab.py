#!/usr/bin/env python
"""Interleaved A/B benchmark: Apache ZooKeeper 3.8 against zktwist, one command.

Starts Apache ZooKeeper (Debian's ``zookeeper`` package, ``ZooKeeperServerMain``
with the JVM's default heap and collector, as Debian's ``zkServer.sh`` runs it)
and zktwist (``twistd -n zktwist`` from this checkout) on free loopback ports
with the same zoo.cfg settings (tickTime=2000, forceSync=yes -- fsync on --,
maxClientCnxns=0, a fresh temporary dataDir each), then runs every workload
with ``zktwist bench`` in a subprocess, alternating the servers: round 1 A B,
round 2 A B, ... so slow drifts of the (shared) machine hit both sides alike.
``fill-*`` workloads (memory per znode) get a freshly started server per run.

Prints every round's figures, the medians and the zktwist/Apache ratios;
``--json FILE`` keeps every figure.  Every server started here is stopped,
also on Ctrl-C.

    .venv/bin/python benchmarks/ab.py                        # default workloads, 3 rounds (~20 min)
    .venv/bin/python benchmarks/ab.py --rounds 2 --workloads get-8x100,set-8x100
    .venv/bin/python benchmarks/ab.py --list                 # the workloads
    .venv/bin/python benchmarks/ab.py --profile-dir benchmarks/profiles --workloads get-8x100
        # also records zktwist with py-spy during one extra run per workload
        # (not counted in the figures) and writes a text summary per workload
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
ZOOKEEPER_CONF_DIR = Path("/etc/zookeeper/conf")

#: name -> ``zktwist bench`` arguments (besides --server/--duration/--warmup/--json).
WORKLOADS: Dict[str, List[str]] = {
    "get-8x100": ["--workload", "get", "--sessions", "8", "--outstanding", "100"],
    "set-8x100": ["--workload", "set", "--sessions", "8", "--outstanding", "100"],
    "mix-8x100": ["--workload", "mix", "--sessions", "8", "--outstanding", "100"],
    "create-8x100": ["--workload", "create", "--sessions", "8", "--outstanding", "100"],
    "exists-watch-8x100": ["--workload", "exists-watch", "--sessions", "8", "--outstanding", "100"],
    "get-256x1": ["--workload", "get", "--sessions", "256", "--outstanding", "1", "--processes", "2"],
    "set-256x1": ["--workload", "set", "--sessions", "256", "--outstanding", "1", "--processes", "2"],
    "mix-256x1": ["--workload", "mix", "--sessions", "256", "--outstanding", "1", "--processes", "2"],
    "get-1x1": ["--workload", "get", "--sessions", "1", "--outstanding", "1"],
    "mix-256x1-idle1000-w10000": ["--workload", "mix", "--sessions", "256", "--outstanding", "1",
                                  "--processes", "2", "--idle-sessions", "1000", "--watches", "10000"],
    "fill-100k": ["--workload", "fill", "--znodes", "100000", "--keep"],
    "fill-1m": ["--workload", "fill", "--znodes", "1000000", "--keep"],
}
DEFAULT_WORKLOADS = [
    "get-8x100", "set-8x100", "mix-8x100", "get-256x1", "set-256x1", "mix-256x1", "get-1x1",
    "mix-256x1-idle1000-w10000", "fill-100k", "fill-1m",
]
SERVERS = ("apache", "zktwist")


def is_fill(workload: str) -> bool:
    return workload.startswith("fill")


# ---------------------------------------------------------------------------
# servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def zoo_cfg(data_dir: Path, port: int) -> str:
    """The settings both servers get."""
    return "\n".join([
        "tickTime=2000",
        "dataDir=%s" % data_dir,
        "clientPort=%d" % port,
        "clientPortAddress=127.0.0.1",
        "maxClientCnxns=0",
        "forceSync=yes",
        "4lw.commands.whitelist=*",
        "admin.enableServer=false",
    ]) + "\n"


class Server:
    """One server process on a free port in its own temporary directory."""

    def __init__(self, kind: str, java_opts: Sequence[str] = ()) -> None:
        assert kind in SERVERS
        self.kind = kind
        self.java_opts = list(java_opts)
        self.workdir = Path(tempfile.mkdtemp(prefix="ab-%s-" % kind))
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self, cfg: Path) -> List[str]:
        if self.kind == "apache":
            return ["java", *self.java_opts, "-Dzookeeper.log.dir=%s" % self.workdir,
                    "-Dzookeeper.root.logger=INFO,CONSOLE",
                    "-cp", "%s:%s" % (ZOOKEEPER_CONF_DIR, ZOOKEEPER_JAR),
                    "org.apache.zookeeper.server.ZooKeeperServerMain", str(cfg)]
        twistd = Path(sys.executable).parent / "twistd"
        return [str(twistd) if twistd.exists() else "twistd", "-n", "--pidfile=", "--logfile=-",
                "zktwist", "--config", str(cfg)]

    def start(self, timeout: float = 60.0) -> "Server":
        data = self.workdir / "data"
        data.mkdir()
        cfg = self.workdir / "zoo.cfg"
        cfg.write_text(zoo_cfg(data, self.port))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.workdir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(self.command(cfg), cwd=str(self.workdir), env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _serving(self.port):
                return self
            time.sleep(0.1)
        log_text = (self.workdir / "server.log").read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError("%s did not start:\n%s" % (self.kind, log_text))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _serving(port: int, handshake_timeout: float = 5.0) -> bool:
    """A session can be established (Apache listens before it has loaded its data)."""
    from zktwist.cli.bench import Session
    try:
        s = Session("127.0.0.1", port, handshake_timeout=handshake_timeout)
    except (ConnectionError, OSError):
        return False
    s.close()
    return True


# ---------------------------------------------------------------------------
# running the bench and reading its figures

def bench_command(workload: str, port: int, pid: int, duration: float, warmup: float,
                  json_path: str) -> List[str]:
    cmd = [sys.executable, "-m", "zktwist.cli.bench", "--server", "127.0.0.1:%d" % port,
           "--server-pid", str(pid), "--json", json_path] + WORKLOADS[workload]
    if not is_fill(workload):
        cmd += ["--duration", str(duration), "--warmup", str(warmup)]
    return cmd


#: figures kept per run: bench JSON key -> our name
FIGURES = {
    "ops": "ops", "p50_ms": "p50", "p99_ms": "p99", "p999_ms": "p999",
    "client_cpu_pct": "client_cpu", "server_cpu_pct": "server_cpu", "errors": "errors",
    "rss_per_znode": "rss_per_znode", "rss_after": "rss_after", "rss_before": "rss_before",
    "heap_per_znode": "heap_per_znode", "heap_after": "heap_after", "heap_before": "heap_before",
    "fill_seconds": "fill_seconds", "other_cpu_pct": "other_cpu",
}


def parse_bench_json(text: str) -> Dict[str, float]:
    """The figures of one ``zktwist bench --json`` result (missing ones are left out)."""
    raw = json.loads(text)
    out: Dict[str, float] = {}
    for key, name in FIGURES.items():
        if key in raw and raw[key] is not None:
            out[name] = float(raw[key])
    return out


def run_one(workload: str, server: Server, duration: float, warmup: float) -> Dict[str, float]:
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        cmd = bench_command(workload, server.port, server.pid, duration, warmup, path)
        proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True,
                              timeout=duration + warmup + 900)
        if proc.returncode not in (0, 1) or not os.path.getsize(path):
            raise RuntimeError("bench failed (%d): %s\n%s" % (proc.returncode, " ".join(cmd), proc.stderr[-3000:]))
        with open(path) as f:
            return parse_bench_json(f.read())
    finally:
        os.unlink(path)


def background_busy(seconds: float = 2.0) -> float:
    """% of one CPU the machine spent busy over ``seconds`` (our servers idle meanwhile)."""
    from zktwist.cli.bench import machine_cpu
    c0, t0 = machine_cpu(), time.perf_counter()
    time.sleep(seconds)
    return 100 * (machine_cpu() - c0) / (time.perf_counter() - t0)


def wait_quiet(limit_pct: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other work uses under ``limit_pct`` of one CPU; the last reading."""
    deadline = time.monotonic() + max_wait
    busy = background_busy()
    while busy > limit_pct and time.monotonic() < deadline:
        busy = background_busy(5.0)
    return busy


# ---------------------------------------------------------------------------
# medians, ratios, the table

Result = Dict[str, Any]  # {"workload", "server", "round", figures...}


def median(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def medians(results: Sequence[Result]) -> Dict[Tuple[str, str], Dict[str, float]]:
    """(workload, server) -> figure -> median over rounds."""
    groups: Dict[Tuple[str, str], List[Result]] = defaultdict(list)
    for r in results:
        groups[(r["workload"], r["server"])].append(r)
    out: Dict[Tuple[str, str], Dict[str, float]] = {}
    for key, rs in groups.items():
        names = sorted({n for r in rs for n in r if n not in ("workload", "server", "round")})
        out[key] = {n: median(r[n] for r in rs if n in r) for n in names}
    return out


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0 or a != a or b != b:
        return None
    return a / b


def _fmt_ops(v: float) -> str:
    return "%.1fk" % (v / 1000) if v >= 1000 else "%.0f" % v


def _fmt_ms(v: float) -> str:
    return "%.2f" % v if v < 10 else "%.1f" % v


def describe(r: Dict[str, float], fill: bool) -> str:
    """One cell: the figures of a run (or of the medians)."""
    if fill:
        parts = ["rss %.0f B/znode (%.0f MiB)" % (r.get("rss_per_znode", float("nan")),
                                                  r.get("rss_after", 0) / 2**20)]
        if "heap_per_znode" in r:
            parts.append("heap %.0f B/znode (%.0f MiB)" % (r["heap_per_znode"], r.get("heap_after", 0) / 2**20))
        parts.append("cpu %.0f%%" % r.get("server_cpu", 0))
        return ", ".join(parts)
    return "%s/s p50 %s p99 %s p999 %s ms, cpu client %.0f%% server %.0f%% other %.0f%%" % (
        _fmt_ops(r.get("ops", 0)), _fmt_ms(r.get("p50", 0)), _fmt_ms(r.get("p99", 0)),
        _fmt_ms(r.get("p999", 0)), r.get("client_cpu", 0), r.get("server_cpu", 0),
        r.get("other_cpu", 0))


def ratio_cells(med: Dict[Tuple[str, str], Dict[str, float]], workload: str) -> Dict[str, Optional[float]]:
    z = med.get((workload, "zktwist"), {})
    a = med.get((workload, "apache"), {})
    if is_fill(workload):
        return {"rss/rss": ratio(z.get("rss_per_znode"), a.get("rss_per_znode")),
                "rss/heap": ratio(z.get("rss_per_znode"), a.get("heap_per_znode"))}
    return {"ops": ratio(z.get("ops"), a.get("ops")), "p50": ratio(z.get("p50"), a.get("p50")),
            "p99": ratio(z.get("p99"), a.get("p99"))}


def format_table(results: Sequence[Result], workloads: Sequence[str]) -> str:
    med = medians(results)
    lines = []
    for w in workloads:
        fill = is_fill(w)
        lines.append("== %s (%s)" % (w, " ".join(WORKLOADS.get(w, []))))
        for server in SERVERS:
            rounds = sorted((r for r in results if r["workload"] == w and r["server"] == server),
                            key=lambda r: r["round"])
            for r in rounds:
                lines.append("  %-8s round %d: %s" % (server, r["round"], describe(r, fill)))
            if (w, server) in med:
                lines.append("  %-8s median : %s" % (server, describe(med[(w, server)], fill)))
        cells = ratio_cells(med, w)
        lines.append("  zktwist/apache: " + "  ".join(
            "%s %s" % (k, "%.2fx" % v if v is not None else "n/a") for k, v in cells.items()))
    lines.append("")
    lines.append("| workload | Apache ZooKeeper (median) | zktwist (median) | zktwist / Apache |")
    lines.append("|---|---|---|---|")
    for w in workloads:
        fill = is_fill(w)
        a = med.get((w, "apache"))
        z = med.get((w, "zktwist"))
        cells = ratio_cells(med, w)
        lines.append("| %s | %s | %s | %s |" % (
            w, describe(a, fill) if a else "-", describe(z, fill) if z else "-",
            ", ".join("%s %s" % (k, "%.2fx" % v if v is not None else "n/a") for k, v in cells.items())))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# py-spy profiles

def summarize_collapsed(lines: Iterable[str], top: int = 25, only: str = "") -> str:
    """Text summary of py-spy ``--format raw`` (collapsed stacks: ``f1;f2;f3 count``).

    Self time per function (the innermost frame), inclusive time (a function
    anywhere on the stack, counted once per sample) and the share of samples
    in which the thread was idle in the poller (with ``--idle``).  ``only``:
    count only stacks with a frame containing it (``mainLoop``: the reactor
    thread, leaving out idle storage and thread-pool threads).
    """
    self_t: Dict[str, int] = defaultdict(int)
    incl: Dict[str, int] = defaultdict(int)
    total = 0
    idle = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line or " " not in line:
            continue
        stack, _, count_s = line.rpartition(" ")
        try:
            count = int(count_s)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        if not frames or (only and not any(only in f for f in frames)):
            continue
        total += count
        leaf = frames[-1]
        self_t[leaf] += count
        if any(k in leaf for k in ("poll (", "epoll", "select (", "doPoll")):
            idle += count
        for f in set(frames):
            incl[f] += count
    if not total:
        return "no samples\n"
    out = ["samples%s: %d; idle in the poller: %.1f%%" % (
        " of stacks with %s" % only if only else "", total, 100.0 * idle / total), "",
           "self time (innermost frame):"]
    for f, c in sorted(self_t.items(), key=lambda kv: -kv[1])[:top]:
        out.append("  %5.1f%%  %s" % (100.0 * c / total, f))
    out += ["", "inclusive time (anywhere on the stack):"]
    for f, c in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        out.append("  %5.1f%%  %s" % (100.0 * c / total, f))
    return "\n".join(out) + "\n"


def profile_one(workload: str, server: Server, duration: float, warmup: float, out_dir: Path,
                rate: int = 250) -> Path:
    """One extra bench run with py-spy recording the zktwist server; writes the raw stacks and a summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / ("%s.raw.txt" % workload)
    pyspy = Path(sys.executable).parent / "py-spy"
    fd, jpath = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    bench = subprocess.Popen(bench_command(workload, server.port, server.pid, duration, warmup, jpath),
                             cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(warmup + 0.5)
    spy = subprocess.run([str(pyspy) if pyspy.exists() else "py-spy", "record", "--pid", str(server.pid),
                          "--rate", str(rate), "--duration", str(max(1, int(duration - 1))),
                          "--format", "raw", "--idle", "--nonblocking", "-o", str(raw)],
                         capture_output=True, text=True)
    bench_out, _ = bench.communicate()
    os.unlink(jpath)
    summary = out_dir / ("%s.txt" % workload)
    with open(raw) as f:
        lines = f.readlines()
    text = ("== the reactor thread only\n" + summarize_collapsed(lines, only="mainLoop")
            + "\n== all threads (idle ones included)\n" + summarize_collapsed(lines))
    summary.write_text("zktwist server under `zktwist bench %s` (py-spy %s Hz, --idle, --nonblocking)\n\n"
                       "bench output (with py-spy attached):\n%s\n%s" % (
                           " ".join(WORKLOADS[workload]), rate, bench_out, text))
    if spy.returncode:
        print(spy.stderr, file=sys.stderr)
    return summary


# ---------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS), help="comma-separated (see --list)")
    p.add_argument("--servers", default="apache,zktwist", help="which sides to run (A/B order)")
    p.add_argument("--server-warmup", type=float, default=15.0,
                   help="seconds of unmeasured mix-8x100 load on each long-running server after it "
                        "starts (lets the JVM's JIT compile the hot paths before round 1)")
    p.add_argument("--quiet-pct", type=float, default=0.0,
                   help="before each workload's A/B pair, wait until the machine's other work uses "
                        "under this %% of one CPU (0: do not wait); the reading is kept as 'background'")
    p.add_argument("--quiet-wait", type=float, default=120.0, help="longest wait for --quiet-pct, seconds")
    p.add_argument("--java-opts", default="", help="extra JVM options for Apache ZooKeeper, e.g. -Xmx2g")
    p.add_argument("--json", default="", metavar="FILE", help="write every figure as JSON")
    p.add_argument("--profile-dir", default="", help="also py-spy zktwist once per workload, summaries here")
    p.add_argument("--profile-only", action="store_true", help="only the py-spy runs, no A/B rounds")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for name in WORKLOADS:
            print("%-28s %s" % (name, " ".join(WORKLOADS[name])))
        return 0
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        p.error("unknown workloads: %s (see --list)" % ", ".join(unknown))
    sides = [s.strip() for s in args.servers.split(",") if s.strip()]
    if "apache" in sides and not (ZOOKEEPER_JAR.exists() and shutil.which("java")):
        p.error("Apache ZooKeeper not found (%s and java); install Debian's zookeeper package" % ZOOKEEPER_JAR)
    java_opts = args.java_opts.split()
    results: List[Result] = []
    running: Dict[str, Server] = {}
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))

    def server_for(side: str, fresh: bool) -> Server:
        if fresh:
            return Server(side, java_opts).start()
        if side not in running:
            running[side] = Server(side, java_opts).start()
            if args.server_warmup > 0:
                run_one("mix-8x100", running[side], args.server_warmup, 0.5)
        return running[side]

    started = time.time()
    status = 0
    try:
        if not args.profile_only:
            for rnd in range(1, args.rounds + 1):
                for w in workloads:
                    background = None
                    if args.quiet_pct > 0:
                        for side in sides:
                            if not is_fill(w):
                                server_for(side, False)
                        background = wait_quiet(args.quiet_pct, args.quiet_wait)
                    for side in sides:
                        srv = server_for(side, is_fill(w))
                        try:
                            figs = run_one(w, srv, args.duration, args.warmup)
                        finally:
                            if is_fill(w):
                                srv.stop()
                        rec: Result = {"workload": w, "server": side, "round": rnd, **figs}
                        if background is not None:
                            rec["background"] = background
                        results.append(rec)
                        print("round %d %-28s %-8s %s" % (rnd, w, side, describe(figs, is_fill(w))), flush=True)
        if args.profile_dir:
            for w in workloads:
                srv = server_for("zktwist", is_fill(w))
                try:
                    path = profile_one(w, srv, args.duration, args.warmup, Path(args.profile_dir))
                finally:
                    if is_fill(w):
                        srv.stop()
                print("profile of zktwist under %s: %s" % (w, path), flush=True)
    except KeyboardInterrupt:
        print("interrupted; stopping the servers (figures so far below)", file=sys.stderr)
        status = 130
    finally:
        for srv in running.values():
            srv.stop()
    if results:
        print()
        print("%d round(s), interleaved %s per workload, %.0fs runs; %s; load average now %s" % (
            args.rounds, " ".join(sides), args.duration, time.strftime("%Y-%m-%d %H:%M"),
            " ".join(open("/proc/loadavg").read().split()[:3])))
        print(format_table(results, workloads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started, "rounds": args.rounds, "duration": args.duration,
                       "workloads": {w: WORKLOADS[w] for w in workloads}, "results": results}, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
