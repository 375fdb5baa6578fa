"""Every contract in zktwist that has more than one implementation.

Implementations declare ``@implementer`` and the contract tests check them
with ``verifyObject``; storage backends are found as ``twisted.plugin``
plugins providing :class:`IStorageBackendFactory` (see ``zktwist/plugins``).
"""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface


class ISnapshotWriter(Interface):
    """A snapshot being written; invisible to readers until :meth:`commit`."""

    zxid = Attribute("The zxid the snapshot was started at (its name).")

    def write(data):
        """Append ``data`` (bytes) to the snapshot. Called from one thread at a time."""

    def commit():
        """Make the snapshot durable and visible atomically (fsync, then publish).

        After a crash a snapshot is either wholly there or not there at all.
        """

    def abort():
        """Throw the partial snapshot away."""


class IStorageBackend(Interface):
    """Durable storage of one server's transaction log, snapshots and metadata.

    Threading: :meth:`open` runs once before anything else; :meth:`append`,
    :meth:`sync`, :meth:`append_and_sync` and :meth:`truncate` are called from
    one storage thread, never concurrently with each other.  A txn is
    acknowledged to its client only after the ``sync`` (or
    ``append_and_sync``) covering it returned.

    Records are ``(zxid, txn_bytes)``: the bytes are a txn in Apache
    ZooKeeper's log format (:mod:`zktwist.core.txn`); zxids only grow.
    Snapshots are opaque byte streams named by zxid (the serializer,
    :mod:`zktwist.storage.snapshot`, gives them their format and checksum).
    """

    name = Attribute("The backend's name, as the config's storage.backend picks it.")

    def open():
        """Recover: check every record, cut a torn tail (with a log line), refuse corruption.

        Raises :class:`zktwist.storage.errors.CorruptLogError` naming the place
        (file and offset, or table and row) when a record before the tail is
        damaged: never a silently shorter history.
        """

    def append(records):
        """Write ``[(zxid, txn_bytes), ...]`` (ascending, after :meth:`last_zxid`); not yet durable."""

    def sync():
        """Make every appended record durable: one fsync for everything appended so far."""

    def append_and_sync(records):
        """One group commit: :meth:`append` then :meth:`sync`.

        On an exception none of ``records`` is durable, nothing of them can
        come back after a restart as a half record, and the backend stays
        usable: a later call starts where the last durable record ended.
        """

    def last_zxid():
        """The zxid of the last record appended (0 for an empty log)."""

    def read_txns(from_zxid):
        """Yield ``(zxid, txn_bytes)`` in zxid order for every logged txn with zxid >= ``from_zxid``."""

    def truncate(zxid):
        """Durably drop every logged txn and every snapshot with zxid > ``zxid`` (replication's TRUNC).

        :meth:`last_zxid` is then the last remaining record's zxid (0 if none).
        """

    def roll():
        """Start a new log segment with the next append (done when a snapshot starts)."""

    def begin_snapshot(zxid):
        """Start writing the snapshot of the tree as of ``zxid``: an :class:`ISnapshotWriter`."""

    def list_snapshots():
        """The zxids of the committed snapshots, newest first."""

    def read_snapshot(zxid):
        """Yield the bytes of snapshot ``zxid`` in chunks."""

    def purge(retain):
        """Delete all but the ``retain`` newest snapshots and the log records only they needed.

        Keeps every txn newer than the oldest retained snapshot; ``retain``
        below 1 counts as 1. Returns a list of what was removed (file names
        or descriptions) for the log.
        """

    def get_meta(key):
        """A small durable value (str, returned exactly as stored) under ``key``, or None.

        Keys are short ASCII names without ``/`` (e.g. ``acceptedEpoch``).
        """

    def set_meta(key, value):
        """Store ``value`` (str) under ``key``; durable when this returns."""

    def sizes():
        """``{'datadir_size': bytes, 'logdir_size': bytes}`` for ``dirs`` and metrics."""

    def close():
        """Release files; appended but unsynced records may be lost."""


class IStorageBackendFactory(IPlugin):
    """A storage backend as a ``twisted.plugin`` in :mod:`zktwist.plugins`."""

    name = Attribute("The value of storage.backend that picks this backend.")
    description = Attribute("One line for operators.")

    def create(config):
        """A new, unopened :class:`IStorageBackend` for a :class:`zktwist.config.ServerConfig`."""
