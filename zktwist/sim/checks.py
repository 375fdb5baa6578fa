"""Invariant checks over a simulated run, fed by the peers' Trace effects as they happen.

The checker builds **one global committed sequence** (zxid -> txn bytes)
from what the servers report -- ``committed`` from a leader, ``applied`` from
anyone (servers apply only committed txns), and at ``established`` the new
leader's whole log up to its zxid (Zab: all of it is committed then) -- and
flags, the moment it happens:

* two different txns at one committed zxid (a committed txn lost or
  replaced; also a server re-applying something different after truncation);
* a commit of a zxid below the committed tip that was not already committed
  (reordering);
* a server applying out of order or skipping a committed zxid (its applied
  sequence is not a prefix of the global one);
* two established leaders in one epoch;
* a new leader established below the committed tip (it lost committed txns);
* at checkpoints -- a server becomes synced (``following``/``observing``/
  ``established``) and at the end -- a server whose tree differs from the
  replay of the committed sequence into a fresh ZooKeeperCore, or whose last
  zxid was never committed.

Because the trace is checked when it is emitted, every step is checked.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from zktwist.core.database import CoreConfig, ZooKeeperCore
from zktwist.core.tree import STAT
from zktwist.core.txn import Txn, decode, encode
from zktwist.quorum.effects import Trace

if TYPE_CHECKING:  # pragma: no cover
    from zktwist.sim.world import World

TreeDigest = Dict[str, Tuple[Optional[bytes], bytes]]


def tree_digest(core: ZooKeeperCore) -> TreeDigest:
    """Every znode's data and Stat (ctime/mtime come from the txns, so they must agree too)."""
    return {path: (node.data, node.stat()) for path, node in core.tree.nodes.items()}


def _show(entry: Optional[Tuple[Optional[bytes], bytes]]) -> str:
    if entry is None:
        return "absent"
    data, stat = entry
    czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, dlen, nkids, pzxid = \
        STAT.unpack(stat)
    return "%r v%d czxid 0x%x mzxid 0x%x cversion %d pzxid 0x%x children %d" % (
        data, version, czxid, mzxid, cversion, pzxid, nkids)


def diff_digests(a: TreeDigest, b: TreeDigest, limit: int = 5) -> str:
    out = []
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path):
            out.append("%s: server %s; replay %s" % (path, _show(a.get(path)), _show(b.get(path))))
            if len(out) >= limit:
                break
    return "; ".join(out)


class Checker:
    def __init__(self, world: "World") -> None:
        self.world = world
        self.chain: Dict[int, bytes] = {}
        self.zxids: List[int] = []  # sorted keys of chain
        self.origin: Dict[int, str] = {}
        self.leaders: Dict[int, int] = {}  # epoch -> established leader
        self.pos: Dict[int, Optional[int]] = {}  # sid -> last applied zxid (None: unknown)
        self.core_ids: Dict[int, int] = {}
        self.violations: List[str] = []
        self.checkpoints = 0
        self._ref: Optional[ZooKeeperCore] = None
        self._ref_pos = 0  # index into zxids replayed into _ref
        self.base_zxid = 0
        self.base_snapshot: Optional[bytes] = None

    # -- reporting --------------------------------------------------------------------

    def violation(self, text: str) -> None:
        msg = "t=%d: %s" % (self.world.queue.now, text)
        self.violations.append(msg)
        self.world.log("VIOLATION " + text)

    # -- the committed sequence -------------------------------------------------------

    def commit(self, zxid: int, data: bytes, origin: str) -> None:
        have = self.chain.get(zxid)
        if have is not None:
            if have != data:
                self.violation("two different txns committed at zxid 0x%x: %r (%s) and %r (%s)"
                               % (zxid, decode(have), self.origin[zxid], decode(data), origin))
            return
        zxids = self.zxids
        if zxids and zxid < zxids[-1]:
            # Zab commits in zxid order everywhere: a hole below the tip filled late means
            # some server saw a later txn committed before this one.
            if origin.startswith("committed"):
                self.violation("zxid 0x%x committed (%s) after 0x%x (%s): out of order"
                               % (zxid, origin, zxids[-1], self.origin[zxids[-1]]))
            bisect.insort(zxids, zxid)
            self._ref = None
        else:
            zxids.append(zxid)
        self.chain[zxid] = data
        self.origin[zxid] = origin

    # -- events from the world ---------------------------------------------------------

    def started(self, sid: int, peer: Any) -> None:
        core = getattr(peer, "core", None)
        self.pos[sid] = core.last_zxid if core is not None else None
        self.core_ids[sid] = id(core)

    def crashed(self, sid: int) -> None:
        self.pos[sid] = None

    def reloaded(self, sid: int, core: ZooKeeperCore) -> None:
        self.pos[sid] = core.last_zxid
        self.core_ids[sid] = id(core)

    def _sync_core(self, sid: int) -> None:
        """A new core object (SNAP, reload): its position is where it starts."""
        srv = self.world.servers[sid]
        core = getattr(srv.peer, "core", None)
        if core is not None and id(core) != self.core_ids.get(sid):
            self.core_ids[sid] = id(core)
            self.pos[sid] = None

    def trace(self, sid: int, t: Trace) -> None:
        kind = t.kind
        if kind == "applied":
            self._sync_core(sid)
            txn = t.txn
            if txn is None:
                return
            z = txn.zxid
            self.commit(z, encode(txn), "applied by s%d" % sid)
            pos = self.pos.get(sid)
            if pos is not None:
                if z <= pos:
                    self.violation("s%d applied 0x%x after 0x%x" % (sid, z, pos))
                else:
                    i = bisect.bisect_right(self.zxids, pos)
                    if i < len(self.zxids) and self.zxids[i] < z:
                        self.violation("s%d applied 0x%x after 0x%x, skipping committed 0x%x"
                                       % (sid, z, pos, self.zxids[i]))
            self.pos[sid] = z
        elif kind == "committed":
            if t.txn is not None:
                self.commit(t.txn.zxid, encode(t.txn), "committed by s%d" % sid)
            elif t.zxid not in self.chain:
                self.violation("s%d committed 0x%x without its txn" % (sid, t.zxid))
        elif kind == "established":
            self._established(sid, t)
        elif kind in ("following", "observing"):
            self._sync_core(sid)
            self.checkpoint(sid, kind)
        elif kind == "truncated":
            self._sync_core(sid)
            self.pos[sid] = t.zxid
        elif kind == "looking":
            # Leaving a role fast-forwards the core over every logged txn, untraced
            # (ZKDatabase.fastForwardDataBase): the server continues from there.
            self._sync_core(sid)
            core = getattr(self.world.servers[sid].peer, "core", None)
            if core is not None:
                self.pos[sid] = core.last_zxid

    def _established(self, sid: int, t: Trace) -> None:
        epoch = t.epoch
        other = self.leaders.get(epoch)
        if other is not None and other != sid:
            self.violation("two established leaders in epoch %d: s%d and s%d" % (epoch, other, sid))
        self.leaders[epoch] = sid
        srv = self.world.servers[sid]
        # Zab: every txn in the new leader's history up to t.zxid is committed now.  Its
        # history is its newest snapshot plus the log after it, as recovery reads it (log
        # records behind a snapshot may be a diverged past that a SNAP replaced).
        snaps = srv.backend.list_snapshots()
        snap = snaps[0] if snaps else 0
        if snap and snap <= t.zxid and snap not in self.chain and snap > self.base_zxid and (
                not self.zxids or snap > self.zxids[-1]):
            # Its history starts with a snapshot (a SNAP) holding txns no trace showed, say
            # proposals of a leader that never established, now committed by this one.  The
            # txns are not to be had, so the snapshot becomes the base of later replays.
            self.base_zxid = snap
            self.base_snapshot = b"".join(srv.backend.read_snapshot(snap))
            self._ref = None
            self.world.log("checker: replays now start from s%d's snapshot 0x%x" % (sid, snap))
        for zxid, payload in srv.backend.read_txns(snap + 1):
            if zxid > t.zxid:
                break
            self.commit(zxid, bytes(payload), "established s%d e%d" % (sid, epoch))
        if self.zxids and self.zxids[-1] > t.zxid:
            lost = [z for z in self.zxids if z > t.zxid]
            self.violation("s%d established epoch %d at 0x%x, below committed 0x%x (%s): "
                           "committed txns lost: %s" % (
                               sid, epoch, t.zxid, self.zxids[-1], self.origin[self.zxids[-1]],
                               ", ".join("0x%x" % z for z in lost[:5])))
        self._sync_core(sid)
        self.checkpoint(sid, "established")

    # -- tree checks ------------------------------------------------------------------------

    def _replay_to(self, zxid: int) -> ZooKeeperCore:
        """A core with every committed txn up to ``zxid`` applied (incrementally when possible)."""
        ref = self._ref
        zxids = self.zxids
        if ref is None or (self._ref_pos > 0 and zxids[self._ref_pos - 1] > zxid):
            ref = self._ref = ZooKeeperCore(CoreConfig(tick_time=self.world.config.tick_time), 0)
            self._ref_pos = 0
            if self.base_snapshot is not None:
                from zktwist.storage.snapshot import load_snapshot
                snap = load_snapshot([self.base_snapshot], self.base_zxid)
                ref.install_snapshot(snap.tree, snap.sessions, self.base_zxid, 0)
                self._ref_pos = bisect.bisect_right(zxids, self.base_zxid)
        i = self._ref_pos
        n = len(zxids)
        chain = self.chain
        while i < n and zxids[i] <= zxid:
            ref.replay(decode(chain[zxids[i]]), 0)
            i += 1
        self._ref_pos = i
        return ref

    def checkpoint(self, sid: int, why: str) -> None:
        srv = self.world.servers[sid]
        core = getattr(srv.peer, "core", None)
        if core is None:
            return
        self.checkpoints += 1
        z = core.last_zxid
        if z < self.base_zxid:
            return  # before the replay base: nothing to compare with
        if z and z not in self.chain and z != self.base_zxid:
            self.violation("s%d is %s at zxid 0x%x, which was never committed (tip 0x%x)"
                           % (sid, why, z, self.zxids[-1] if self.zxids else 0))
            return
        ref = self._replay_to(z)
        mine, theirs = tree_digest(core), tree_digest(ref)
        if mine != theirs:
            self.violation("s%d (%s at 0x%x): tree differs from the committed log's replay: %s"
                           % (sid, why, z, diff_digests(mine, theirs)))
        self.pos[sid] = z

    def tips_agree(self) -> bool:
        world = self.world
        return len({world.servers[s].peer.core.last_zxid for s in world.sids
                    if world.servers[s].serving}) <= 1

    def final(self) -> None:
        """End of run: every serving server's tree is the replay of the committed log."""
        world = self.world
        serving = [s for s in world.sids if world.servers[s].serving]
        for sid in serving:
            self.checkpoint(sid, "serving at the end")
        tips = {world.servers[s].peer.core.last_zxid for s in serving}
        if len(tips) > 1:
            self.violation("after settling, serving servers disagree on the last zxid: %s" % ", ".join(
                "s%d=0x%x" % (s, world.servers[s].peer.core.last_zxid) for s in serving))


def committed_txns(checker: Checker) -> List[Txn]:
    return [decode(checker.chain[z]) for z in checker.zxids]
