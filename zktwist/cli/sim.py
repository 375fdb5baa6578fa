"""``zktwist sim``: the deterministic whole-ensemble simulator from the command line."""

from __future__ import annotations

import argparse
import sys

UNSAFE = ("ack_before_durable", "commit_on_minority", "skip_trunc", "forget_accepted_epoch")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help="run this one seed (verbose on failure)")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="run N seeds and summarise")
    p.add_argument("--start", type=int, default=1, help="first seed for --seeds (default 1)")
    p.add_argument("--servers", type=int, choices=(3, 5), default=3, help="voting servers")
    p.add_argument("--observers", type=int, default=0, metavar="K")
    p.add_argument("--clients", type=int, default=3, metavar="C")
    p.add_argument("--duration", type=int, default=6000, metavar="MS",
                   help="simulated ms of the fault phase (then heal, liveness, settle)")
    p.add_argument("--faults", choices=("mixed", "crashes", "partitions", "none"), default="mixed",
                   help="fault profile (default mixed)")
    p.add_argument("--unsafe", action="append", default=[], choices=UNSAFE, metavar="NAME",
                   help="turn on a deliberate bug (test-only): " + ", ".join(UNSAFE))
    p.add_argument("--trace", action="store_true", help="print the step log")
    p.add_argument("--failfast", action="store_true", help="stop --seeds at the first failure")


def run(args: argparse.Namespace) -> int:
    from zktwist.sim.runner import Summary, run_seed
    from zktwist.sim.world import SimConfig

    config = SimConfig(servers=args.servers, observers=args.observers, clients=args.clients,
                       duration=args.duration, unsafe=tuple(args.unsafe), faults=args.faults,
                       trace=args.trace)
    if args.seed is not None and args.seeds is None:
        r = run_seed(args.seed, config)
        if args.trace:
            for line in r.lines:
                print(line)
        status = "ok" if r.ok else "FAILED"
        print("seed %d: %s  (%d steps, %.1f s simulated, %.2f s wall, %d ops, %d committed "
              "txns, trace %s)" % (r.seed, status, r.steps, r.sim_ms / 1000.0, r.wall_s, r.ops,
                                   r.committed, r.trace_hash))
        if r.failovers:
            print("failover times (ms): %s" % " ".join(map(str, r.failovers)))
        if not r.ok:
            if not args.trace:
                print("--- last steps ---")
                for line in r.lines[-150:]:
                    print(line)
            for v in r.violations:
                print("VIOLATION:", v)
            if r.error:
                print(r.error)
            print("replay: %s --trace" % r.command())
            return 1
        return 0
    n = args.seeds if args.seeds is not None else 100
    summary = Summary()
    for seed in range(args.start, args.start + n):
        r = run_seed(seed, config)
        summary.add(r)
        if not r.ok:
            print("seed %d FAILED: %s" % (seed, (r.violations or [r.error or ""])[0][:300]),
                  file=sys.stderr)
            print("  replay: %s" % r.command(), file=sys.stderr)
            if args.failfast:
                break
    print(summary.report())
    return 1 if summary.failures else 0
