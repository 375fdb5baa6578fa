"""Small helpers every storage backend shares."""

from __future__ import annotations

import os
from typing import Sequence, Tuple


def check_ascending(last_zxid: int, records: Sequence[Tuple[int, bytes]]) -> None:
    """Refuse a batch whose zxids do not all follow ``last_zxid`` in ascending order."""
    last = last_zxid
    for zxid, _ in records:
        if zxid <= last:
            raise ValueError("zxid 0x%x does not follow 0x%x" % (zxid, last))
        last = zxid


def fsync_dir(path: str) -> None:
    """Make a directory's entries (a created, renamed or removed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dir_size(path: str) -> int:
    """The lengths of all files below ``path`` (ZooKeeperServer.getDirSize)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total
