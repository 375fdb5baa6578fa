"""The election and quorum links on real connections (the shell around the pure peer).

Two :class:`twisted.application.service.Service`\\ s, one per listening port,
and the facade :class:`PeerNetwork` the ensemble server drives:

* :class:`ElectionService` listens on this server's election port.  One
  connection per pair of servers survives, the one the **higher** sid dialled
  (as Apache ZooKeeper's QuorumCnxManager keeps it): the higher side dials
  every lower server and redials with back-off while it runs; the lower side
  only dials to wake the higher one up (it says hello and hangs up, and the
  higher side dials back at once).  Notifications to a server without a link
  wait, latest only (QuorumCnxManager's send queue of capacity 1), and may be
  lost on a broken link: the election re-sends.
* :class:`QuorumService` listens on the quorum port.  Quorum links are dialled
  only on the peer's ``Connect`` effect (a learner dials its leader); a FIFO
  stream of Zab packets; ``link_up`` on both ends once the hello is accepted
  (the dialler learns it from the :class:`~zktwist.quorum.codec.Welcome`),
  ``link_down`` when it breaks, and on the dialling end when the dial fails.
  A new link between the same two servers replaces the old one (the old one's
  ``link_down`` first, as :mod:`zktwist.sim.net` does).

Every connection starts with the dialler's :class:`~zktwist.quorum.codec.Hello`
(its sid, the channel, the codec version).  With ``sslQuorum`` both ends
authenticate with certificates from the ensemble's CA: the dialler's TLS
options only accept a certificate naming the server it dialled, and the
accepting side admits a hello only if :func:`~zktwist.quorum.tls.verify_peer_identity`
finds that the client certificate names the claimed sid; anything else is
refused, logged and counted.  Without TLS (``sslQuorum=false``) the hello is
trusted.

Outgoing frames are batched: a link collects the frames sent during one
reactor turn and writes them with one ``transport.write`` (one TLS record
instead of one per packet).  Callbacks run on the reactor thread,
synchronously from ``dataReceived``/``connectionLost``.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Dict, List, Optional, Set

from twisted.application import service
from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from zktwist.quorum import codec
from zktwist.quorum.codec import (
    ELECTION,
    QUORUM,
    CodecError,
    FrameDecoder,
    Hello,
    Welcome,
)
from zktwist.quorum.election import Notification
from zktwist.quorum.tls import PeerIdentityError, QuorumTLS, verify_peer_identity

log = Logger()

#: Election redial back-off (seconds): first retry, factor, ceiling.
RETRY_MIN, RETRY_FACTOR, RETRY_MAX = 0.1, 2.0, 2.0
#: A wake-up hello from a lower server while we hold a link to it means that
#: link is dead on its side -- unless the link is younger than this (the
#: wake-up crossed our dial).
STALE_LINK_AGE = 1.0

_COUNTER_NAMES = (
    "accepted", "refused", "auth_failures", "handshake_failures", "dialled", "dial_failures", "codec_errors",
    "replaced", "bytes_in", "bytes_out", "packets_in", "packets_out", "packets_dropped",
)


def _noop_message(sid: int, msg: Any) -> None:
    pass


def _noop_link(sid: int) -> None:
    pass


class _Link(Protocol):
    """One connection on either channel, dialled (``dialled_to`` set) or accepted."""

    def __init__(self, svc: "_LinkService", dialled_to: Optional[int]) -> None:
        self.svc = svc
        self.sid: Optional[int] = dialled_to
        self.dialled = dialled_to is not None
        self.decoder = FrameDecoder(svc.max_frame, svc.max_snap)
        self.up = False
        self.closed = False
        self.silent = False          # closed on request: no link_down for it
        self.wakeup = False          # election: a lower server's hello-and-hang-up
        self.refused = False
        self.up_since = 0.0
        self._out: List[bytes] = []
        self._flush_call: Optional[IDelayedCall] = None
        self._handshake_timer: Optional[IDelayedCall] = None

    def __repr__(self) -> str:
        return "<%s link %s server %s%s>" % (
            self.svc.name_, "to" if self.dialled else "from", self.sid,
            " up" if self.up else "")

    # -- twisted.internet.interfaces.IProtocol -----------------------------------------

    def connectionMade(self) -> None:
        t: Any = self.transport
        for opt in ("setTcpNoDelay", "setTcpKeepAlive"):
            try:
                getattr(t, opt)(True)
            except (AttributeError, OSError):
                pass
        svc = self.svc
        svc.live.add(self)
        if svc.stopping:
            self.close(silent=True)
            return
        self._handshake_timer = svc.reactor.callLater(svc.handshake_timeout, self._timed_out)
        if self.dialled:
            assert self.sid is not None
            t.write(codec.encode(Hello(svc.my_id, svc.channel)))
            if self.wakeup:
                # Said who we are; the higher server dials back.
                self.close(silent=True, abort=False)
        else:
            svc.count("accepted")

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        svc = self.svc
        c = svc.counters
        c[svc.prefix + "bytes_in"] += len(data)
        error: Optional[CodecError] = None
        try:
            msgs = self.decoder.feed(data)
        except CodecError as e:
            msgs = e.messages
            error = e
        if msgs and not self.up:
            i = 0
            while i < len(msgs) and not self.up:
                if self.closed:
                    return
                self._handshake(msgs[i])
                i += 1
            msgs = msgs[i:]
        if msgs and self.up:
            c[svc.prefix + "packets_in"] += len(msgs)
            sid = self.sid
            deliver_many = getattr(svc.net, "on_messages", None)
            if deliver_many is not None:
                # The whole read in one call: the peer batches its work (one storage op,
                # one cumulative ACK) over it.
                try:
                    deliver_many(sid, msgs)  # type: ignore[arg-type]
                except Exception:
                    log.failure("{svc}: handling {n} messages from server {sid} failed; "
                                "closing the link", svc=svc.name_, n=len(msgs), sid=sid)
                    self.close()
                    return
                msgs = []
            deliver = svc.net.on_message
            for msg in msgs:
                if self.closed:
                    return
                try:
                    deliver(sid, msg)  # type: ignore[arg-type]
                except Exception:
                    log.failure("{svc}: handling {msg!r} from server {sid} failed; "
                                "closing the link", svc=svc.name_, msg=msg, sid=sid)
                    self.close()
                    return
        if error is not None and not self.closed:
            svc.count("codec_errors")
            log.warn("{svc}: malformed frame from server {sid} ({peer}): {error}; closing the link",
                     svc=svc.name_, sid=self.sid, peer=self._peer(), error=str(error))
            self.close()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = True
        for call in (self._flush_call, self._handshake_timer):
            if call is not None and call.active():
                call.cancel()
        self._flush_call = self._handshake_timer = None
        self._out = []
        self.svc.live.discard(self)
        if not self.dialled and self.sid is None and not self.refused and not self.silent:
            # Accepted, but it never said hello: typically a TLS handshake that failed
            # (no certificate, another CA).
            svc = self.svc
            svc.count("handshake_failures")
            log.warn("{svc}: refused a connection from {peer} before its hello: {why}",
                     svc=svc.name_, peer=self._peer(),
                     why=reason.getErrorMessage() if reason is not None else "?")
        self.svc.lost(self, reason)

    # -- handshake ---------------------------------------------------------------------------

    def _handshake(self, msg: Any) -> None:
        svc = self.svc
        if self.dialled:
            if not isinstance(msg, Welcome) or msg.sid != self.sid or msg.version != codec.VERSION:
                self._refuse("expected a welcome from server %s, got %r" % (self.sid, msg))
                return
            self._cancel_handshake_timer()
            self.up = True
            self.up_since = svc.reactor.seconds()
            svc.established(self)
            return
        if not isinstance(msg, Hello):
            self._refuse("expected a hello, got %r" % (msg,))
            return
        if msg.version != codec.VERSION:
            self._refuse("codec version %d, this server speaks %d" % (msg.version, codec.VERSION))
            return
        if msg.channel != svc.channel:
            self._refuse("hello for the %s channel on the %s port"
                         % (codec.CHANNEL_NAMES.get(msg.channel, msg.channel), svc.name_))
            return
        if msg.sid == svc.my_id or msg.sid not in svc.cfg.servers:
            self._refuse("server %d is not a member of this ensemble" % msg.sid)
            return
        if svc.tls is not None:
            try:
                verify_peer_identity(self.transport, msg.sid)
            except PeerIdentityError as e:
                svc.count("auth_failures")
                self._refuse(str(e), claimed=msg.sid)
                return
        self._cancel_handshake_timer()
        self.sid = msg.sid
        svc.admit(self)

    def _refuse(self, why: str, claimed: Optional[int] = None) -> None:
        svc = self.svc
        self.refused = True
        if self.dialled:
            svc.count("dial_failures")
        else:
            svc.count("refused")
        log.warn("{svc}: refused a connection {direction} {peer} (claiming server {claimed}): {why}",
                 svc=svc.name_, direction="to" if self.dialled else "from", peer=self._peer(),
                 claimed=claimed if claimed is not None else self.sid, why=why)
        self.close(abort=True)

    def _timed_out(self) -> None:
        self._handshake_timer = None
        if not self.up and not self.closed:
            self._refuse("no handshake within %.1f s" % self.svc.handshake_timeout)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None

    def _peer(self) -> str:
        try:
            p = self.transport.getPeer()  # type: ignore[union-attr]
            return "%s:%s" % (getattr(p, "host", "?"), getattr(p, "port", "?"))
        except Exception:
            return "?"

    # -- sending ------------------------------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        self._out.append(frame)
        if self._flush_call is None:
            self._flush_call = self.svc.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        self._flush_call = None
        out = self._out
        if not out or self.closed:
            return
        self._out = []
        data = out[0] if len(out) == 1 else b"".join(out)
        svc = self.svc
        svc.counters[svc.prefix + "bytes_out"] += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self, silent: bool = False, abort: bool = True) -> None:
        """Close the connection; ``silent``: the owner asked, so no ``link_down`` for it."""
        if silent:
            self.silent = True
        if self.closed:
            return
        self.closed = True
        self._cancel_handshake_timer()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if not abort:
            self.flush_now()
        self._out = []
        t: Any = self.transport
        if t is None:
            return
        if abort:
            t.abortConnection()
        else:
            t.loseConnection()

    def flush_now(self) -> None:
        out = self._out
        if out and self.transport is not None:
            self._out = []
            self.transport.write(b"".join(out))


class _ServerFactory(Factory):
    def __init__(self, svc: "_LinkService") -> None:
        self.svc = svc

    def buildProtocol(self, addr: Any) -> _Link:
        return _Link(self.svc, None)


class _DialFactory(ClientFactory):
    """One dial to server ``to``."""

    def __init__(self, svc: "_LinkService", to: int, wakeup: bool = False) -> None:
        self.svc = svc
        self.to = to
        self.wakeup = wakeup
        self.cancelled = False
        self.link: Optional[_Link] = None
        self.connector: Any = None

    def buildProtocol(self, addr: Any) -> _Link:
        link = self.link = _Link(self.svc, self.to)
        link.wakeup = self.wakeup
        link.silent = self.cancelled
        return link

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.cancelled:
            self.svc.count("dial_failures")
            log.debug("{svc}: dialling server {sid} failed: {reason}", svc=self.svc.name_,
                      sid=self.to, reason=reason.getErrorMessage())
            self.svc.dial_failed(self)

    def cancel(self) -> None:
        self.cancelled = True
        if self.link is not None:
            self.link.close(silent=True)
        elif self.connector is not None:
            try:
                self.connector.stopConnecting()
            except Exception:
                pass


class _LinkService(service.Service):
    channel = ELECTION
    name_ = "link"

    def __init__(self, net: "PeerNetwork") -> None:
        self.net = net
        self.cfg = net.config
        self.tls = net.tls
        self.reactor = net.reactor
        self.counters = net.counters
        self.prefix = self.name_ + "_"
        for n in _COUNTER_NAMES:
            self.counters.setdefault(self.prefix + n, 0)
        assert self.cfg.my_id is not None
        self.my_id: int = self.cfg.my_id
        self.max_frame = net.max_frame
        self.max_snap = net.max_snap
        self.handshake_timeout = max(self.cfg.cnx_timeout, 1) / 1000.0
        self.stopping = False
        self.port: Any = None
        self.live: Set[_Link] = set()           # every open connection, for stopService

    def count(self, name: str, n: int = 1) -> None:
        self.counters[self.prefix + name] += n

    def listen_port(self) -> int:
        raise NotImplementedError

    # -- service ------------------------------------------------------------------------------

    def startService(self) -> None:
        self.stopping = False
        me = self.cfg.me
        assert me is not None, "this server's server.N line"
        factory: Any = _ServerFactory(self)
        if self.tls is not None:
            factory = TLSMemoryBIOFactory(self.tls.server_options(), False, factory,
                                          clock=self.reactor)
        self.port = self.reactor.listenTCP(self.listen_port(), factory,
                                           interface=_interface(me.host,
                                                                self.cfg.quorum_listen_on_all_ips))
        super().startService()

    def stopService(self) -> Any:
        self.stopping = True
        super().stopService()
        self.close_all()
        for link in list(self.live):
            link.close(silent=True)
        port, self.port = self.port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return None

    def close_all(self) -> None:
        raise NotImplementedError

    # -- dialling ------------------------------------------------------------------------------

    def dial(self, to: int, wakeup: bool = False) -> _DialFactory:
        peer = self.cfg.servers[to]
        f = _DialFactory(self, to, wakeup)
        factory: Any = f
        if self.tls is not None:
            factory = TLSMemoryBIOFactory(self.tls.client_options(to), True, f,
                                          clock=self.reactor)
        port = peer.election_port if self.channel == ELECTION else peer.quorum_port
        self.count("dialled")
        f.connector = self.reactor.connectTCP(peer.host, port, factory,
                                              timeout=self.handshake_timeout)
        return f

    # -- hooks from links ---------------------------------------------------------------------

    def admit(self, link: _Link) -> None:
        raise NotImplementedError

    def established(self, link: _Link) -> None:
        raise NotImplementedError

    def lost(self, link: _Link, reason: Optional[Failure]) -> None:
        raise NotImplementedError

    def dial_failed(self, dial: _DialFactory) -> None:
        raise NotImplementedError

    def welcome(self, link: _Link) -> None:
        link.transport.write(codec.encode(Welcome(self.my_id)))  # type: ignore[union-attr]
        link.up = True
        link.up_since = self.reactor.seconds()


def _interface(host: str, all_ips: bool) -> str:
    if all_ips:
        return "::" if isIPv6Address(host) else ""
    if isIPAddress(host) or isIPv6Address(host):
        return host
    # A host name: listen where it resolves (start-up only).
    return str(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])


class ElectionService(_LinkService):
    """The election port: one link per pair of servers (the higher sid dials)."""

    channel = ELECTION
    name_ = "election"

    def __init__(self, net: "PeerNetwork") -> None:
        super().__init__(net)
        self.links: Dict[int, _Link] = {}          # sid -> the link that is up
        self.dials: Dict[int, _DialFactory] = {}   # sid -> dial in progress
        self.retries: Dict[int, IDelayedCall] = {}
        self.backoff: Dict[int, float] = {}
        self.pending: Dict[int, Notification] = {}  # latest notification waiting for a link

    def listen_port(self) -> int:
        me = self.cfg.me
        assert me is not None
        return me.election_port

    def startService(self) -> None:
        super().startService()
        for sid in sorted(self.cfg.servers):
            if sid < self.my_id or sid in self.pending:
                self._want(sid)

    def close_all(self) -> None:
        for call in self.retries.values():
            if call.active():
                call.cancel()
        self.retries.clear()
        for d in list(self.dials.values()):
            d.cancel()
        self.dials.clear()
        for link in list(self.links.values()):
            link.close(silent=True)
        self.links.clear()

    def send(self, to: int, n: Notification) -> None:
        link = self.links.get(to)
        if link is not None and not link.closed:
            self.count("packets_out")
            link.send_frame(codec.encode(n))
            return
        if to == self.my_id or to not in self.cfg.servers:
            self.count("packets_dropped")
            return
        if to in self.pending:
            self.count("packets_dropped")   # the older one gives way
        self.pending[to] = n
        if self.running:
            self._want(to)

    def connected(self) -> List[int]:
        """The sids this server has an election link with."""
        return sorted(sid for sid, link in self.links.items() if not link.closed)

    def _want(self, to: int) -> None:
        if (self.stopping or not self.running or to in self.links or to in self.dials
                or to in self.retries):
            return
        self.dials[to] = self.dial(to, wakeup=to > self.my_id)

    def _retry(self, to: int, reset: bool = False) -> None:
        """Try ``to`` again later, if we still need to."""
        if self.stopping or to in self.retries or to in self.links or to in self.dials:
            return
        if to > self.my_id and to not in self.pending:
            return   # the higher server dials us
        delay = RETRY_MIN if reset else self.backoff.get(to, RETRY_MIN)
        self.backoff[to] = min(delay * RETRY_FACTOR, RETRY_MAX)

        def fire() -> None:
            self.retries.pop(to, None)
            self._want(to)

        self.retries[to] = self.reactor.callLater(delay, fire)

    def _cancel_retry(self, to: int) -> None:
        call = self.retries.pop(to, None)
        if call is not None and call.active():
            call.cancel()

    def admit(self, link: _Link) -> None:
        sid = link.sid
        assert sid is not None
        if sid < self.my_id:
            # A lower server's wake-up: it hangs up, we dial.
            link.close(silent=True, abort=False)
            old = self.links.get(sid)
            if old is not None and self.reactor.seconds() - old.up_since >= STALE_LINK_AGE:
                # It has no link with us, so ours is dead on its side.
                self.links.pop(sid)
                old.close(silent=True)
            self.backoff.pop(sid, None)
            self._cancel_retry(sid)
            self._want(sid)
            return
        old = self.links.pop(sid, None)
        if old is not None:
            self.count("replaced")
            old.close(silent=True)
        self.welcome(link)
        self._up(link)

    def established(self, link: _Link) -> None:
        sid = link.sid
        assert sid is not None
        if self.dials.get(sid) is not None and self.dials[sid].link is link:
            del self.dials[sid]
        old = self.links.pop(sid, None)
        if old is not None and old is not link:
            self.count("replaced")
            old.close(silent=True)
        self._up(link)

    def _up(self, link: _Link) -> None:
        sid = link.sid
        assert sid is not None
        self.links[sid] = link
        self.backoff.pop(sid, None)
        self._cancel_retry(sid)
        n = self.pending.pop(sid, None)
        if n is not None:
            self.count("packets_out")
            link.send_frame(codec.encode(n))

    def lost(self, link: _Link, reason: Optional[Failure]) -> None:
        sid = link.sid
        if sid is None:
            return
        d = self.dials.get(sid)
        if d is not None and d.link is link:
            del self.dials[sid]
            if not link.up and not link.wakeup and not link.silent:
                self.count("dial_failures")
        if self.links.get(sid) is link:
            del self.links[sid]
            log.info("election: link with server {sid} lost: {why}", sid=sid,
                     why=reason.getErrorMessage() if reason is not None else "?")
            if sid < self.my_id:
                self._retry(sid, reset=True)
                return
        if not self.stopping:
            self._retry(sid)

    def dial_failed(self, dial: _DialFactory) -> None:
        if self.dials.get(dial.to) is dial:
            del self.dials[dial.to]
        self._retry(dial.to)


class QuorumService(_LinkService):
    """The quorum port: Zab links, dialled on the peer's Connect effect."""

    channel = QUORUM
    name_ = "quorum"

    def __init__(self, net: "PeerNetwork") -> None:
        super().__init__(net)
        self.links: Dict[int, _Link] = {}          # sid -> the link that is up
        self.dials: Dict[int, _DialFactory] = {}   # sid -> our dial in progress

    def listen_port(self) -> int:
        me = self.cfg.me
        assert me is not None
        return me.quorum_port

    def close_all(self) -> None:
        for d in list(self.dials.values()):
            d.cancel()
        self.dials.clear()
        for link in list(self.links.values()):
            link.close(silent=True)
        self.links.clear()

    def send(self, to: int, msg: Any) -> None:
        link = self.links.get(to)
        if link is None or link.closed:
            self.count("packets_dropped")
            return
        self.count("packets_out")
        link.send_frame(codec.encode(msg))

    def connected(self) -> List[int]:
        return sorted(sid for sid, link in self.links.items() if not link.closed)

    def connect(self, to: int) -> None:
        self.disconnect(to)
        if self.stopping or not self.running or to not in self.cfg.servers or to == self.my_id:
            # Nobody to dial: the dialling end learns link_down (from the reactor).
            self.count("dial_failures")
            self.reactor.callLater(0, self._report_down, to, None)
            return
        self.dials[to] = self.dial(to)

    def _report_down(self, to: int, dial: Optional[_DialFactory]) -> None:
        if dial is not None and self.dials.get(to) is not dial:
            return
        _call(self.net.on_link_down, to)

    def disconnect(self, to: int) -> None:
        d = self.dials.pop(to, None)
        if d is not None:
            d.cancel()
        link = self.links.pop(to, None)
        if link is not None:
            link.close(silent=True)

    def _replace(self, sid: int) -> None:
        """A newer link with ``sid`` is here: the old one goes, with its link_down."""
        d = self.dials.pop(sid, None)
        old = self.links.pop(sid, None)
        if d is not None:
            d.cancel()
        if old is not None:
            old.close(silent=True)
        if d is not None or old is not None:
            self.count("replaced")
            _call(self.net.on_link_down, sid)

    def admit(self, link: _Link) -> None:
        sid = link.sid
        assert sid is not None
        self._replace(sid)
        self.welcome(link)
        self.links[sid] = link
        _call(self.net.on_link_up, sid)

    def established(self, link: _Link) -> None:
        sid = link.sid
        assert sid is not None
        d = self.dials.get(sid)
        if d is None or d.link is not link:
            link.close(silent=True)   # superseded
            return
        del self.dials[sid]
        old = self.links.pop(sid, None)
        if old is not None:
            old.close(silent=True)
        self.links[sid] = link
        _call(self.net.on_link_up, sid)

    def lost(self, link: _Link, reason: Optional[Failure]) -> None:
        sid = link.sid
        if sid is None:
            return
        d = self.dials.get(sid)
        if d is not None and d.link is link:
            # The dial got a connection but no welcome (TLS refused, hello refused, reset).
            del self.dials[sid]
            if not link.silent:
                self.count("dial_failures")
                log.info("quorum: link to server {sid} failed before it was up: {why}", sid=sid,
                         why=reason.getErrorMessage() if reason is not None else "?")
                _call(self.net.on_link_down, sid)
            return
        if self.links.get(sid) is link:
            del self.links[sid]
            if not link.silent:
                log.info("quorum: link with server {sid} lost: {why}", sid=sid,
                         why=reason.getErrorMessage() if reason is not None else "?")
                _call(self.net.on_link_down, sid)

    def dial_failed(self, dial: _DialFactory) -> None:
        if self.dials.get(dial.to) is dial:
            del self.dials[dial.to]
            _call(self.net.on_link_down, dial.to)


def _call(fn: Callable[[int], None], sid: int) -> None:
    try:
        fn(sid)
    except Exception:
        log.failure("quorum link callback {fn!r}({sid}) failed", fn=fn, sid=sid)


class PeerNetwork:
    """What the ensemble server uses to put a :class:`~zktwist.quorum.peer.QuorumPeer` on the wire.

    Add :attr:`election` and :attr:`quorum` as children of the application's
    MultiService; set :attr:`on_message`, :attr:`on_link_up` and
    :attr:`on_link_down`; carry out the peer's ``Send``/``Connect``/``Disconnect``
    effects with :meth:`send`, :meth:`connect` and :meth:`disconnect`.
    """

    def __init__(self, config: Any, tls: Optional[QuorumTLS], reactor: Any,
                 max_frame: Optional[int] = None, max_snap: int = codec.DEFAULT_MAX_SNAP) -> None:
        self.config = config
        self.tls = tls
        self.reactor = reactor
        if max_frame is None:
            # A forwarded request or a proposal is at most about a client packet.
            max_frame = max(codec.DEFAULT_MAX_FRAME, 2 * int(config.jute_maxbuffer) + 65536)
        self.max_frame = max_frame
        self.max_snap = max_snap
        self.counters: Dict[str, int] = {}
        self.on_message: Callable[[int, Any], None] = _noop_message
        #: if set, every message one read of a link brought, in one call (else on_message
        #: for each)
        self.on_messages: Optional[Callable[[int, List[Any]], None]] = None
        self.on_link_up: Callable[[int], None] = _noop_link
        self.on_link_down: Callable[[int], None] = _noop_link
        self.election = ElectionService(self)
        self.quorum = QuorumService(self)
        self.election.setName("election")
        self.quorum.setName("quorum")

    def send(self, to: int, msg: Any) -> None:
        """A Notification goes on the election link, any Zab packet on the quorum link
        (dropped if that link is down)."""
        if type(msg) is Notification:
            self.election.send(to, msg)
        else:
            self.quorum.send(to, msg)

    def connect(self, to: int) -> None:
        """The peer's Connect effect: dial ``to``'s quorum port (replacing any link to it)."""
        self.quorum.connect(to)

    def disconnect(self, to: int) -> None:
        """The peer's Disconnect effect: close the quorum link; only the other end hears."""
        self.quorum.disconnect(to)
