"""Four-letter words on the client port, with Apache ZooKeeper 3.8.0's output formats.

Each handler returns exactly the text a 3.8.0 standalone server writes for
the word (``server/command/*.java``): the same lines, field names, order,
tabs and trailing newlines, with zktwist's own values.  :func:`run` also does
the bookkeeping NIOServerCnxn does around a word: the word counts as one
packet received, and the reply as one packet sent per 8192 characters (the
PrintWriter/BufferedWriter chunks), on the connection and server-wide.

Where zktwist has no equivalent of a Java value (the JVM in ``envi``), the
nearest Python/process fact is given under Apache ZooKeeper's key.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import pwd
import resource
import socket
import struct
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from zktwist import ZOOKEEPER_COMPAT_VERSION, __version__
from zktwist.storage.util import dir_size
from zktwist.server.stats import java_double

if TYPE_CHECKING:
    from typing import Union

    from zktwist.server.connection import ClientConnection
    from zktwist.server.ensemble import EnsembleServer
    from zktwist.server.standalone import StandaloneServer

    # The words take either shell.
    Server = Union[StandaloneServer, EnsembleServer]

#: Version.getFullVersion(): "<version>-<revision>, built on <date>".  kazoo's server_version()
#: and monitoring tools parse the leading "3.8.0".
VERSION_LINE = "%s-zktwist-%s, built on 1970-01-01 00:00 UTC" % (ZOOKEEPER_COMPAT_VERSION, __version__)
ZK_NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
NOT_SERVING = ZK_NOT_SERVING + "\n"

#: The words 3.8.0 knows (FourLetterCommands.cmd2String, less the telnet close sentinel).
COMMANDS = ("conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst",
            "srvr", "stat", "wchc", "wchp", "wchs", "mntr", "isro", "hash")
_KNOWN = frozenset(w.encode("ascii") for w in COMMANDS)

#: NIOServerCnxn's sessionlessCnxnTimeout (zookeeper.nio.sessionlessCnxnTimeout): the expiry
#: interval of the connection expiry queue that ``dump`` prints.
SESSIONLESS_CNXN_TIMEOUT = 10000

#: PrintWriter(BufferedWriter(SendBufferWriter)): the reply leaves in chunks of this many chars,
#: each one counted as a packet sent.
CHUNK = 8192

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def is_command(word: bytes) -> bool:
    return bytes(word) in _KNOWN


def is_enabled(server: "Server", word: str) -> bool:
    """FourLetterCommands.isEnabled: the whitelist, plus srvr always (zkServer.sh needs it)."""
    if word == "srvr":
        return True
    words = server.config.four_letter_words
    if word in words:
        return True
    if word == "hash":
        # '*' enables every known word; zktwist's config stores '*' as the full list it knows.
        from zktwist.config import ALL_4LW
        return words >= frozenset(ALL_4LW)
    return False


# -- value formatting -------------------------------------------------------------------

def _hex(v: int) -> str:
    """Long.toHexString."""
    return "%x" % (v & 0xFFFFFFFFFFFFFFFF)


def _java_ip(ip: str) -> str:
    """InetAddress.getHostAddress: IPv6 in full, without zero compression or padding."""
    if ":" not in ip:
        return ip
    scope = ""
    if "%" in ip:
        ip, scope = ip.split("%", 1)
        scope = "%" + scope
    try:
        addr = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip + scope
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return ":".join("%x" % int(g, 16) for g in addr.exploded.split(":")) + scope


def _remote(conn: "ClientConnection") -> str:
    """InetSocketAddress.toString() of an accepted socket: '/ip:port'."""
    try:
        peer = conn.transport.getPeer()  # type: ignore[union-attr]
        port = int(getattr(peer, "port", 0))
    except Exception:
        port = 0
    return "/%s:%d" % (_java_ip(conn.remote_ip), port)


def _java_date(ms: float) -> str:
    """java.util.Date.toString(): 'EEE MMM dd HH:mm:ss zzz yyyy' in the local time zone."""
    t = time.localtime(ms / 1000.0)
    return "%s %s %02d %02d:%02d:%02d %s %d" % (
        _DAYS[t.tm_wday], _MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
        t.tm_zone or "UTC", t.tm_year)


def _elapsed_ms(wall_seconds: float) -> int:
    """A wall-clock instant as Time.currentElapsedTime() (System.nanoTime()/1e6) would show it."""
    return int((time.monotonic() - (time.time() - wall_seconds)) * 1000)


# -- srvr / stat / cons -------------------------------------------------------------------

def _server_stats(server: "Server") -> str:
    """ServerStats.toString() then 'Node count: n'."""
    st = server.stats
    return (
        "Latency min/avg/max: %d/%s/%d\n" % (max(st.min_latency, 0), java_double(st.avg_latency),
                                              st.max_latency)
        + "Received: %d\n" % st.packets_received
        + "Sent: %d\n" % st.packets_sent
        + "Connections: %d\n" % len(server.connections)
        + "Outstanding: %d\n" % server.outstanding
        + "Zxid: 0x%s\n" % _hex(server.core.last_zxid)
        + "Mode: %s\n" % server_state(server)
        + "Node count: %d\n" % server.core.tree.node_count()
        + _proposal_sizes_line(server)
    )


def _proposal_sizes_line(server: "Server") -> str:
    """StatCommand on a leader: 'Proposal sizes last/min/max: ...' (BufferStats.toString)."""
    sizes = getattr(server, "proposal_sizes", None)
    if sizes is None or server_state(server) != "leader":
        return ""
    return "Proposal sizes last/min/max: %d/%d/%d\n" % (sizes.last, sizes.min, sizes.max)


def server_state(server: "Server") -> str:
    """ServerStats.getServerState: standalone, or leader/follower/observer in an ensemble."""
    return getattr(server, "mode", "standalone")


def _connections(server: "Server") -> List["ClientConnection"]:
    return list(server.connections)


def _interest_ops(c: "ClientConnection", current: "ClientConnection") -> str:
    # OP_READ while the connection reads; 0 once the word's selection key is cancelled, or while
    # reading is paused (globalOutstandingLimit).
    return "0" if c is current or getattr(c, "paused", False) else "1"


def _conn_info(c: "ClientConnection", current: "ClientConnection", brief: bool) -> str:
    """ServerCnxn.dumpConnectionInfo (without the println that follows it)."""
    out = " %s[%s](queued=%d,recved=%d,sent=%d" % (
        _remote(c), _interest_ops(c, current), len(c.queue), c.packets_received, c.packets_sent)
    if not brief and c.session_id:
        avg = c.total_latency // c.latency_count if c.latency_count else 0
        out += ",sid=0x%s,lop=%s,est=%d,to=%d" % (
            _hex(c.session_id), c.last_op, int(c.established_at * 1000), c.timeout)
        if c.last_cxid >= 0:
            out += ",lcxid=0x%s" % _hex(c.last_cxid)
        out += ",lzxid=0x%s,lresp=%d,llat=%d,minlat=%d,avglat=%d,maxlat=%d" % (
            _hex(c.last_zxid), _elapsed_ms(c.last_response) if c.last_response else 0,
            c.last_latency, max(c.min_latency, 0), avg, c.max_latency)
    return out + ")"


def ruok(server: "Server", conn: "ClientConnection") -> str:
    return "imok"


def srvr(server: "Server", conn: "ClientConnection") -> str:
    if not server.serving:
        return NOT_SERVING
    return "Zookeeper version: %s\n" % VERSION_LINE + _server_stats(server)


def stat(server: "Server", conn: "ClientConnection") -> str:
    if not server.serving:
        return NOT_SERVING
    out = ["Zookeeper version: %s\n" % VERSION_LINE, "Clients:\n"]
    for c in _connections(server):
        out.append(_conn_info(c, conn, True) + "\n")
    out.append("\n")
    out.append(_server_stats(server))
    return "".join(out)


def cons(server: "Server", conn: "ClientConnection") -> str:
    if not server.serving:
        return NOT_SERVING
    return "".join(_conn_info(c, conn, False) + "\n" for c in _connections(server)) + "\n"


def crst(server: "Server", conn: "ClientConnection") -> str:
    if not server.serving:
        return NOT_SERVING
    for c in _connections(server):  # ServerCnxn.resetStats
        c.packets_received = c.packets_sent = 0
        c.min_latency, c.max_latency = -1, 0
        c.last_op, c.last_cxid, c.last_zxid = "NA", -1, -1
        c.last_response, c.last_latency = 0.0, 0
        c.total_latency, c.latency_count = 0, 0
    return "Connection stats reset.\n"


def srst(server: "Server", conn: "ClientConnection") -> str:
    if not server.serving:
        return NOT_SERVING
    server.stats.reset()
    return "Server stats reset.\n"


# -- conf / dirs / envi ------------------------------------------------------------------------

def _snap_dir(server: "Server") -> str:
    return os.path.join(os.path.abspath(server.config.data_dir), "version-2")


def _log_dir(server: "Server") -> str:
    return os.path.join(os.path.abspath(server.config.data_log_dir or server.config.data_dir),
                        "version-2")


def _data_dir_size(server: "Server") -> int:
    # ZooKeeperServer.getDataDirSize() measures snapLog.getDataDir(), which is the txn log
    # directory; getLogDirSize() measures the snapshot directory.  3.8.0 reports them so.
    return dir_size(_log_dir(server))


def _log_dir_size(server: "Server") -> int:
    return dir_size(_snap_dir(server))


def _client_port(server: "Server") -> int:
    return int(getattr(server, "client_port", 0) or server.config.client_port)


def conf(server: "Server", conn: "ClientConnection") -> str:
    """ZooKeeperServer.dumpConf."""
    if not server.serving:
        return NOT_SERVING
    cfg = server.config
    items = [
        ("clientPort", _client_port(server)),
        ("secureClientPort", -1),
        ("dataDir", _snap_dir(server)),
        ("dataDirSize", _data_dir_size(server)),
        ("dataLogDir", _log_dir(server)),
        ("dataLogSize", _log_dir_size(server)),
        ("tickTime", cfg.tick_time),
        ("maxClientCnxns", cfg.max_client_cnxns),
        ("minSessionTimeout", cfg.min_session_timeout),
        ("maxSessionTimeout", cfg.max_session_timeout),
        ("clientPortListenBacklog", -1),
        ("serverId", cfg.my_id if cfg.is_ensemble and cfg.my_id is not None else 0),
    ]
    out = "".join("%s=%s\n" % kv for kv in items)
    if cfg.is_ensemble and cfg.me is not None:
        # QuorumZooKeeperServer.dumpConf: the quorum keys, then the membership
        # (QuorumMaj.toString, which ends without a newline).
        me = cfg.me
        from zktwist.server.ensemble import ensemble_config_text
        out += "".join("%s=%s\n" % kv for kv in (
            ("initLimit", cfg.init_limit), ("syncLimit", cfg.sync_limit),
            ("electionAlg", cfg.election_alg), ("electionPort", me.election_port),
            ("quorumPort", me.quorum_port), ("peerType", 1 if me.is_observer else 0)))
        out += "membership: \n" + ensemble_config_text(cfg)
    return out


def dirs(server: "Server", conn: "ClientConnection") -> str:
    if not server.serving:
        return NOT_SERVING
    return "datadir_size: %d\nlogdir_size: %d\n" % (_data_dir_size(server), _log_dir_size(server))


_HOST_NAME: Optional[str] = None


def _host_name() -> str:
    """InetAddress.getLocalHost().getCanonicalHostName(), looked up once."""
    global _HOST_NAME
    if _HOST_NAME is None:
        try:
            _HOST_NAME = socket.getfqdn(socket.gethostname()) or "<NA>"
        except OSError:
            _HOST_NAME = "<NA>"
    return _HOST_NAME


def _os_arch() -> str:
    """The os.arch property: Java's names for the machine."""
    m = platform.machine()
    return {"x86_64": "amd64", "AMD64": "amd64", "i386": "i386", "i486": "i386", "i586": "i386",
            "i686": "i386", "armv7l": "arm", "ppc64le": "ppc64le"}.get(m, m or "<NA>")


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, OSError):
        return os.environ.get("USER", "<NA>")


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _memory_limit() -> int:
    """The most memory this process may use: RLIMIT_AS, or else the machine's physical memory."""
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY and soft > 0:
        return soft
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 0


def _environment() -> List[Tuple[str, str]]:
    """Environment.list(), the JVM's facts answered by the Python process."""
    mb = 1024 * 1024
    rss = _rss_bytes()
    return [
        ("zookeeper.version", VERSION_LINE),
        ("host.name", _host_name()),
        ("java.version", platform.python_version()),
        ("java.vendor", platform.python_implementation()),
        ("java.home", sys.prefix),
        ("java.class.path", os.pathsep.join(p for p in sys.path if p)),
        ("java.library.path", os.environ.get("LD_LIBRARY_PATH", "")),
        ("java.io.tmpdir", tempfile.gettempdir()),
        ("java.compiler", "<NA>"),
        ("os.name", platform.system() or "<NA>"),
        ("os.arch", _os_arch()),
        ("os.version", platform.release() or "<NA>"),
        ("user.name", _user_name()),
        ("user.home", os.path.expanduser("~")),
        ("user.dir", os.getcwd()),
        # Runtime.freeMemory/totalMemory/maxMemory: Python has no sized heap; total is the
        # resident set (all of it in use, so free is 0, keeping free <= total <= max) and max
        # the most the process may use (RLIMIT_AS, else physical memory).
        ("os.memory.free", "0MB"),
        ("os.memory.max", "%dMB" % (_memory_limit() // mb)),
        ("os.memory.total", "%dMB" % (rss // mb)),
    ]


def envi(server: "Server", conn: "ClientConnection") -> str:
    return "Environment:\n" + "".join("%s=%s\n" % kv for kv in _environment())


# -- mntr --------------------------------------------------------------------------------------

def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _approximate_data_size(server: "Server") -> int:
    """DataTree.cachedApproximateDataSize: len(path) + len(data) over every node.

    Apache ZooKeeper's nodes map holds the root twice ("" and "/") and counts the system nodes
    (/zookeeper, /zookeeper/quota, /zookeeper/config) from the start; zktwist's running counter
    covers the nodes created since, so the built-in ones are added here.
    """
    tree = server.core.tree
    builtin = sum(len(p) + len(tree.nodes[p].data or b"")
                  for p in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config")
                  if p in tree.nodes)
    return tree.approximate_data_size + builtin


def monitor_values(server: "Server") -> List[Tuple[str, object]]:
    """What ``mntr`` prints, as (key without 'zk_', value), in 3.8.0 standalone's order."""
    st = server.stats
    tree = server.core.tree
    sizes = st.response_sizes
    values: List[Tuple[str, object]] = [
        # ZooKeeperServer.dumpMonitorValues
        ("version", VERSION_LINE),
        ("server_state", server_state(server)),
        # the gauges ZooKeeperServer.registerMetrics registers
        ("ephemerals_count", tree.ephemeral_count()),
        ("num_alive_connections", len(server.connections)),
        ("avg_latency", st.avg_latency),
        ("outstanding_requests", server.outstanding),
        ("znode_count", tree.node_count()),
        ("global_sessions", len(server.core.sessions)),
        ("non_mtls_remote_conn_count", st.non_mtls_remote_conn_count),
        ("last_client_response_size", sizes.last),
        ("packets_sent", st.packets_sent),
        ("packets_received", st.packets_received),
        ("max_client_response_size", sizes.max),
        ("connection_drop_probability", 0.0),
        ("watch_count", tree.watch_count()),
        ("auth_failed_count", st.auth_failed),
        ("min_latency", max(st.min_latency, 0)),
        ("max_file_descriptor_count", resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
        ("approximate_data_size", _approximate_data_size(server)),
        ("open_file_descriptor_count", _open_fds()),
        ("local_sessions", 0),
        ("uptime", int((time.time() - server.started_at) * 1000)),
        ("max_latency", st.max_latency),
        ("outstanding_tls_handshake", 0),
        ("min_client_response_size", sizes.min),
        ("non_mtls_local_conn_count", st.non_mtls_local_conn_count),
    ]
    if getattr(server, "peer", None) is not None:
        values[2:2] = [("peer_state", _peer_state(server))]
        values.extend(_quorum_values(server))
    # the ServerMetrics counters and summaries zktwist measures
    values.extend(st.metric_values())
    return values


def _peer_state(server: "Server") -> str:
    """QuorumPeer.getDetailedPeerState: 'following - broadcast' and the like."""
    state = {"leader": "leading", "follower": "following", "observer": "observing"}.get(
        server_state(server), "looking")
    return state + (" - broadcast" if server.serving else "")


def _quorum_values(server: "Server") -> List[Tuple[str, object]]:
    """The gauges QuorumZooKeeperServer/LeaderZooKeeperServer register, and zktwist's own
    per-server request counters (reads answered here, writes forwarded to the leader)."""
    cfg = server.config
    values: List[Tuple[str, object]] = [("quorum_size", len(cfg.voters))]
    role = getattr(server, "leader_role", None)
    if role is not None:
        learners = list(role.learners.values())
        followers = [h for h in learners if not h.observer]
        synced = [h for h in followers if h.synced]
        values += [
            ("learners", len(learners)),
            # 3.4's name for the learners gauge, which monitoring still asks for
            ("followers", len(learners)),
            ("synced_followers", len(synced)),
            ("synced_non_voting_followers", 0),
            ("synced_observers", sum(1 for h in learners if h.observer and h.synced)),
            ("pending_syncs", len(role.sync_waiters)),
            ("leader_uptime", int((time.time() - getattr(server, "serving_since", 0.0)) * 1000)
             if server.serving else 0),
            ("last_proposal_size", server.proposal_sizes.last),  # type: ignore[union-attr]
            ("max_proposal_size", server.proposal_sizes.max),  # type: ignore[union-attr]
            ("min_proposal_size", server.proposal_sizes.min),  # type: ignore[union-attr]
        ]
    values += [
        ("zktwist_local_reads", getattr(server, "local_reads", 0)),
        ("zktwist_forwarded_writes", getattr(server, "forwarded_writes", 0)),
    ]
    return values


def _mntr_value(value: object) -> str:
    """MonitorCommand.print: integers as they are, other numbers as Double.toString."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    return str(value)


def mntr(server: "Server", conn: "ClientConnection") -> str:
    if not server.serving:
        return NOT_SERVING
    return "".join("zk_%s\t%s\n" % (k, _mntr_value(v)) for k, v in monitor_values(server))


# -- dump ----------------------------------------------------------------------------------------

def _expiry_dump(buckets: Dict[int, List[str]], total: int) -> str:
    """ExpiryQueue.dump after its 'Session '/'Connections ' prefix."""
    out = ["Sets (%d)/(%d):\n" % (len(buckets), total)]
    for when in sorted(buckets):
        elems = buckets[when]
        out.append("%d expire at %s:\n" % (len(elems), _java_date(when)))
        out.extend("\t%s\n" % e for e in elems)
    return "".join(out)


def _session_buckets(server: "Server") -> Tuple[Dict[int, List[str]], int]:
    tracker = server.core.sessions
    buckets: Dict[int, List[str]] = {}
    for sid, s in tracker.sessions.items():
        if s.expire_at:
            buckets.setdefault(s.expire_at, []).append("0x" + _hex(sid))
    for elems in buckets.values():
        elems.sort()
    return buckets, len(tracker.sessions)


def _connection_buckets(server: "Server") -> Tuple[Dict[int, List[str]], int]:
    """NIOServerCnxnFactory's cnxnExpiryQueue: each connection expires its timeout after its
    last I/O, rounded up to the next multiple of the sessionless connection timeout."""
    interval = SESSIONLESS_CNXN_TIMEOUT
    now = int(time.time() * 1000)
    sessions = server.core.sessions.sessions
    buckets: Dict[int, List[str]] = {}
    conns = _connections(server)
    for c in conns:
        s = sessions.get(c.session_id) if c.session_id else None
        if s is not None and s.expire_at:
            when = s.expire_at  # last touch + timeout, rounded to a tick
        else:
            when = now + (c.timeout if c.session_id else interval)
        when = (when // interval + 1) * interval
        buckets.setdefault(when, []).append(
            "ip: %s sessionId: 0x%s" % (_remote(c), _hex(c.session_id)))
    return buckets, len(conns)


def dump(server: "Server", conn: "ClientConnection") -> str:
    if not server.serving:
        return NOT_SERVING
    tree = server.core.tree
    out = ["SessionTracker dump:\n", "Session ", _expiry_dump(*_session_buckets(server)),
           "ephemeral nodes dump:\n",
           "Sessions with Ephemerals (%d):\n" % len(tree.ephemerals)]
    for sid, paths in tree.ephemerals.items():
        out.append("0x%s:\n" % _hex(sid))
        out.extend("\t%s\n" % p for p in sorted(paths))
    out.append("Connections dump:\n")
    out.append("Connections " + _expiry_dump(*_connection_buckets(server)))
    return "".join(out)


# -- watches ---------------------------------------------------------------------------------------

def _session_of(watcher: object) -> int:
    return int(getattr(watcher, "session_id", 0) or 0)


def wchs(server: "Server", conn: "ClientConnection") -> str:
    """DataTree.dumpWatchesSummary: the data watch table's WatchManager.toString()."""
    if not server.serving:
        return NOT_SERVING
    wm = server.core.tree.data_watches
    watchers = sum(1 for ps in wm.by_watcher.values() if ps)
    total = sum(len(ps) for ps in wm.by_watcher.values())
    paths = sum(1 for ws in wm.table.values() if ws)
    return "%d connections watching %d paths\nTotal watches:%d\n" % (watchers, paths, total)


def wchc(server: "Server", conn: "ClientConnection") -> str:
    """DataTree.dumpWatches(byPath=false): data watches by connection."""
    if not server.serving:
        return NOT_SERVING
    out = []
    for w, ps in server.core.tree.data_watches.by_watcher.items():
        if not ps:
            continue
        out.append("0x%s\n" % _hex(_session_of(w)))
        out.extend("\t%s\n" % p for p in sorted(ps))
    return "".join(out) + "\n"


def wchp(server: "Server", conn: "ClientConnection") -> str:
    """DataTree.dumpWatches(byPath=true): data watches by path."""
    if not server.serving:
        return NOT_SERVING
    out = []
    table = server.core.tree.data_watches.table
    for p in sorted(table):
        ws = table[p]
        if not ws:
            continue
        out.append("%s\n" % p)
        out.extend("\t0x%s\n" % _hex(s) for s in sorted(_session_of(w) for w in ws))
    return "".join(out) + "\n"


# -- the rest --------------------------------------------------------------------------------------

def isro(server: "Server", conn: "ClientConnection") -> str:
    return "rw" if server.serving else "null"


def gtmk(server: "Server", conn: "ClientConnection") -> str:
    return str(server.stats.trace_mask)


def stmk(server: "Server", conn: "ClientConnection") -> str:
    """Set the trace mask from the 8 bytes that follow the word (read with the word)."""
    raw = bytes(getattr(conn, "_buf", b"")[4:12])
    if len(raw) < 8:
        return ""  # 3.8.0 fails reading the long and closes without a reply
    server.stats.trace_mask = struct.unpack(">q", raw)[0]
    return str(server.stats.trace_mask)


def hash_(server: "Server", conn: "ClientConnection") -> str:
    """DigestCommand: zktwist keeps no tree digests, so the digest log is empty."""
    if not server.serving:
        return ZK_NOT_SERVING
    return ""


HANDLERS: Dict[str, Callable[["Server", "ClientConnection"], str]] = {
    "ruok": ruok, "srvr": srvr, "stat": stat, "conf": conf, "cons": cons, "crst": crst,
    "dump": dump, "envi": envi, "mntr": mntr, "srst": srst, "wchs": wchs, "wchc": wchc,
    "wchp": wchp, "isro": isro, "dirs": dirs, "gtmk": gtmk, "stmk": stmk, "hash": hash_,
}


def run(server: "Server", conn: "ClientConnection", word: str) -> str:
    """The reply to ``word`` on ``conn``, with NIOServerCnxn's packet accounting."""
    stats = server.stats
    # checkFourLetterWord: packetReceived(4) for every known word, whitelisted or not.
    conn.packets_received += 1
    stats.packets_received += 1
    stats.incr("bytes_received_count", 4)
    if not is_enabled(server, word):
        text = "%s is not executed because it is not in the whitelist.\n" % word
    else:
        text = HANDLERS[word](server, conn)
    sent = -(-len(text) // CHUNK)
    conn.packets_sent += sent
    stats.packets_sent += sent
    return text
