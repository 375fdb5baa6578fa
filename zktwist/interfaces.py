"""Every contract in zktwist that has (or will have) more than one implementation."""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IStorageBackend(Interface):
    """Durable storage of the transaction log.

    The server calls :meth:`open` once before anything else, from the reactor
    thread.  :meth:`append` and :meth:`sync` are called from one dedicated
    storage thread, never concurrently: the server batches every txn of a
    reactor turn into one ``append`` and one ``sync`` (group commit).  A txn is
    acknowledged to its client only after the ``sync`` that follows its
    ``append`` returned.
    """

    name = Attribute("The backend's name as the config's storage.backend picks it.")

    def open():
        """Recover: check every record, cut a torn tail, refuse corruption.

        Raises :class:`zktwist.storage.errors.CorruptLogError` (naming the file
        and offset) when a record before the tail is damaged.
        """

    def read_txns(from_zxid):
        """Yield ``(zxid, txn_bytes)`` in zxid order for every logged txn with zxid >= ``from_zxid``."""

    def append(records):
        """Write ``[(zxid, txn_bytes), ...]`` (zxids ascending, after :meth:`last_zxid`).

        Not durable until :meth:`sync` returns.  On an exception nothing of the
        batch may be visible after a restart as a half record, and the backend
        stays usable: a later ``append`` starts where the last durable record ended.
        """

    def sync():
        """Make every appended record durable (one fsync)."""

    def last_zxid():
        """The zxid of the last record appended (0 for an empty log)."""

    def sizes():
        """``{'datadir_size': bytes, 'logdir_size': bytes}`` for ``dirs`` and metrics."""

    def close():
        """Release files; appended-but-unsynced records may be lost."""
