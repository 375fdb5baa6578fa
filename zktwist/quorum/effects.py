"""What a :class:`~zktwist.quorum.peer.QuorumPeer` asks of its shell.

The peer is pure: every input (a message, a tick, a finished storage
operation, a client request) returns a list of these effects, and the shell
(the Twisted services in production, :mod:`zktwist.sim` in the simulator)
carries them out.  See docs/replication.md for the contract.

Storage operations carry a sequence number ``seq`` (1, 2, 3, ... per peer
incarnation).  The shell runs them **in order** and calls
``peer.storage_done(seq, now)`` when each is durable; durability of ``seq``
implies durability of every smaller one.  A crash loses the ones not yet
reported done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from zktwist.core.txn import Txn


# -- messages and links --------------------------------------------------------------

@dataclass(frozen=True)
class Send:
    """Deliver ``msg`` to server ``to``.

    Election notifications go on the election channel (may be lost, FIFO per
    pair); quorum packets go on the quorum link to ``to``, which must be up
    (a packet for a link that is down is dropped).
    """
    to: int
    msg: Any


@dataclass(frozen=True)
class Connect:
    """Open the quorum link to ``to`` (a learner dials its leader).

    The shell answers ``peer.link_up(to, now)`` on both ends once it is
    established, or ``peer.link_down(to, now)`` on the dialling end if it fails.
    """
    to: int


@dataclass(frozen=True)
class Disconnect:
    """Close the quorum link to ``to``; messages still in flight on it are lost.

    The other end gets ``link_down``; this end does not (it asked).
    """
    to: int


# -- storage (run in order, acknowledged with storage_done(seq)) -----------------------

@dataclass(frozen=True)
class AppendTxns:
    """Append these txns to the log and fsync (``backend.append_and_sync``)."""
    seq: int
    txns: Tuple[Txn, ...]


@dataclass(frozen=True)
class SetMeta:
    """Durably store ``acceptedEpoch`` or ``currentEpoch`` (``backend.set_meta``)."""
    seq: int
    key: str
    value: str


@dataclass(frozen=True)
class TruncateLog:
    """Drop every logged txn (and snapshot) after ``zxid`` (``backend.truncate``).

    The peer has already rebuilt its tree to ``zxid`` (from ``reload``); see
    ``peer.reloaded``.
    """
    seq: int
    zxid: int


@dataclass(frozen=True)
class WriteSnapshot:
    """Durably write ``data`` (a snapshot in :mod:`zktwist.storage.snapshot` format) as
    snapshot ``zxid`` and drop every logged txn after ``zxid`` (SNAP sync)."""
    seq: int
    zxid: int
    data: bytes


@dataclass(frozen=True)
class Reload:
    """Rebuild the core from durable storage after it was truncated to ``zxid``.

    The shell finishes every earlier storage op, truncates the log to ``zxid``,
    recovers a fresh ZooKeeperCore from snapshot + log exactly as at start-up
    and hands it over with ``peer.reloaded(seq, core, recent_txns, now)``.
    """
    seq: int
    zxid: int


# -- clients ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionEstablished:
    token: Any
    session_id: int
    timeout: int
    password: bytes


@dataclass(frozen=True)
class SessionRejected:
    """The session is expired or the password is wrong: the client gets a 0 session."""
    token: Any


@dataclass(frozen=True)
class WriteDone:
    """A write this server forwarded/proposed for ``token`` was committed and applied here.

    ``result`` is what ``ZooKeeperCore.apply`` returned; the shell builds the
    reply with ``ZooKeeperCore.write_reply(op, result)``.
    """
    token: Any
    txn: Txn
    result: Any


@dataclass(frozen=True)
class SyncDone:
    token: Any
    zxid: int


@dataclass(frozen=True)
class StopServing:
    """The peer left the broadcast phase: close every client connection.

    Requests in flight have an unknown outcome (the client sees connection loss).
    """
    reason: str


@dataclass(frozen=True)
class StartServing:
    """The peer is synced and active: it may accept client connections."""
    role: str


@dataclass(frozen=True)
class SessionClosed:
    """A closeSession txn for ``session_id`` was applied here: close its connection."""
    session_id: int


# -- trace (for the simulator's checks and the logs; the shell may ignore them) -------------

@dataclass(frozen=True)
class Trace:
    """Something a checker wants to see.

    kinds: ``elected`` (epoch, leader), ``established`` (epoch = the leader's
    new epoch, after a quorum ACKed NEWLEADER; zxid = its last zxid, all of
    which is committed), ``committed`` (the leader committed ``zxid`` with a
    quorum; ``txn``), ``applied`` (this server applied ``txn``), ``looking``,
    ``following``/``observing`` (synced, serving), ``truncated`` (zxid).
    """
    kind: str
    epoch: int = 0
    zxid: int = 0
    leader: Optional[int] = None
    txn: Optional[Txn] = None
    detail: str = ""
