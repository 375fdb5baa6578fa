"""Server configuration from a zoo.cfg-syntax file (java.util.Properties, Apache ZooKeeper keys).

Settings Apache ZooKeeper takes as JVM system properties (``jute.maxbuffer``,
``zookeeper.DigestAuthenticationProvider.superDigest``, ...) are accepted as
keys too, with or without the ``zookeeper.`` prefix.  zktwist's own keys are
additions (``storage.backend``, ``ssl.quorum.keyFile``/``certFile``/``caFile``).
Every problem is a :class:`ConfigError` naming the key and the file.

Ensembles are read as Apache ZooKeeper 3.8's ``QuorumPeerConfig`` reads them:
``server.N=host:quorumPort:electionPort[:participant|observer][;[clientHost:]clientPort]``,
the server's own id from ``<dataDir>/myid``, ``initLimit``/``syncLimit``
(required), ``peerType``, ``electionAlg`` (3 only), ``standaloneEnabled``
(one participant runs standalone).  Unlike Apache ZooKeeper, an ensemble
must say how its quorum links are protected: TLS certificate files
(``ssl.quorum.*``) or an explicit ``sslQuorum=false``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

DEFAULT_4LW = "srvr"
ALL_4LW = ("ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "srst",
           "wchs", "wchc", "wchp", "isro", "dirs", "gtmk", "stmk", "hash")


class ConfigError(Exception):
    """A bad setting; the message names the key and the file."""


def parse_properties(text: str) -> List[Tuple[str, str, int]]:
    """``(key, value, line)`` for each setting, as java.util.Properties reads them (no escapes)."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i].lstrip()
        i += 1
        if not line or line[0] in "#!":
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + lines[i].lstrip()
            i += 1
        key_end = len(line)
        for j, c in enumerate(line):
            if c in "=: \t":
                key_end = j
                break
        key = line[:key_end]
        rest = line[key_end:].lstrip(" \t")
        if rest[:1] in ("=", ":"):
            rest = rest[1:]
        out.append((key, rest.strip(), lineno))
    return out


def _int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError("expected an integer")


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "yes", "1", "on"):
        return True
    if v in ("false", "no", "0", "off"):
        return False
    raise ValueError("expected true/false or yes/no")


# Keys Apache ZooKeeper knows that a standalone zktwist accepts without using yet.
KNOWN_UNUSED_PREFIXES = (
    "admin.", "metricsProvider.", "ssl.", "quorum.", "jvm.pause.", "multiAddress.",
    "request_throttle", "digest.", "snapshot.", "audit.", "authProvider.", "kerberos.",
    "fips-mode", "netty.", "learner.", "leader.", "follower.", "electionPort", "group.",
    "weight.", "serverCnxnFactory", "client.", "fsync.",
)
KNOWN_UNUSED = frozenset((
    "reconfigEnabled",
    "dynamicConfigFile", "localSessionsEnabled", "localSessionsUpgradingEnabled",
    "syncEnabled", "observerMasterPort",
    "connectToLearnerMasterLimit", "clientPortListenBacklog", "maxCnxns",
    "portUnification", "sslQuorumReloadCertFiles", "secureClientPort", "secureClientPortAddress",
    "snapSizeLimitInKb", "txnLogSizeLimitInKb", "commitLogCount",
    "snapshotSizeFactor", "enforceQuota", "superUser", "sessionRequireClientSASLAuth",
    "largeRequestMaxBytes", "largeRequestThreshold", "closeSessionTxn.enabled",
    "readonlymode.enabled", "maxResponseCacheSize", "maxGetChildrenResponseCacheSize",
    "minClientCnxns", "znode.container.maxPerMinute", "forceSync.warningthresholdms",
    "metricsProvider.className", "4lw.commands.enabled", "serverId", "tickTimeWarning",
))


PARTICIPANT = "participant"
OBSERVER = "observer"
_WILDCARDS = ("0.0.0.0", "::", "0:0:0:0:0:0:0:0")


@dataclasses.dataclass(frozen=True)
class QuorumServer:
    """One ``server.N`` line: where server N talks to its peers, and its role."""

    sid: int
    host: str
    quorum_port: int
    election_port: int
    role: str = PARTICIPANT
    client_host: Optional[str] = None
    client_port: Optional[int] = None
    # True when the client address came from clientPort/clientPortAddress,
    # not from the server line (Apache ZooKeeper then leaves it out of
    # /zookeeper/config).
    client_from_static: bool = False

    @property
    def is_observer(self) -> bool:
        return self.role == OBSERVER

    def zoo_cfg_value(self) -> str:
        """The value as Apache ZooKeeper writes it (``QuorumServer.toString``)."""
        out = "%s:%d:%d:%s" % (_delimited(self.host), self.quorum_port, self.election_port,
                               self.role)
        if self.client_port is not None and not self.client_from_static:
            out += ";%s:%d" % (_delimited(self.client_host or "0.0.0.0"), self.client_port)
        return out


def _delimited(host: str) -> str:
    return "[%s]" % host if ":" in host else host


def _host_and_port(s: str) -> List[str]:
    """Apache ZooKeeper's ``ConfigUtils.getHostAndPort``: ``[v6]:p:p`` or ``host:p:p``."""
    if s.startswith("["):
        i = s.find("]")
        if i < 0:
            raise ValueError("%r starts with '[' but has no matching ']:'" % s)
        if i + 2 >= len(s) or s[i + 1] != ":":
            raise ValueError("%r has no port after ']:'" % s)
        return [s[1:i]] + s[i + 2:].split(":")
    return s.split(":")


def _peer_port(text: str, what: str) -> int:
    try:
        port = int(text.strip())
    except ValueError:
        raise ValueError("%s %r is not a number" % (what, text))
    if not 1 <= port <= 65535:
        raise ValueError("%s %d is not a port number 1-65535" % (what, port))
    return port


_SERVER_FORM = ("expected host:quorumPort:electionPort[:participant|observer]"
                "[;[clientHost:]clientPort]")


def parse_server(sid: int, value: str) -> QuorumServer:
    """Parse a ``server.N`` value as Apache ZooKeeper 3.8's ``QuorumServer`` does.

    Raises ValueError with what is wrong.  Multiple addresses (``a|b``,
    ``multiAddress.enabled``) are not supported.
    """
    # Java's String.split drops trailing empty strings: "h:1:2;" has no client part.
    parts = value.split(";")
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if len(parts) > 2:
        raise ValueError(_SERVER_FORM)
    if "|" in parts[0]:
        raise ValueError("multiple addresses per server (a|b, multiAddress.enabled) are not "
                         "supported by zktwist")
    sp = _host_and_port(parts[0].strip())
    if not 3 <= len(sp) <= 4 or not sp[0]:
        raise ValueError(_SERVER_FORM)
    host = sp[0]
    quorum_port = _peer_port(sp[1], "quorum port")
    election_port = _peer_port(sp[2], "election port")
    if quorum_port == election_port:
        raise ValueError("quorum and election ports must differ")
    role = PARTICIPANT
    if len(sp) == 4:
        role = sp[3].strip().lower()
        if role not in (PARTICIPANT, OBSERVER):
            raise ValueError("unrecognised peer type %r (participant or observer)" % sp[3])
    client_host: Optional[str] = None
    client_port: Optional[int] = None
    if len(parts) == 2:
        cp = _host_and_port(parts[1].strip())
        if len(cp) > 2 or (len(cp) == 2 and not cp[0]):
            raise ValueError(_SERVER_FORM)
        client_host = cp[0] if len(cp) == 2 else "0.0.0.0"
        try:
            client_port = int(cp[-1])
        except ValueError:
            raise ValueError("client port %r is not a number" % cp[-1])
        if not 0 <= client_port <= 65535:
            raise ValueError("client port %d is not a port number 0-65535" % client_port)
    return QuorumServer(sid, host, quorum_port, election_port, role, client_host, client_port)


class ServerConfig:
    """Effective settings of one server (defaults as Apache ZooKeeper 3.8 where it has them)."""

    def __init__(self) -> None:
        self.path = "<defaults>"
        self.tick_time = 3000
        self.data_dir = ""
        self.data_log_dir = ""
        self.client_port = 2181
        self.client_port_address = "0.0.0.0"
        self.max_client_cnxns = 60
        self.min_session_timeout = -1
        self.max_session_timeout = -1
        self.four_letter_words = frozenset([DEFAULT_4LW])
        self.extended_types_enabled = False
        self.jute_maxbuffer = 0xFFFFF
        self.skip_acl = False
        self.super_digest: Optional[str] = None
        self.global_outstanding_limit = 1000
        self.prealloc_size = 64 * 1024 * 1024
        self.force_sync = True
        self.container_check_interval_ms = 60000
        self.container_max_never_used_ms = 0
        self.storage_backend = "filelog"
        self.snap_count = 100000
        # Unlike Apache ZooKeeper (purgeInterval=0, off), zktwist purges by
        # default: full disks are ZooKeeper users' most common outage.
        self.snap_retain_count = 3
        self.purge_interval_hours = 1
        # Ensemble (Apache ZooKeeper's QuorumPeerConfig keys).
        self.servers: Dict[int, QuorumServer] = {}
        self.server_lines: Dict[int, int] = {}   # sid -> line of its server.N (for errors)
        self.is_ensemble = False
        self.standalone_enabled = True
        self.my_id: Optional[int] = None
        self.init_limit = 0                        # ticks; required in an ensemble
        self.sync_limit = 0                        # ticks; required in an ensemble
        self.peer_type = PARTICIPANT
        self.election_alg = 3
        self.quorum_listen_on_all_ips = False
        self.cnx_timeout = 5000                    # ms, connecting to a peer's election port
        self.ssl_quorum: Optional[bool] = None     # None: not set (Apache's default is false)
        self.ssl_quorum_key_file = ""
        self.ssl_quorum_cert_file = ""
        self.ssl_quorum_ca_file = ""
        self.ssl_quorum_keystore = ""              # Apache's ssl.quorum.keyStore.location
        self.ssl_quorum_keystore_type = ""
        self.ssl_quorum_truststore = ""            # Apache's ssl.quorum.trustStore.location
        self.ssl_quorum_truststore_type = ""
        self.keys_set: Set[str] = set()            # canonical keys the file (or overrides) set
        self.raw: Dict[str, str] = {}
        self.warnings: List[str] = []
        self.unused: List[str] = []

    @property
    def voters(self) -> Dict[int, QuorumServer]:
        return {sid: s for sid, s in self.servers.items() if s.role == PARTICIPANT}

    @property
    def observers(self) -> Dict[int, QuorumServer]:
        return {sid: s for sid, s in self.servers.items() if s.role == OBSERVER}

    @property
    def me(self) -> Optional[QuorumServer]:
        """This server's ``server.N`` entry (ensemble only, once myid is read)."""
        return self.servers.get(self.my_id) if self.my_id is not None else None

    def finish(self, check_local: bool = True) -> None:
        """Fill derived defaults and check cross-key rules.

        ``check_local=False`` skips what only this machine can answer (the
        ``myid`` file, the certificate files): tools such as ``zktwist tls
        init`` read a config before those exist.
        """
        if not self.data_dir:
            raise ConfigError("%s: dataDir is not set" % self.path)
        if not self.data_log_dir:
            self.data_log_dir = self.data_dir
        if self.min_session_timeout == -1:
            self.min_session_timeout = 2 * self.tick_time
        if self.max_session_timeout == -1:
            self.max_session_timeout = 20 * self.tick_time
        if self.snap_retain_count < 3:
            # Apache ZooKeeper raises it to 3 with a warning; so do we.
            self.warnings.append("%s: autopurge.snapRetainCount: %d is below the minimum 3; using 3"
                                 % (self.path, self.snap_retain_count))
            self.snap_retain_count = 3
        if self.min_session_timeout > self.max_session_timeout:
            raise ConfigError("%s: minSessionTimeout must not be larger than maxSessionTimeout"
                              % self.path)
        self._finish_ensemble(check_local)

    # -- ensemble ---------------------------------------------------------

    def _err(self, key: str, message: str) -> ConfigError:
        return ConfigError("%s: %s: %s" % (self.path, key, message))

    def _finish_ensemble(self, check_local: bool) -> None:
        if "dynamicConfigFile" in self.raw or "zookeeper.dynamicConfigFile" in self.raw:
            # Its server.N lines live in another file; running standalone
            # without them would split an ensemble.
            raise self._err("dynamicConfigFile", "not supported by zktwist: put the server.N "
                            "lines in this file")
        if not self.servers:
            return
        voters, observers = self.voters, self.observers
        first = "server.%d" % min(self.servers)
        if not voters:
            raise self._err(first, "observers without participants is an invalid configuration")
        if len(voters) == 1 and self.standalone_enabled:
            if observers:
                raise self._err("server.%d" % min(observers),
                                "observers without a quorum (one participant) is an invalid "
                                "configuration")
            # Apache ZooKeeper logs "only one server specified (ignoring)" and
            # runs standalone; so do we.
            self.warnings.append("%s: %s: only one server specified, running standalone"
                                 % (self.path, first))
            return
        self.is_ensemble = True
        hierarchical = [k for k in self.unused if k.startswith(("group.", "weight."))]
        if hierarchical:
            raise self._err(hierarchical[0], "hierarchical quorums (group.N, weight.N) are not "
                            "supported by zktwist; every participant has weight 1")
        if len(voters) <= 2:
            self.warnings.append("%s: server.N: %d participants: no server failure will be "
                                 "tolerated; you need at least 3 servers"
                                 % (self.path, len(voters)))
        elif len(voters) % 2 == 0:
            self.warnings.append("%s: server.N: %d participants: non-optimal configuration, "
                                 "consider an odd number of servers" % (self.path, len(voters)))
        if 255 in self.servers and self.extended_types_enabled:
            raise self._err("server.255", "server ids must be below 255 when "
                            "extendedTypesEnabled is on (TTL session ids use the top byte)")
        if self.init_limit <= 0:
            raise self._err("initLimit", "not set; an ensemble needs it (ticks a follower may "
                            "take to connect and sync to its leader, e.g. initLimit=10)")
        if self.sync_limit <= 0:
            raise self._err("syncLimit", "not set; an ensemble needs it (ticks a follower may "
                            "lag behind its leader, e.g. syncLimit=5)")
        self._check_ports()
        self._finish_ssl_quorum()
        if check_local:
            self._read_my_id()
            self._apply_my_entry()
            if self.ssl_quorum:
                for key, name in (("ssl.quorum.keyFile", self.ssl_quorum_key_file),
                                  ("ssl.quorum.certFile", self.ssl_quorum_cert_file),
                                  ("ssl.quorum.caFile", self.ssl_quorum_ca_file)):
                    if not os.path.isfile(name):
                        raise self._err(key, "%s: no such file (`zktwist tls init --config %s` "
                                        "writes the certificates)" % (name, self.path))

    def _read_my_id(self) -> None:
        myid = os.path.join(self.data_dir, "myid")
        try:
            with open(myid, encoding="utf-8", errors="replace") as f:
                text = f.readline().strip()
        except FileNotFoundError:
            raise self._err("dataDir", "%s is missing: a member of an ensemble finds its server "
                            "id N (of its server.N line) there; write it with: mkdir -p %s && "
                            "echo N > %s" % (myid, self.data_dir, myid))
        except OSError as e:
            raise self._err("dataDir", "cannot read %s: %s" % (myid, e.strerror))
        try:
            sid = int(text)
        except ValueError:
            raise self._err("myid", "%s holds %r, not a server id number" % (myid, text))
        if sid not in self.servers:
            raise self._err("myid", "%s says %d, but there is no server.%d line (servers: %s)"
                            % (myid, sid, sid, ", ".join(str(n) for n in sorted(self.servers))))
        self.my_id = sid

    def _apply_my_entry(self) -> None:
        me = self.me
        assert me is not None
        key = "server.%d" % me.sid
        if "peerType" in self.keys_set and self.peer_type != me.role:
            # Apache ZooKeeper warns and follows the server list; a server that
            # is not what its operator believes it is deserves a refusal.
            raise self._err("peerType", "peerType=%s, but %s says %s; make them agree"
                            % (self.peer_type, key, me.role))
        self.peer_type = me.role
        if me.client_port is not None:
            # As Apache ZooKeeper's setupClientPort: the static clientPort may
            # repeat the server line's, not contradict it.
            if "clientPort" in self.keys_set and self.client_port != me.client_port:
                raise self._err("clientPort", "%d, but %s gives client port %d"
                                % (self.client_port, key, me.client_port))
            if ("clientPortAddress" in self.keys_set
                    and self.client_port_address not in _WILDCARDS
                    and self.client_port_address != me.client_host):
                raise self._err("clientPortAddress", "%s, but %s gives client address %s"
                                % (self.client_port_address, key, me.client_host))
            self.client_port = me.client_port
            self.client_port_address = me.client_host or "0.0.0.0"
        else:
            self.servers[me.sid] = dataclasses.replace(
                me, client_host=self.client_port_address, client_port=self.client_port,
                client_from_static=True)

    def _check_ports(self) -> None:
        seen: Dict[Tuple[str, int], str] = {}
        for sid in sorted(self.servers):
            s = self.servers[sid]
            # All of a server's ports live on the machine its host names.
            ports = [(s.quorum_port, "quorum port"), (s.election_port, "election port")]
            if s.client_port:
                ports.append((s.client_port, "client port"))
            for port, what in ports:
                owner = "server.%d's %s" % (sid, what)
                other = seen.get((s.host, port))
                if other is not None:
                    raise self._err("server.%d" % sid, "%s:%d is both %s and %s"
                                    % (_delimited(s.host), port, other, owner))
                seen[(s.host, port)] = owner

    def _finish_ssl_quorum(self) -> None:
        keystore_pem = self._store_is_pem(self.ssl_quorum_keystore, self.ssl_quorum_keystore_type)
        truststore_pem = self._store_is_pem(self.ssl_quorum_truststore,
                                            self.ssl_quorum_truststore_type)
        # Apache ZooKeeper's keyStore.type=PEM file holds the key and the
        # certificate chain; its trustStore.type=PEM file holds the CA.
        if keystore_pem:
            self.ssl_quorum_key_file = self.ssl_quorum_key_file or self.ssl_quorum_keystore
            self.ssl_quorum_cert_file = self.ssl_quorum_cert_file or self.ssl_quorum_keystore
        if truststore_pem:
            self.ssl_quorum_ca_file = self.ssl_quorum_ca_file or self.ssl_quorum_truststore
        files = {"ssl.quorum.keyFile": self.ssl_quorum_key_file,
                 "ssl.quorum.certFile": self.ssl_quorum_cert_file,
                 "ssl.quorum.caFile": self.ssl_quorum_ca_file}
        if self.ssl_quorum is False:
            given = [k for k, v in files.items() if v]
            if given:
                self.warnings.append("%s: sslQuorum=false: %s not used; the quorum and election "
                                     "links are unencrypted" % (self.path, ", ".join(given)))
            return
        for key, location, is_pem in (
                ("ssl.quorum.keyStore.location", self.ssl_quorum_keystore, keystore_pem),
                ("ssl.quorum.trustStore.location", self.ssl_quorum_truststore, truststore_pem)):
            if location and not is_pem:
                raise self._err(key, "%s is not a PEM file; zktwist reads PEM files: set "
                                "ssl.quorum.keyFile, ssl.quorum.certFile and ssl.quorum.caFile "
                                "(zktwist tls init writes them), or convert the store to PEM "
                                "(keyStore.type=PEM)" % location)
        if not any(files.values()) and self.ssl_quorum is None:
            raise self._err("sslQuorum", "an ensemble's quorum and election links need TLS "
                            "certificates or an explicit choice against them: set "
                            "ssl.quorum.keyFile, ssl.quorum.certFile and ssl.quorum.caFile "
                            "(`zktwist tls init --config %s` writes them), or set "
                            "sslQuorum=false to run the links unencrypted and unauthenticated"
                            % self.path)
        missing = [k for k, v in files.items() if not v]
        if missing:
            raise self._err(missing[0], "not set; quorum TLS needs ssl.quorum.keyFile, "
                            "ssl.quorum.certFile and ssl.quorum.caFile (missing: %s), or "
                            "sslQuorum=false" % ", ".join(missing))
        self.ssl_quorum = True

    @staticmethod
    def _store_is_pem(location: str, store_type: str) -> bool:
        if not location:
            return False
        if store_type:
            return store_type.strip().upper() == "PEM"
        return location.lower().endswith((".pem", ".crt", ".key"))

    def effective(self) -> Dict[str, str]:
        """The settings as ``conf`` shows them."""
        return {
            "clientPort": str(self.client_port),
            "clientPortAddress": self.client_port_address,
            "dataDir": os.path.join(os.path.abspath(self.data_dir), "version-2"),
            "dataDirSize": "0",
            "dataLogDir": os.path.join(os.path.abspath(self.data_log_dir), "version-2"),
            "dataLogSize": "0",
            "tickTime": str(self.tick_time),
            "maxClientCnxns": str(self.max_client_cnxns),
            "minSessionTimeout": str(self.min_session_timeout),
            "maxSessionTimeout": str(self.max_session_timeout),
            "clientPortListenBacklog": "-1",
            "serverId": "0",
        }


def _setter(attr: str, conv: Callable[[str], object], check: Optional[Callable[[object], bool]] = None,
            what: str = "") -> Callable[[ServerConfig, str], None]:
    def set_(cfg: ServerConfig, value: str) -> None:
        v = conv(value)
        if check is not None and not check(v):
            raise ValueError(what)
        setattr(cfg, attr, v)
    return set_


def _words(cfg: ServerConfig, value: str) -> None:
    words = [w.strip() for w in value.split(",") if w.strip()]
    if "*" in words:
        cfg.four_letter_words = frozenset(ALL_4LW)
        return
    # Apache ZooKeeper ignores words it does not know; so do we (with a warning).
    for w in words:
        if w not in ALL_4LW:
            cfg.warnings.append("%s: 4lw.commands.whitelist: unknown four-letter word %r (ignored)"
                                % (cfg.path, w))
    cfg.four_letter_words = frozenset(w for w in words if w in ALL_4LW)


def _prealloc(cfg: ServerConfig, value: str) -> None:
    kb = int(value)
    if kb <= 0:
        raise ValueError("expected a positive size in KB")
    cfg.prealloc_size = kb * 1024


def _backend(cfg: ServerConfig, value: str) -> None:
    if not value:
        raise ValueError("expected a backend name")
    cfg.storage_backend = value


def _peer_type(cfg: ServerConfig, value: str) -> None:
    v = value.strip().lower()
    if v not in (PARTICIPANT, OBSERVER):
        raise ValueError("expected participant or observer")
    cfg.peer_type = v


def _positive(v: object) -> bool:
    return isinstance(v, int) and v > 0


def _non_negative(v: object) -> bool:
    return isinstance(v, int) and v >= 0


def _port(v: object) -> bool:
    return isinstance(v, int) and 0 <= v <= 65535


SETTERS: Dict[str, Callable[[ServerConfig, str], None]] = {
    "tickTime": _setter("tick_time", _int, _positive, "expected a positive integer (ms)"),
    "dataDir": _setter("data_dir", str, bool, "expected a directory"),
    "dataLogDir": _setter("data_log_dir", str, bool, "expected a directory"),
    "clientPort": _setter("client_port", _int, _port, "expected a port number 0-65535"),
    "clientPortAddress": _setter("client_port_address", str, bool, "expected an address"),
    "maxClientCnxns": _setter("max_client_cnxns", _int, _non_negative,
                              "expected a non-negative integer"),
    "minSessionTimeout": _setter("min_session_timeout", _int, None),
    "maxSessionTimeout": _setter("max_session_timeout", _int, None),
    "4lw.commands.whitelist": _words,
    "extendedTypesEnabled": _setter("extended_types_enabled", _bool),
    "jute.maxbuffer": _setter("jute_maxbuffer", _int, _positive, "expected a positive byte count"),
    "skipACL": _setter("skip_acl", _bool),
    "superDigest": _setter("super_digest", str),
    "DigestAuthenticationProvider.superDigest": _setter("super_digest", str),
    "globalOutstandingLimit": _setter("global_outstanding_limit", _int, _positive,
                                      "expected a positive integer"),
    "preAllocSize": _prealloc,
    "forceSync": _setter("force_sync", _bool),
    "znode.container.checkIntervalMs": _setter("container_check_interval_ms", _int, _positive,
                                               "expected a positive integer (ms)"),
    "znode.container.maxNeverUsedIntervalMs": _setter("container_max_never_used_ms", _int,
                                                      _non_negative, "expected ms >= 0"),
    "storage.backend": _backend,
    "snapCount": _setter("snap_count", _int, lambda v: isinstance(v, int) and v >= 2,
                         "expected an integer >= 2"),
    "autopurge.snapRetainCount": _setter("snap_retain_count", _int, _positive,
                                         "expected a positive integer"),
    "autopurge.purgeInterval": _setter("purge_interval_hours", _int, _non_negative,
                                       "expected hours >= 0 (0 = purge only after snapshots)"),
    # Ensemble.
    "initLimit": _setter("init_limit", _int, _positive, "expected a positive number of ticks"),
    "syncLimit": _setter("sync_limit", _int, _positive, "expected a positive number of ticks"),
    "peerType": _peer_type,
    "electionAlg": _setter("election_alg", _int, lambda v: v == 3,
                           "only 3 (fast leader election) is supported"),
    "standaloneEnabled": _setter("standalone_enabled", _bool),
    "quorumListenOnAllIPs": _setter("quorum_listen_on_all_ips", _bool),
    "cnxTimeout": _setter("cnx_timeout", _int, _positive, "expected a positive integer (ms)"),
    "sslQuorum": _setter("ssl_quorum", _bool),
    # zktwist's PEM files for quorum TLS, named after Apache ZooKeeper's ssl.quorum.* keys.
    "ssl.quorum.keyFile": _setter("ssl_quorum_key_file", str, bool, "expected a file name"),
    "ssl.quorum.certFile": _setter("ssl_quorum_cert_file", str, bool, "expected a file name"),
    "ssl.quorum.caFile": _setter("ssl_quorum_ca_file", str, bool, "expected a file name"),
    "ssl.quorum.keyStore.location": _setter("ssl_quorum_keystore", str),
    "ssl.quorum.keyStore.type": _setter("ssl_quorum_keystore_type", str),
    "ssl.quorum.trustStore.location": _setter("ssl_quorum_truststore", str),
    "ssl.quorum.trustStore.type": _setter("ssl_quorum_truststore_type", str),
}


def canonical_key(key: str) -> str:
    """Strip the ``zookeeper.`` prefix that JVM-property spellings carry."""
    if key.startswith("zookeeper.") and key[len("zookeeper."):] in SETTERS:
        return key[len("zookeeper."):]
    return key


Override = Tuple[str, str]


def load(path: str, check_local: bool = True, overrides: Sequence[Override] = ()) -> ServerConfig:
    """Read a zoo.cfg-syntax file; ``overrides`` (key, value) come after it (command line)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("%s: cannot read the config file: %s" % (path, e.strerror))
    except UnicodeDecodeError:
        raise ConfigError("%s: the config file is not UTF-8 text" % path)
    return from_text(text, path, check_local=check_local, overrides=overrides)


def _server_id(key: str) -> int:
    try:
        sid = int(key[len("server."):])
    except ValueError:
        raise ValueError("the server id after 'server.' must be a number")
    if not 0 <= sid <= 255:
        raise ValueError("server ids are 0-255 (session ids carry the id in their top byte)")
    return sid


def from_text(text: str, path: str = "<string>", check_local: bool = True,
              overrides: Sequence[Override] = ()) -> ServerConfig:
    cfg = ServerConfig()
    cfg.path = path
    settings = parse_properties(text) + [(k, v, 0) for k, v in overrides]
    for raw_key, value, lineno in settings:
        where = "%s:%d" % (path, lineno) if lineno else "%s (command line)" % path
        key = canonical_key(raw_key)
        cfg.raw[raw_key] = value
        setter = SETTERS.get(key)
        if setter is not None:
            try:
                setter(cfg, value)
            except ValueError as e:
                detail = str(e) or "bad value"
                raise ConfigError("%s: %s: %s, got %r" % (where, raw_key, detail, value))
            cfg.keys_set.add(key)
            continue
        if key.startswith("server."):
            try:
                sid = _server_id(key)
                if sid in cfg.servers:
                    raise ValueError("server %d is already given on line %d"
                                     % (sid, cfg.server_lines[sid]))
                cfg.servers[sid] = parse_server(sid, value)
            except ValueError as e:
                raise ConfigError("%s: %s: %s, got %r" % (where, raw_key, e, value))
            cfg.server_lines[sid] = lineno
            continue
        bare = key[len("zookeeper."):] if key.startswith("zookeeper.") else key
        if bare in KNOWN_UNUSED or bare.startswith(KNOWN_UNUSED_PREFIXES):
            cfg.unused.append(raw_key)
            continue
        cfg.warnings.append("%s: unknown key %s (ignored)" % (where, raw_key))
    cfg.finish(check_local)
    return cfg
