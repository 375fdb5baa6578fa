"""The zktwist service tree, for twistd and for embedding in another Twisted application.

    from zktwist.config import load
    from zktwist.service import makeService
    makeService(load("zoo.cfg")).setServiceParent(application)

The tree is a :class:`MultiService` of named children, started in order:
``storage`` (opens the log and recovers the tree), ``sessions`` (expiry
ticks), ``containers`` (container and TTL reaping), ``autopurge`` (old
snapshots and logs) and ``client`` (the client port).  Stopping runs in reverse, so the port closes before the log.

An ensemble member (``server.N`` lines) has ``storage`` (recovers the peer:
tree, log window, epochs), ``election`` and ``quorum`` (the peer links, TLS
when sslQuorum), ``peer`` (starts the election and ticks the QuorumPeer),
``autopurge`` and ``client``; its client port is open from the start but
closes every client connection until the peer serves (as Apache ZooKeeper's
does while it is not running).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from twisted.application import internet, service
from twisted.internet import endpoints, task
from twisted.logger import Logger

from zktwist import __version__
from zktwist.config import ServerConfig
from zktwist.server.ensemble import EnsembleClientFactory, EnsembleServer
from zktwist.server.standalone import ClientFactory, StandaloneServer
from zktwist.storage.errors import StorageError
from zktwist.storage.registry import make_backend

log = Logger()


class _RecoveringService(service.Service):
    """Recovers the server's state from storage before anything listens; a storage
    error is one clear line and exit status 1 (twistd's path), never a traceback."""

    server: Any

    def __init__(self, server: Any) -> None:
        self.server = server
        self.recovered = False

    def _recover(self) -> None:
        if self.recovered:
            return
        self.recovered = True
        self._recover_now()

    def _recover_now(self) -> None:
        raise NotImplementedError

    def privilegedStartService(self) -> None:
        # twistd binds every port before startService: recover first, so no
        # client ever meets a server that has not replayed its log.
        try:
            self._recover()
        except StorageError as e:
            sys.stderr.write("zktwist: error: %s\n" % e)
            sys.stderr.flush()
            log.critical("zktwist cannot start: {error}", error=str(e))
            raise SystemExit(1)
        super().privilegedStartService()

    def startService(self) -> None:
        self._recover()
        super().startService()

    def stopService(self) -> None:
        super().stopService()
        self.server.shutdown()


class StorageService(_RecoveringService):
    """Opens the log and replays it into the tree before anything listens."""

    server: StandaloneServer

    def _recover_now(self) -> None:
        n = self.server.recover()
        log.info("zktwist {version}: recovered {n} txns, last zxid 0x{zxid:x}",
                 version=__version__, n=n, zxid=self.server.core.last_zxid)


class ClientPortService(internet.StreamServerEndpointService):
    """The client port; remembers the listening port so tests and embedders can ask for it."""

    def __init__(self, reactor: Any, config: ServerConfig, factory: Any) -> None:
        endpoint = endpoints.TCP4ServerEndpoint(
            reactor, config.client_port, interface=config.client_port_address)
        super().__init__(endpoint, factory)
        self.config = config
        self.listening_port: Optional[Any] = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._waitingForPort.addCallback(self._listening)  # type: ignore[union-attr]

    def _listening(self, port: Any) -> Any:
        self.listening_port = port
        addr = port.getHost()
        log.info("zktwist serving clients on {host}:{port}", host=addr.host, port=addr.port)
        return port


class EnsembleStorageService(_RecoveringService):
    """Opens the log and rebuilds the peer (tree, committed-log window, epochs) before the
    links or the client port start."""

    server: EnsembleServer

    def _recover_now(self) -> None:
        zxid = self.server.recover()
        log.info("zktwist {version}: server.{sid} of {n}, recovered to zxid 0x{zxid:x}",
                 version=__version__, sid=self.server.sid, n=len(self.server.config.servers),
                 zxid=zxid)


class PeerService(service.Service):
    """Starts the election once the links listen, and ticks the peer (finer than tickTime/2)."""

    def __init__(self, server: EnsembleServer, reactor: Any) -> None:
        self.server = server
        self.reactor = reactor
        self._ticks: Optional[task.LoopingCall] = None

    def startService(self) -> None:
        super().startService()
        self.server.start_peer()
        interval = min(self.server.config.tick_time / 2.0, EnsembleServer.TICK_MS) / 1000.0
        self._ticks = task.LoopingCall(self.server.tick)
        self._ticks.clock = self.reactor
        self._ticks.start(interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._ticks is not None and self._ticks.running:
            self._ticks.stop()
        self._ticks = None
        self.server.stop_peer()


class ZKTwistService(service.MultiService):
    """A zktwist server (standalone, or one member of an ensemble) as one Twisted service."""

    def __init__(self, config: ServerConfig, reactor: Optional[Any] = None,
                 network: Optional[Any] = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.config = config
        self.server: Any
        if config.is_ensemble:
            self._build_ensemble(config, reactor, network)
            return
        self.server = StandaloneServer(config, make_backend(config), reactor)
        storage = StorageService(self.server)
        storage.setName("storage")
        storage.setServiceParent(self)
        ticks = internet.TimerService(config.tick_time / 1000.0, self.server.expire_sessions)
        ticks.clock = reactor
        ticks.setName("sessions")
        ticks.setServiceParent(self)
        reaper = internet.TimerService(config.container_check_interval_ms / 1000.0,
                                       self.server.reap_containers)
        reaper.clock = reactor
        reaper.setName("containers")
        reaper.setServiceParent(self)
        if config.purge_interval_hours > 0:
            purger = internet.TimerService(config.purge_interval_hours * 3600.0,
                                           self.server.snapshotter.purge)
            purger.clock = reactor
            purger.setName("autopurge")
            purger.setServiceParent(self)
        self.client = ClientPortService(reactor, config, ClientFactory(self.server))
        self.client.setName("client")
        self.client.setServiceParent(self)

    def _build_ensemble(self, config: ServerConfig, reactor: Any, network: Optional[Any]) -> None:
        """storage, election, quorum, peer, autopurge, client: started in this order."""
        server = EnsembleServer(config, make_backend(config), reactor)
        self.server = server
        storage = EnsembleStorageService(server)
        storage.setName("storage")
        storage.setServiceParent(self)
        if network is None:
            from zktwist.quorum.tls import QuorumTLS
            from zktwist.quorum.transport import PeerNetwork

            network = PeerNetwork(config, QuorumTLS.from_config(config), reactor)
        self.network = network
        server.attach_network(network)
        network.election.setName("election")
        network.election.setServiceParent(self)
        network.quorum.setName("quorum")
        network.quorum.setServiceParent(self)
        peer = PeerService(server, reactor)
        peer.setName("peer")
        peer.setServiceParent(self)
        if config.purge_interval_hours > 0:
            purger = internet.TimerService(config.purge_interval_hours * 3600.0, server.purge)
            purger.clock = reactor
            purger.setName("autopurge")
            purger.setServiceParent(self)
        self.client = ClientPortService(reactor, config, EnsembleClientFactory(server))
        self.client.setName("client")
        self.client.setServiceParent(self)

    @property
    def port(self) -> Optional[int]:
        """The client port actually bound (useful with clientPort=0)."""
        lp = self.client.listening_port
        return lp.getHost().port if lp is not None else None


def makeService(config: ServerConfig, reactor: Optional[Any] = None,
                network: Optional[Any] = None) -> ZKTwistService:
    """``network``: a PeerNetwork stand-in for an ensemble (tests); None builds the real one."""
    return ZKTwistService(config, reactor, network)
