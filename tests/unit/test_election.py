"""Fast leader election (zktwist.quorum.election) as a pure state machine.

Several FastLeaderElection objects are driven through a tiny in-test router
with a fake clock: the election channel is lossy and FIFO per pair, as the
shell's is.  A server that has decided answers notifications the way the
peer will, with ``answer(n, *result)``.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zktwist.quorum.effects import Send
from zktwist.quorum.election import (
    FOLLOWING,
    LEADING,
    LOOKING,
    NO_VOTE,
    OBSERVING,
    FastLeaderElection,
    Notification,
    QuorumVerifier,
    Vote,
)

FW = 200          # finalize_wait
MIN_I = 200       # min notification interval
MAX_I = 60000     # max notification interval


# -- the router ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sent:
    t: int
    src: int
    dst: int
    msg: Notification
    round: int     # how many times src had been started when it sent this

DelayFn = Callable[[int, int, Notification], int]
DropFn = Callable[[int, int, Notification, int], bool]


@dataclass
class Router:
    """Delivers Sends between election objects in simulated time (FIFO per ordered pair)."""

    servers: Dict[int, FastLeaderElection]
    delay: DelayFn = lambda src, dst, msg: 1
    drop: DropFn = lambda src, dst, msg, now: False
    now: int = 0
    running: Set[int] = field(default_factory=set)
    queue: List[Tuple[int, int, int, int, Notification]] = field(default_factory=list)
    seq: int = 0
    last_at: Dict[Tuple[int, int], int] = field(default_factory=dict)
    sent: List[Sent] = field(default_factory=list)      # everything sent, lost or not
    starts: Dict[int, int] = field(default_factory=dict)
    received: Dict[int, List[Notification]] = field(default_factory=dict)  # delivered while looking
    decided_at: Dict[int, int] = field(default_factory=dict)
    budget: int = 200_000           # deliveries; a storm of notifications is a bug


    def start(self, sid: int, last_zxid: int = 0, current_epoch: int = 0) -> None:
        self.running.add(sid)
        self.starts[sid] = self.starts.get(sid, 0) + 1
        self.decided_at.pop(sid, None)
        self.received[sid] = []
        self.post(sid, self.servers[sid].start(last_zxid, current_epoch, self.now))
        self._note(sid)

    def crash(self, sid: int) -> None:
        """Stop a server: it gets nothing more, and what it had in flight is lost."""
        self.running.discard(sid)
        self.queue = [e for e in self.queue if e[3] != sid and e[2] != sid]
        heapq.heapify(self.queue)

    def post(self, src: int, sends: Iterable[Send]) -> None:
        for s in sends:
            assert isinstance(s, Send) and isinstance(s.msg, Notification)
            assert s.msg.sid == src and s.to != src
            self.sent.append(Sent(self.now, src, s.to, s.msg, self.starts.get(src, 0)))
            if s.to not in self.running or self.drop(src, s.to, s.msg, self.now):
                continue
            at = max(self.now + self.delay(src, s.to, s.msg), self.last_at.get((src, s.to), 0))
            self.last_at[(src, s.to)] = at
            self.seq += 1
            heapq.heappush(self.queue, (at, self.seq, src, s.to, s.msg))

    def _note(self, sid: int) -> None:
        if self.servers[sid].result is not None and sid not in self.decided_at:
            self.decided_at[sid] = self.now

    def _deliver(self, dst: int, msg: Notification) -> None:
        node = self.servers[dst]
        if node.result is None:
            self.received[dst].append(msg)
            out = node.receive(msg, self.now)
            self._note(dst)
        else:
            out = node.answer(msg, *node.result)     # what the peer does when not looking
        self.post(dst, out)

    def _next_time(self) -> Optional[int]:
        times = [self.queue[0][0]] if self.queue else []
        for sid in self.running:
            w = self.servers[sid].next_wakeup()
            if w is not None:
                times.append(w)
        return max(min(times), self.now) if times else None

    def run(self, until: int, stop: Optional[Callable[[], bool]] = None) -> None:
        """Advance time to ``until``, or until ``stop()`` (default: every running server decided)."""
        if stop is None:
            stop = self.all_decided
        while not stop():
            t = self._next_time()
            if t is None or t > until:
                break
            self.now = t
            while self.queue and self.queue[0][0] <= t:
                _, _, src, dst, msg = heapq.heappop(self.queue)
                self.budget -= 1
                assert self.budget > 0, "notification storm"
                if dst in self.running:
                    self._deliver(dst, msg)
            for sid in sorted(self.running):
                node = self.servers[sid]
                if node.result is None:
                    self.post(sid, node.tick(self.now))
                    self._note(sid)
        if not stop():
            self.now = max(self.now, until)

    def all_decided(self) -> bool:
        return all(self.servers[s].result is not None for s in self.running)

    def leaders(self) -> Dict[int, int]:
        return {sid: self.servers[sid].result[1].leader  # type: ignore[index]
                for sid in self.running if self.servers[sid].result is not None}


def ensemble(n: int, observers: Sequence[int] = (), weights: Optional[Mapping[int, int]] = None,
             **kw: int) -> Dict[int, FastLeaderElection]:
    voters = {sid: 1 for sid in range(1, n + 1)}
    if weights:
        voters.update(weights)
    return {sid: FastLeaderElection(sid, voters, set(observers), **kw)
            for sid in list(voters) + list(observers)}


def elect(servers: Dict[int, FastLeaderElection], logs: Mapping[int, Tuple[int, int]],
          until: int = 10_000, **router_kw: object) -> Router:
    """Start every server in ``logs`` ({sid: (last_zxid, current_epoch)}) at time 0 and run."""
    r = Router(servers, **router_kw)  # type: ignore[arg-type]
    r.running.update(logs)          # all up at once: no first notification is lost
    for sid in sorted(logs):
        r.start(sid, *logs[sid])
    r.run(until)
    return r


def zxid(epoch: int, counter: int) -> int:
    return (epoch << 32) | counter


def n(sid: int, state: int, leader: int, zx: int = 0, ee: int = 1, pe: int = 0) -> Notification:
    return Notification(sid=sid, state=state, leader=leader, zxid=zx, election_epoch=ee, peer_epoch=pe)


def sends_to(out: Sequence[Send]) -> List[int]:
    return [s.to for s in out]


# -- everyone elects the best vote ---------------------------------------------------------------

def test_three_servers_elect_the_highest_zxid() -> None:
    servers = ensemble(3)
    r = elect(servers, {1: (zxid(1, 7), 1), 2: (zxid(1, 9), 1), 3: (zxid(1, 8), 1)})
    assert r.all_decided()
    assert r.leaders() == {1: 2, 2: 2, 3: 2}
    assert servers[2].result == (LEADING, Vote(2, zxid(1, 9), 1), 1)
    assert servers[1].result == (FOLLOWING, Vote(2, zxid(1, 9), 1), 1)
    assert servers[3].result == (FOLLOWING, Vote(2, zxid(1, 9), 1), 1)


def test_equal_zxids_highest_sid_wins() -> None:
    servers = ensemble(5)
    r = elect(servers, {sid: (zxid(2, 3), 2) for sid in servers})
    assert set(r.leaders().values()) == {5}
    assert servers[5].result is not None and servers[5].result[0] == LEADING


def test_peer_epoch_beats_a_higher_zxid() -> None:
    """currentEpoch comes first: a server with a newer epoch but fewer txns has the newer history."""
    servers = ensemble(3)
    r = elect(servers, {1: (zxid(3, 1), 3), 2: (zxid(2, 99), 2), 3: (zxid(2, 50), 3)})
    # server 3: epoch 3 but its last zxid is from epoch 2; server 1: epoch 3 and zxid 3:1
    assert set(r.leaders().values()) == {1}


@pytest.mark.parametrize("seed", range(12))
def test_five_servers_agree_on_the_best_vote_whatever_the_order(seed: int) -> None:
    rng = random.Random(seed)
    logs = {sid: (zxid(rng.randint(1, 2), rng.randint(0, 3)), rng.randint(1, 2)) for sid in range(1, 6)}
    best = max(logs, key=lambda s: (logs[s][1], logs[s][0], s))
    servers = ensemble(5)
    r = elect(servers, logs, delay=lambda src, dst, msg: rng.randint(1, 60))
    assert r.all_decided()
    assert set(r.leaders().values()) == {best}
    for sid, node in servers.items():
        assert node.result is not None
        state, vote, epoch = node.result
        assert vote == Vote(best, *logs[best])
        assert epoch == 1
        assert state == (LEADING if sid == best else FOLLOWING)


def test_decision_waits_for_finalize_wait_after_a_quorum() -> None:
    servers = ensemble(3)
    r = elect(servers, {1: (5, 1), 2: (5, 1), 3: (5, 1)}, until=10_000)
    # all notifications take 1 ms: the quorum forms at 1-2 ms, decisions come finalize_wait later
    for sid, t in r.decided_at.items():
        assert FW <= t <= FW + 3, (sid, t)


# -- the round, step by step on one object ---------------------------------------------------------

def test_start_votes_for_itself_and_tells_every_other_voter() -> None:
    e = FastLeaderElection(2, {1: 1, 2: 1, 3: 1}, {4})
    out = e.start(zxid(1, 4), 1, now=0)
    assert e.logical_clock == 1 and e.result is None and e.proposal == Vote(2, zxid(1, 4), 1)
    assert sends_to(out) == [1, 3]           # voters only, not itself, not the observer
    assert all(s.msg == n(2, LOOKING, 2, zxid(1, 4), 1, 1) for s in out)


def test_better_vote_in_same_epoch_is_adopted_and_rebroadcast() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, set())
    e.start(5, 1, now=0)
    worse = e.receive(n(2, LOOKING, 2, 4, 1, 1), now=1)
    assert worse == [] and e.proposal == Vote(1, 5, 1)
    out = e.receive(n(3, LOOKING, 3, 5, 1, 1), now=2)      # same zxid, higher sid
    assert e.proposal == Vote(3, 5, 1)
    assert sends_to(out) == [2, 3] and all(s.msg == n(1, LOOKING, 3, 5, 1, 1) for s in out)


def test_quorum_then_finalize_wait_then_decide() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, set())
    e.start(5, 1, now=0)
    e.receive(n(3, LOOKING, 3, 9, 1, 1), now=10)    # adopt 3; {1, 3} agree: a quorum
    assert e.finalizing and e.result is None
    assert e.next_wakeup() == 10 + FW
    assert e.tick(10 + FW - 1) == [] and e.result is None
    e.tick(10 + FW)
    assert e.result == (FOLLOWING, Vote(3, 9, 1), 1)
    assert not e.looking and e.next_wakeup() is None


def test_a_better_vote_during_finalize_wait_reopens_the_round() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, set())
    e.start(5, 1, now=0)
    e.receive(n(2, LOOKING, 3, 9, 1, 1), now=1)
    e.receive(n(3, LOOKING, 3, 9, 1, 1), now=2)     # {1, 2, 3} for 3
    assert e.finalizing
    out = e.receive(n(5, LOOKING, 5, 9, 1, 1), now=50)
    assert e.proposal == Vote(5, 9, 1) and not e.finalizing
    assert sends_to(out) == [2, 3, 4, 5]
    e.tick(2 + FW)
    assert e.result is None                          # the old window does not decide for 3
    e.receive(n(4, LOOKING, 5, 9, 1, 1), now=60)     # {1, 4, 5} for 5
    assert e.finalizing
    e.tick(60 + FW)
    assert e.result == (FOLLOWING, Vote(5, 9, 1), 1)


def test_votes_that_are_not_better_do_not_reopen_or_extend_the_window() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, set())
    e.start(5, 1, now=0)
    e.receive(n(3, LOOKING, 3, 9, 1, 1), now=10)
    for t in range(20, 10 + FW, 20):                 # chatter that brings nothing better
        e.receive(n(2, LOOKING, 2, 1, 1, 1), now=t)
        e.receive(n(2, LOOKING, 3, 9, 1, 1), now=t)
        assert e.finalizing
    e.tick(10 + FW)
    assert e.result == (FOLLOWING, Vote(3, 9, 1), 1)


def test_the_window_is_over_when_a_late_tick_is_overtaken_by_a_message() -> None:
    """A message after the deadline does not reopen a round whose window has already run out."""
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, set())
    e.start(5, 1, now=0)
    e.receive(n(3, LOOKING, 3, 9, 1, 1), now=10)
    out = e.receive(n(2, LOOKING, 2, 99, 1, 1), now=10 + FW + 5)
    assert e.result == (FOLLOWING, Vote(3, 9, 1), 1)
    assert [s.msg.state for s in out] == [FOLLOWING]  # the sender is answered as we answer now


def test_zero_finalize_wait_decides_at_once() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, set(), finalize_wait=0)
    e.start(5, 1, now=0)
    e.receive(n(3, LOOKING, 3, 9, 1, 1), now=10)
    assert e.result == (FOLLOWING, Vote(3, 9, 1), 1)


def test_a_higher_election_epoch_is_adopted_and_old_votes_forgotten() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, set())
    e.start(50, 1, now=0)
    e.receive(n(5, LOOKING, 5, 60, 1, 1), now=1)     # {1, 5} for 5 in round 1
    assert e.proposal == Vote(5, 60, 1)
    # 3 is in round 7 and proposes 2, worse than our own vote: our own vote, not 5, in round 7
    out = e.receive(n(3, LOOKING, 2, 10, 7, 1), now=3)
    assert e.logical_clock == 7 and not e.finalizing
    assert e.proposal == Vote(1, 50, 1)
    assert all(s.msg == n(1, LOOKING, 1, 50, 7, 1) for s in out) and sends_to(out) == [2, 3, 4, 5]
    # epoch-1 votes no longer count; two votes of round 7 for 1 are not a quorum of 5
    e.receive(n(2, LOOKING, 1, 50, 7, 1), now=4)
    assert not e.finalizing
    e.receive(n(4, LOOKING, 1, 50, 7, 1), now=5)
    assert e.finalizing
    e.tick(5 + FW)
    assert e.result == (LEADING, Vote(1, 50, 1), 7)


def test_a_higher_round_without_a_better_vote_is_consumed_by_the_finalize_window() -> None:
    """As ZooKeeper's poll during finalizeWait: only a better vote interrupts the window."""
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, set())
    e.start(50, 1, now=0)
    e.receive(n(5, LOOKING, 5, 60, 1, 1), now=1)
    e.receive(n(4, LOOKING, 5, 60, 1, 1), now=2)     # {1, 4, 5} for 5 in round 1
    assert e.finalizing
    assert e.receive(n(3, LOOKING, 2, 10, 7, 1), now=3) == []
    assert e.logical_clock == 1 and e.finalizing
    e.tick(2 + FW)
    assert e.result == (FOLLOWING, Vote(5, 60, 1), 1)
    # 3 asks again later: it is told whom we follow, and joins through out-of-election votes
    assert e.receive(n(3, LOOKING, 2, 10, 7, 1), now=500) == [
        Send(3, Notification(1, FOLLOWING, 5, 60, 1, 1))]


def test_a_higher_election_epoch_with_a_better_vote_is_adopted_whole() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, set())
    e.start(50, 1, now=0)
    out = e.receive(n(2, LOOKING, 3, 70, 4, 1), now=1)
    assert e.logical_clock == 4 and e.proposal == Vote(3, 70, 1)
    assert all(s.msg == n(1, LOOKING, 3, 70, 4, 1) for s in out)


def test_a_sender_in_an_older_round_is_answered_and_not_counted() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, set())
    e.start(50, 1, now=0)
    e.receive(n(3, LOOKING, 3, 70, 5, 1), now=1)    # round 5, proposing 3: {1, 3}
    out = e.receive(n(2, LOOKING, 3, 70, 2, 1), now=2)   # same vote, but round 2: stale
    assert out == [Send(2, n(1, LOOKING, 3, 70, 5, 1))]
    assert not e.finalizing and e.result is None     # {1, 3}, not {1, 2, 3}
    e.receive(n(4, LOOKING, 3, 70, 5, 1), now=3)
    assert e.finalizing
    e.tick(3 + FW)
    assert e.result == (FOLLOWING, Vote(3, 70, 1), 5)


def test_stale_round_does_not_form_a_quorum() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, set())
    e.start(50, 1, now=0)
    e.receive(n(2, LOOKING, 5, 70, 3, 1), now=1)     # jump to round 3
    for sid in (3, 4, 5):
        out = e.receive(n(sid, LOOKING, 5, 70, 1, 1), now=2)   # round 1 votes for 5: stale
        assert out == [Send(sid, n(1, LOOKING, 5, 70, 3, 1))]
    assert not e.finalizing
    e.tick(10_000)
    assert e.result is None


def test_backoff_resends_double_up_to_the_maximum() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, set(), max_notification_interval=1000)
    e.start(5, 1, now=0)
    times = []
    t = 0
    while t < 6000:
        w = e.next_wakeup()
        assert w is not None and w > t
        t = w
        out = e.tick(t)
        assert sends_to(out) == [2, 3] and all(s.msg == n(1, LOOKING, 1, 5, 1, 1) for s in out)
        times.append(t)
    assert times[:6] == [200, 600, 1400, 2400, 3400, 4400]   # 200, 400, 800, then capped at 1000
    assert e.tick(times[-1] + 999) == []                       # never early


def test_resends_are_timed_from_our_last_broadcast() -> None:
    """Hearing from others does not postpone a re-send (they may be missing our vote);
    a broadcast of a new proposal does (it was just sent)."""
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, set())
    e.start(5, 1, now=0)
    e.receive(n(2, LOOKING, 2, 1, 1, 1), now=150)      # worse vote: heard, nothing to say
    assert e.next_wakeup() == 200
    assert sends_to(e.tick(200)) == [2, 3, 4, 5]
    assert e.next_wakeup() == 600
    e.receive(n(3, LOOKING, 3, 9, 1, 1), now=500)      # adopted and broadcast at 500
    assert e.next_wakeup() == 900
    assert e.tick(600) == []
    out = e.tick(900)
    assert sends_to(out) == [2, 3, 4, 5] and all(s.msg.leader == 3 for s in out)


def test_lost_messages_are_recovered_by_resends() -> None:
    servers = ensemble(5)
    # the network loses everything for the first 1.5 seconds
    r = elect(servers, {sid: (zxid(1, sid), 1) for sid in servers},
              drop=lambda src, dst, msg, now: now < 1500, until=60_000)
    assert r.all_decided()
    assert set(r.leaders().values()) == {5}
    assert min(r.decided_at.values()) > 1500
    resends = [x.t for x in r.sent if x.src == 1 and x.t > 0]
    assert resends and resends[0] == 200                       # the first back-off re-send


# -- joining an established ensemble --------------------------------------------------------------

def test_a_late_starter_joins_the_established_leader_even_with_a_better_log() -> None:
    servers = ensemble(3)
    r = Router(servers)
    r.start(1, zxid(1, 5), 1)
    r.start(2, zxid(1, 5), 1)
    r.run(10_000)
    assert r.leaders() == {1: 2, 2: 2}
    # server 3 comes back with more txns than the leader: it must not disturb the running pair
    r.start(3, zxid(1, 9), 1)
    r.run(20_000)
    assert servers[3].result == (FOLLOWING, Vote(2, zxid(1, 5), 1), 1)
    assert servers[2].result is not None and servers[2].result[0] == LEADING


def test_a_late_starter_in_another_round_joins_through_out_of_election_votes() -> None:
    servers = ensemble(5)
    r = Router(servers)
    for sid in (1, 2, 3, 4):
        r.start(sid, zxid(1, sid), 1)
    r.run(10_000)
    assert set(r.leaders().values()) == {4}
    late = servers[5]
    late.logical_clock = 8                       # it went through several rounds before
    r.start(5, zxid(1, 99), 1)
    r.run(20_000)
    assert late.result == (FOLLOWING, Vote(4, zxid(1, 4), 1), 1)
    assert late.logical_clock == 1               # it took the ensemble's election epoch


def test_followers_without_a_leading_leader_are_not_joined() -> None:
    """checkLeader: a quorum still following a crashed leader must not be joined."""
    e = FastLeaderElection(5, {sid: 1 for sid in range(1, 6)}, set())
    e.start(10, 1, now=0)
    for sid in (1, 2, 3):
        e.receive(n(sid, FOLLOWING, 4, 40, 3, 1), now=sid)
    assert e.result is None
    e.receive(n(4, LEADING, 4, 40, 3, 1), now=10)
    assert e.result == (FOLLOWING, Vote(4, 40, 1), 3)
    assert e.logical_clock == 3


def test_followers_of_different_leader_epochs_do_not_add_up() -> None:
    e = FastLeaderElection(5, {sid: 1 for sid in range(1, 6)}, set())
    e.start(10, 1, now=0)
    e.receive(n(4, LEADING, 4, 40, 3, 2), now=1)          # 4 leads epoch 2
    e.receive(n(1, FOLLOWING, 4, 40, 3, 1), now=2)        # 1 follows 4's old epoch 1
    assert e.result is None
    e.receive(n(2, FOLLOWING, 4, 40, 3, 2), now=3)
    assert e.result is None                               # {4, 2}: not a quorum of 5
    e.receive(n(3, FOLLOWING, 4, 77, 9, 2), now=4)        # zxid and round may differ
    assert e.result == (FOLLOWING, Vote(4, 77, 2), 9)


def test_a_follower_that_went_looking_no_longer_counts_for_its_old_leader() -> None:
    e = FastLeaderElection(5, {sid: 1 for sid in range(1, 6)}, set())
    e.start(10, 1, now=0)
    e.receive(n(4, LEADING, 4, 40, 3, 1), now=1)
    e.receive(n(1, FOLLOWING, 4, 40, 3, 1), now=2)
    e.receive(n(1, LOOKING, 1, 10, 1, 1), now=3)          # 1 has left 4
    e.receive(n(2, FOLLOWING, 4, 40, 3, 1), now=4)
    assert e.result is None                               # {4, 2} only
    e.receive(n(3, FOLLOWING, 4, 40, 3, 1), now=5)
    assert e.result is not None and e.result[1].leader == 4


def test_a_quorum_naming_me_in_my_round_makes_me_lead() -> None:
    e = FastLeaderElection(3, {1: 1, 2: 1, 3: 1}, set())
    e.start(zxid(1, 9), 1, now=0)
    e.receive(n(1, FOLLOWING, 3, zxid(1, 9), 1, 1), now=1)
    assert e.result == (LEADING, Vote(3, zxid(1, 9), 1), 1)


def test_a_restarted_former_leader_does_not_take_over_its_old_followers() -> None:
    e = FastLeaderElection(3, {1: 1, 2: 1, 3: 1}, set())
    e.start(zxid(1, 9), 1, now=0)                          # round 1; they elected it in round 4
    e.receive(n(1, FOLLOWING, 3, zxid(1, 9), 4, 1), now=1)
    e.receive(n(2, FOLLOWING, 3, zxid(1, 9), 4, 1), now=2)
    assert e.result is None


def test_answer_tells_a_looking_sender_our_state_only() -> None:
    e = FastLeaderElection(2, {1: 1, 2: 1, 3: 1}, {4})
    v = Vote(3, zxid(2, 0), 2)
    assert e.answer(n(1, LOOKING, 1, 5, 9, 1), FOLLOWING, v, 4) == [
        Send(1, Notification(2, FOLLOWING, 3, zxid(2, 0), 4, 2))]
    assert e.answer(n(4, LOOKING, NO_VOTE.leader, NO_VOTE.zxid, 1, NO_VOTE.peer_epoch),
                    FOLLOWING, v, 4) == [Send(4, Notification(2, FOLLOWING, 3, zxid(2, 0), 4, 2))]
    assert e.answer(n(1, FOLLOWING, 3, 5, 9, 1), FOLLOWING, v, 4) == []
    assert e.answer(n(4, OBSERVING, 3, 5, 9, 1), FOLLOWING, v, 4) == []


def test_receive_after_the_decision_answers_with_the_result() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, set(), finalize_wait=0)
    e.start(5, 1, now=0)
    e.receive(n(3, LOOKING, 3, 9, 1, 1), now=1)
    assert e.result is not None
    out = e.receive(n(2, LOOKING, 2, 99, 3, 1), now=2)     # does not start electing again
    assert out == [Send(2, Notification(1, FOLLOWING, 3, 9, 1, 1))]
    assert e.result == (FOLLOWING, Vote(3, 9, 1), 1)
    assert e.tick(100_000) == []


def test_a_new_round_on_the_same_object() -> None:
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, set(), finalize_wait=0)
    e.start(5, 1, now=0)
    e.receive(n(3, LOOKING, 3, 9, 1, 1), now=1)
    assert e.result is not None
    e.start(zxid(2, 3), 2, now=500)
    assert e.result is None and e.logical_clock == 2 and e.proposal == Vote(1, zxid(2, 3), 2)
    e.receive(n(2, LOOKING, 3, 9, 1, 1), now=501)        # last round's vote: stale
    assert e.result is None and not e.finalizing
    assert e.next_wakeup() == 700


# -- observers and weights -------------------------------------------------------------------------

def test_an_observer_learns_the_leader_but_never_wins_or_counts() -> None:
    servers = ensemble(3, observers=[4])
    # the observer has the best log and the highest sid: it still never wins
    r = elect(servers, {1: (zxid(1, 1), 1), 2: (zxid(1, 3), 1), 3: (zxid(1, 2), 1),
                        4: (zxid(1, 99), 1)})
    assert r.all_decided()
    assert r.leaders() == {1: 2, 2: 2, 3: 2, 4: 2}
    assert servers[4].result == (OBSERVING, Vote(2, zxid(1, 3), 1), 1)
    # nobody ever proposed the observer, not even itself
    assert r.sent and all(x.msg.leader != 4 for x in r.sent)
    # voters speak to the observer only to answer it
    for v in (1, 2, 3):
        to_obs = sum(1 for x in r.sent if x.src == v and x.dst == 4)
        from_obs = sum(1 for x in r.sent if x.src == 4 and x.dst == v)
        assert 0 < to_obs <= from_obs


def test_an_observer_joins_a_running_ensemble() -> None:
    servers = ensemble(3, observers=[4])
    r = Router(servers)
    for sid in (1, 2, 3):
        r.start(sid, zxid(1, sid), 1)
    r.run(10_000)
    r.start(4, zxid(1, 50), 1)
    r.run(20_000)
    assert servers[4].result == (OBSERVING, Vote(3, zxid(1, 3), 1), 1)


def test_observers_are_never_counted_towards_a_quorum() -> None:
    servers = ensemble(3, observers=[4, 5, 6])
    r = Router(servers)
    r.start(3, zxid(1, 9), 1)
    for sid in (4, 5, 6):
        r.start(sid, zxid(1, 9), 1)
    r.run(120_000, stop=lambda: False)
    assert all(node.result is None for node in servers.values())
    # a voter's state machine ignores observers' (and anybody's) votes for an observer
    e = FastLeaderElection(1, {1: 1, 2: 1, 3: 1}, {4, 5})
    e.start(1, 1, now=0)
    out = e.receive(n(4, LOOKING, 3, 9, 1, 1), now=1)   # a non-voter: answered, not counted
    assert out == [Send(4, n(1, LOOKING, 1, 1, 1, 1))] and e.proposal == Vote(1, 1, 1)
    assert e.receive(n(5, FOLLOWING, 3, 9, 1, 1), now=2) == []
    assert e.receive(n(2, LOOKING, 4, 99, 1, 1), now=3) == []   # a vote for an observer
    assert e.proposal == Vote(1, 1, 1) and not e.finalizing


def test_an_electing_observer_answers_nobody() -> None:
    """Otherwise an observer and a voter in an older round would bounce notifications for ever."""
    o = FastLeaderElection(4, {1: 1, 2: 1, 3: 1}, {4})
    out = o.start(zxid(1, 5), 1, now=0)
    assert sends_to(out) == [1, 2, 3]
    assert all(s.msg == n(4, LOOKING, NO_VOTE.leader, NO_VOTE.zxid, 1, NO_VOTE.peer_epoch)
               for s in out)
    o.start(0, 0, now=1)
    o.start(0, 0, now=2)                                  # round 3
    assert o.receive(n(1, LOOKING, 1, 5, 1, 1), now=3) == []   # older round: no answer
    assert o.proposal == NO_VOTE
    # it adopts a voter's vote (to know whom to observe) and tells the voters, as ZK does;
    # they answer it, and it answers nothing, so that ends
    out = o.receive(n(2, LOOKING, 2, 5, 3, 1), now=3)
    assert o.proposal == Vote(2, 5, 1) and sends_to(out) == [1, 2, 3]
    assert o.receive(n(1, LOOKING, 1, 5, 3, 1), now=4) == []


def test_weight_zero_never_wins() -> None:
    servers = ensemble(3, weights={3: 0})
    r = elect(servers, {1: (zxid(1, 1), 1), 2: (zxid(1, 2), 1), 3: (zxid(1, 99), 2)})
    assert r.all_decided()
    assert r.leaders() == {1: 2, 2: 2, 3: 2}
    assert servers[3].result is not None and servers[3].result[0] == FOLLOWING
    assert all(x.msg.leader != 3 or x.src == 3 for x in r.sent)


def test_a_lone_weight_zero_voter_never_leads() -> None:
    e = FastLeaderElection(1, {1: 0}, set())
    e.start(5, 1, now=0)
    e.tick(100_000)
    assert e.result is None


def test_a_single_voter_elects_itself_after_finalize_wait() -> None:
    e = FastLeaderElection(1, {1: 1}, set())
    assert e.start(5, 1, now=0) == []
    assert e.finalizing and e.result is None
    e.tick(FW)
    assert e.result == (LEADING, Vote(1, 5, 1), 1)


# -- minorities ---------------------------------------------------------------------------------------

def test_a_minority_alone_never_decides() -> None:
    servers = ensemble(5)
    r = Router(servers)
    r.start(4, zxid(1, 4), 1)
    r.start(5, zxid(1, 5), 1)
    r.run(600_000, stop=lambda: False)
    assert servers[4].result is None and servers[5].result is None
    assert servers[4].proposal == Vote(5, zxid(1, 5), 1)
    # they kept re-sending, ever more slowly, up to the maximum interval
    times = [x.t for x in r.sent if x.src == 4 and x.dst == 1]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] == 1                      # 4 adopted 5's vote and told everybody
    assert gaps[1:5] == [200, 400, 800, 1600]
    assert max(gaps) == MAX_I and gaps[-1] == MAX_I


def test_a_partition_lets_only_the_majority_side_decide() -> None:
    servers = ensemble(5)
    side = {1: "a", 2: "a", 3: "b", 4: "b", 5: "b"}
    r = Router(servers, drop=lambda src, dst, msg, now: side[src] != side[dst])
    for sid in servers:
        r.start(sid, zxid(1, 6 - sid), 1)          # 1 has the best log but is on the minority side
    r.run(300_000, stop=lambda: False)
    assert servers[1].result is None and servers[2].result is None
    assert [servers[s].result[1].leader for s in (3, 4, 5)  # type: ignore[index]
            if servers[s].result is not None] == [3, 3, 3]


def test_quorum_verifier() -> None:
    q = QuorumVerifier({1: 1, 2: 1, 3: 1, 4: 1})
    assert not q.is_quorum({1, 2}) and q.is_quorum({1, 2, 3}) and q.is_quorum([4, 3, 2, 1])
    assert not q.is_quorum({1, 2, 5, 6, 7})           # unknown sids (observers) never count
    q5 = QuorumVerifier({1: 1, 2: 1, 3: 1, 4: 1, 5: 0})
    assert q5.is_quorum({1, 2, 5}) and not q5.is_quorum({1, 2})
    assert q5.weight(5) == 0 and q5.weight(9) == 0 and q5.is_voter(5) and not q5.is_voter(9)
    assert QuorumVerifier({7: 1}).is_quorum({7}) and not QuorumVerifier({}).is_quorum(set())


def test_constructor_rejects_a_server_that_is_voter_and_observer() -> None:
    with pytest.raises(ValueError):
        FastLeaderElection(1, {1: 1, 2: 1}, {1})


# -- FLE alone does not give agreement: Zab's discovery must --------------------------------------

def test_two_servers_can_decide_different_leaders_in_the_same_round_when_votes_are_lost() -> None:
    """Documented behaviour (ZooKeeper's too): a voter switches its vote between two quorums.

    Server 3 voted for 4 (and 4 counted it), then saw 5's vote within its
    window and switched; the notifications telling 4 about that are lost, so
    4 decides LEADING on {2, 3, 4} while 5 decides LEADING on {1, 3, 5}.  The
    peer must not trust an election result: a leader needs a quorum of
    FOLLOWERINFO in discovery, and goes LOOKING without one.
    """
    servers = ensemble(5)
    for sid in servers:
        servers[sid].start(zxid(1, 1), 1, now=0)
    s = servers

    def feed(dst: int, src: int, leader: int, now: int) -> List[Send]:
        return s[dst].receive(n(src, LOOKING, leader, zxid(1, 1), 1, 1), now)

    feed(2, 4, 4, 1)
    feed(3, 4, 4, 1)                       # 2 and 3 now vote 4
    feed(4, 2, 4, 2)
    feed(4, 3, 4, 2)                       # 4: {2, 3, 4} for 4 -> window
    assert s[4].finalizing
    feed(3, 5, 5, 3)                       # 3 sees 5 and switches; its news never reaches 4
    feed(1, 5, 5, 3)
    feed(5, 1, 5, 4)
    feed(5, 3, 5, 4)                       # 5: {1, 3, 5} for 5 -> window
    assert s[5].finalizing
    s[4].tick(2 + FW)
    s[5].tick(4 + FW)
    assert s[4].result == (LEADING, Vote(4, zxid(1, 1), 1), 1)
    assert s[5].result == (LEADING, Vote(5, zxid(1, 1), 1), 1)


# -- random delivery orders, delays and losses --------------------------------------------------------

def rank(q: QuorumVerifier, v: Vote) -> tuple:
    return (q.weight(v.leader) > 0, v.key())


def check_invariants(servers: Mapping[int, FastLeaderElection], r: Router) -> None:
    """What must hold whatever the network did."""
    q = next(iter(servers.values())).verifier
    for sid, node in servers.items():
        if node.result is None:
            continue
        state, vote, epoch = node.result
        # never a non-voter, never weight 0; the state follows from who leads
        assert q.weight(vote.leader) > 0
        assert state == (LEADING if vote.leader == sid else FOLLOWING if node.is_voter else OBSERVING)
        # the decision is backed by a quorum of voters' votes this server actually received
        support = {m.sid for m in r.received[sid]
                   if m.leader == vote.leader and m.peer_epoch == vote.peer_epoch
                   and (m.state != LOOKING or (m.zxid == vote.zxid and m.election_epoch == epoch))}
        if node.is_voter and any(x.src == sid and x.msg.state == LOOKING and x.msg.vote == vote
                                 and x.msg.election_epoch == epoch for x in r.sent):
            support.add(sid)
        assert q.is_quorum(support), (sid, node.result, support)
    # within one round (one start, one election epoch) a voter's proposal only gets better
    best: Dict[Tuple[int, int, int], tuple] = {}
    for x in r.sent:
        if x.msg.state != LOOKING or not servers[x.src].is_voter:
            continue
        key = (x.src, x.round, x.msg.election_epoch)
        assert rank(q, x.msg.vote) >= best.get(key, rank(q, x.msg.vote)), x
        best[key] = rank(q, x.msg.vote)
    # nobody votes for an observer, not even the observer
    assert all(x.msg.leader not in servers[x.src].observers for x in r.sent)


@st.composite
def scenarios(draw: st.DrawFn) -> Tuple[int, List[int], Dict[int, int], Dict[int, Tuple[int, int]], random.Random]:
    size = draw(st.sampled_from([3, 5]))
    observers = list(range(size + 1, size + 1 + draw(st.integers(0, 1))))
    weights = {}
    if draw(st.booleans()):
        weights[draw(st.integers(1, size))] = 0
    logs = {sid: (zxid(draw(st.integers(1, 2)), draw(st.integers(0, 3))), draw(st.integers(1, 2)))
            for sid in list(range(1, size + 1)) + observers}
    return size, observers, weights, logs, draw(st.randoms(use_true_random=False))


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_timely_delivery_always_agrees_on_the_best_vote(scn: Tuple[int, List[int], Dict[int, int],
                                                                  Dict[int, Tuple[int, int]],
                                                                  random.Random]) -> None:
    """Same start, nothing lost, any order within less than finalize_wait: one leader, the best."""
    size, observers, weights, logs, rng = scn
    servers = ensemble(size, observers=observers, weights=weights)
    r = elect(servers, logs, delay=lambda src, dst, msg: rng.randint(0, FW // 2 - 1), until=60_000)
    check_invariants(servers, r)
    assert r.all_decided()
    best = max((sid for sid in range(1, size + 1) if sid not in weights),
               key=lambda s: (logs[s][1], logs[s][0], s))
    assert set(r.leaders().values()) == {best}
    assert {node.result[2] for node in servers.values() if node.result} == {1}


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.floats(0.0, 0.6), st.integers(0, 3))
def test_random_orders_and_losses_keep_the_invariants(
        scn: Tuple[int, List[int], Dict[int, int], Dict[int, Tuple[int, int]], random.Random],
        loss: float, restarts: int) -> None:
    """Lossy, reordered, staggered and restarted: every decision is quorum-backed, proposals
    only improve within a round, and two deciders of the same round that each saw their
    whole quorum agree unless some voter changed its vote (as in the test above)."""
    size, observers, weights, logs, rng = scn
    servers = ensemble(size, observers=observers, weights=weights)
    r = Router(servers, delay=lambda src, dst, msg: rng.randint(0, 3 * FW),
               drop=lambda src, dst, msg, now: rng.random() < loss)
    order = sorted(logs)
    rng.shuffle(order)
    for sid in order:
        r.start(sid, *logs[sid])
        r.run(r.now + rng.randint(0, 2 * FW), stop=lambda: False)
    for _ in range(restarts):                 # a decided server goes back to LOOKING
        sid = rng.choice(order)
        if servers[sid].result is not None:
            r.start(sid, *logs[sid])
        r.run(r.now + rng.randint(0, 4 * FW), stop=lambda: False)
    r.run(r.now + 30_000)
    check_invariants(servers, r)
    # Agreement, as far as FLE gives it: the first decision for a (vote, round) rests on a
    # quorum of LOOKING votes for it in that round, and later ones copy it; two quorums share a
    # voter; so two different decisions in one round mean some voter sent, in that round, both
    # votes (it switched between them, as in the test above).  Nothing else may split a round.
    sent_votes: Dict[Tuple[int, int], Set[Vote]] = {}
    for x in r.sent:
        if x.msg.state == LOOKING and servers[x.src].is_voter:
            sent_votes.setdefault((x.src, x.msg.election_epoch), set()).add(x.msg.vote)
    decided = [node.result for node in servers.values() if node.result is not None]
    for _sa, va, ea in decided:
        for _sb, vb, eb in decided:
            if ea == eb and va != vb:
                assert any({va, vb} <= votes for (_src, e), votes in sent_votes.items() if e == ea), (
                    va, vb, ea)
