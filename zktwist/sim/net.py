"""The simulated network between servers.

Two channels, as Apache ZooKeeper has:

* the **election channel**: datagrams per ordered pair, FIFO, each may be
  lost, each delayed with jitter; a cut ``a -> b`` drops ``a``'s datagrams to
  ``b`` (an asymmetric partition lets ``b -> a`` through);
* **quorum links**: connections.  ``Connect`` dials, both ends learn
  ``link_up`` (the dialler one round trip later, after the acceptor), packets
  are FIFO per direction, and any loss, reset, cut (in either direction: TCP
  needs both) or crash breaks the connection: nothing still in flight is
  delivered and both ends learn ``link_down`` after a detection delay.

Deliveries go through :class:`Host` callbacks, which the world implements.
Everything random comes from the world's ``random.Random``.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Protocol, Set, Tuple

from zktwist.sim.events import EventQueue


class Host(Protocol):
    def incarnation(self, sid: int) -> int:
        """The server's current incarnation, 0 while it is down."""

    def deliver(self, dst: int, src: int, msg: Any) -> None: ...

    def link_up(self, dst: int, other: int) -> None: ...

    def link_down(self, dst: int, other: int) -> None: ...


class NetConfig:
    """Delays in ms (base + uniform jitter), loss probabilities."""

    def __init__(self, delay: int = 1, jitter: int = 4, election_loss: float = 0.0,
                 quorum_loss: float = 0.0, detect_min: int = 1, detect_max: int = 60,
                 connect_timeout: int = 200) -> None:
        self.delay = delay
        self.jitter = jitter
        self.election_loss = election_loss
        self.quorum_loss = quorum_loss
        self.detect_min = detect_min
        self.detect_max = detect_max
        self.connect_timeout = connect_timeout


class Conn:
    """One quorum connection; ``a`` dialled ``b``."""

    __slots__ = ("id", "a", "b", "inc_a", "inc_b", "broken", "last_ab", "last_ba")

    def __init__(self, cid: int, a: int, b: int, inc_a: int, inc_b: int) -> None:
        self.id = cid
        self.a = a
        self.b = b
        self.inc_a = inc_a
        self.inc_b = inc_b
        self.broken = False
        self.last_ab = 0
        self.last_ba = 0

    def __repr__(self) -> str:
        return "Conn#%d(%d->%d%s)" % (self.id, self.a, self.b, " broken" if self.broken else "")


class Network:
    def __init__(self, queue: EventQueue, rng: random.Random, host: Host,
                 config: Optional[NetConfig] = None) -> None:
        self.queue = queue
        self.rng = rng
        self.host = host
        self.config = config or NetConfig()
        # ends[x][y]: the connection x considers open (or is dialling) to y.
        self.ends: Dict[int, Dict[int, Conn]] = {}
        self.cuts: Set[Tuple[int, int]] = set()  # (a, b): a's packets do not reach b
        self._election_last: Dict[Tuple[int, int], int] = {}
        self._next_id = 0
        self.dropped = 0
        self.delivered = 0

    # -- helpers --------------------------------------------------------------------

    def delay(self) -> int:
        c = self.config
        return c.delay + (self.rng.randrange(c.jitter + 1) if c.jitter else 0)

    def _detect(self) -> int:
        c = self.config
        return self.rng.randint(c.detect_min, c.detect_max)

    def _ends(self, sid: int) -> Dict[int, Conn]:
        e = self.ends.get(sid)
        if e is None:
            e = self.ends[sid] = {}
        return e

    def reachable(self, a: int, b: int) -> bool:
        return (a, b) not in self.cuts

    def connected(self, a: int, b: int) -> bool:
        """Does ``a`` hold an open connection to ``b``? (for tests and checks)"""
        c = self.ends.get(a, {}).get(b)
        return c is not None and not c.broken

    # -- election channel -------------------------------------------------------------

    def send_election(self, src: int, dst: int, msg: Any) -> None:
        if (src, dst) in self.cuts or (self.config.election_loss
                                       and self.rng.random() < self.config.election_loss):
            self.dropped += 1
            return
        key = (src, dst)
        t = self.queue.now + self.delay()
        last = self._election_last.get(key, 0)
        if t < last:
            t = last
        self._election_last[key] = t
        self.queue.at(t, self._deliver_datagram, src, dst, msg)

    def _deliver_datagram(self, src: int, dst: int, msg: Any) -> None:
        if self.host.incarnation(dst) and (src, dst) not in self.cuts:
            self.delivered += 1
            self.host.deliver(dst, src, msg)
        else:
            self.dropped += 1

    # -- quorum links -----------------------------------------------------------------

    def connect(self, src: int, dst: int) -> None:
        """``src`` dials ``dst`` (replacing any connection it holds to ``dst``)."""
        ends = self._ends(src)
        old = ends.get(dst)
        if old is not None:
            del ends[dst]
            self._break(old, notify_a=old.a != src, notify_b=old.b != src)
        self._next_id += 1
        c = Conn(self._next_id, src, dst, self.host.incarnation(src), self.host.incarnation(dst))
        ends[dst] = c
        if not c.inc_b:
            # Nobody listening: refused after a round trip.
            self._break_at(c, self.queue.now + 2 * self.delay(), True, False)
            return
        if (src, dst) in self.cuts or (dst, src) in self.cuts:
            # The handshake never completes: the dialler times out.
            self._break_at(c, self.queue.now + self.config.connect_timeout, True, False)
            return
        t = self.queue.now + self.delay()
        c.last_ab = t
        self.queue.at(t, self._accept, c)

    def _accept(self, c: Conn) -> None:
        if c.broken:
            return
        if self.host.incarnation(c.b) != c.inc_b:
            self._break(c, True, False)
            return
        ends = self._ends(c.b)
        old = ends.get(c.a)
        if old is not None and old is not c:
            # A new connection from the same server replaces the old one.
            del ends[c.a]
            old.broken = True
            self.host.link_down(c.b, c.a)
        ends[c.a] = c
        # The SYN-ACK travels b -> a: first in that direction's FIFO.
        t = self.queue.now + self.delay()
        c.last_ba = t
        self.queue.at(t, self._established, c)
        self.host.link_up(c.b, c.a)

    def _established(self, c: Conn) -> None:
        if c.broken or self.ends.get(c.a, {}).get(c.b) is not c:
            return
        self.host.link_up(c.a, c.b)

    def send_quorum(self, src: int, dst: int, msg: Any) -> None:
        c = self.ends.get(src, {}).get(dst)
        if c is None or c.broken:
            self.dropped += 1
            return
        if self.config.quorum_loss and self.rng.random() < self.config.quorum_loss:
            self.dropped += 1
            self._break(c, True, True)
            return
        t = self.queue.now + self.delay()
        if src == c.a:
            if t < c.last_ab:
                t = c.last_ab
            c.last_ab = t
        else:
            if t < c.last_ba:
                t = c.last_ba
            c.last_ba = t
        self.queue.at(t, self._deliver_packet, c, src, dst, msg)

    def _deliver_packet(self, c: Conn, src: int, dst: int, msg: Any) -> None:
        if c.broken or self.ends.get(dst, {}).get(src) is not c:
            self.dropped += 1
            return
        self.delivered += 1
        self.host.deliver(dst, src, msg)

    def disconnect(self, src: int, dst: int) -> None:
        """``src`` closes its connection to ``dst``: only ``dst`` hears of it."""
        c = self.ends.get(src, {}).pop(dst, None)
        if c is not None:
            self._break(c, notify_a=c.a != src, notify_b=c.b != src)

    # -- breaking ---------------------------------------------------------------------

    def _break(self, c: Conn, notify_a: bool, notify_b: bool) -> None:
        c.broken = True
        now = self.queue.now
        if notify_a:
            self.queue.at(now + self._detect(), self._link_down, c, c.a, c.b, c.inc_a)
        if notify_b:
            self.queue.at(now + self._detect(), self._link_down, c, c.b, c.a, c.inc_b)

    def _break_at(self, c: Conn, t: int, notify_a: bool, notify_b: bool) -> None:
        # The failure is only known (and the connection only dead) at t.
        self.queue.at(t, self._break_now, c, notify_a, notify_b)

    def _break_now(self, c: Conn, notify_a: bool, notify_b: bool) -> None:
        if c.broken:
            return
        c.broken = True
        if notify_a:
            self._link_down(c, c.a, c.b, c.inc_a)
        if notify_b:
            self._link_down(c, c.b, c.a, c.inc_b)

    def _link_down(self, c: Conn, end: int, other: int, inc: int) -> None:
        ends = self.ends.get(end)
        if ends is None or ends.get(other) is not c or self.host.incarnation(end) != inc:
            return
        del ends[other]
        self.host.link_down(end, other)

    def reset(self, a: int, b: int) -> bool:
        """Reset the connection between ``a`` and ``b`` (either way); True if there was one."""
        found = False
        for x, y in ((a, b), (b, a)):
            c = self.ends.get(x, {}).get(y)
            if c is not None and not c.broken:
                self._break(c, True, True)
                found = True
        return found

    def open_conns(self) -> List[Conn]:
        seen: Dict[int, Conn] = {}
        for ends in self.ends.values():
            for c in ends.values():
                if not c.broken:
                    seen[c.id] = c
        return [seen[k] for k in sorted(seen)]

    # -- faults -----------------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        """``a``'s packets stop reaching ``b``; quorum links between them break both ways."""
        self.cuts.add((a, b))
        self.reset(a, b)

    def heal(self, a: Optional[int] = None, b: Optional[int] = None) -> None:
        if a is None:
            self.cuts.clear()
        else:
            self.cuts.discard((a, b))  # type: ignore[arg-type]

    def partition(self, side: Set[int], everyone: Set[int]) -> None:
        """A symmetric partition: ``side`` against the rest."""
        for a in side:
            for b in everyone - side:
                self.cut(a, b)
                self.cut(b, a)

    def crashed(self, sid: int) -> None:
        """``sid`` died: its connections break; the others notice after a delay."""
        ends = self.ends.pop(sid, {})
        for other, c in ends.items():
            if not c.broken:
                self._break(c, notify_a=c.a != sid, notify_b=c.b != sid)
        for e in self.ends.values():
            d = e.get(sid)
            if d is not None and not d.broken:
                self._break(d, notify_a=d.a != sid, notify_b=d.b != sid)
