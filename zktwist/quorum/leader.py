"""The Zab leader: discovery, synchronisation, broadcast (Leader.java + LearnerHandler.java).

Pure: driven by :class:`zktwist.quorum.peer.QuorumPeer`, which it uses for
effects, storage and client bookkeeping.  See docs/replication.md.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Set, Tuple

from zktwist.core.txn import Txn, decode, encode
from zktwist.proto.consts import Err, OpCode
from zktwist.quorum import messages as m
from zktwist.quorum.effects import Disconnect, SyncDone
from zktwist.quorum.messages import counter_of, epoch_of, make_zxid

if TYPE_CHECKING:  # pragma: no cover
    from zktwist.quorum.peer import QuorumPeer

#: the last counter a leader may use; the next proposal forces a new epoch (XidRolloverException)
MAX_COUNTER = 0xFFFFFFFE

DISCOVERY, SYNC, BROADCAST = "discovery", "sync", "broadcast"


def _outside_bmp(value: Any) -> bool:
    """Does a txn body hold a str with a character above U+FFFF?"""
    t = type(value)
    if t is tuple or t is list:
        for v in value:
            tv = type(v)
            if tv is str:
                if not v.isascii() and any(ord(c) > 0xFFFF for c in v):
                    return True
            elif tv is bytes or tv is int or v is None:
                continue
            elif _outside_bmp(v):
                return True
        return False
    if isinstance(value, str):
        return not value.isascii() and any(ord(c) > 0xFFFF for c in value)
    if isinstance(value, (tuple, list)):
        return any(_outside_bmp(v) for v in value)
    return False


class LearnerHandle:
    """What the leader knows of one connected learner (LearnerHandler)."""

    __slots__ = ("sid", "observer", "accepted_epoch", "info_sent", "acked_epoch", "last_zxid",
                 "synced", "sync_upto", "newleader_acked", "uptodate", "last_heard", "acked_upto")

    def __init__(self, sid: int, observer: bool, accepted_epoch: int, now: int) -> None:
        self.sid = sid
        self.observer = observer
        self.accepted_epoch = accepted_epoch
        self.info_sent = False
        self.acked_epoch = False
        self.last_zxid = 0
        self.synced = False        # sync sent; in the forwarding set
        self.sync_upto = 0         # last zxid the sync carried
        self.newleader_acked = False
        self.uptodate = False
        self.last_heard = now
        #: a voter's cumulative ACK: every proposal up to here is durable there
        self.acked_upto = 0


class Leader:
    def __init__(self, peer: "QuorumPeer", now: int) -> None:
        self.p = peer
        self.cfg = peer.config
        self.sid = peer.sid
        self.phase = DISCOVERY
        self.learners: Dict[int, LearnerHandle] = {}
        self.epoch: Optional[int] = None
        self.epoch_durable = False
        self.epoch_quorum = False
        self.epoch_acked: Set[int] = set()
        self.newleader_acked: Set[int] = set()
        self.established = False
        # the state summary the leader was elected with (Leader.leaderStateSummary)
        self.summary = (peer.current_epoch, peer.last_logged)
        self.deadline = now + self.cfg.init_limit * self.cfg.tick_time
        #: proposed, not yet committed, in zxid order
        self.outstanding: "OrderedDict[int, Txn]" = OrderedDict()
        #: our own cumulative ACK: every proposal up to here is durable in our log
        self.durable_upto = 0
        self.last_proposed = peer.last_logged
        self.last_committed = 0
        self.sync_waiters: Deque[Tuple[int, Optional[int], Any]] = deque()
        self.create_owner: Dict[int, int] = {}
        self.next_ping = now
        self.next_reap = now + self.cfg.reap_interval
        self.stopped = False

    # -- helpers ---------------------------------------------------------------------------------

    def _is_quorum(self, sids: Set[int]) -> bool:
        return self.p.verifier.is_quorum(sids)

    def _voter(self, sid: int) -> bool:
        return self.p.verifier.is_voter(sid) and sid not in self.cfg.observers

    def _drop(self, sid: int, reason: str) -> None:
        if self.learners.pop(sid, None) is not None:
            self.p.emit(Disconnect(sid))
            self.p.trace("dropped", leader=self.sid, detail="%d: %s" % (sid, reason))

    def _abandon(self, now: int, reason: str) -> None:
        self.p.go_looking(now, reason)

    # -- role interface ----------------------------------------------------------------------

    def start(self, now: int) -> None:
        for sid, info in sorted(self.p.stash.items()):
            if sid in self.p.links:
                self._follower_info(sid, info, now)
        self.p.stash.clear()
        if not self.stopped:
            self._check_discovery(now)

    def stop(self, now: int) -> None:
        """Leaving LEADING: close every learner link and fast-forward logged proposals."""
        self.stopped = True
        for sid in list(self.learners):
            self.p.emit(Disconnect(sid))
        self.learners.clear()
        self.p.fast_forward(list(self.outstanding.values()), now)
        self.outstanding.clear()

    def link_up(self, sid: int, now: int) -> None:
        pass  # the learner speaks first (FOLLOWERINFO)

    def link_down(self, sid: int, now: int) -> None:
        self.learners.pop(sid, None)

    def send_leader(self, msg: Any) -> None:  # pragma: no cover - the leader has no leader
        raise AssertionError("the leader does not forward")

    def receive(self, sender: int, msg: Any, now: int) -> None:
        if isinstance(msg, m.FollowerInfo):
            self._follower_info(sender, msg, now)
            return
        h = self.learners.get(sender)
        if h is None:
            return  # not registered on this link (or dropped): ignore
        h.last_heard = now
        if isinstance(msg, m.Ack):
            self._ack(h, msg.zxid, now)
        elif isinstance(msg, m.Ping):
            for session_id, _timeout in msg.touches:
                self.p.core.sessions.touch(session_id, now)
        elif isinstance(msg, m.AckEpoch):
            self._ack_epoch(h, msg, now)
        elif isinstance(msg, m.Request):
            if self.established:
                self.write(msg.origin_sid, msg.session_id, msg.cxid, msg.op, msg.req,
                           msg.auth_ids, now)
        elif isinstance(msg, m.Revalidate):
            valid = self.revalidate(sender, msg.session_id, msg.timeout, now)
            self.p.send(sender, m.RevalidateReply(msg.session_id, valid))
        elif isinstance(msg, m.SyncRequest):
            self.sync(sender, msg.id, now)

    # -- discovery --------------------------------------------------------------------------------

    def _follower_info(self, sid: int, info: m.FollowerInfo, now: int) -> None:
        observer = info.observer or sid in self.cfg.observers
        if not observer and not self._voter(sid):
            self.p.emit(Disconnect(sid))
            return
        h = self.learners[sid] = LearnerHandle(sid, observer, info.accepted_epoch, now)
        if self.epoch is None:
            self._check_discovery(now)
        elif self.epoch_durable:
            h.info_sent = True
            self.p.send(sid, m.LeaderInfo(self.epoch))

    def _check_discovery(self, now: int) -> None:
        if self.epoch is not None:
            return
        voters = {self.sid} | {s for s, h in self.learners.items() if not h.observer}
        if not self._is_quorum(voters):
            return
        epoch = max([self.p.accepted_epoch] + [h.accepted_epoch for h in self.learners.values()]) + 1
        self.epoch = epoch
        self.deadline = now + self.cfg.init_limit * self.cfg.tick_time
        # The leader's acceptedEpoch is durable before it proposes the epoch to anyone.
        self.p.persist_epoch("acceptedEpoch", epoch, self._epoch_durable, now)

    def _epoch_durable(self, now: int) -> None:
        assert self.epoch is not None
        self.epoch_durable = True
        self.p.update_vote_epoch(self.epoch)
        self.epoch_acked.add(self.sid)
        for h in self.learners.values():
            if not h.info_sent:
                h.info_sent = True
                self.p.send(h.sid, m.LeaderInfo(self.epoch))
        self._check_epoch_quorum(now)

    def _ack_epoch(self, h: LearnerHandle, msg: m.AckEpoch, now: int) -> None:
        if not self.epoch_durable or h.acked_epoch:
            return
        if not msg.already_accepted and (msg.current_epoch, msg.last_zxid) > self.summary:
            # A learner knows a newer history than ours (Leader.waitForEpochAck).
            if not self.epoch_quorum:
                self._abandon(now, "learner %d is ahead of the leader" % h.sid)
            else:
                self._drop(h.sid, "ahead of the leader")
            return
        h.acked_epoch = True
        h.last_zxid = msg.last_zxid
        if not h.observer:
            self.epoch_acked.add(h.sid)
        if self.epoch_quorum:
            self._sync(h, now)
        else:
            self._check_epoch_quorum(now)

    def _check_epoch_quorum(self, now: int) -> None:
        if self.epoch_quorum or not self.epoch_durable or not self._is_quorum(self.epoch_acked):
            return
        assert self.epoch is not None
        # Only now (a quorum promised the epoch and none is ahead of us) may anybody be
        # synchronised: truncating a learner to our history earlier could destroy a
        # committed txn that a later ACKEPOCH would have shown we lack.
        self.epoch_quorum = True
        self.phase = SYNC
        self.deadline = now + self.cfg.init_limit * self.cfg.tick_time
        # Our own NEWLEADER ack is our currentEpoch being durable; our log needs nothing more
        # (everything in it was logged before this role began).
        self.p.persist_epoch("currentEpoch", self.epoch, self._current_durable, now)
        for h in list(self.learners.values()):
            if h.acked_epoch and not h.synced:
                self._sync(h, now)

    def _current_durable(self, now: int) -> None:
        self.newleader_acked.add(self.sid)
        self._check_established(now)

    # -- synchronisation (LearnerHandler.syncFollower) -------------------------------------------

    def _sync(self, h: LearnerHandle, now: int) -> None:
        assert self.epoch is not None
        if self.established:
            committed = self.last_committed
        else:
            committed = self.last_proposed  # all of it is committed once we are established
        # Followers get outstanding proposals too (PROPOSAL without COMMIT); observers only
        # what is committed (later commits reach them as INFORM).
        upto = committed if h.observer else self.last_proposed
        if h.last_zxid > committed and not h.observer:
            # The learner holds proposals we have not committed (a follower that left its
            # role applied its whole log and rejoined us).  As syncFollower does for a peer
            # past maxCommittedLog: TRUNC it to our last commit, then send the outstanding
            # proposals again, uncommitted -- it must never serve a txn before its COMMIT.
            msgs = self._sync_packets(h.last_zxid, committed, committed)
            msgs += [m.Proposal(t) for t in self.outstanding.values()]
        else:
            msgs = self._sync_packets(h.last_zxid, upto, committed)
        for msg in msgs:
            self.p.send(h.sid, msg)
        self.p.send(h.sid, m.NewLeader(make_zxid(self.epoch, 0), ""))
        # In the forwarding set from this very step: the learner misses nothing proposed later.
        h.synced = True
        h.sync_upto = upto

    def _sync_packets(self, peer_zxid: int, upto: int, committed: int) -> List[Any]:
        history = [t for t in self.p.recent if t.zxid <= upto]
        # Outstanding proposals are newer than our applied tree (the SNAP) and must reach
        # the learner even when more of them are pending than the window holds.
        first = history[0].zxid if history else None
        older = [t for z, t in self.outstanding.items()
                 if z <= upto and (first is None or z < first)]
        if older:
            history = older + history
        zxids = [t.zxid for t in history]

        def pairs(after: int) -> List[Any]:
            out: List[Any] = []
            for t in history:
                if t.zxid > after:
                    out.append(m.Proposal(t))
                    if t.zxid <= committed:
                        out.append(m.Commit(t.zxid))
            return out

        if peer_zxid == upto:
            return [m.Diff(upto)]
        if peer_zxid < upto and peer_zxid in zxids:
            return [m.Diff(upto)] + pairs(peer_zxid)
        if zxids and zxids[0] <= peer_zxid:
            # The learner has txns we do not (ahead, or diverged inside our window).  Truncate
            # it to our last txn before its last zxid -- only if that txn is in the learner's
            # own epoch: within one epoch a learner's log holds every counter in order, so it
            # certainly has that txn and its log up to there is ours.  Otherwise SNAP.
            prev = max(z for z in zxids if z < peer_zxid) if zxids[0] < peer_zxid else None
            if prev is not None and epoch_of(prev) == epoch_of(peer_zxid):
                return [m.Trunc(prev)] + pairs(prev)
        if peer_zxid == 0 and not zxids and upto == 0:
            return [m.Diff(0)]
        return self._snap(pairs)

    def _snap(self, pairs: Any) -> List[Any]:
        from zktwist.storage.snapshot import snapshot_chunks

        core = self.p.core
        zxid = core.last_zxid
        sessions = {sid: s.timeout for sid, s in core.sessions.sessions.items()}
        data = b"".join(snapshot_chunks(core.tree, sessions, zxid, 1 << 30))
        return [m.Snap(zxid, data)] + pairs(zxid)

    def _ack(self, h: LearnerHandle, zxid: int, now: int) -> None:
        assert self.epoch is not None
        if zxid == make_zxid(self.epoch, 0):
            if h.newleader_acked:
                return
            h.newleader_acked = True
            if not h.observer:
                self.newleader_acked.add(h.sid)
                # Its NEWLEADER ack means every txn of its sync is durable there.
                if h.sync_upto > h.acked_upto:
                    h.acked_upto = h.sync_upto
            if self.established:
                h.uptodate = True
                self.p.send(h.sid, m.UpToDate())
                self._try_commit(now)
            else:
                self._check_established(now)
            return
        if h.observer or not h.newleader_acked:
            return
        # Cumulative: the learner logs proposals in the order it got them (a FIFO link
        # from its sync on), so ACK(z) means every proposal up to z is durable there.
        if zxid > h.acked_upto:
            h.acked_upto = zxid
            self._try_commit(now)

    def _check_established(self, now: int) -> None:
        if self.established or self.sid not in self.newleader_acked:
            return
        if not self._is_quorum(self.newleader_acked):
            return
        assert self.epoch is not None
        self.established = True
        self.phase = BROADCAST
        core = self.p.core
        # Every txn in our log is committed now (a quorum holds it durably under this epoch).
        self.last_committed = self.last_proposed
        self.p.trace("established", epoch=self.epoch, zxid=self.last_committed, leader=self.sid)
        core.prep.rollback_all(make_zxid(self.epoch, 0))
        # The leader alone owns expiry: every session gets a full timeout from now
        # (LeaderZooKeeperServer creates its session tracker from the database).
        for session_id in list(core.sessions.sessions):
            core.sessions.touch(session_id, now)
        for h in self.learners.values():
            if h.newleader_acked and not h.uptodate:
                h.uptodate = True
                self.p.send(h.sid, m.UpToDate())
        self.p.set_serving(True)
        self.p.trace("leading", epoch=self.epoch, zxid=self.last_committed, leader=self.sid)

    # -- broadcast ------------------------------------------------------------------------------------

    def write(self, origin: int, session_id: int, cxid: int, op: int, req: Any,
              auth_ids: Any, now: int) -> None:
        """Prep a client write (from this server or forwarded by ``origin``) and propose it."""
        if not self.established or not self._room_for_zxid(now):
            return
        prep = self.p.core.prep
        if op == OpCode.createSession:
            txn = prep.prep_create_session(session_id, req[0], now)
            self.create_owner[session_id] = origin
        elif op == OpCode.closeSession:
            txn = prep.prep_close_session(session_id, cxid, now)
        elif op == OpCode.deleteContainer and isinstance(req, str):
            txn = prep.prep_delete_container(req, now)
        elif op == OpCode.reconfig:
            # Room for dynamic reconfiguration: disabled, as in 3.8 by default.
            txn = Txn(session_id, cxid, prep.next_zxid(), now, OpCode.error, (Err.RECONFIGDISABLED,))
        else:
            # owner=origin: a session attached to another server gets SESSIONMOVED.
            txn = prep.prep(session_id, cxid, op, req, auth_ids, now, owner=origin)
        if _outside_bmp(txn.body):
            # jute writes strings as Java does (CESU-8), so a character outside the BMP comes
            # back from the log as U+FFFD: every server must apply what the learners decode.
            txn = decode(encode(txn))
        self._propose(txn, now)

    def _room_for_zxid(self, now: int) -> bool:
        if counter_of(self.p.core.prep.last_zxid) >= MAX_COUNTER:
            # The zxid counter would roll over: a new epoch is needed (XidRolloverException).
            self._abandon(now, "zxid counter roll-over")
            return False
        return True

    def _propose(self, txn: Txn, now: int) -> None:
        zxid = txn.zxid
        self.last_proposed = zxid
        self.outstanding[zxid] = txn
        proposal = None
        for h in self.learners.values():
            if h.synced and not h.observer:
                if proposal is None:
                    proposal = m.Proposal(txn)
                self.p.send(h.sid, proposal)
        # Our own ACK counts only once our own append is durable (the leader's crash must not
        # lose a txn it counted towards a quorum).  The appends of one input share one
        # storage op; after_storage counts them all at once.
        self.p.log_txns((txn,), lambda at: self._self_durable(zxid))

    def _self_durable(self, zxid: int) -> None:
        if zxid > self.durable_upto:
            self.durable_upto = zxid

    def after_storage(self, now: int) -> None:
        """A storage op is durable: count our own (cumulative) ACK once for all it held."""
        if self.outstanding and self.durable_upto >= next(iter(self.outstanding)):
            self._try_commit(now)

    def _commit_point(self) -> int:
        """The highest zxid a quorum of voters has durably logged (cumulative ACKs)."""
        marks = [(self.durable_upto, self.sid)]
        for h in self.learners.values():
            if h.newleader_acked and not h.observer:
                marks.append((h.acked_upto, h.sid))
        if "commit_on_minority" in self.p.unsafe:
            # UNSAFE (test-only switch 'commit_on_minority'): any single ACK commits.
            return max(marks)[0]
        marks.sort(reverse=True)
        acked: Set[int] = set()
        for zxid, sid in marks:
            acked.add(sid)
            if self._is_quorum(acked):
                return zxid
        return 0

    def _try_commit(self, now: int) -> None:
        outstanding = self.outstanding
        if not outstanding:
            return
        upto = self._commit_point()
        if upto < next(iter(outstanding)):
            return
        txns: List[Txn] = []
        while outstanding:
            zxid = next(iter(outstanding))
            if zxid > upto:
                break
            txns.append(outstanding.pop(zxid))
        self._commit(txns, now)

    def _commit(self, txns: List[Txn], now: int) -> None:
        """Commit ``txns`` (consecutive, in zxid order): one cumulative COMMIT per follower,
        an INFORM per txn per observer, then apply them here."""
        assert self.epoch is not None
        p = self.p
        last = txns[-1].zxid
        self.last_committed = last
        epoch = self.epoch
        if self.cfg.trace_txns:
            for txn in txns:
                p.trace("committed", epoch=epoch, zxid=txn.zxid, txn=txn, leader=self.sid)
        commit = None
        for h in self.learners.values():
            if h.synced:
                if h.observer:
                    for txn in txns:
                        p.send(h.sid, m.Inform(txn))
                else:
                    if commit is None:
                        commit = m.Commit(last)
                    p.send(h.sid, commit)
        create_owner = self.create_owner
        for txn in txns:
            p.apply_txn(txn, now)
            if txn.type == OpCode.createSession:
                owner = create_owner.pop(txn.session_id, None)
                if owner is not None:
                    p.core.sessions.set_owner(txn.session_id, owner)
        while self.sync_waiters and self.sync_waiters[0][0] <= last:
            _, sid, target = self.sync_waiters.popleft()
            self._answer_sync(sid, target)

    # -- sessions and sync ----------------------------------------------------------------------------

    def revalidate(self, origin: int, session_id: int, timeout: int, now: int) -> bool:
        """A client reattached at ``origin``: touch the session and make ``origin`` its owner."""
        sessions = self.p.core.sessions
        if not self.established or not sessions.touch(session_id, now, timeout):
            return False
        sessions.set_owner(session_id, origin)
        return True

    def sync(self, sid: Optional[int], target: Any, now: int) -> None:
        """Answer once every proposal made before now is committed (sid None: our own client)."""
        if not self.established:
            return
        if not self.outstanding:
            self._answer_sync(sid, target)
        else:
            self.sync_waiters.append((self.last_proposed, sid, target))

    def _answer_sync(self, sid: Optional[int], target: Any) -> None:
        if sid is None:
            self.p.emit(SyncDone(target, self.p.core.last_zxid))
        elif sid in self.learners:
            self.p.send(sid, m.SyncReply(target, self.last_committed))

    # -- time -------------------------------------------------------------------------------------------

    def tick(self, now: int) -> None:
        cfg = self.cfg
        if not self.established and now > self.deadline:
            self._abandon(now, "no quorum within initLimit (%s)" % self.phase)
            return
        if now >= self.next_ping:
            self.next_ping = now + max(cfg.tick_time // 2, 1)
            for h in self.learners.values():
                self.p.send(h.sid, m.Ping(self.last_proposed))
        for h in list(self.learners.values()):
            limit = cfg.sync_limit if h.newleader_acked else cfg.init_limit
            if now - h.last_heard > limit * cfg.tick_time:
                self._drop(h.sid, "silent for %d ms" % (now - h.last_heard))
        if not self.established:
            return
        synced = {self.sid} | {h.sid for h in self.learners.values()
                               if h.newleader_acked and not h.observer}
        if not self._is_quorum(synced):
            self._abandon(now, "lost the quorum of synced followers")
            return
        core = self.p.core
        # Only the leader expires sessions and reaps containers/TTL nodes.
        for session_id in core.expired_sessions(now):
            if not self._room_for_zxid(now):
                return
            self._propose(core.prep.prep_close_session(session_id, 0, now), now)
        if now >= self.next_reap:
            self.next_reap = now + cfg.reap_interval
            for path in core.reapable(now):
                if not self._room_for_zxid(now):
                    return
                self._propose(core.prep.prep_delete_container(path, now), now)
