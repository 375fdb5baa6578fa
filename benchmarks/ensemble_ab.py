"""3-node ensemble A/B: Apache ZooKeeper 3.8 vs zktwist, ``zktwist bench --hosts``.

Starts a 3-node loopback ensemble of each kind asked for (``tests/support/ensemble.py``;
both by default), then runs, interleaved (for each round, each workload, each kind),
``zktwist bench --hosts m1,m2,m3`` -- sessions spread round-robin over the
members, so reads are served by every member and writes on followers are
forwarded to the leader -- for get and set at 8 x 100 and 256 x 1 (256 x 1
with ``--processes 2``).  Every member shares the machine's cores with the
client, so only ratios mean much.  Reports per run ops/s, p50/p99 and the
members' CPU (all members, over the whole bench run, in % of one CPU), then
the median per kind and zktwist/Apache ratios.  Example::

    python benchmarks/ensemble_ab.py --rounds 2 --duration 5 --json /tmp/ens.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.ensemble import Ensemble  # noqa: E402
from zktwist.cli.bench import proc_cpu  # noqa: E402

#: (label, workload, sessions, outstanding, processes)
CASES = [
    ("get 8x100", "get", 8, 100, 1),
    ("set 8x100", "set", 8, 100, 1),
    ("get 256x1", "get", 256, 1, 2),
    ("set 256x1", "set", 256, 1, 2),
]


def bench_once(ens: Ensemble, workload: str, sessions: int, outstanding: int, processes: int,
               duration: float, warmup: float) -> Dict[str, Any]:
    """One ``zktwist bench --hosts`` run; its JSON figures plus the members' CPU."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    pids = [m.pid for m in ens.members.values() if m.running]
    cpu0 = sum(proc_cpu(p) for p in pids)
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "zktwist.cli.bench", "--hosts", ens.hosts, "--workload", workload,
           "--sessions", str(sessions), "--outstanding", str(outstanding),
           "--processes", str(processes), "--duration", str(duration), "--warmup", str(warmup),
           "--json", out]
    proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=duration * 4 + 120)
    wall = time.monotonic() - t0
    cpu1 = sum(proc_cpu(p) for p in pids)
    try:
        res = json.loads(Path(out).read_text())
    except (OSError, ValueError):
        raise RuntimeError(f"bench failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    finally:
        os.unlink(out)
    res["members_cpu_pct"] = 100 * (cpu1 - cpu0) / wall
    res["rc"] = proc.returncode
    return res


def fmt(res: Dict[str, Any]) -> str:
    return "%8.0f ops/s p50 %6.2fms p99 %7.2fms errors %d members_cpu %3.0f%%" % (
        res["ops"], res["p50_ms"], res["p99_ms"], res["errors"], res["members_cpu_pct"])


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", default="", help="apache,zktwist (default: both)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--cases", default="", help="labels to run, e.g. 'get 8x100,set 256x1'")
    p.add_argument("--tick-time", type=int, default=2000)
    p.add_argument("--json", default="", metavar="FILE")
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k] or ["apache", "zktwist"]
    cases = [c for c in CASES if not args.cases or c[0] in args.cases.split(",")]
    ensembles: Dict[str, Ensemble] = {}
    results: Dict[str, Dict[str, List[Dict[str, Any]]]] = {k: {c[0]: [] for c in cases} for k in kinds}
    try:
        for kind in kinds:
            ensembles[kind] = Ensemble(kind, tick_time=args.tick_time, init_limit=10, sync_limit=5,
                                       java_heap="1g").start()
            print("%s ensemble: %s modes %s" % (kind, ensembles[kind].hosts, ensembles[kind].modes()),
                  flush=True)
        for r in range(args.rounds):
            for label, workload, s, k, procs in cases:
                for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                    res = bench_once(ensembles[kind], workload, s, k, procs, args.duration, args.warmup)
                    results[kind][label].append(res)
                    print("round %d %-10s %-8s %s" % (r + 1, label, kind, fmt(res)), flush=True)
    except KeyboardInterrupt:
        print("interrupted: partial results", file=sys.stderr)
    finally:
        for e in ensembles.values():
            e.cleanup()
    summary: Dict[str, Dict[str, Dict[str, float]]] = {}
    print("\nmedian over rounds (3-node ensembles, all on this machine):")
    for label, *_ in cases:
        summary[label] = {}
        line = "%-10s" % label
        for kind in kinds:
            runs = results[kind][label]
            if not runs:
                continue
            med = {key: statistics.median(x[key] for x in runs)
                   for key in ("ops", "p50_ms", "p99_ms", "members_cpu_pct")}
            med["min_ops"] = min(x["ops"] for x in runs)
            med["max_ops"] = max(x["ops"] for x in runs)
            summary[label][kind] = med
            line += "  %s %.0f ops/s (%.0f-%.0f) p99 %.2fms cpu %.0f%%" % (
                kind, med["ops"], med["min_ops"], med["max_ops"], med["p99_ms"], med["members_cpu_pct"])
        if "apache" in summary[label] and "zktwist" in summary[label]:
            ratio = summary[label]["zktwist"]["ops"] / summary[label]["apache"]["ops"]
            summary[label]["ratio"] = {"ops": ratio}
            line += "  zktwist/apache %.2fx" % ratio
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "summary": summary,
                                               "loadavg": os.getloadavg()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
