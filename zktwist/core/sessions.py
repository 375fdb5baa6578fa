"""Session tracking with tick-driven expiry (SessionTrackerImpl + ExpiryQueue).

Time comes in as milliseconds from the caller; nothing here reads a clock.
Expiry times are rounded up to the next tick boundary, so one tick expires a
whole bucket at once, as Apache ZooKeeper does.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Set

MASK64 = (1 << 64) - 1
_JAVA_MULT = 0x5DEECE66D
_MASK48 = (1 << 48) - 1
SUPER_SECRET = 0xB3415C00


def to_signed64(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


def java_random_bytes(seed: int, n: int) -> bytes:
    """``new java.util.Random(seed).nextBytes(new byte[n])``."""
    state = (seed ^ _JAVA_MULT) & _MASK48
    out = bytearray()
    while len(out) < n:
        state = (state * _JAVA_MULT + 0xB) & _MASK48
        rnd = state >> 16
        for _ in range(min(4, n - len(out))):
            out.append(rnd & 0xFF)
            rnd >>= 8
    return bytes(out)


def session_password(session_id: int) -> bytes:
    """The 16-byte password Apache ZooKeeper derives from a session id.

    Deterministic, so every member of an ensemble (and a restarted server)
    can verify it; clients treat it as opaque.
    """
    return java_random_bytes((session_id & MASK64) ^ SUPER_SECRET, 16)


def initial_session_id(server_id: int, now_ms: int) -> int:
    """``initializeNextSessionId``: server id in the top byte, time below."""
    sid = (((now_ms << 24) & MASK64) >> 8) | ((server_id & 0xFF) << 56)
    sid = to_signed64(sid)
    if sid == -(1 << 63):
        sid += 1
    return sid


class Session:
    __slots__ = ("id", "timeout", "expire_at", "closing", "owner")

    def __init__(self, session_id: int, timeout: int) -> None:
        self.id = session_id
        self.timeout = timeout
        self.expire_at = 0
        self.closing = False
        self.owner: object = None

    def __repr__(self) -> str:
        return "Session(0x%x, timeout=%d)" % (self.id & MASK64, self.timeout)


class SessionTracker:
    """Live sessions and their expiry buckets."""

    def __init__(self, server_id: int, tick_time: int, now_ms: int) -> None:
        self.tick_time = tick_time
        self.next_id = initial_session_id(server_id, now_ms)
        self.sessions: Dict[int, Session] = {}
        self._buckets: Dict[int, Set[int]] = {}

    def _round(self, when: int) -> int:
        t = self.tick_time
        return (when // t + 1) * t

    def new_session_id(self) -> int:
        sid = self.next_id
        while sid in self.sessions or sid == -(1 << 63) or sid == 0:
            sid = to_signed64(sid + 1)
        self.next_id = to_signed64(sid + 1)
        return sid

    def add(self, session_id: int, timeout: int, now_ms: int) -> Session:
        """Track a session (new, or restored from the log) and start its timer."""
        s = self.sessions.get(session_id)
        if s is None:
            s = self.sessions[session_id] = Session(session_id, timeout)
        s.timeout = timeout
        self.touch(session_id, now_ms, timeout)
        return s

    def touch(self, session_id: int, now_ms: int, timeout: Optional[int] = None) -> bool:
        s = self.sessions.get(session_id)
        if s is None or s.closing:
            return False
        expire_at = self._round(now_ms + (s.timeout if timeout is None else timeout))
        if expire_at == s.expire_at:
            return True
        if s.expire_at:
            bucket = self._buckets.get(s.expire_at)
            if bucket is not None:
                bucket.discard(session_id)
                if not bucket:
                    del self._buckets[s.expire_at]
        s.expire_at = expire_at
        self._buckets.setdefault(expire_at, set()).add(session_id)
        return True

    def expired(self, now_ms: int) -> List[int]:
        """Sessions whose time ran out by ``now_ms``; they are marked closing."""
        out: List[int] = []
        for when in sorted(k for k in self._buckets if k <= now_ms):
            for sid in self._buckets.pop(when):
                s = self.sessions.get(sid)
                if s is not None and not s.closing:
                    s.closing = True
                    out.append(sid)
        return out

    def set_closing(self, session_id: int) -> None:
        s = self.sessions.get(session_id)
        if s is not None:
            s.closing = True

    def remove(self, session_id: int) -> None:
        s = self.sessions.pop(session_id, None)
        if s is not None and s.expire_at:
            bucket = self._buckets.get(s.expire_at)
            if bucket is not None:
                bucket.discard(session_id)
                if not bucket:
                    del self._buckets[s.expire_at]

    def set_owner(self, session_id: int, owner: object) -> bool:
        """Record the server a (live) session is attached to (replicated servers only)."""
        s = self.sessions.get(session_id)
        if s is None or s.closing:
            return False
        s.owner = owner
        return True

    def check_owner(self, session_id: int, owner: object) -> None:
        """Raise SESSIONMOVED if the session is attached to a server other than ``owner``.

        Standalone servers never set owners, so this never fires there.
        """
        s = self.sessions.get(session_id)
        if s is not None and not s.closing and s.owner is not None and s.owner != owner:
            from zktwist.core.prep import KeeperError
            from zktwist.proto.consts import Err

            raise KeeperError(Err.SESSIONMOVED)

    def is_live(self, session_id: int) -> bool:
        s = self.sessions.get(session_id)
        return s is not None and not s.closing

    def __len__(self) -> int:
        return len(self.sessions)
