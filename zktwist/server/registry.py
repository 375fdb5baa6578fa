"""The live client connections of a server and its per-IP limit (maxClientCnxns).

Shared by the standalone and the ensemble server: both admit and forget
connections the same way; what else a closing connection releases (watches,
its session's entry) is theirs.
"""

from __future__ import annotations

from typing import Any, Dict, Set

from twisted.logger import Logger

log = Logger()


class ConnectionRegistry:
    """Mixin: needs ``config.max_client_cnxns``, ``stats``, ``connections``, ``per_ip``, ``dirty``."""

    config: Any
    stats: Any
    connections: Set[Any]
    per_ip: Dict[str, int]
    dirty: Set[Any]

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
