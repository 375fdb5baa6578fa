"""Four-letter words on the client port (FourLetterCommands), with Apache ZooKeeper's output formats."""

from __future__ import annotations

import os
import platform
import resource
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, Callable, Dict, List

from zktwist import ZOOKEEPER_COMPAT_VERSION, __version__

if TYPE_CHECKING:
    from zktwist.server.connection import ClientConnection
    from zktwist.server.standalone import StandaloneServer

VERSION_LINE = "%s-zktwist-%s, built on 1970-01-01 00:00 UTC" % (ZOOKEEPER_COMPAT_VERSION, __version__)
NOT_SERVING = "This ZooKeeper instance is not currently serving requests\n"

COMMANDS = ("ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "srst",
            "wchs", "wchc", "wchp", "isro", "dirs", "gtmk", "stmk")
_CODES = {struct.unpack(">i", w.encode())[0]: w for w in COMMANDS}
TELNET_CLOSE = 0xFFF4FFFD - (1 << 32)


def is_command(word: bytes) -> bool:
    try:
        return word.decode("ascii") in COMMANDS
    except UnicodeDecodeError:
        return False


def _hex(v: int) -> str:
    return "%x" % (v & 0xFFFFFFFFFFFFFFFF)


def _latency(server: "StandaloneServer") -> str:
    st = server.stats
    return "Latency min/avg/max: %d/%s/%d\n" % (max(st.min_latency, 0), _fmt_avg(st.avg_latency),
                                                st.max_latency)


def _fmt_avg(v: float) -> str:
    s = "%.4f" % v
    s = s.rstrip("0")
    if s.endswith("."):
        s += "0"
    return s


def _server_lines(server: "StandaloneServer") -> str:
    st = server.stats
    return (
        "Received: %d\n" % st.packets_received
        + "Sent: %d\n" % st.packets_sent
        + "Connections: %d\n" % len(server.connections)
        + "Outstanding: %d\n" % server.outstanding
        + "Zxid: 0x%x\n" % server.core.last_zxid
        + "Mode: standalone\n"
        + "Node count: %d\n" % server.core.tree.node_count()
    )


def _conn_brief(conn: "ClientConnection") -> str:
    return " /%s:%d[%d](queued=%d,recved=%d,sent=%d)\n" % (
        conn.remote_ip, conn.transport.getPeer().port, 1 if conn.session_id else 0,  # type: ignore[union-attr]
        len(conn.queue), conn.packets_received, conn.packets_sent)


def _conn_full(conn: "ClientConnection") -> str:
    if not conn.session_id:
        return _conn_brief(conn)[:-2] + ")\n"
    avg = conn.total_latency // conn.latency_count if conn.latency_count else 0
    return (" /%s:%d[1](queued=%d,recved=%d,sent=%d,sid=0x%s,lop=%s,est=%d,to=%d,lcxid=0x%x,"
            "lzxid=0x%s,lresp=%d,llat=%d,minlat=%d,avglat=%d,maxlat=%d)\n") % (
        conn.remote_ip, conn.transport.getPeer().port, len(conn.queue),  # type: ignore[union-attr]
        conn.packets_received, conn.packets_sent, _hex(conn.session_id), conn.last_op,
        int(conn.established_at * 1000), conn.timeout, conn.last_cxid & 0xFFFFFFFF,
        _hex(conn.last_zxid), int(conn.last_response * 1000), conn.last_latency,
        max(conn.min_latency, 0), avg, conn.max_latency)


def ruok(server: "StandaloneServer", conn: "ClientConnection") -> str:
    return "imok"


def srvr(server: "StandaloneServer", conn: "ClientConnection") -> str:
    return "Zookeeper version: %s\n" % VERSION_LINE + _latency(server) + _server_lines(server)


def stat(server: "StandaloneServer", conn: "ClientConnection") -> str:
    out = "Zookeeper version: %s\nClients:\n" % VERSION_LINE
    for c in list(server.connections):
        out += _conn_brief(c)
    return out + "\n" + _latency(server) + _server_lines(server)


def cons(server: "StandaloneServer", conn: "ClientConnection") -> str:
    return "".join(_conn_full(c) for c in list(server.connections)) + "\n"


def crst(server: "StandaloneServer", conn: "ClientConnection") -> str:
    for c in server.connections:
        c.packets_received = c.packets_sent = 0
        c.min_latency, c.max_latency, c.total_latency, c.latency_count = -1, 0, 0, 0
    return "Connection stats reset.\n"


def srst(server: "StandaloneServer", conn: "ClientConnection") -> str:
    server.stats.reset()
    return "Server stats reset.\n"


def conf(server: "StandaloneServer", conn: "ClientConnection") -> str:
    eff = server.config.effective()
    eff["dataDirSize"] = str(server.backend.sizes()["datadir_size"])
    eff["dataLogSize"] = str(server.backend.sizes()["logdir_size"])
    return "".join("%s=%s\n" % kv for kv in eff.items())


def envi(server: "StandaloneServer", conn: "ClientConnection") -> str:
    items = [
        ("zookeeper.version", VERSION_LINE),
        ("host.name", socket.gethostname()),
        ("java.version", "zktwist-python-%s" % platform.python_version()),
        ("java.vendor", "zktwist"),
        ("java.home", sys.prefix),
        ("java.class.path", ""),
        ("java.library.path", ""),
        ("java.io.tmpdir", "/tmp"),
        ("java.compiler", "<NA>"),
        ("os.name", platform.system()),
        ("os.arch", platform.machine()),
        ("os.version", platform.release()),
        ("user.name", os.environ.get("USER", "")),
        ("user.home", os.path.expanduser("~")),
        ("user.dir", os.getcwd()),
        ("os.memory.free", "0MB"),
        ("os.memory.max", "0MB"),
        ("os.memory.total", "%dMB" % (_rss_bytes() // (1024 * 1024))),
        ("python.version", platform.python_version()),
        ("zktwist.version", __version__),
    ]
    return "Environment:\n" + "".join("%s=%s\n" % kv for kv in items)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def mntr(server: "StandaloneServer", conn: "ClientConnection") -> str:
    st = server.stats
    tree = server.core.tree
    values = [
        ("zk_version", VERSION_LINE),
        ("zk_server_state", "standalone"),
        ("zk_avg_latency", _fmt_avg(st.avg_latency)),
        ("zk_max_latency", st.max_latency),
        ("zk_min_latency", max(st.min_latency, 0)),
        ("zk_packets_received", st.packets_received),
        ("zk_packets_sent", st.packets_sent),
        ("zk_num_alive_connections", len(server.connections)),
        ("zk_outstanding_requests", server.outstanding),
        ("zk_znode_count", tree.node_count()),
        ("zk_watch_count", tree.watch_count()),
        ("zk_ephemerals_count", tree.ephemeral_count()),
        ("zk_approximate_data_size", tree.approximate_data_size),
        ("zk_open_file_descriptor_count", _open_fds()),
        ("zk_max_file_descriptor_count", resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
        ("zk_global_sessions", len(server.core.sessions)),
        ("zk_local_sessions", 0),
        ("zk_uptime", int((time.time() - server.started_at) * 1000)),
        ("zk_auth_failed_count", st.auth_failed),
        ("zk_connection_drop_probability", "0.0"),
        ("zk_outstanding_tls_handshake", 0),
        ("zk_non_mtls_local_conn_count", 0),
        ("zk_non_mtls_remote_conn_count", 0),
        ("zk_quorum_size", 1),
        ("zk_fsync_batches", server.committer.batches),
        ("zk_fsync_txns", server.committer.txns),
    ]
    return "".join("%s\t%s\n" % (k, v) for k, v in values)


def dump(server: "StandaloneServer", conn: "ClientConnection") -> str:
    tree = server.core.tree
    out = "SessionTracker dump:\nSession Sets (%d)/(%d):\n" % (
        len(server.core.sessions), len(server.core.sessions))
    for s in server.core.sessions.sessions.values():
        out += "0x%s\n" % _hex(s.id)
    out += "ephemeral nodes dump:\nSessions with Ephemerals (%d):\n" % len(tree.ephemerals)
    for sid, paths in tree.ephemerals.items():
        out += "0x%s:\n" % _hex(sid)
        for p in sorted(paths):
            out += "\t%s\n" % p
    out += "Connections dump:\nConnections Sets (%d)/(%d):\n" % (
        len(server.connections), len(server.connections))
    for c in server.connections:
        if c.session_id:
            out += "0x%s\n" % _hex(c.session_id)
    return out


def _watch_tables(server: "StandaloneServer") -> List:
    tree = server.core.tree
    return [tree.data_watches, tree.child_watches]


def wchs(server: "StandaloneServer", conn: "ClientConnection") -> str:
    watchers = set()
    paths = set()
    total = 0
    for wm in _watch_tables(server):
        for w, ps in wm.by_watcher.items():
            if ps:
                watchers.add(w)
            total += len(ps)
        paths.update(wm.table)
    return "%d connections watching %d paths\nTotal watches:%d\n" % (len(watchers), len(paths), total)


def wchc(server: "StandaloneServer", conn: "ClientConnection") -> str:
    by: Dict[int, set] = {}
    for wm in _watch_tables(server):
        for w, ps in wm.by_watcher.items():
            by.setdefault(getattr(w, "session_id", 0), set()).update(ps)
    out = ""
    for sid, ps in by.items():
        out += "0x%s\n" % _hex(sid) + "".join("\t%s\n" % p for p in sorted(ps))
    return out + "\n"


def wchp(server: "StandaloneServer", conn: "ClientConnection") -> str:
    by: Dict[str, set] = {}
    for wm in _watch_tables(server):
        for p, ws in wm.table.items():
            by.setdefault(p, set()).update(getattr(w, "session_id", 0) for w in ws)
    out = ""
    for p in sorted(by):
        out += "%s\n" % p + "".join("\t0x%s\n" % _hex(s) for s in by[p])
    return out + "\n"


def isro(server: "StandaloneServer", conn: "ClientConnection") -> str:
    return "rw"


def dirs(server: "StandaloneServer", conn: "ClientConnection") -> str:
    sizes = server.backend.sizes()
    return "datadir_size: %d\nlogdir_size: %d\n" % (sizes["datadir_size"], sizes["logdir_size"])


def gtmk(server: "StandaloneServer", conn: "ClientConnection") -> str:
    return "0\n"


HANDLERS: Dict[str, Callable[["StandaloneServer", "ClientConnection"], str]] = {
    "ruok": ruok, "srvr": srvr, "stat": stat, "conf": conf, "cons": cons, "crst": crst,
    "dump": dump, "envi": envi, "mntr": mntr, "srst": srst, "wchs": wchs, "wchc": wchc,
    "wchp": wchp, "isro": isro, "dirs": dirs, "gtmk": gtmk, "stmk": gtmk,
}
ALWAYS_SERVING = frozenset(("ruok", "isro", "envi", "conf", "srst", "crst", "dirs", "gtmk", "stmk"))


def run(server: "StandaloneServer", conn: "ClientConnection", word: str) -> str:
    if word not in server.config.four_letter_words:
        return "%s is not executed because it is not in the whitelist.\n" % word
    if not server.serving and word not in ALWAYS_SERVING:
        return NOT_SERVING
    return HANDLERS[word](server, conn)
