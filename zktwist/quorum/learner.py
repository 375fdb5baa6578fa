"""The Zab learner: a follower or an observer (Learner.java, Follower.java, Observer.java).

Pure: driven by :class:`zktwist.quorum.peer.QuorumPeer`.  See docs/replication.md.

Where the TLA+ deep bugs (../shared/reference/anchors.md) are prevented:

* ACKEPOCH only after acceptedEpoch is durable (``_leader_info``).
* NEWLEADER (``_new_leader``): every txn of the sync is logged, then
  currentEpoch is persisted, and the ACK goes out only once **both** are
  durable.  ZOOKEEPER-3911 (ACK of NEWLEADER before the DIFF txns were
  logged), ZOOKEEPER-4646 (crash after ACKing NEWLEADER, before the fsync) and
  ZOOKEEPER-4643/-4685 class (currentEpoch updated/persisted before the txns it
  vouches for: a restarted follower then votes with the new epoch and a
  history that lacks committed txns, and a new leader truncates them away).
  The in-memory currentEpoch (the vote) moves only when the SetMeta is durable.
* A proposal is ACKed only after it is durable (``_proposal``).
* TRUNC rebuilds the core from durable storage (``Reload``), never from
  memory (ZOOKEEPER-2845).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Deque, List, Optional

from zktwist.core.database import ZooKeeperCore
from zktwist.core.txn import Txn
from zktwist.quorum import messages as m
from zktwist.quorum.effects import Connect, Disconnect, WriteSnapshot
from zktwist.quorum.messages import epoch_of

if TYPE_CHECKING:  # pragma: no cover
    from zktwist.quorum.peer import QuorumPeer

CONNECTING, DISCOVERY, EPOCH, SYNC, NEWLEADER, BROADCAST = (
    "connecting", "discovery", "epoch", "sync", "newleader", "broadcast")


class Learner:
    def __init__(self, peer: "QuorumPeer", leader_sid: int, observer: bool, now: int) -> None:
        self.p = peer
        self.cfg = peer.config
        self.leader = leader_sid
        self.observer = observer
        self.phase = CONNECTING
        self.epoch: Optional[int] = None
        self.last_heard = now
        self.sync_buf: List[Txn] = []     # received during sync: logged at NEWLEADER
        self.queue: Deque[Txn] = deque()  # logged, not yet applied (zxid order)
        self.committed_upto = 0
        self.newleader_seen = False
        self.uptodate = False
        self.blocked: Deque[Any] = deque()  # from the leader while a TRUNC rebuilds the core
        self.stopped = False
        self.unsafe_ack = "ack_before_durable" in peer.unsafe
        # Cumulative ACKs: the highest proposal known durable here, and the last one ACKed.
        self.ack_due = 0
        self.acked = 0

    @property
    def kind(self) -> str:
        return "observing" if self.observer else "following"

    # -- role interface --------------------------------------------------------------------------

    def start(self, now: int) -> None:
        p = self.p
        if self.leader == p.sid:  # pragma: no cover - election never does this
            p.go_looking(now, "elected leader is ourselves as a learner")
            return
        if self.leader in p.links:
            # A link from an earlier incarnation: start a fresh stream.
            p.emit(Disconnect(self.leader))
            p.links.discard(self.leader)
        p.emit(Connect(self.leader))

    def stop(self, now: int) -> None:
        """Leaving the role: close the link; apply what we logged (fast-forward)."""
        self.stopped = True
        self.p.emit(Disconnect(self.leader))
        self.p.links.discard(self.leader)
        self.p.fast_forward(list(self.queue), now)
        self.queue.clear()

    def send_leader(self, msg: Any) -> None:
        self.p.send(self.leader, msg)

    def link_up(self, sid: int, now: int) -> None:
        if sid != self.leader or self.phase != CONNECTING:
            return
        self.phase = DISCOVERY
        self.last_heard = now
        self.send_leader(m.FollowerInfo(self.p.sid, self.p.accepted_epoch, self.observer,
                                        self.cfg.config_version))

    def link_down(self, sid: int, now: int) -> None:
        if sid == self.leader:
            self.p.go_looking(now, "lost the link to leader %d" % sid)

    def tick(self, now: int) -> None:
        limit = self.cfg.sync_limit if self.uptodate else self.cfg.init_limit
        if now - self.last_heard > limit * self.cfg.tick_time:
            self.p.go_looking(now, "leader %d silent for %d ms" % (self.leader, now - self.last_heard))

    def receive(self, sender: int, msg: Any, now: int) -> None:
        if sender != self.leader:
            return
        self.last_heard = now
        if self.p.reload_pending is not None:
            self.blocked.append(msg)  # the core is being rebuilt (TRUNC)
            return
        self._dispatch(msg, now)

    def _dispatch(self, msg: Any, now: int) -> None:
        if isinstance(msg, m.Proposal):
            self._proposal(msg.txn, now)
        elif isinstance(msg, m.Commit):
            self._commit(msg.zxid, now)
        elif isinstance(msg, m.Inform):
            self._inform(msg.txn, now)
        elif isinstance(msg, m.Ping):
            touches = tuple(sorted(self.p.touches.items()))
            self.p.touches.clear()
            self.send_leader(m.Ping(self.p.last_logged, touches))
        elif isinstance(msg, m.SyncReply):
            self.p.sync_answered(msg.id)
        elif isinstance(msg, m.RevalidateReply):
            self.p.revalidated(msg.session_id, msg.valid)
        elif isinstance(msg, m.LeaderInfo):
            self._leader_info(msg.new_epoch, now)
        elif isinstance(msg, m.Diff):
            pass
        elif isinstance(msg, m.Trunc):
            self._trunc(msg.zxid, now)
        elif isinstance(msg, m.Snap):
            self._snap(msg.zxid, msg.data, now)
        elif isinstance(msg, m.NewLeader):
            self._new_leader(msg.zxid, now)
        elif isinstance(msg, m.UpToDate):
            self._uptodate(now)

    # -- discovery -----------------------------------------------------------------------------------

    def _leader_info(self, new_epoch: int, now: int) -> None:
        if self.phase != DISCOVERY:
            return
        p = self.p
        if new_epoch < p.accepted_epoch:
            p.go_looking(now, "leader's epoch %d is below our accepted epoch %d"
                         % (new_epoch, p.accepted_epoch))
            return
        self.epoch = new_epoch
        p.update_vote_epoch(new_epoch)
        if new_epoch == p.accepted_epoch:
            self.phase = SYNC
            self.send_leader(m.AckEpoch(p.current_epoch, p.last_logged, True))
            return
        self.phase = EPOCH

        def durable(at: int) -> None:
            # acceptedEpoch is durable: only now may we promise it (ACKEPOCH); a restart
            # can never come back willing to accept a lower epoch again.
            self.phase = SYNC
            self.send_leader(m.AckEpoch(p.current_epoch, p.last_logged, False))

        p.persist_epoch("acceptedEpoch", new_epoch, durable, now)

    # -- synchronisation -----------------------------------------------------------------------------

    def _trunc(self, zxid: int, now: int) -> None:
        if self.phase != SYNC:
            return
        if "skip_trunc" in self.p.unsafe:
            # UNSAFE (test-only switch 'skip_trunc'): keep the diverged txns.
            return
        # The core is rebuilt from durable storage after the log is cut at zxid
        # (ZOOKEEPER-2845: never keep a truncated txn in memory).
        self.p.request_reload(zxid)

    def resume(self, now: int) -> None:
        """The core was rebuilt after our TRUNC: handle what the leader sent meanwhile,
        unless another rebuild starts first."""
        blocked = self.blocked
        while blocked and not self.stopped and self.p.reload_pending is None:
            self._dispatch(blocked.popleft(), now)

    def _snap(self, zxid: int, data: bytes, now: int) -> None:
        if self.phase != SYNC:
            return
        from zktwist.storage.snapshot import load_snapshot

        p = self.p
        snap = load_snapshot([data], zxid)
        core = ZooKeeperCore(p.core.config, now)
        core.install_snapshot(snap.tree, snap.sessions, zxid, now)
        p.install_core(core, (), zxid, now)
        p.store(lambda seq: WriteSnapshot(seq, zxid, data))
        p.trace("snap", epoch=p.current_epoch, zxid=zxid)

    def _new_leader(self, zxid: int, now: int) -> None:
        if self.phase != SYNC:
            return
        p = self.p
        epoch = epoch_of(zxid)
        self.phase = NEWLEADER
        self.newleader_seen = True
        txns, self.sync_buf = self.sync_buf, []
        self.queue.extend(txns)
        # DEEP BUGS ZOOKEEPER-3911 / ZOOKEEPER-4646 / ZOOKEEPER-4643 / ZOOKEEPER-4685 are
        # prevented here: the sync txns are logged first, currentEpoch is persisted after
        # them (storage runs in order), the in-memory currentEpoch (our vote) moves only
        # when that SetMeta is durable, and the NEWLEADER ACK waits for it.
        if txns:
            p.log_txns(txns)  # first every txn of the sync ...
        sent = [False]

        def durable(at: int) -> None:
            # ... then currentEpoch; this runs when both are durable (storage is in order).
            if not sent[0]:
                sent[0] = True
                self.send_leader(m.Ack(zxid))

        p.persist_epoch("currentEpoch", epoch, durable, now)
        if self.unsafe_ack:
            # UNSAFE (test-only switch 'ack_before_durable'): ACK NEWLEADER before the
            # sync txns and currentEpoch are durable (ZOOKEEPER-3911/4646).
            durable(now)

    def _uptodate(self, now: int) -> None:
        if self.phase != NEWLEADER:
            return
        self.phase = BROADCAST
        self.uptodate = True
        self._apply_ready(now)
        p = self.p
        p.set_serving(True)
        p.trace(self.kind, epoch=self.epoch or 0, zxid=p.core.last_zxid, leader=self.leader)

    # -- broadcast --------------------------------------------------------------------------------------

    def _proposal(self, txn: Txn, now: int) -> None:
        if self.phase == SYNC:
            self.sync_buf.append(txn)
            return
        if self.phase not in (NEWLEADER, BROADCAST):
            return
        if self.queue and txn.zxid <= self.queue[-1].zxid or txn.zxid <= self.p.core.last_zxid:
            return  # already have it
        self.queue.append(txn)
        zxid = txn.zxid
        if self.observer:
            self.p.log_txns((txn,))
            return
        if self.unsafe_ack:
            # UNSAFE (test-only switch 'ack_before_durable'): ACK before the append is durable.
            self.p.log_txns([txn])
            self.send_leader(m.Ack(zxid))
            return
        # ACK only once the proposal is durable here (a crash cannot take back an ACKed txn).
        # Storage runs in order, so one cumulative ACK (after_storage) answers for every
        # proposal up to it.
        self.p.log_txns((txn,), lambda at: self._durable(zxid))

    def _durable(self, zxid: int) -> None:
        if zxid > self.ack_due:
            self.ack_due = zxid

    def after_storage(self, now: int) -> None:
        """A storage op is durable: one ACK for the highest proposal it made durable."""
        if self.ack_due > self.acked:
            self.acked = self.ack_due
            self.send_leader(m.Ack(self.ack_due))

    def _commit(self, zxid: int, now: int) -> None:
        if zxid > self.committed_upto:
            self.committed_upto = zxid
        self._apply_ready(now)

    def _inform(self, txn: Txn, now: int) -> None:
        if self.phase not in (NEWLEADER, BROADCAST):
            return
        last = self.queue[-1].zxid if self.queue else self.p.core.last_zxid
        if txn.zxid > last:
            self.queue.append(txn)
            self.p.log_txns([txn])
        self._commit(txn.zxid, now)

    def _apply_ready(self, now: int) -> None:
        """Apply committed txns strictly in zxid order (only once UPTODATE came)."""
        if not self.uptodate:
            return
        p = self.p
        while self.queue and self.queue[0].zxid <= self.committed_upto:
            txn = self.queue.popleft()
            if txn.zxid <= p.core.last_zxid:
                continue
            p.apply_txn(txn, now)
        if self.committed_upto > p.core.last_zxid and not self.queue:
            # A COMMIT for a txn we never got: the stream is broken.
            p.go_looking(now, "commit 0x%x without its proposal" % self.committed_upto)
