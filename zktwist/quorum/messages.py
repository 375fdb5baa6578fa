"""Zab packets between a leader and its learners (docs/replication.md, zk-protocol.md §5.4).

Plain frozen dataclasses; txns travel as :class:`zktwist.core.txn.Txn` objects
(issue 6 adds the wire codec, using ``txn.encode``/``txn.decode`` for them).
Election notifications live in :mod:`zktwist.quorum.election`.

Every packet flows on the quorum link between one learner and its leader,
FIFO; a link reset loses what was in flight and both ends start over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from zktwist.core.txn import Txn


def make_zxid(epoch: int, counter: int) -> int:
    return (epoch << 32) | (counter & 0xFFFFFFFF)


def epoch_of(zxid: int) -> int:
    return zxid >> 32


def counter_of(zxid: int) -> int:
    return zxid & 0xFFFFFFFF


# -- discovery ------------------------------------------------------------------------

@dataclass(frozen=True)
class FollowerInfo:
    """L<-F: FOLLOWERINFO / OBSERVERINFO (``observer``).  ``config_version`` is room for reconfig."""
    sid: int
    accepted_epoch: int
    observer: bool = False
    config_version: int = 0


@dataclass(frozen=True)
class LeaderInfo:
    """L->F: the new epoch the leader proposes."""
    new_epoch: int


@dataclass(frozen=True)
class AckEpoch:
    """L<-F: the learner durably accepted the epoch.

    ``already_accepted``: it had accepted this very epoch before (Apache sends
    currentEpoch -1 then), so the leader skips the is-it-ahead check.
    """
    current_epoch: int
    last_zxid: int
    already_accepted: bool = False


# -- synchronisation --------------------------------------------------------------------

@dataclass(frozen=True)
class Diff:
    """L->F: incremental sync follows (PROPOSAL/COMMIT pairs); ``zxid`` = where it ends."""
    zxid: int


@dataclass(frozen=True)
class Trunc:
    """L->F: drop every logged txn after ``zxid``, then PROPOSAL/COMMIT pairs follow."""
    zxid: int


@dataclass(frozen=True)
class Snap:
    """L->F: the whole tree at ``zxid`` (a snapshot in :mod:`zktwist.storage.snapshot` format)."""
    zxid: int
    data: bytes


@dataclass(frozen=True)
class NewLeader:
    """L->F: the sync is complete; ``zxid`` = new_epoch << 32.  ``config`` is room for reconfig."""
    zxid: int
    config: str = ""


@dataclass(frozen=True)
class UpToDate:
    """L->F: the leader is established; start serving."""


# -- broadcast ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Proposal:
    txn: Txn


@dataclass(frozen=True)
class Ack:
    """L<-F: ``zxid`` (a proposal, or new_epoch << 32 for NEWLEADER) is durable here."""
    zxid: int


@dataclass(frozen=True)
class Commit:
    zxid: int


@dataclass(frozen=True)
class Inform:
    """L->Observer: a committed txn."""
    txn: Txn


@dataclass(frozen=True)
class Ping:
    """Both ways.  L->F: ``zxid`` = last proposed; F->L: ``touches`` = (session_id, timeout) pairs."""
    zxid: int = 0
    touches: Tuple[Tuple[int, int], ...] = ()


# -- clients ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """L<-F: a client write (or createSession/closeSession) to prep at the leader.

    ``req`` is the decoded request tuple as :meth:`Prep.prep` takes it (for
    createSession: ``(timeout,)``; for deleteContainer: the path string).
    """
    origin_sid: int
    session_id: int
    cxid: int
    op: int
    req: Any
    auth_ids: Tuple[Any, ...] = ()


@dataclass(frozen=True)
class Revalidate:
    """L<-F: a client reattached here; is the session alive?  (Makes this server its owner.)"""
    session_id: int
    timeout: int


@dataclass(frozen=True)
class RevalidateReply:
    session_id: int
    valid: bool


@dataclass(frozen=True)
class SyncRequest:
    """L<-F: a forwarded client sync; answered once every earlier proposal is committed."""
    id: int


@dataclass(frozen=True)
class SyncReply:
    id: int
    zxid: int = 0


QUORUM_PACKETS = (FollowerInfo, LeaderInfo, AckEpoch, Diff, Trunc, Snap, NewLeader, UpToDate,
                  Proposal, Ack, Commit, Inform, Ping, Request, Revalidate, RevalidateReply,
                  SyncRequest, SyncReply)
