"""A small fault-injecting TCP proxy for loopback tests.

One :class:`FaultProxy` runs one selector thread that serves any number of
:class:`Link` objects.  A link listens on its own 127.0.0.1 port and forwards
every accepted connection to a target port.  Each link is controlled from the
test, at any time:

``restore()`` / pass
    forward bytes both ways (after an optional delay).
``cut()``
    drop every connection of the link (RST) and refuse new ones (accepted and
    reset at once, before anything reaches the target).
``blackhole(direction)``
    forward nothing: new connections are accepted but never connected
    upstream, and bytes of existing connections are held (not read, not lost:
    like a partition, TCP delivers them if the link heals).  ``direction`` is
    ``"both"``, ``"forward"`` (client to target only) or ``"backward"``.
``delay(ms, direction)``
    hold every chunk for ``ms`` before forwarding it, order kept.

A quorum peer's connection to another peer goes through the link the
*connecting* peer's config names, so giving each member its own config with
one link per ordered pair (i -> j) allows asymmetric cuts; blackholing one
direction of a link gives a one-way partition of an established connection.

It also runs as a process: ``python -m tests.support.faultproxy
NAME=TARGETPORT[@LISTENPORT] ...`` prints ``NAME PORT`` per link and then reads
commands (``cut NAME``, ``pass NAME``, ``blackhole NAME [forward|backward]``,
``delay NAME MS [direction]``, ``stats``) from stdin, one per line.
"""

from __future__ import annotations

import collections
import selectors
import socket
import struct
import sys
import threading
import time
from typing import Deque, Dict, Iterable, List, Optional, Tuple

PASS, CUT, BLACKHOLE = "pass", "cut", "blackhole"
DIRECTIONS = ("both", "forward", "backward")
#: Stop reading a side while this many bytes wait to be written to the other.
HIGH_WATER = 1 << 20


def _rst_close(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a dropped network path looks to a peer that sends."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Half:
    """One direction of a connection: bytes read from ``src`` wait here to go to ``dst``."""

    def __init__(self, src: socket.socket, dst: Optional[socket.socket]) -> None:
        self.src = src
        self.dst = dst
        self.queue: Deque[Tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.eof = False          # src closed: shut dst's write side once the queue drains
        self.shut = False

    def due(self, now: float) -> bool:
        return bool(self.queue) and self.queue[0][0] <= now


class _Conn:
    """An accepted client socket and (unless blackholed at accept) its upstream socket."""

    def __init__(self, link: "Link", client: socket.socket, upstream: Optional[socket.socket]) -> None:
        self.link = link
        self.client = client
        self.upstream = upstream
        self.fwd = _Half(client, upstream)
        self.back = _Half(upstream, client) if upstream is not None else None
        self.closed = False
        self.forwarded = [0, 0]   # bytes delivered forward, backward


class Link:
    """One listening port forwarding to ``target``; see the module docstring for modes."""

    def __init__(self, proxy: "FaultProxy", name: str, target_port: int,
                 target_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.proxy = proxy
        self.name = name
        self.target = (target_host, target_port)
        self.mode = PASS
        self.held = {"forward": False, "backward": False}   # blackholed directions
        self.delay_s = {"forward": 0.0, "backward": 0.0}
        self.conns: List[_Conn] = []
        self.accepted = 0
        self.refused = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", listen_port))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]

    def __repr__(self) -> str:
        return f"<Link {self.name} :{self.port}->{self.target[1]} {self.describe()}>"

    def describe(self) -> str:
        if self.mode == CUT:
            return CUT
        parts = []
        for d in ("forward", "backward"):
            if self.held[d]:
                parts.append(f"{d}:blackhole")
            elif self.delay_s[d]:
                parts.append(f"{d}:delay={self.delay_s[d] * 1000:.0f}ms")
        return " ".join(parts) or PASS

    @staticmethod
    def _dirs(direction: str) -> Tuple[str, ...]:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        return ("forward", "backward") if direction == "both" else (direction,)

    # -- control (any thread) ---------------------------------------------

    def restore(self) -> "Link":
        """Pass everything again (no delay, nothing held); held bytes flow on."""
        with self.proxy.lock:
            self.mode = PASS
            self.held = {"forward": False, "backward": False}
            self.delay_s = {"forward": 0.0, "backward": 0.0}
            self.proxy._reconcile(self)
        return self

    def cut(self) -> "Link":
        """Drop every connection now and refuse new ones until :meth:`restore`."""
        with self.proxy.lock:
            self.mode = CUT
            for conn in list(self.conns):
                self.proxy._close_conn(conn, rst=True)
        self.proxy._wake()
        return self

    def blackhole(self, direction: str = "both") -> "Link":
        """Forward nothing in ``direction``; with "both", new connections go nowhere too."""
        with self.proxy.lock:
            if self.mode == CUT:
                self.mode = PASS
            for d in self._dirs(direction):
                self.held[d] = True
            self.proxy._reconcile(self)
        return self

    def delay(self, ms: float, direction: str = "both") -> "Link":
        """Hold each chunk ``ms`` milliseconds before forwarding it in ``direction``."""
        with self.proxy.lock:
            for d in self._dirs(direction):
                self.delay_s[d] = ms / 1000.0
        self.proxy._wake()
        return self

    @property
    def connections(self) -> int:
        with self.proxy.lock:
            return len(self.conns)

    def forwarded(self) -> Tuple[int, int]:
        """Bytes delivered (forward, backward) over the link's live and past connections."""
        with self.proxy.lock:
            return self._forwarded_closed[0] + sum(c.forwarded[0] for c in self.conns), \
                self._forwarded_closed[1] + sum(c.forwarded[1] for c in self.conns)

    _forwarded_closed = (0, 0)


class FaultProxy:
    """A selector thread serving fault-injecting :class:`Link` s; always :meth:`close` it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.links: Dict[str, Link] = {}
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_link(self, name: str, target_port: int, target_host: str = "127.0.0.1",
                 listen_port: int = 0) -> Link:
        """A new link listening on ``listen_port`` (0: any free port) to ``target_port``."""
        with self.lock:
            if name in self.links:
                raise ValueError(f"link {name!r} exists")
            link = Link(self, name, target_port, target_host, listen_port)
            self.links[name] = link
            self._sel.register(link.listener, selectors.EVENT_READ, ("listen", link))
        self._wake()
        return link

    def __getitem__(self, name: str) -> Link:
        return self.links[name]

    def restore_all(self) -> None:
        for link in list(self.links.values()):
            link.restore()

    def close(self) -> None:
        """Stop the thread and close every socket."""
        self._stopping = True
        self._wake()
        self._thread.join(5)
        with self.lock:
            for link in self.links.values():
                for conn in list(link.conns):
                    self._close_conn(conn)
                try:
                    self._sel.unregister(link.listener)
                except (KeyError, ValueError):
                    pass
                link.listener.close()
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()

    # -- internals (lock held) --------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _reconcile(self, link: Link) -> None:
        for conn in link.conns:
            self._update_interest(conn)
        self._wake()

    def _update_interest(self, conn: _Conn) -> None:
        """(Re)register both sockets for reading/writing as the link's mode and queues say."""
        if conn.closed:
            return
        link = conn.link
        if conn.upstream is None and not (link.held["forward"] and link.held["backward"]):
            # accepted while blackholed, never connected: the heal resets it (the client retries)
            self._close_conn(conn, rst=True)
            return
        halves = [(conn.fwd, "forward")] + ([(conn.back, "backward")] if conn.back else [])
        for sock in (conn.client, conn.upstream):
            if sock is None:
                continue
            events = 0
            for half, d in halves:
                if half.src is sock and not half.eof and not link.held[d] and half.queued < HIGH_WATER:
                    events |= selectors.EVENT_READ
                if half.dst is sock and half.queue and not link.held[d] and half.due(time.monotonic()):
                    events |= selectors.EVENT_WRITE
            try:
                key = self._sel.get_key(sock)
            except (KeyError, ValueError):
                key = None
            if events and key is None:
                self._sel.register(sock, events, ("conn", conn))
            elif events and key is not None and key.events != events:
                self._sel.modify(sock, events, ("conn", conn))
            elif not events and key is not None:
                self._sel.unregister(sock)

    def _close_conn(self, conn: _Conn, rst: bool = False) -> None:
        if conn.closed:
            return
        conn.closed = True
        link = conn.link
        if conn in link.conns:
            link.conns.remove(conn)
        f, b = link._forwarded_closed
        link._forwarded_closed = (f + conn.forwarded[0], b + conn.forwarded[1])
        for sock in (conn.client, conn.upstream):
            if sock is None:
                continue
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            if rst:
                _rst_close(sock)
            else:
                sock.close()

    def _accept(self, link: Link) -> None:
        try:
            client, _ = link.listener.accept()
        except OSError:
            return
        if link.mode == CUT:
            link.refused += 1
            _rst_close(client)
            return
        link.accepted += 1
        client.setblocking(False)
        upstream: Optional[socket.socket] = None
        if not (link.held["forward"] and link.held["backward"]):
            try:
                upstream = socket.create_connection(link.target, timeout=2.0)
            except OSError:
                _rst_close(client)   # the target refuses: so does the link
                return
            upstream.setblocking(False)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(link, client, upstream)
        link.conns.append(conn)
        self._update_interest(conn)

    def _half_for(self, conn: _Conn, sock: socket.socket, reading: bool) -> List[Tuple[_Half, str]]:
        out = []
        for half, d in ((conn.fwd, "forward"), (conn.back, "backward")):
            if half is None:
                continue
            if (half.src if reading else half.dst) is sock:
                out.append((half, d))
        return out

    def _on_conn(self, conn: _Conn, sock: socket.socket, mask: int) -> None:
        link = conn.link
        if mask & selectors.EVENT_READ:
            halves = self._half_for(conn, sock, reading=True)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data == b"":
                if not halves:          # a blackholed-at-accept client left
                    self._close_conn(conn)
                    return
                for half, _ in halves:
                    half.eof = True
                    if not half.queue:
                        self._close_conn(conn)   # simplest faithful end: the other side sees EOF
                        return
            elif data:
                for half, d in halves:
                    if half.dst is None:
                        continue
                    half.queue.append((time.monotonic() + link.delay_s[d], data))
                    half.queued += len(data)
        if mask & selectors.EVENT_WRITE:
            self._flush(conn, sock)
        if not conn.closed:
            self._update_interest(conn)

    def _flush(self, conn: _Conn, sock: socket.socket) -> None:
        now = time.monotonic()
        for half, d in self._half_for(conn, sock, reading=False):
            if conn.link.held[d]:
                continue
            while half.due(now):
                at, data = half.queue[0]
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    return
                except OSError:
                    self._close_conn(conn)
                    return
                conn.forwarded[0 if d == "forward" else 1] += sent
                half.queued -= sent
                if sent < len(data):
                    half.queue[0] = (at, data[sent:])
                    return
                half.queue.popleft()
            if half.eof and not half.queue:
                self._close_conn(conn)
                return

    def _next_deadline(self) -> Optional[float]:
        best: Optional[float] = None
        for link in self.links.values():
            for conn in link.conns:
                for half, d in ((conn.fwd, "forward"), (conn.back, "backward")):
                    if half is not None and half.queue and not link.held[d]:
                        at = half.queue[0][0]
                        best = at if best is None else min(best, at)
        return best

    def _run(self) -> None:
        while not self._stopping:
            with self.lock:
                deadline = self._next_deadline()
            timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                events = self._sel.select(timeout)
            except (OSError, ValueError):
                if self._stopping:
                    return
                continue
            with self.lock:
                if self._stopping:
                    return
                for key, mask in events:
                    kind, obj = key.data
                    if kind == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except OSError:
                            pass
                    elif kind == "listen":
                        self._accept(obj)
                    elif not obj.closed:
                        self._on_conn(obj, key.fileobj, mask)  # type: ignore[arg-type]
                # delayed chunks that came due, and interest after mode changes
                for link in list(self.links.values()):
                    for conn in list(link.conns):
                        self._update_interest(conn)


def _main(argv: Iterable[str]) -> int:
    """Run links from the command line, controlled by commands on stdin."""
    proxy = FaultProxy()
    try:
        for spec in argv:
            name, _, rest = spec.partition("=")
            target, _, listen = rest.partition("@")
            link = proxy.add_link(name, int(target), listen_port=int(listen or 0))
            print(f"{name} {link.port}", flush=True)
        print("ready", flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            try:
                cmd = words[0]
                if cmd == "stats":
                    for link in proxy.links.values():
                        print(f"{link.name} {link.describe()} conns={link.connections} "
                              f"accepted={link.accepted} refused={link.refused}", flush=True)
                    continue
                link = proxy[words[1]]
                if cmd == "cut":
                    link.cut()
                elif cmd == "pass":
                    link.restore()
                elif cmd == "blackhole":
                    link.blackhole(words[2] if len(words) > 2 else "both")
                elif cmd == "delay":
                    link.delay(float(words[2]), words[3] if len(words) > 3 else "both")
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                print(f"ok {link!r}", flush=True)
            except (IndexError, KeyError, ValueError) as e:
                print(f"error {e}", flush=True)
    finally:
        proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
