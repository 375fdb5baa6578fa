"""Fast leader election (Apache ZooKeeper's ``FastLeaderElection``) as a pure state machine.

No sockets, reactor, threads, clock reads or randomness: the caller hands in
every notification and the time (``now``, milliseconds) and carries out the
returned :class:`~zktwist.quorum.effects.Send` effects on the election
channel (lossy, FIFO per pair).  See docs/replication.md and
zk-protocol.md section 5.3.

How a round goes (``FastLeaderElection.lookForLeader`` in ZooKeeper 3.8):

* ``start`` bumps the logical clock (the election epoch), votes for itself
  (a voter) and tells every other voter.
* A LOOKING notification with a higher election epoch makes us jump to that
  epoch, forget the votes we had and propose the better of its vote and our
  own; one with our epoch and a better vote is adopted and re-broadcast; one
  with a lower epoch is answered with our proposal and otherwise ignored.
* Once a quorum of the votes recorded in our epoch equals our proposal we
  wait ``finalize_wait`` for a better vote; if none comes we decide.
* FOLLOWING/LEADING notifications come from servers that are not electing:
  we join their leader once a quorum of them name it and the leader itself
  said LEADING (``checkLeader``), so a restarted server rejoins a running
  ensemble without disturbing it.

FLE alone does not guarantee that everybody decides the same leader: with
lost or late notifications two servers can decide different leaders in the
same election epoch, each backed by a quorum of votes (one voter changed its
vote in between).  Zab's discovery phase is what makes that safe: a leader
needs a quorum of FOLLOWERINFO before it establishes an epoch, and a
leader that does not get one goes back to LOOKING.

Where this differs from ZooKeeper (on purpose, each for a reason given at the
code): the finalize window is not extended by notifications that bring no
better vote; re-sends are timed from our own last broadcast, not from the last
message received; our own vote is recorded directly instead of by a loop-back
message; a LOOKING notification from a server drops its old
FOLLOWING/LEADING vote; a vote for a weight-0 server ranks below every vote
for a server with weight; observers answer nobody while they are electing,
and voters answer non-voters only while those are LOOKING (no ping-pong);
``receive`` after the decision answers like ``answer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Dict, Iterable, List, Mapping, Optional, Tuple

from zktwist.quorum.effects import Send

LOOKING, FOLLOWING, LEADING, OBSERVING = 0, 1, 2, 3

STATE_NAMES: Mapping[int, str] = {
    LOOKING: "LOOKING", FOLLOWING: "FOLLOWING", LEADING: "LEADING", OBSERVING: "OBSERVING",
}

_LONG_MIN = -(1 << 63)


@dataclass(frozen=True)
class Vote:
    """A proposal: ``leader`` with its last logged zxid and its currentEpoch."""

    leader: int        # proposed leader sid
    zxid: int          # proposed leader's last logged zxid
    peer_epoch: int    # proposed leader's currentEpoch

    def key(self) -> tuple:
        """The order of votes: higher wins (peer epoch, then zxid, then sid)."""
        return (self.peer_epoch, self.zxid, self.leader)


#: What an observer "proposes" before it has heard a vote: ZooKeeper sends
#: Long.MIN_VALUE for all three fields (``getInitId`` & co.), which is no
#: server, so nobody can ever adopt it.
NO_VOTE = Vote(leader=_LONG_MIN, zxid=_LONG_MIN, peer_epoch=_LONG_MIN)


@dataclass(frozen=True)
class Notification:
    """One election message (``FastLeaderElection.buildMsg``; the config part is left out)."""

    sid: int             # sender
    state: int           # sender's state
    leader: int
    zxid: int
    election_epoch: int  # sender's logical clock
    peer_epoch: int

    @property
    def vote(self) -> Vote:
        return Vote(self.leader, self.zxid, self.peer_epoch)


class QuorumVerifier:
    """Simple majority of the voters, counted by sid (ZooKeeper's ``QuorumMaj``).

    Weights only matter for who may lead (weight 0 never does); every voter
    counts once towards a quorum.  Observers and unknown sids never count.
    The peer reuses this for ACK counting.
    """

    def __init__(self, voters: Mapping[int, int]) -> None:
        self.voters: Dict[int, int] = dict(voters)
        self.half = len(self.voters) // 2

    def is_voter(self, sid: int) -> bool:
        return sid in self.voters

    def weight(self, sid: int) -> int:
        """0 for non-voters, so a vote for them is never adopted."""
        return self.voters.get(sid, 0)

    def is_quorum(self, sids: Iterable[int]) -> bool:
        """More than half of the voters are among ``sids``."""
        return len(self.voters.keys() & set(sids)) > self.half


def _same_vote(a: Notification, b: Notification) -> bool:
    """ZooKeeper's ``Vote.equals``.

    Between servers out of election (FOLLOWING/LEADING) only the leader and its
    epoch are compared: their zxids and election epochs may differ once the
    ensemble runs (ZOOKEEPER-1805), and an epoch is used by one leader only.
    """
    if a.state == LOOKING or b.state == LOOKING:
        return (a.leader == b.leader and a.zxid == b.zxid
                and a.election_epoch == b.election_epoch and a.peer_epoch == b.peer_epoch)
    return a.leader == b.leader and a.peer_epoch == b.peer_epoch


class FastLeaderElection:
    """One server's leader election; a new round per :meth:`start`.

    After every call the caller looks at :attr:`result`: ``None`` while
    undecided, else ``(state, vote, election_epoch)`` with state LEADING,
    FOLLOWING or OBSERVING.  While not looking, the caller answers
    notifications with :meth:`answer` (or keeps calling :meth:`receive`,
    which does the same with :attr:`result`).
    """

    def __init__(self, sid: int, voters: Mapping[int, int], observers: AbstractSet[int], *,
                 finalize_wait: int = 200, min_notification_interval: int = 200,
                 max_notification_interval: int = 60000) -> None:
        if sid in voters and sid in observers:
            raise ValueError(f"server {sid} is both a voter and an observer")
        if set(voters) & set(observers):
            raise ValueError("voters and observers overlap")
        if min_notification_interval <= 0 or max_notification_interval < min_notification_interval:
            raise ValueError("need 0 < min_notification_interval <= max_notification_interval")
        self.sid = sid
        self.verifier = QuorumVerifier(voters)
        self.observers = frozenset(observers)
        #: a server that is not a voter (observer, or unknown) never votes and never wins
        self.is_voter = sid in voters
        self.finalize_wait = finalize_wait
        self.min_notification_interval = min_notification_interval
        self.max_notification_interval = max_notification_interval
        self._voter_sids: Tuple[int, ...] = tuple(sorted(voters))

        self.logical_clock = 0
        self.result: Optional[Tuple[int, Vote, int]] = None
        self._started = False
        self._init_vote = NO_VOTE
        self._proposal = NO_VOTE
        # votes of this election epoch (LOOKING, and FOLLOWING/LEADING ones sent in it): recvset
        self._recvset: Dict[int, Notification] = {}
        # FOLLOWING/LEADING votes of any epoch: outofelection (how a late starter finds the leader)
        self._outofelection: Dict[int, Notification] = {}
        self._finalize_at: Optional[int] = None
        self._interval = min_notification_interval
        self._resend_at: Optional[int] = None

    # -- what the caller may look at ---------------------------------------------------------

    @property
    def proposal(self) -> Vote:
        """Our current proposal (``NO_VOTE`` for an observer that has heard none)."""
        return self._proposal

    @property
    def looking(self) -> bool:
        return self._started and self.result is None

    @property
    def finalizing(self) -> bool:
        """A quorum agrees with our proposal and we are waiting out ``finalize_wait``."""
        return self._finalize_at is not None

    def next_wakeup(self) -> Optional[int]:
        """When :meth:`tick` next has something to do (None: nothing until a message arrives).

        The shell may tick more coarsely; decisions and re-sends then happen late, not wrong.
        """
        if not self.looking:
            return None
        if self._finalize_at is not None:
            return self._finalize_at
        return self._resend_at

    # -- inputs ------------------------------------------------------------------------------

    def start(self, last_zxid: int, current_epoch: int, now: int) -> List[Send]:
        """Begin a new round: next election epoch, our own vote, tell every other voter."""
        self._started = True
        self.result = None
        self.logical_clock += 1
        if self.is_voter:
            self._init_vote = Vote(self.sid, last_zxid, current_epoch)
        else:
            # an observer is never proposable; its notifications only make voters answer
            self._init_vote = NO_VOTE
        self._proposal = self._init_vote
        self._recvset = {}
        self._outofelection = {}
        self._finalize_at = None
        self._interval = self.min_notification_interval
        out = self._broadcast(now)
        self._check_quorum(now)  # a one-voter ensemble has its quorum at once
        return out

    def receive(self, n: Notification, now: int) -> List[Send]:
        """Handle one notification (``lookForLeader`` plus ``WorkerReceiver``)."""
        if not self._started or n.sid == self.sid:
            return []
        self._finalize_if_due(now)  # the window ran out before this message came
        if self.result is not None:
            state, vote, epoch = self.result
            return self.answer(n, state, vote, epoch)

        if not self.verifier.is_voter(n.sid):
            # Non-voters are answered at once and never counted.  Only LOOKING ones: an observer
            # answering our answer would otherwise bounce messages back and forth for ever.
            if self.is_voter and n.state == LOOKING:
                return [self._notification(n.sid)]
            return []

        out: List[Send] = []
        if self.is_voter and n.state == LOOKING and n.election_epoch < self.logical_clock:
            # A voter still in an older round: tell it ours so it catches up (it then jumps).
            # Observers do not answer: their vote counts for nothing.
            out.append(self._notification(n.sid))
        if not self.verifier.is_voter(n.leader):
            return out  # a vote for a non-voter (ZooKeeper's validVoter(n.leader))

        if self._finalize_at is not None:
            # ZooKeeper polls for finalize_wait after reaching a quorum and only a better vote
            # (whatever its state or epoch) reopens the round; anything else is consumed.
            # Unlike ZooKeeper's poll, a consumed message does not restart the wait: steady
            # chatter (re-sends, answers) could otherwise put the decision off for ever.
            if not self._better(n.vote, self._proposal):
                return out
            self._finalize_at = None

        if n.state == LOOKING:
            out.extend(self._receive_looking(n, now))
        elif n.state in (FOLLOWING, LEADING):
            self._receive_out_of_election(n)
        # OBSERVING senders are voters here only by misconfiguration: ignored, as ZK does
        if self.result is None:
            self._check_quorum(now)
        return out

    def tick(self, now: int) -> List[Send]:
        """Time passed: decide once the finalize window is over, else re-send with back-off."""
        if not self.looking:
            return []
        self._finalize_if_due(now)
        if self.result is not None or self._finalize_at is not None:
            return []
        if self._resend_at is not None and now >= self._resend_at:
            # still undecided a while after we last spoke: our notifications (or the
            # answers) may have been lost, so say it again, and wait longer next time
            self._interval = min(self._interval * 2, self.max_notification_interval)
            self._resend_at = now + self._interval
            return self._notifications()
        return []

    def answer(self, n: Notification, state: int, vote: Vote, election_epoch: int) -> List[Send]:
        """For a server that is not looking: tell a LOOKING sender whom we follow or lead.

        ``state``, ``vote``, ``election_epoch``: normally our :attr:`result`.
        A late starter joins only when a quorum report the same (leader,
        peer_epoch) and the leader itself reports LEADING, so every server of
        the ensemble must report the same vote.  (ZooKeeper sets ``peer_epoch``
        to the new epoch once it is established, ``QuorumPeer.updateElectionVote``;
        do that on all servers or on none.)  Answers to FOLLOWING/LEADING/OBSERVING
        senders are never sent: two servers that are not looking must not talk
        for ever.
        """
        if n.state != LOOKING or n.sid == self.sid:
            return []
        return [Send(n.sid, Notification(self.sid, state, vote.leader, vote.zxid,
                                         election_epoch, vote.peer_epoch))]

    # -- the election --------------------------------------------------------------------------

    def _receive_looking(self, n: Notification, now: int) -> List[Send]:
        out: List[Send] = []
        vote = n.vote
        if n.election_epoch > self.logical_clock:
            # We are behind: join the newer round, drop votes of the old one, and propose the
            # better of its vote and our own (not of our old proposal: that round is over).
            self.logical_clock = n.election_epoch
            self._recvset.clear()
            self._proposal = vote if self._better(vote, self._init_vote) else self._init_vote
            out = self._broadcast(now)
        elif n.election_epoch < self.logical_clock:
            return out  # stale round; answered in receive
        elif self._better(vote, self._proposal):
            self._proposal = vote
            out = self._broadcast(now)
        # After a LOOKING message, the sender no longer follows anybody (FIFO per pair):
        # forgetting its FOLLOWING/LEADING vote keeps a dead leader's ensemble from being joined.
        self._outofelection.pop(n.sid, None)
        self._recvset[n.sid] = n
        return out

    def _receive_out_of_election(self, n: Notification) -> None:
        """``receivedFollowingNotification``: join a leader a quorum reports and that leads."""
        if n.election_epoch == self.logical_clock:
            self._recvset[n.sid] = n
            if self._agree(self._recvset, n) and self._check_leader(self._recvset, n.leader,
                                                                  n.election_epoch):
                self._decide(n.vote, n.election_epoch)
                return
        # outofelection also holds votes of this epoch (ZOOKEEPER-1732)
        self._outofelection[n.sid] = n
        if self._agree(self._outofelection, n) and self._check_leader(
                self._outofelection, n.leader, n.election_epoch):
            self.logical_clock = n.election_epoch
            self._decide(n.vote, n.election_epoch)

    def _check_leader(self, votes: Mapping[int, Notification], leader: int,
                      election_epoch: int) -> bool:
        """The leader must itself say LEADING, so nobody keeps electing a crashed leader.

        If it is us: only when the others named us in our own election epoch (a
        restarted former leader does not take over its old followers).
        """
        if leader != self.sid:
            v = votes.get(leader)
            return v is not None and v.state == LEADING
        return self.logical_clock == election_epoch

    def _agree(self, votes: Mapping[int, Notification], target: Notification) -> bool:
        return self.verifier.is_quorum(sid for sid, v in votes.items() if _same_vote(v, target))

    def _check_quorum(self, now: int) -> None:
        """Open (or close) the finalize window as our proposal has (or lost) a quorum."""
        if self.result is not None:
            return
        p = self._proposal
        mine = Notification(self.sid, LOOKING, p.leader, p.zxid, self.logical_clock, p.peer_epoch)
        if self.verifier.weight(p.leader) > 0 and self._agree(self._recvset, mine):
            if self._finalize_at is None:
                self._finalize_at = now + self.finalize_wait
            self._finalize_if_due(now)
        else:
            self._finalize_at = None

    def _finalize_if_due(self, now: int) -> None:
        if self._finalize_at is not None and self.result is None and now >= self._finalize_at:
            self._decide(self._proposal, self.logical_clock)

    def _decide(self, vote: Vote, election_epoch: int) -> None:
        if vote.leader == self.sid:
            state = LEADING
        else:
            state = FOLLOWING if self.is_voter else OBSERVING
        self.result = (state, vote, election_epoch)
        self._finalize_at = None
        self._resend_at = None

    def _better(self, new: Vote, cur: Vote) -> bool:
        """``totalOrderPredicate``: is ``new`` a better vote than ``cur``?

        A server with weight 0 (or no voter at all) is never better.  Unlike
        ZooKeeper, a vote for such a server is worse than any other, so a
        weight-0 voter that starts by voting for itself still converges.
        """
        if self.verifier.weight(new.leader) <= 0:
            return False
        if self.verifier.weight(cur.leader) <= 0:
            return True
        return new.key() > cur.key()

    # -- messages ----------------------------------------------------------------------------

    def _notification(self, to: int) -> Send:
        p = self._proposal
        return Send(to, Notification(self.sid, LOOKING, p.leader, p.zxid, self.logical_clock,
                                     p.peer_epoch))

    def _notifications(self) -> List[Send]:
        return [self._notification(sid) for sid in self._voter_sids if sid != self.sid]

    def _broadcast(self, now: int) -> List[Send]:
        """Our proposal changed: record it as our own vote and tell every other voter.

        The re-send timer runs from our last broadcast.  (ZooKeeper restarts it
        on every message received, so a server that keeps hearing from others
        may never repeat a vote they lost.)
        """
        self._resend_at = now + self._interval
        if self.is_voter:
            p = self._proposal
            self._recvset[self.sid] = Notification(self.sid, LOOKING, p.leader, p.zxid,
                                                   self.logical_clock, p.peer_epoch)
        return self._notifications()
