"""Server configuration from a zoo.cfg-syntax file (java.util.Properties, Apache ZooKeeper keys).

Settings Apache ZooKeeper takes as JVM system properties (``jute.maxbuffer``,
``zookeeper.DigestAuthenticationProvider.superDigest``, ...) are accepted as
keys too, with or without the ``zookeeper.`` prefix.  zktwist's own keys are
additions (``storage.backend``).  Every problem is a :class:`ConfigError`
naming the key and the file.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Tuple

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
    "initLimit", "syncLimit", "electionAlg", "standaloneEnabled", "reconfigEnabled",
    "dynamicConfigFile", "localSessionsEnabled", "localSessionsUpgradingEnabled",
    "quorumListenOnAllIPs", "syncEnabled", "peerType", "observerMasterPort",
    "connectToLearnerMasterLimit", "clientPortListenBacklog", "maxCnxns", "sslQuorum",
    "portUnification", "sslQuorumReloadCertFiles", "secureClientPort", "secureClientPortAddress",
    "snapSizeLimitInKb", "txnLogSizeLimitInKb", "commitLogCount",
    "snapshotSizeFactor", "enforceQuota", "superUser", "sessionRequireClientSASLAuth",
    "largeRequestMaxBytes", "largeRequestThreshold", "closeSessionTxn.enabled",
    "readonlymode.enabled", "maxResponseCacheSize", "maxGetChildrenResponseCacheSize",
    "cnxTimeout", "minClientCnxns", "znode.container.maxPerMinute", "forceSync.warningthresholdms",
    "metricsProvider.className", "4lw.commands.enabled", "serverId", "tickTimeWarning",
))


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
        self.raw: Dict[str, str] = {}
        self.warnings: List[str] = []
        self.unused: List[str] = []

    def finish(self) -> None:
        """Fill derived defaults and check cross-key rules."""
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
}


def canonical_key(key: str) -> str:
    """Strip the ``zookeeper.`` prefix that JVM-property spellings carry."""
    if key.startswith("zookeeper.") and key[len("zookeeper."):] in SETTERS:
        return key[len("zookeeper."):]
    return key


def load(path: str) -> ServerConfig:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("%s: cannot read the config file: %s" % (path, e.strerror))
    except UnicodeDecodeError:
        raise ConfigError("%s: the config file is not UTF-8 text" % path)
    return from_text(text, path)


def from_text(text: str, path: str = "<string>") -> ServerConfig:
    cfg = ServerConfig()
    cfg.path = path
    servers = []
    for raw_key, value, lineno in parse_properties(text):
        key = canonical_key(raw_key)
        cfg.raw[raw_key] = value
        setter = SETTERS.get(key)
        if setter is not None:
            try:
                setter(cfg, value)
            except ValueError as e:
                detail = str(e) or "bad value"
                raise ConfigError("%s:%d: %s: %s, got %r" % (path, lineno, raw_key, detail, value))
            continue
        if key.startswith("server."):
            servers.append(key)
            continue
        bare = key[len("zookeeper."):] if key.startswith("zookeeper.") else key
        if bare in KNOWN_UNUSED or bare.startswith(KNOWN_UNUSED_PREFIXES):
            cfg.unused.append(raw_key)
            continue
        cfg.warnings.append("%s:%d: unknown key %s (ignored)" % (path, lineno, raw_key))
    if len(servers) > 1:
        raise ConfigError("%s: %s: ensembles (more than one server.N line) are not supported by "
                          "this version of zktwist; remove the server.N lines to run standalone"
                          % (path, servers[1]))
    cfg.finish()
    return cfg
