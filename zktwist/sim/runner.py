"""Run seeds: one world per seed, the checks, the linearizability verdict, a replay command.

``run_seed`` is a pure function of (seed, config): the same pair gives the
same step log, whose hash (``SeedResult.trace_hash``) the tests compare.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

from zktwist.sim.world import SimConfig, World

#: a linearizability search per path gives up after this many steps (then: 'unknown')
LIN_STEPS = 2_000_000


class SeedResult:
    def __init__(self, seed: int, config: SimConfig) -> None:
        self.seed = seed
        self.config = config
        self.violations: List[str] = []
        self.error: Optional[str] = None
        self.trace_hash = ""
        self.failovers: List[int] = []
        self.steps = 0
        self.sim_ms = 0
        self.wall_s = 0.0
        self.ops = 0
        self.unknown_ops = 0
        self.write_acks = 0
        self.lin_unknown = False
        self.lines: List[str] = []
        self.stats: Dict[str, int] = {}
        self.checkpoints = 0
        self.committed = 0

    @property
    def ok(self) -> bool:
        return not self.violations and self.error is None

    def command(self) -> str:
        return replay_command(self.seed, self.config)


def replay_command(seed: int, c: SimConfig) -> str:
    parts = ["zktwist sim --seed %d" % seed]
    defaults = SimConfig()
    if c.servers != defaults.servers:
        parts.append("--servers %d" % c.servers)
    if c.observers != defaults.observers:
        parts.append("--observers %d" % c.observers)
    if c.clients != defaults.clients:
        parts.append("--clients %d" % c.clients)
    if c.duration != defaults.duration:
        parts.append("--duration %d" % c.duration)
    if c.faults != defaults.faults:
        parts.append("--faults %s" % c.faults)
    for u in c.unsafe:
        parts.append("--unsafe %s" % u)
    return " ".join(parts)


def run_seed(seed: int, config: SimConfig, check_history: bool = True,
             world_factory: Callable[[int, SimConfig], World] = World) -> SeedResult:
    """Run one seed to the end (or to the first violation) and judge it."""
    res = SeedResult(seed, config)
    started = time.perf_counter()
    world = world_factory(seed, config)
    try:
        world.run()
    except Exception:
        res.error = traceback.format_exc()
        world.log("EXCEPTION " + res.error.strip().splitlines()[-1])
    res.violations = list(world.checker.violations)
    history = world.history()
    res.ops = len(history)
    res.unknown_ops = sum(1 for op in history if op.ret is None)
    if check_history and res.ok:
        from zktwist.sim.linearizability import check, check_sync_reads
        lin = check(history, timeout_steps=LIN_STEPS)
        if not lin.ok:
            if lin.unknown:
                res.lin_unknown = True
            else:
                res.violations.append("linearizability: " + lin.explanation)
        sr = check_sync_reads(history, timeout_steps=LIN_STEPS)
        if not sr.ok and not sr.unknown:
            res.violations.append("sync+read: " + sr.explanation)
    res.trace_hash = world.trace_hash()
    res.failovers = list(world.failovers)
    res.steps = world.queue.steps
    res.sim_ms = world.queue.now
    res.write_acks = world.write_acks
    res.stats = dict(world.stats)
    res.checkpoints = world.checker.checkpoints
    res.committed = len(world.checker.zxids)
    res.lines = list(world.lines)
    res.wall_s = time.perf_counter() - started
    return res


def percentile(values: Sequence[int], p: float) -> int:
    if not values:
        return 0
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


class Summary:
    def __init__(self) -> None:
        self.results: List[SeedResult] = []

    def add(self, r: SeedResult) -> None:
        self.results.append(r)

    @property
    def failures(self) -> List[SeedResult]:
        return [r for r in self.results if not r.ok]

    @property
    def failovers(self) -> List[int]:
        return [f for r in self.results for f in r.failovers]

    def report(self) -> str:
        rs = self.results
        lines = ["seeds run: %d, failures: %d" % (len(rs), len(self.failures))]
        steps = sum(r.steps for r in rs)
        wall = sum(r.wall_s for r in rs)
        lines.append("steps: %d, simulated: %.0f s, wall: %.1f s (%.3f s/seed), ops: %d "
                     "(%d unknown), acknowledged writes: %d, committed txns: %d"
                     % (steps, sum(r.sim_ms for r in rs) / 1000.0, wall, wall / max(1, len(rs)),
                        sum(r.ops for r in rs), sum(r.unknown_ops for r in rs),
                        sum(r.write_acks for r in rs), sum(r.committed for r in rs)))
        fo = self.failovers
        if fo:
            lines.append("failover (leader crash -> next acknowledged write), %d samples: "
                         "p50 %d ms, p90 %d ms, p99 %d ms, max %d ms"
                         % (len(fo), percentile(fo, 50), percentile(fo, 90), percentile(fo, 99),
                            max(fo)))
        unknown = [r.seed for r in rs if r.lin_unknown]
        if unknown:
            lines.append("linearizability search gave up (neither pass nor fail) on seeds: %s"
                         % " ".join(map(str, unknown[:20])))
        for r in self.failures:
            first = r.violations[0] if r.violations else (r.error or "").strip().splitlines()[-1]
            lines.append("FAIL seed %d: %s" % (r.seed, first[:300]))
            lines.append("  replay: %s" % r.command())
        return "\n".join(lines)


def run_seeds(seeds: Sequence[int], config: SimConfig,
              progress: Optional[Callable[[SeedResult], Any]] = None) -> Summary:
    summary = Summary()
    for s in seeds:
        r = run_seed(s, config)
        summary.add(r)
        if progress is not None:
            progress(r)
    return summary
