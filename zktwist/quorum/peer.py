"""One server of an ensemble: election, then a Zab role, plus its clients (docs/replication.md).

:class:`QuorumPeer` is pure.  Every input takes ``now`` (ms, the shell's clock)
and returns a list of effects (:mod:`zktwist.quorum.effects`).  It owns the
:class:`ZooKeeperCore`; the shell answers reads from ``peer.core`` directly.

Invariants the roles rely on (and the reasons):

* ``core`` holds every txn this peer has **logged** (asked the log to append)
  applied, whenever the peer is not in the broadcast phase.  A restarted
  server gets that from recovery (snapshot + whole log, as Apache ZooKeeper
  does); a running one gets it by "fast-forwarding" logged but uncommitted
  txns when it leaves a role (ZKDatabase.fastForwardDataBase).  Its vote is
  ``last_logged``, and a TRUNC always rebuilds the core from durable storage
  (``Reload``), so a txn a new leader drops can never survive in memory
  (ZOOKEEPER-2845: data inconsistency from retaining the database across an
  election).
* ``accepted_epoch``/``current_epoch`` are the **durable** values: they are
  set from ``storage_done`` callbacks only (see ``_persist_epoch``), so a vote
  or a discovery answer never uses an epoch a crash could take back.
* Storage callbacks are tied to the role that asked (``_gen``): a role that
  ended never acts on a late ``storage_done`` (ZOOKEEPER-4712 class: a
  follower's old sync processor acking/logging after shutdown).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import (
    AbstractSet,
    Any,
    Callable,
    Deque,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from zktwist.core.database import CoreConfig, ZooKeeperCore
from zktwist.core.sessions import session_password
from zktwist.core.txn import Txn
from zktwist.proto.consts import OpCode
from zktwist.quorum import messages as m
from zktwist.quorum.effects import (
    AppendTxns,
    Reload,
    Send,
    SessionClosed,
    SessionEstablished,
    SessionRejected,
    SetMeta,
    StartServing,
    StopServing,
    SyncDone,
    Trace,
    WriteDone,
    WriteSnapshot,
)
from zktwist.quorum.election import (
    FOLLOWING,
    LEADING,
    LOOKING,
    OBSERVING,
    FastLeaderElection,
    Notification,
    QuorumVerifier,
    Vote,
)

ACCEPTED_EPOCH = "acceptedEpoch"
CURRENT_EPOCH = "currentEpoch"

#: Test-only fault switches (PeerConfig.unsafe): each is a real, deliberate bug.
UNSAFE_SWITCHES = frozenset(("ack_before_durable", "commit_on_minority", "skip_trunc",
                             "forget_accepted_epoch"))


@dataclass(frozen=True)
class PeerConfig:
    sid: int
    voters: Mapping[int, int]                 # {sid: weight}; weight 1
    observers: AbstractSet[int] = frozenset()
    tick_time: int = 2000
    init_limit: int = 10
    sync_limit: int = 5
    min_session_timeout: int = 0              # 0: 2 x tick_time
    max_session_timeout: int = 0              # 0: 20 x tick_time
    committed_log_size: int = 500
    finalize_wait: int = 200
    min_notification_interval: int = 200
    max_notification_interval: int = 60000
    #: test-only fault switches (see UNSAFE_SWITCHES); never set in production
    unsafe: FrozenSet[str] = frozenset()
    #: emit the per-txn ``committed``/``applied`` traces (the simulator's checks need them;
    #: the production shell ignores them and turns them off)
    trace_txns: bool = True
    # the core's settings
    skip_acl: bool = False
    extended_types: bool = False
    super_digest: Optional[str] = None
    container_max_never_used_ms: int = 0
    #: how often the leader looks for containers and TTL nodes to reap (ms)
    reap_interval: int = 60000
    # room for later work: dynamic reconfiguration (config version), read-only
    # mode and local sessions are not implemented.
    config_version: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = set(self.unsafe) - UNSAFE_SWITCHES
        if bad:
            raise ValueError("unknown unsafe switches: %s" % ", ".join(sorted(bad)))

    @property
    def is_observer(self) -> bool:
        return self.sid in self.observers

    def core_config(self) -> CoreConfig:
        return CoreConfig(tick_time=self.tick_time, server_id=self.sid, skip_acl=self.skip_acl,
                          extended_types=self.extended_types, super_digest=self.super_digest,
                          container_max_never_used_ms=self.container_max_never_used_ms)

    def session_timeout_bounds(self) -> Tuple[int, int]:
        lo = self.min_session_timeout or 2 * self.tick_time
        hi = self.max_session_timeout or 20 * self.tick_time
        return lo, hi


Effects = List[Any]


class QuorumPeer:
    """One server: runs election, then a Leader or Learner role, and relays its clients."""

    def __init__(self, config: PeerConfig, core: ZooKeeperCore, accepted_epoch: int,
                 current_epoch: int, recent_txns: Sequence[Txn], now: int) -> None:
        self.config = config
        self.sid = config.sid
        self.verifier = QuorumVerifier(config.voters)
        self.unsafe = config.unsafe
        self._out: Effects = []
        self.core = core  # via the setter: hooks the session-closed callback
        self._accepted_epoch = accepted_epoch
        self._current_epoch = current_epoch
        self.recent: Deque[Txn] = deque(recent_txns, maxlen=max(config.committed_log_size, 1))
        #: the last zxid this peer asked its log to hold (its vote)
        self.last_logged = max(core.last_zxid, recent_txns[-1].zxid if recent_txns else 0)
        self._state = LOOKING
        self.role: Any = None  # Leader | Learner
        self._gen = 0
        self._seq = 0
        self._callbacks: Deque[Tuple[int, int, Optional[Callable[[int], None]],
                                     Optional[Callable[[int], None]]]] = deque()
        # The AppendTxns still open for more txns during this input: (seq, txns, index in
        # _out).  Consecutive appends of one input share one storage op (see log_txns).
        self._open_append: Optional[Tuple[int, List[Txn], int]] = None
        self.links: set = set()
        self.stash: Dict[int, m.FollowerInfo] = {}
        self.election = FastLeaderElection(
            self.sid, config.voters, config.observers, finalize_wait=config.finalize_wait,
            min_notification_interval=config.min_notification_interval,
            max_notification_interval=config.max_notification_interval)
        self.vote: Optional[Vote] = None
        self.election_epoch = 0
        self._serving = False
        # clients: what this server is waiting for on their behalf
        # A Reload (TRUNC) in progress: (seq, zxid, generation of the role that asked).
        # Until it is done the durable log is shorter than the core, so the peer neither
        # votes nor takes a role.
        self.reload_pending: Optional[Tuple[int, int, int]] = None
        self.pending_writes: Dict[Tuple[int, int], Any] = {}
        self.pending_closes: Dict[Tuple[int, int], Any] = {}
        self.pending_sessions: Dict[int, Any] = {}
        self.pending_revalidations: Dict[int, Deque[Tuple[Any, int]]] = {}
        self.pending_syncs: Dict[int, Any] = {}
        self._next_sync_id = 0
        self.touches: Dict[int, int] = {}  # learner: session -> timeout, relayed in PINGs
        # new session ids: the server id in the top byte (initializeNextSessionId)
        from zktwist.core.sessions import initial_session_id

        if (core.sessions.next_id >> 56) & 0xFF != self.sid & 0xFF:
            core.sessions.next_id = initial_session_id(self.sid, now)

    # -- properties the shell and the simulator read -----------------------------------------

    @property
    def core(self) -> ZooKeeperCore:
        return self._core

    @core.setter
    def core(self, core: ZooKeeperCore) -> None:
        self._core = core
        core.on_session_closed = self._session_closed

    @property
    def serving(self) -> bool:
        return self._serving

    @property
    def state(self) -> int:
        return self._state

    @property
    def current_epoch(self) -> int:
        return self._current_epoch

    @property
    def accepted_epoch(self) -> int:
        return self._accepted_epoch

    @property
    def leader_sid(self) -> Optional[int]:
        if self._state == LEADING:
            return self.sid
        if self._state in (FOLLOWING, OBSERVING) and self.vote is not None:
            return self.vote.leader
        return None

    @property
    def is_leader(self) -> bool:
        return self._state == LEADING

    # -- plumbing for the roles ----------------------------------------------------------------

    def emit(self, effect: Any) -> None:
        self._out.append(effect)

    def emit_all(self, effects: Sequence[Any]) -> None:
        self._out.extend(effects)

    def send(self, to: int, msg: Any) -> None:
        self._out.append(Send(to, msg))

    def _drain(self) -> Effects:
        if self._open_append is not None:
            self._close_append()
        out, self._out = self._out, []
        return out

    def _close_append(self) -> None:
        open_append = self._open_append
        if open_append is not None:
            self._open_append = None
            seq, txns, index = open_append
            self._out[index] = AppendTxns(seq, tuple(txns))

    def trace(self, kind: str, **kw: Any) -> None:
        self._out.append(Trace(kind, **kw))

    def store(self, make: Callable[[int], Any],
              then: Optional[Callable[[int], None]] = None,
              always: Optional[Callable[[int], None]] = None) -> int:
        """Emit a storage effect with the next seq; once it is durable ``then(now)`` runs if
        the role that asked is still the current one, ``always(now)`` in any case."""
        if self._open_append is not None:
            self._close_append()
        self._seq += 1
        seq = self._seq
        self._out.append(make(seq))
        if then is not None or always is not None:
            self._callbacks.append((seq, self._gen, then, always))
        return seq

    def request_reload(self, zxid: int) -> int:
        """Truncate the log to ``zxid`` and rebuild the core from storage (TRUNC).

        From now until ``reloaded`` the durable history is shorter than the core: the
        peer must not vote with the core's zxid even if the role that asked ends first.
        """
        seq = self.store(lambda s: Reload(s, zxid))
        self.reload_pending = (seq, zxid, self._gen)
        return seq

    def log_txns(self, txns: Sequence[Txn], then: Optional[Callable[[int], None]] = None) -> int:
        """Append txns to the log (and to the in-memory committed-log window).

        Appends asked for during one input, with no other storage op between them, go
        into one ``AppendTxns`` (one storage op, its callbacks run together when it is
        durable): storage runs in order either way, so nothing can tell the difference
        except the shell, which does less work.
        """
        recent = self.recent
        for t in txns:
            recent.append(t)
        if txns:
            self.last_logged = max(self.last_logged, txns[-1].zxid)
        open_append = self._open_append
        if open_append is not None:
            seq = open_append[0]
            open_append[1].extend(txns)
            if then is not None:
                self._callbacks.append((seq, self._gen, then, None))
            return seq
        seq = self.store(lambda s: AppendTxns(s, ()), then)
        self._open_append = (seq, list(txns), len(self._out) - 1)
        return seq

    def persist_epoch(self, key: str, value: int, then: Callable[[int], None],
                      now: int) -> None:
        """Durably store acceptedEpoch/currentEpoch; the in-memory value and ``then`` follow
        only once it is durable."""
        def durable(at: int) -> None:
            # Even if the role that asked is gone: memory follows what is on disk.
            if key == ACCEPTED_EPOCH:
                self._accepted_epoch = max(self._accepted_epoch, value)
            else:
                self._current_epoch = max(self._current_epoch, value)

        if key == ACCEPTED_EPOCH and "forget_accepted_epoch" in self.unsafe:
            # UNSAFE (test-only switch 'forget_accepted_epoch'): the promise is never
            # written, so a restart comes back with acceptedEpoch 0.
            durable(now)
            then(now)
            return
        self.store(lambda seq: SetMeta(seq, key, str(value)), then, durable)

    def fast_forward(self, txns: Sequence[Txn], now: int) -> None:
        """Apply logged txns the core does not have yet (leaving a role; no 'applied' trace)."""
        for t in txns:
            if t.zxid > self._core.last_zxid:
                self.apply_txn(t, now, trace=False)
        self._core.prep.rollback_all(self._core.last_zxid)

    def apply_txn(self, txn: Txn, now: int, trace: bool = True) -> Any:
        """Apply a txn to the core and answer the clients of this server waiting for it."""
        result = self._core.apply(txn, now)
        if trace and self.config.trace_txns:
            self._out.append(Trace("applied", epoch=self._current_epoch, zxid=txn.zxid, txn=txn))
        if txn.type == OpCode.createSession:
            w = self.pending_sessions.pop(txn.session_id, None)
            if w is not None:
                self._out.append(SessionEstablished(w, txn.session_id, txn.body[0],
                                                    session_password(txn.session_id)))
                if not self.is_leader:
                    self.touches[txn.session_id] = txn.body[0]
        else:
            # A closeSession answers only a client's close: an expiry's close (cxid 0) must
            # not be taken for that session's pending write with cxid 0.
            pending = self.pending_closes if txn.type == OpCode.closeSession else self.pending_writes
            token = pending.pop((txn.session_id, txn.cxid), None)
            if token is not None:
                self._out.append(WriteDone(token, txn, result))
        return result

    def _session_closed(self, session_id: int) -> None:
        self.touches.pop(session_id, None)
        self._out.append(SessionClosed(session_id))

    def set_serving(self, serving: bool, reason: str = "") -> None:
        if serving and not self._serving:
            self._serving = True
            self._out.append(StartServing({LEADING: "leader", FOLLOWING: "follower",
                                           OBSERVING: "observer"}.get(self._state, "?")))
        elif not serving and self._serving:
            self._serving = False
            self._out.append(StopServing(reason))
        if not serving:
            # Outstanding client requests are dropped: their outcome is unknown to the client.
            self.pending_writes.clear()
            self.pending_closes.clear()
            self.pending_sessions.clear()
            self.pending_revalidations.clear()
            self.pending_syncs.clear()

    def update_vote_epoch(self, epoch: int) -> None:
        """QuorumPeer.updateElectionVote: answer late starters with the new epoch."""
        if self.vote is not None:
            self.vote = Vote(self.vote.leader, self.vote.zxid, epoch)

    # -- state changes ---------------------------------------------------------------------------

    def go_looking(self, now: int, reason: str) -> None:
        """Leave the current role (if any) and start a new election round."""
        self.set_serving(False, reason)
        role, self.role = self.role, None
        self._gen += 1
        if role is not None:
            role.stop(now)
        self._state = LOOKING
        self.trace("looking", epoch=self._current_epoch, zxid=self.last_logged, detail=reason)
        if self.reload_pending is not None:
            return  # the election starts once the core matches the truncated log (reloaded)
        self.emit_all(self.election.start(self.last_logged, self._current_epoch, now))
        self._check_election(now)

    def _check_election(self, now: int) -> None:
        if self._state != LOOKING or self.election.result is None:
            return
        state, vote, election_epoch = self.election.result
        self.vote = vote
        self.election_epoch = election_epoch
        self.trace("elected", epoch=election_epoch, leader=vote.leader, zxid=vote.zxid)
        self._gen += 1
        if state == LEADING and not self.config.is_observer:
            from zktwist.quorum.leader import Leader

            self._state = LEADING
            self.role = Leader(self, now)
        else:
            from zktwist.quorum.learner import Learner

            self._state = OBSERVING if self.config.is_observer else FOLLOWING
            self.stash.clear()
            self.role = Learner(self, vote.leader, self.config.is_observer, now)
        self.role.start(now)

    # -- inputs ---------------------------------------------------------------------------------

    def start(self, now: int) -> Effects:
        self.go_looking(now, "start")
        return self._drain()

    def tick(self, now: int) -> Effects:
        if self._state == LOOKING:
            if self.reload_pending is None:
                self.emit_all(self.election.tick(now))
                self._check_election(now)
        elif self.role is not None:
            self.role.tick(now)
        return self._drain()

    def receive(self, sender: int, msg: Any, now: int) -> Effects:
        self._receive(sender, msg, now)
        return self._drain()

    def receive_many(self, sender: int, msgs: Sequence[Any], now: int) -> Effects:
        """``receive`` for each of ``msgs`` (what one read of a link brought), one drain.

        Once a message ends the role, the rest of a quorum link's batch is dropped (the
        peer closes that link, which would have delivered nothing more); election
        notifications are all delivered.
        """
        gen = self._gen
        for msg in msgs:
            if self._gen != gen and not isinstance(msg, Notification):
                break
            self._receive(sender, msg, now)
        return self._drain()

    def _receive(self, sender: int, msg: Any, now: int) -> None:
        if isinstance(msg, Notification):
            if self._state == LOOKING:
                if self.reload_pending is None:
                    self.emit_all(self.election.receive(msg, now))
                    self._check_election(now)
            elif self.vote is not None:
                self.emit_all(self.election.answer(msg, self._state, self.vote,
                                                   self.election_epoch))
        elif self.role is not None:
            self.role.receive(sender, msg, now)
        elif isinstance(msg, m.FollowerInfo) and sender in self.links:
            # Not leading (yet): keep it, in case this election makes us the leader.
            self.stash[sender] = msg

    def link_up(self, sid: int, now: int) -> Effects:
        self.links.add(sid)
        if self.role is not None:
            self.role.link_up(sid, now)
        return self._drain()

    def link_down(self, sid: int, now: int) -> Effects:
        self.links.discard(sid)
        self.stash.pop(sid, None)
        if self.role is not None:
            self.role.link_down(sid, now)
        return self._drain()

    def storage_done(self, seq: int, now: int) -> Effects:
        self._storage_done(seq, now)
        return self._drain()

    def _storage_done(self, seq: int, now: int) -> None:
        cbs = self._callbacks
        while cbs and cbs[0][0] <= seq:
            _, gen, fn, always = cbs.popleft()
            if always is not None:
                always(now)
            if fn is not None and gen == self._gen:
                fn(now)
        role = self.role
        if role is not None:
            # One cumulative answer for everything this op made durable (an ACK, a commit
            # round) rather than one per txn.
            role.after_storage(now)

    def reloaded(self, seq: int, core: ZooKeeperCore, recent_txns: Sequence[Txn],
                 now: int) -> Effects:
        pending, self.reload_pending = self.reload_pending, None
        self._storage_done(seq, now)
        if pending is None or pending[0] != seq:  # pragma: no cover - shell bug
            raise AssertionError("reloaded(%d) without that Reload pending" % seq)
        _, zxid, gen = pending
        # The log is truncated whoever asked: the core must be the reloaded one.
        self.install_core(core, recent_txns, zxid, now)
        self.trace("truncated", epoch=self._current_epoch, zxid=zxid)
        if gen == self._gen and self.role is not None:
            self.role.resume(now)  # the learner that asked: what arrived meanwhile
        elif self._state == LOOKING:
            # It left its role while the reload ran; only now may we vote with our zxid.
            self.trace("looking", epoch=self._current_epoch, zxid=self.last_logged,
                       detail="reloaded")
            self.emit_all(self.election.start(self.last_logged, self._current_epoch, now))
            self._check_election(now)
        return self._drain()

    def install_core(self, core: ZooKeeperCore, recent_txns: Sequence[Txn], last_logged: int,
                     now: int) -> None:
        """Replace the core (after Reload or SNAP), keeping the session-id counter moving on."""
        next_id = self._core.sessions.next_id
        self.core = core
        if (core.sessions.next_id >> 56) & 0xFF != self.sid & 0xFF or \
                core.sessions.next_id < next_id:
            core.sessions.next_id = next_id
        self.recent = deque(recent_txns, maxlen=self.recent.maxlen)
        self.last_logged = last_logged

    # -- clients ---------------------------------------------------------------------------------

    def client_connect(self, token: Any, session_id: int, passwd: Optional[bytes], timeout: int,
                       now: int) -> Effects:
        if not self._serving or self.role is None:
            return [SessionRejected(token)]
        lo, hi = self.config.session_timeout_bounds()
        timeout = max(lo, min(timeout, hi))
        if session_id == 0:
            new_id = self._core.sessions.new_session_id()
            self.pending_sessions[new_id] = token
            self._submit(new_id, 0, OpCode.createSession, (timeout,), (), now)
        elif not self._core.check_password(session_id, passwd):
            self.emit(SessionRejected(token))
        elif self.is_leader:
            self.role.revalidate(self.sid, session_id, timeout, now)
            if self._core.sessions.is_live(session_id):
                self.emit(SessionEstablished(token, session_id, timeout,
                                             session_password(session_id)))
            else:
                self.emit(SessionRejected(token))
        else:
            self.pending_revalidations.setdefault(session_id, deque()).append((token, timeout))
            self.role.send_leader(m.Revalidate(session_id, timeout))
        return self._drain()

    def client_write(self, token: Any, session_id: int, cxid: int, op: int, req: Any,
                     auth_ids: Sequence, now: int) -> Effects:
        if not self._serving or self.role is None:
            return []
        self.pending_writes[(session_id, cxid)] = token
        self._submit(session_id, cxid, op, req, tuple(auth_ids), now)
        return self._drain()

    def client_close(self, token: Any, session_id: int, cxid: int, now: int) -> Effects:
        if not self._serving or self.role is None:
            return []
        self.pending_closes[(session_id, cxid)] = token
        self._submit(session_id, cxid, OpCode.closeSession, (), (), now)
        return self._drain()

    def client_sync(self, token: Any, now: int) -> Effects:
        if not self._serving or self.role is None:
            return []
        if self.is_leader:
            self.role.sync(None, token, now)
        else:
            self._next_sync_id += 1
            self.pending_syncs[self._next_sync_id] = token
            self.role.send_leader(m.SyncRequest(self._next_sync_id))
        return self._drain()

    def client_touch(self, session_id: int, now: int) -> Effects:
        if self.is_leader:
            self._core.sessions.touch(session_id, now)
        else:
            s = self._core.sessions.sessions.get(session_id)
            if s is not None:
                self.touches[session_id] = s.timeout
        return self._drain()

    def _submit(self, session_id: int, cxid: int, op: int, req: Any, auth_ids: Tuple,
                now: int) -> None:
        if self.is_leader:
            self.role.write(self.sid, session_id, cxid, op, req, auth_ids, now)
        else:
            self.role.send_leader(m.Request(self.sid, session_id, cxid, op, req, auth_ids))

    # learner replies
    def sync_answered(self, sync_id: int) -> None:
        token = self.pending_syncs.pop(sync_id, None)
        if token is not None:
            self.emit(SyncDone(token, self._core.last_zxid))

    def revalidated(self, session_id: int, valid: bool) -> None:
        waiting = self.pending_revalidations.get(session_id)
        if not waiting:
            return
        token, timeout = waiting.popleft()
        if not waiting:
            del self.pending_revalidations[session_id]
        if valid:
            self.touches[session_id] = timeout
            self.emit(SessionEstablished(token, session_id, timeout, session_password(session_id)))
        else:
            self.emit(SessionRejected(token))


Role = Union[Any]
