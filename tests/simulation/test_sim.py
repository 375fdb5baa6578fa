"""The whole-ensemble simulator over the real QuorumPeer: seeds, determinism, and the checks biting.

``make test`` runs a few hundred seeds (3 and 5 voters, observers, every fault
profile); longer sweeps are ``@pytest.mark.slow``.  Every unsafe switch of
PeerConfig is a deliberate bug that the checks must catch within a bounded
number of seeds, each under a fault schedule that makes it reachable.
"""

from __future__ import annotations

from typing import List, Sequence

import pytest

from zktwist.cli.main import main
from zktwist.sim.runner import replay_command, run_seed
from zktwist.sim.world import SimConfig

def sweep(seeds: Sequence[int], config: SimConfig) -> None:
    """Run ``seeds``; any violation fails the test with the commands that replay it."""
    failed: List[str] = []
    for seed in seeds:
        r = run_seed(seed, config)
        if not r.ok:
            failed.append("%s\n    %s" % (r.command(), (r.violations or [r.error or ""])[0][:400]))
    assert not failed, "seeds failed:\n" + "\n".join(failed)


# Regression seeds: a follower that left its role (applying its whole log) and rejoined
# the same leader was DIFFed and served proposals that were never committed; the leader
# now TRUNCs it to its last commit (leader._sync).
@pytest.mark.parametrize("seed,servers,observers,clients,faults", [
    (5340, 5, 1, 4, "mixed"), (43, 5, 1, 4, "mixed"), (5005, 5, 1, 4, "mixed"),
    (5243, 5, 1, 4, "mixed"), (27, 3, 0, 3, "crashes")])
def test_rejoining_follower_never_serves_uncommitted_proposals(
        seed: int, servers: int, observers: int, clients: int, faults: str) -> None:
    sweep([seed], SimConfig(servers=servers, observers=observers, clients=clients, faults=faults))


# -- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_the_same_trace() -> None:
    cfg = SimConfig(duration=3000)
    a, b, c = run_seed(11, cfg), run_seed(11, cfg), run_seed(12, cfg)
    assert a.trace_hash == b.trace_hash and a.steps == b.steps and a.lines == b.lines
    assert a.trace_hash != c.trace_hash


def test_replay_command_replays(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = SimConfig(servers=5, observers=1, clients=2, duration=2500, faults="partitions")
    r = run_seed(4, cfg)
    cmd = replay_command(4, cfg)
    assert cmd == ("zktwist sim --seed 4 --servers 5 --observers 1 --clients 2 --duration 2500 "
                   "--faults partitions")
    main(cmd.split()[1:])
    out = capsys.readouterr().out
    assert r.trace_hash in out


def test_cli_summary(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["sim", "--seeds", "3", "--start", "20", "--duration", "2000"])
    out = capsys.readouterr().out
    assert "seeds run: 3" in out
    assert rc in (0, 1)


def test_a_quiet_run_commits_and_is_linearizable() -> None:
    r = run_seed(1, SimConfig(faults="none", duration=2000))
    assert r.ok, r.violations
    assert r.committed > 50 and r.unknown_ops == 0 and r.checkpoints >= 3


# -- seed sweeps -----------------------------------------------------------------------------


@pytest.mark.parametrize("faults", ["mixed", "crashes", "partitions"])
def test_three_voters(faults: str) -> None:
    sweep(range(1, 101), SimConfig(duration=4000, faults=faults))


@pytest.mark.parametrize("faults,seeds", [("mixed", range(1, 41)), ("crashes", range(41, 71))])
def test_five_voters_and_an_observer(faults: str, seeds: range) -> None:
    sweep(seeds, SimConfig(servers=5, observers=1, clients=4, duration=4000, faults=faults))


def test_three_voters_two_observers_crashes() -> None:
    sweep(range(100, 140), SimConfig(observers=2, duration=4000, faults="crashes"))


@pytest.mark.slow
@pytest.mark.parametrize("servers,observers,faults", [
    (3, 0, "mixed"), (3, 1, "crashes"), (5, 0, "mixed"), (5, 2, "partitions"), (5, 0, "crashes"),
])
def test_long_sweep(servers: int, observers: int, faults: str) -> None:
    sweep(range(1000, 1300), SimConfig(servers=servers, observers=observers, faults=faults))


# -- the checks bite -------------------------------------------------------------------------

UNSAFE_CASES = [
    # switch, fault profile (what makes it reachable), seed budget
    ("ack_before_durable", "crashes", 60),     # cut a minority, power-cut the rest right after an ACK
    ("commit_on_minority", "partitions", 20),  # an isolated leader keeps committing alone
    ("skip_trunc", "mixed", 30),               # a diverged follower rejoins and keeps its txns
    ("forget_accepted_epoch", "crashes", 10),  # restarts during discovery forget the promise
]


@pytest.mark.parametrize("switch,faults,budget", UNSAFE_CASES)
def test_unsafe_switch_is_caught(switch: str, faults: str, budget: int) -> None:
    cfg = SimConfig(duration=4000, faults=faults, unsafe=(switch,))
    for seed in range(1, budget + 1):
        r = run_seed(seed, cfg, check_history=False)
        if not r.ok:
            return
    pytest.fail("%s not caught in %d seeds (faults=%s)" % (switch, budget, faults))


# Regression seed: a follower's link dropped while its TRUNC's Reload was in flight; it voted
# with its untruncated core's zxid and, elected, committed a txn its log no longer held.  The
# peer now waits for the reload before voting (QuorumPeer.reload_pending).
def test_no_vote_while_a_truncation_reload_is_in_flight() -> None:
    sweep([1150], SimConfig(servers=5))
