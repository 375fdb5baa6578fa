"""A quorum peer's storage, shared by the production shell and the simulator.

:class:`~zktwist.quorum.peer.QuorumPeer` is pure: it asks for storage work
with effects (:mod:`zktwist.quorum.effects`) and learns of durability through
``storage_done``.  This module is the one place that turns those effects into
:class:`~zktwist.interfaces.IStorageBackend` calls and that rebuilds a peer's
state from a backend at start-up, so the simulator exercises exactly the code
``twistd zktwist`` runs (only the backend is in memory there).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from zktwist.core.database import CoreConfig, ZooKeeperCore
from zktwist.core.txn import Txn, decode, encode
from zktwist.quorum.effects import AppendTxns, Reload, SetMeta, TruncateLog, WriteSnapshot
from zktwist.server.snapshots import recover

ACCEPTED_EPOCH = "acceptedEpoch"
CURRENT_EPOCH = "currentEpoch"

StorageOp = Any  # AppendTxns | SetMeta | TruncateLog | WriteSnapshot | Reload

STORAGE_OPS = (AppendTxns, SetMeta, TruncateLog, WriteSnapshot, Reload)


def is_storage_op(effect: Any) -> bool:
    """Does the shell have to run ``effect`` on the storage thread (and answer storage_done)?"""
    return isinstance(effect, STORAGE_OPS)


def run_storage_op(backend: Any, op: StorageOp) -> None:
    """Carry out one storage effect; when this returns, the op is durable.

    Runs on the storage thread in production (ops strictly in ``seq`` order);
    a ``Reload`` is only the durable half here (truncate the log): the shell
    then calls :func:`recover_peer` and hands the core to ``peer.reloaded``.
    """
    if isinstance(op, AppendTxns):
        if op.txns:
            backend.append_and_sync([(txn.zxid, encode(txn)) for txn in op.txns])
    elif isinstance(op, SetMeta):
        backend.set_meta(op.key, op.value)
    elif isinstance(op, TruncateLog):
        backend.truncate(op.zxid)
    elif isinstance(op, WriteSnapshot):
        # The snapshot first: should we crash in between, recovery finds the
        # snapshot and the longer log, and replaying txns already in a
        # snapshot is harmless.  Then the log after it goes (SNAP replaces it).
        writer = backend.begin_snapshot(op.zxid)
        try:
            writer.write(op.data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        backend.truncate(op.zxid)
    elif isinstance(op, Reload):
        backend.truncate(op.zxid)
    else:
        raise TypeError("not a storage op: %r" % (op,))


def _epoch_meta(backend: Any, key: str) -> int:
    value = backend.get_meta(key)
    return int(value) if value not in (None, "") else 0


def recover_peer(backend: Any, core_config: CoreConfig, now: int, window: int = 500,
                 timings: Optional[Dict[str, int]] = None
                 ) -> Tuple[ZooKeeperCore, int, int, List[Txn]]:
    """Rebuild a peer's durable state from an opened backend.

    Returns ``(core, accepted_epoch, current_epoch, recent_txns)``: the core
    recovered from the newest snapshot plus the log (the standalone start-up
    path), both epochs (0 when never stored), and the last ``window`` txns
    replayed after the snapshot, oldest first.  Like ZooKeeper's
    ZKDatabase, only the replayed txns seed the committed log for DIFF:
    logged txns older than the snapshot may be a diverged history a SNAP
    replaced, and must never be sent to a follower.  ``timings``: as
    :func:`~zktwist.server.snapshots.recover`'s.
    """
    core = ZooKeeperCore(core_config, now)
    snap_zxid, _ = recover(core, backend, now, timings)
    payloads: Deque[bytes] = deque(maxlen=max(window, 0) or None)
    if window > 0:
        for _, payload in backend.read_txns(snap_zxid + 1):
            payloads.append(payload)
    recent = [decode(p) for p in payloads] if window > 0 else []
    return (core, _epoch_meta(backend, ACCEPTED_EPOCH), _epoch_meta(backend, CURRENT_EPOCH),
            recent)
