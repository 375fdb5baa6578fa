"""Four-letter words against a real zktwist process, checked against Apache ZooKeeper 3.8.0.

One zktwist server (and, when Debian's zookeeper package is installed, one
Apache ZooKeeper 3.8.0 server) per module, both with ``4lw.commands.whitelist=*``.
The same small kazoo workload runs on each (a few nodes, an ephemeral, data
and child watches), then every word is sent once, in a fixed order, and the
replies are kept.  Tests check zktwist's replies for Apache ZooKeeper's
format, and compare them with Apache ZooKeeper's structurally: the same lines
and keys, with numbers, session ids, ports, paths and dates masked.
A second pair of servers runs with the default whitelist (no whitelist line).
"""

from __future__ import annotations

import re
import socket
import struct
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest
from kazoo.client import KazooClient

from tests.conftest import require_apache_zookeeper
from tests.integration.conftest import WAIT, wait_until_serving
from tests.support.processes import (
    ApacheZooKeeperProcess,
    ServerProcess,
    ZKTwistProcess,
    apache_zookeeper_available,
)

#: The order the words are sent in after the workload (state-changing words last).
WORDS = ("ruok", "srvr", "stat", "conf", "cons", "dump", "envi", "mntr", "wchs", "wchc", "wchp",
         "isro", "dirs", "gtmk", "hash")
NOT_WHITELISTED = "{} is not executed because it is not in the whitelist.\n"

ENVI_KEYS = ["zookeeper.version", "host.name", "java.version", "java.vendor", "java.home",
             "java.class.path", "java.library.path", "java.io.tmpdir", "java.compiler", "os.name",
             "os.arch", "os.version", "user.name", "user.home", "user.dir", "os.memory.free",
             "os.memory.max", "os.memory.total"]
CONF_KEYS = ["clientPort", "secureClientPort", "dataDir", "dataDirSize", "dataLogDir", "dataLogSize",
             "tickTime", "maxClientCnxns", "minSessionTimeout", "maxSessionTimeout",
             "clientPortListenBacklog", "serverId"]
#: mntr: dumpMonitorValues, then the gauges of ZooKeeperServer.registerMetrics (3.8.0's order).
MNTR_GAUGES = ["version", "server_state", "ephemerals_count", "num_alive_connections", "avg_latency",
               "outstanding_requests", "znode_count", "global_sessions", "non_mtls_remote_conn_count",
               "last_client_response_size", "packets_sent", "packets_received",
               "max_client_response_size", "connection_drop_probability", "watch_count",
               "auth_failed_count", "min_latency", "max_file_descriptor_count",
               "approximate_data_size", "open_file_descriptor_count", "local_sessions", "uptime",
               "max_latency", "outstanding_tls_handshake", "min_client_response_size",
               "non_mtls_local_conn_count"]
#: ServerMetrics counters zktwist always prints (netdata's collector charts them).
MNTR_SCRAPED_COUNTERS = ["throttled_ops", "stale_requests_dropped", "connection_rejected",
                         "stale_requests", "connection_drop_count"]

VERSION_RE = r"3\.8\.0-[^,\n]+, built on \d{4}-\d\d-\d\d \d\d:\d\d UTC"
DATE_RE = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) " \
          r"\d\d \d\d:\d\d:\d\d [A-Za-z+\-0-9]+ \d{4}"
NUM = r"-?\d+"
DOUBLE = r"-?\d+\.\d+(E-?\d+)?"
ADDR = r"/127\.0\.0\.1:\d+"
BRIEF_RE = ADDR + r"\[[01]\]\(queued=\d+,recved=\d+,sent=\d+\)"
FULL_RE = (ADDR + r"\[[01]\]\(queued=\d+,recved=\d+,sent=\d+,sid=0x[0-9a-f]+,lop=[A-Z0-9]+,est=\d+,"
           r"to=\d+(,lcxid=0x[0-9a-f]+)?,lzxid=0x[0-9a-f]+,lresp=\d+,llat=\d+,minlat=\d+,avglat=\d+,"
           r"maxlat=\d+\)")
SRVR_RE = (r"Zookeeper version: " + VERSION_RE + r"\n"
           r"Latency min/avg/max: \d+/" + DOUBLE + r"/\d+\n"
           r"Received: \d+\nSent: \d+\nConnections: \d+\nOutstanding: \d+\nZxid: 0x[0-9a-f]+\n"
           r"Mode: standalone\nNode count: \d+\n")


def send_word(port: int, payload: bytes) -> str:
    """Send a word (and what follows it) in one segment; read the reply until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(payload)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


class _DefaultWhitelist:
    """Drop the base ``4lw.commands.whitelist=*`` line: the server's default whitelist applies."""

    def config_lines(self) -> List[str]:  # type: ignore[override]
        return [line for line in super().config_lines()  # type: ignore[misc]
                if not line.startswith("4lw.commands.whitelist=")]


class DefaultWhitelistZKTwist(_DefaultWhitelist, ZKTwistProcess):
    pass


class DefaultWhitelistApache(_DefaultWhitelist, ApacheZooKeeperProcess):
    pass


class Capture:
    """One server after the workload: the replies to every word, and the two sessions."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.port = server.port
        self.out: Dict[str, str] = {}
        self.sessions: List[int] = []
        self.server_version: Optional[tuple] = None
        self.tree_size = 0

    def run(self) -> None:
        hosts = f"127.0.0.1:{self.port}"
        a = KazooClient(hosts=hosts, timeout=10.0)
        b = KazooClient(hosts=hosts, timeout=10.0)
        try:
            a.start(timeout=WAIT)
            b.start(timeout=WAIT)
            a.create("/a", b"hello")
            a.create("/a/b", b"x")
            a.create("/eph", b"", ephemeral=True)
            a.create("/a/c", b"yy")
            a.get("/a", watch=lambda e: None)
            a.get_children("/a", watch=lambda e: None)
            b.exists("/a/b", watch=lambda e: None)
            b.exists("/nope", watch=lambda e: None)
            self.sessions = [a.client_id[0], b.client_id[0]]
            self.server_version = a.server_version()
            for word in WORDS:
                self.out[word] = send_word(self.port, word.encode())
            self.out["stmk"] = send_word(self.port, b"stmk" + struct.pack(">q", 306))
            self.out["crst"] = send_word(self.port, b"crst")
            self.out["cons-after-crst"] = send_word(self.port, b"cons")
            self.out["srst"] = send_word(self.port, b"srst")
            self.out["srvr-after-srst"] = send_word(self.port, b"srvr")
            self.tree_size = self._tree_size(a, "/")  # reads: after the words, not to skew them
        finally:
            for c in (a, b):
                try:
                    c.stop()
                    c.close()
                except Exception:
                    pass

    @classmethod
    def _tree_size(cls, zk: KazooClient, path: str) -> int:
        """len(path) + len(data) over the tree, as DataTree.approximateDataSize counts it."""
        data, _ = zk.get(path)
        total = len(path) + len(data or b"")
        for child in zk.get_children(path):
            total += cls._tree_size(zk, (path.rstrip("/") + "/" + child))
        return total

    def masked(self, word: str) -> str:
        """The reply with session ids replaced by their role (S0, S1) and other ids by 0xX."""
        text = self.out[word]
        for i, sid in enumerate(self.sessions):
            text = text.replace("0x%x" % (sid & 0xFFFFFFFFFFFFFFFF), "S%d" % i)
        return text


def _start(server: ServerProcess) -> ServerProcess:
    server.start()
    try:
        wait_until_serving(server.port)
    except BaseException:
        server.cleanup()
        raise
    return server


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Iterator[Dict[str, Capture]]:
    """{"zktwist": Capture, "apache": Capture (only when Apache ZooKeeper is installed)}."""
    servers: Dict[str, ServerProcess] = {}
    try:
        servers["zktwist"] = _start(ZKTwistProcess(workdir=tmp_path_factory.mktemp("zktwist-4lw")))
        if apache_zookeeper_available():
            servers["apache"] = _start(
                ApacheZooKeeperProcess(workdir=tmp_path_factory.mktemp("apache-4lw")))
        result = {}
        for name, server in servers.items():
            cap = Capture(server)
            cap.run()
            result[name] = cap
        yield result
    finally:
        for server in servers.values():
            server.cleanup()


@pytest.fixture(scope="module")
def zk(captures) -> Capture:
    return captures["zktwist"]


@pytest.fixture(scope="module")
def ref(captures) -> Capture:
    require_apache_zookeeper()
    return captures["apache"]


# -- masking for structural comparison ------------------------------------------------------------

def shape(text: str) -> List[str]:
    """The reply's lines with values masked, sorted (Java prints hash-ordered sets)."""
    text = re.sub(VERSION_RE, "VERSION", text)
    text = re.sub(DATE_RE, "DATE", text)
    text = re.sub(ADDR, "ADDR", text)
    text = re.sub(r"0x[0-9a-f]+", "0xX", text)
    text = re.sub(r"(?<![A-Za-z_])" + DOUBLE, "D", text)
    text = re.sub(r"(?<![A-Za-z_0-9])-?\d+", "N", text)
    return sorted(text.split("\n"))


def keys(text: str, sep: str) -> List[str]:
    return [line.split(sep, 1)[0] for line in text.splitlines()]


def values(text: str, sep: str) -> Dict[str, str]:
    return dict(line.split(sep, 1) for line in text.splitlines())


# -- format of every word on zktwist ----------------------------------------------------------------

def test_kazoo_server_version(zk):
    assert zk.server_version == (3, 8, 0)


def test_ruok(zk):
    assert zk.out["ruok"] == "imok"


def test_srvr(zk):
    assert re.fullmatch(SRVR_RE, zk.out["srvr"]), zk.out["srvr"]
    v = dict(line.split(": ", 1) for line in zk.out["srvr"].splitlines())
    assert v["Mode"] == "standalone"
    assert v["Connections"] == "3"  # two kazoo sessions and this word's connection
    assert v["Node count"] == "9"   # 4 system entries ("" and "/" both count) + 4 nodes + /eph
    assert v["Zxid"] == "0x8"       # 3 createSession (incl. the probe's), closeSession, 4 creates


def test_stat(zk):
    text = zk.out["stat"]
    head, clients_and_stats = text.split("Clients:\n", 1)
    assert re.fullmatch(r"Zookeeper version: " + VERSION_RE + r"\n", head)
    clients, stats = clients_and_stats.split("\n\n", 1)
    lines = clients.split("\n")
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(" " + BRIEF_RE, line), line
    # the word's own connection: not reading any more, its word counted, nothing sent yet
    assert sum(1 for line in lines if line.endswith("[0](queued=0,recved=1,sent=0)")) == 1
    assert re.fullmatch(SRVR_RE, "Zookeeper version: 3.8.0-x, built on 1970-01-01 00:00 UTC\n" + stats)


def test_cons(zk):
    text = zk.masked("cons")
    assert text.endswith(")\n\n")
    lines = text[:-2].split("\n")
    assert len(lines) == 3
    full = [line for line in zk.out["cons"].splitlines() if "sid=" in line]
    assert len(full) == 2
    for line in full:
        assert re.fullmatch(" " + FULL_RE, line), line
    assert any("sid=S0,lop=GETC," in line and ",lcxid=0x6," in line and ",lzxid=0x8," in line
               for line in lines), text
    assert any("sid=S1,lop=EXIS," in line and ",lcxid=0x2," in line for line in lines), text
    assert sum(1 for line in lines if line.endswith("[0](queued=0,recved=1,sent=0)")) == 1


def test_crst_resets_connection_stats(zk):
    assert zk.out["crst"] == "Connection stats reset.\n"
    lines = zk.out["cons-after-crst"].splitlines()
    sessions = [line for line in lines if "sid=" in line]
    assert len(sessions) == 2
    for line in sessions:
        assert "(queued=0,recved=0,sent=0," in line
        assert ",lop=NA," in line and ",lcxid=" not in line
        assert ",lzxid=0xffffffffffffffff,lresp=0,llat=0,minlat=0,avglat=0,maxlat=0)" in line


def test_srst_resets_server_stats(zk):
    assert zk.out["srst"] == "Server stats reset.\n"
    v = dict(line.split(": ", 1) for line in zk.out["srvr-after-srst"].splitlines())
    # srst's own reply and srvr's own word were counted after the reset
    assert (v["Latency min/avg/max"], v["Received"], v["Sent"]) == ("0/0.0/0", "1", "1")


def test_conf(zk):
    v = values(zk.out["conf"], "=")
    assert keys(zk.out["conf"], "=") == CONF_KEYS
    assert zk.out["conf"].endswith("\n")
    data = str(Path(zk.server.data_dir).resolve() / "version-2")
    assert v["clientPort"] == str(zk.port) and v["secureClientPort"] == "-1"
    assert v["dataDir"] == v["dataLogDir"] == data
    assert int(v["dataDirSize"]) > 0 and v["dataDirSize"] == v["dataLogSize"]
    assert (v["tickTime"], v["maxClientCnxns"], v["minSessionTimeout"], v["maxSessionTimeout"]) == \
        ("2000", "60", "4000", "40000")
    assert (v["clientPortListenBacklog"], v["serverId"]) == ("-1", "0")


def test_dump(zk):
    text = zk.masked("dump")
    m = re.fullmatch(
        r"SessionTracker dump:\n"
        r"Session Sets \((\d+)\)/\(2\):\n"
        r"((?:\d+ expire at " + DATE_RE + r":\n(?:\tS[01]\n)+)+)"
        r"ephemeral nodes dump:\n"
        r"Sessions with Ephemerals \(1\):\n"
        r"S0:\n\t/eph\n"
        r"Connections dump:\n"
        r"Connections Sets \((\d+)\)/\(3\):\n"
        r"((?:\d+ expire at " + DATE_RE + r":\n(?:\tip: " + ADDR + r" sessionId: (?:S[01]|0x0)\n)+)+)",
        text)
    assert m, text
    assert sorted(re.findall(r"\tS[01]\n", m.group(2))) == ["\tS0\n", "\tS1\n"]
    assert sorted(re.findall(r"sessionId: (\S+)", m.group(6))) == ["0x0", "S0", "S1"]


def test_envi(zk):
    text = zk.out["envi"]
    assert text.startswith("Environment:\n") and text.endswith("\n")
    body = text[len("Environment:\n"):]
    assert keys(body, "=") == ENVI_KEYS
    v = values(body, "=")
    assert re.fullmatch(VERSION_RE, v["zookeeper.version"])
    for key in ("os.memory.free", "os.memory.max", "os.memory.total"):
        assert re.fullmatch(r"\d+MB", v[key]), (key, v[key])


def test_mntr(zk):
    text = zk.out["mntr"]
    assert text.endswith("\n")
    for line in text.splitlines():
        assert re.fullmatch(r"zk_[a-z0-9_]+\t[^\t]*", line), line
    got = [k[3:] for k in keys(text, "\t")]
    assert got[:len(MNTR_GAUGES)] == MNTR_GAUGES
    assert set(MNTR_SCRAPED_COUNTERS) <= set(got)
    assert len(got) == len(set(got))
    v = {k[3:]: val for k, val in values(text, "\t").items()}
    assert re.fullmatch(VERSION_RE, v["version"]) and v["server_state"] == "standalone"
    for key, val in v.items():
        if key not in ("version", "server_state"):
            assert re.fullmatch(NUM + "|" + DOUBLE, val), (key, val)
    assert (v["znode_count"], v["ephemerals_count"], v["watch_count"], v["global_sessions"]) == \
        ("9", "1", "4", "2")
    # the root is in DataTree's map twice, as "" (length 0) and "/": the walk's sum is the value
    assert v["approximate_data_size"] == str(zk.tree_size)
    assert v["num_alive_connections"] == "3" and v["local_sessions"] == "0"
    assert re.fullmatch(DOUBLE, v["avg_latency"]) and re.fullmatch(DOUBLE, v["connection_drop_probability"])


def test_watches(zk):
    # data watches only (DataTree.dumpWatches / dumpWatchesSummary): S0 on /a, S1 on /a/b and /nope
    assert zk.out["wchs"] == "2 connections watching 3 paths\nTotal watches:3\n"
    wchc = zk.masked("wchc")
    assert wchc.endswith("\n\n")
    blocks = re.findall(r"(S[01])\n((?:\t/[^\n]*\n)+)", wchc)
    assert {s: sorted(p.split()) for s, p in blocks} == {"S0": ["/a"], "S1": ["/a/b", "/nope"]}
    assert zk.masked("wchp") == "/a\n\tS0\n/a/b\n\tS1\n/nope\n\tS1\n\n"


def test_small_words(zk):
    assert zk.out["isro"] == "rw"
    assert re.fullmatch(r"datadir_size: \d+\nlogdir_size: \d+\n", zk.out["dirs"])
    assert zk.out["gtmk"] == "306"
    assert zk.out["stmk"] == "306"
    assert zk.out["hash"] == ""


# -- the same structure as Apache ZooKeeper 3.8.0 ----------------------------------------------------

@pytest.mark.parametrize("word", ["ruok", "srvr", "stat", "cons", "wchs", "wchc", "wchp", "isro", "dirs",
                                  "gtmk", "stmk", "hash", "crst", "cons-after-crst", "srst",
                                  "srvr-after-srst"])
def test_same_lines_as_apache(zk, ref, word):
    assert shape(zk.masked(word)) == shape(ref.masked(word)), (zk.out[word], ref.out[word])


def test_dump_same_lines_as_apache(zk, ref):
    def lines(cap):  # expiry buckets depend on timing; drop their header lines
        return [line for line in shape(cap.masked("dump")) if " expire at " not in line]
    assert lines(zk) == lines(ref), (zk.out["dump"], ref.out["dump"])


@pytest.mark.parametrize("word,sep", [("conf", "="), ("envi", "=")])
def test_same_keys_as_apache(zk, ref, word, sep):
    assert keys(zk.out[word], sep) == keys(ref.out[word], sep)


def test_mntr_keys_subset_of_apache(zk, ref):
    ours = keys(zk.out["mntr"], "\t")
    theirs = keys(ref.out["mntr"], "\t")
    assert set(ours) <= set(theirs), sorted(set(ours) - set(theirs))
    # every key before Apache's first ServerMetrics counter (the gauges) is there, in order
    assert theirs[:len(MNTR_GAUGES)] == ["zk_" + k for k in MNTR_GAUGES]
    assert ours[:len(MNTR_GAUGES)] == theirs[:len(MNTR_GAUGES)]
    # and the rest keeps Apache's relative order
    rank = {k: i for i, k in enumerate(theirs)}
    assert [rank[k] for k in ours] == sorted(rank[k] for k in ours)


def test_mntr_tree_values_as_apache(zk, ref):
    ours = values(zk.out["mntr"], "\t")
    theirs = values(ref.out["mntr"], "\t")
    for key in ("zk_server_state", "zk_ephemerals_count", "zk_znode_count", "zk_global_sessions",
                "zk_watch_count", "zk_approximate_data_size", "zk_num_alive_connections",
                "zk_outstanding_requests", "zk_local_sessions", "zk_connection_drop_probability",
                "zk_auth_failed_count"):
        assert ours[key] == theirs[key], key


def test_srvr_values_as_apache(zk, ref):
    def v(cap, word):
        return dict(line.split(": ", 1) for line in cap.out[word].splitlines())
    for key in ("Connections", "Outstanding", "Zxid", "Mode", "Node count"):
        assert v(zk, "srvr")[key] == v(ref, "srvr")[key], key
    assert v(zk, "srvr-after-srst") == {**v(ref, "srvr-after-srst"),
                                        "Zookeeper version": v(zk, "srvr-after-srst")["Zookeeper version"]}


def test_watches_as_apache(zk, ref):
    assert zk.out["wchs"] == ref.out["wchs"]
    assert sorted(zk.masked("wchc").split("\n")) == sorted(ref.masked("wchc").split("\n"))
    assert sorted(zk.masked("wchp").split("\n")) == sorted(ref.masked("wchp").split("\n"))


# -- the whitelist ------------------------------------------------------------------------------------

ALL_WORDS = ("ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "srst", "wchs",
             "wchc", "wchp", "isro", "dirs", "gtmk", "hash")


@pytest.fixture(scope="module")
def default_whitelist_replies(tmp_path_factory) -> Iterator[Dict[str, Dict[str, str]]]:
    """Every word's reply from servers started without a whitelist line."""
    servers: Dict[str, ServerProcess] = {}
    try:
        servers["zktwist"] = _start(DefaultWhitelistZKTwist(workdir=tmp_path_factory.mktemp("zktwist-wl")))
        if apache_zookeeper_available():
            servers["apache"] = _start(DefaultWhitelistApache(workdir=tmp_path_factory.mktemp("apache-wl")))
        yield {name: {w: send_word(s.port, w.encode()) for w in ALL_WORDS} for name, s in servers.items()}
    finally:
        for s in servers.values():
            s.cleanup()


def test_default_whitelist_is_srvr_only(default_whitelist_replies):
    replies = default_whitelist_replies["zktwist"]
    assert re.fullmatch(SRVR_RE, replies["srvr"])
    for word in ALL_WORDS:
        if word != "srvr":
            assert replies[word] == NOT_WHITELISTED.format(word), word


def test_default_whitelist_as_apache(default_whitelist_replies):
    require_apache_zookeeper()
    ours, theirs = default_whitelist_replies["zktwist"], default_whitelist_replies["apache"]
    for word in ALL_WORDS:
        if word != "srvr":
            assert ours[word] == theirs[word], word
    assert shape(ours["srvr"]) == shape(theirs["srvr"])
