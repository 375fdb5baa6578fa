"""The live client connections of a server: per-IP limit (maxClientCnxns), the
set of connections with output to flush, session -> connection, the
globalOutstandingLimit throttle, four-letter words.

Shared by the standalone and the ensemble server: both admit, flush, close and
forget connections the same way; what else a closing connection releases
(watches, its place in a throttle) is theirs.
"""

from __future__ import annotations

from typing import Any, Dict, Set

from twisted.logger import Logger

log = Logger()


class ConnectionRegistry:
    """Mixin: needs ``config.max_client_cnxns``, ``config.global_outstanding_limit``,
    ``stats``, ``connections``, ``per_ip``, ``dirty``, ``by_session``, ``outstanding``
    (requests in flight) and ``_paused`` (False at first)."""

    config: Any
    stats: Any
    connections: Set[Any]
    per_ip: Dict[str, int]
    dirty: Set[Any]
    by_session: Dict[int, Any]
    outstanding: int
    _paused: bool

    def connection_opened(self, conn: Any) -> bool:
        limit = self.config.max_client_cnxns
        count = self.per_ip.get(conn.remote_ip, 0)
        if limit and count >= limit:
            self.stats.incr("connection_rejected")
            log.warn("Too many connections from {ip} - max is {max}", ip=conn.remote_ip, max=limit)
            return False
        self.per_ip[conn.remote_ip] = count + 1
        self.connections.add(conn)
        self.stats.connections_total += 1
        return True

    def forget_connection(self, conn: Any) -> None:
        """Take a closed connection out of the set, its IP's count and the flush set."""
        if conn in self.connections:
            self.connections.discard(conn)
            n = self.per_ip.get(conn.remote_ip, 1) - 1
            if n <= 0:
                self.per_ip.pop(conn.remote_ip, None)
            else:
                self.per_ip[conn.remote_ip] = n
        self.dirty.discard(conn)

    def flush_dirty(self) -> None:
        """One transport write per connection that got output in this batch."""
        dirty = self.dirty
        while dirty:
            dirty.pop().flush()

    def bind_session(self, conn: Any, session_id: int, timeout: int, password: bytes) -> None:
        """``conn`` now holds ``session_id``: close a connection that held it before, answer
        ``conn``'s ConnectRequest."""
        old = self.by_session.get(session_id)
        if old is not None and old is not conn:
            old.close()
        self.by_session[session_id] = conn
        conn.established(session_id, timeout, password)

    def _count_in(self) -> None:
        """One more request in flight: past globalOutstandingLimit, stop reading sockets."""
        self.outstanding += 1
        if self.outstanding > self.config.global_outstanding_limit:
            self._paused = True
            for c in self.connections:
                if not c.paused:
                    c.paused = True
                    c.transport.pauseProducing()

    def _maybe_resume(self) -> None:
        """After a batch: read sockets again once back under the limit.  Connections are
        walked only when some were paused (this runs after every batch)."""
        if self._paused and self.outstanding <= self.config.global_outstanding_limit:
            self._paused = False
            for c in self.connections:
                if c.paused:
                    c.paused = False
                    c.transport.resumeProducing()

    def close_session_connection(self, session_id: int) -> None:
        """A closeSession txn was applied: close the session's connection here, if any."""
        conn = self.by_session.pop(session_id, None)
        if conn is not None and conn.closing_session:
            return  # the client asked: its reply goes out first, then the socket closes
        if conn is not None:
            conn.close()

    def is_four_letter_word(self, word: bytes) -> bool:
        from zktwist.server.fourletter import is_command
        return is_command(word)

    def run_four_letter_word(self, conn: Any, word: str) -> None:
        from zktwist.server.fourletter import run
        text = run(self, conn, word)  # type: ignore[arg-type]  # a server, by the mixin
        conn.transport.write(text.encode("utf-8"))
        conn.transport.loseConnection()
        conn.connectionLost(None)
