"""Ensemble configs as Apache ZooKeeper 3.8's QuorumPeerConfig reads them (server.N, myid, ...).

Each rule is checked by what the parser returns or the one ConfigError it
raises (the message names the key), and standalone configs stay as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from zktwist.config import (
    OBSERVER,
    PARTICIPANT,
    ConfigError,
    QuorumServer,
    ServerConfig,
    from_text,
    load,
    parse_server,
)

ROOT = Path(__file__).resolve().parents[2]

THREE = (
    "server.1=127.0.0.1:2888:3888;2181\n"
    "server.2=127.0.0.1:2889:3889;2182\n"
    "server.3=127.0.0.1:2890:3890;2183\n"
)


def cfg_text(data_dir: Path, servers: str = THREE, extra: str = "sslQuorum=false\n",
             limits: str = "initLimit=10\nsyncLimit=5\n") -> str:
    return "tickTime=2000\ndataDir=%s\n%s%s%s" % (data_dir, limits, servers, extra)


def ensemble(tmp_path: Path, myid: Optional[str] = "2", **kw: str) -> ServerConfig:
    if myid is not None:
        (tmp_path / "myid").write_text(myid)
    return from_text(cfg_text(tmp_path, **kw), "zoo.cfg")


def refused(tmp_path: Path, myid: Optional[str] = "2", **kw: str) -> str:
    if myid is not None:
        (tmp_path / "myid").write_text(myid)
    with pytest.raises(ConfigError) as e:
        from_text(cfg_text(tmp_path, **kw), "zoo.cfg")
    return str(e.value)


# -- server.N values, as QuorumServer parses them ------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("zk1:2888:3888", QuorumServer(1, "zk1", 2888, 3888)),
    ("zk1:2888:3888:observer", QuorumServer(1, "zk1", 2888, 3888, OBSERVER)),
    ("zk1:2888:3888:Participant", QuorumServer(1, "zk1", 2888, 3888, PARTICIPANT)),
    ("zk1:2888:3888;2181", QuorumServer(1, "zk1", 2888, 3888, PARTICIPANT, "0.0.0.0", 2181)),
    ("zk1:2888:3888:observer;10.0.0.1:2181",
     QuorumServer(1, "zk1", 2888, 3888, OBSERVER, "10.0.0.1", 2181)),
    ("[::1]:2888:3888;[::1]:2181", QuorumServer(1, "::1", 2888, 3888, PARTICIPANT, "::1", 2181)),
    ("zk1:2888:3888;", QuorumServer(1, "zk1", 2888, 3888)),   # Java's split drops the empty tail
])
def test_server_values(value: str, expected: QuorumServer) -> None:
    assert parse_server(1, value) == expected


@pytest.mark.parametrize("value, message", [
    ("zk1:2888", "host:quorumPort:electionPort"),
    ("zk1:2888:3888:observer:x", "host:quorumPort:electionPort"),
    ("zk1:2888:2888", "quorum and election ports must differ"),
    ("zk1:x:3888", "quorum port 'x' is not a number"),
    ("zk1:2888:70000", "not a port number"),
    ("zk1:2888:3888:leader", "unrecognised peer type"),
    ("zk1:2888:3888;a:b:2181", "host:quorumPort:electionPort"),
    ("zk1:2888:3888;x", "client port 'x' is not a number"),
    ("zk1:2888:3888;2181;2", "host:quorumPort:electionPort"),
    ("zk1:2888:3888|zk2:2888:3888", "multiple addresses"),
    ("[::1:2888:3888", "no matching"),
])
def test_bad_server_values(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_server(1, value)


def test_zoo_cfg_value_as_apache_writes_it() -> None:
    assert parse_server(3, "[::1]:2888:3888;2181").zoo_cfg_value() == \
        "[::1]:2888:3888:participant;0.0.0.0:2181"
    assert parse_server(3, "h:2888:3888:observer").zoo_cfg_value() == "h:2888:3888:observer"


# -- a whole ensemble ----------------------------------------------------------------------

def test_three_node_ensemble(tmp_path: Path) -> None:
    c = ensemble(tmp_path)
    assert c.is_ensemble
    assert c.my_id == 2
    assert sorted(c.servers) == [1, 2, 3]
    assert c.servers[3] == QuorumServer(3, "127.0.0.1", 2890, 3890, PARTICIPANT, "0.0.0.0", 2183)
    assert (c.init_limit, c.sync_limit, c.election_alg) == (10, 5, 3)
    assert c.peer_type == PARTICIPANT
    # The server's own line gives its client address.
    assert (c.client_port, c.client_port_address) == (2182, "0.0.0.0")
    assert c.ssl_quorum is False
    assert c.warnings == []
    assert c.me == c.servers[2]


def test_client_port_from_static_config_when_the_line_has_none(tmp_path: Path) -> None:
    servers = THREE.replace(";2182", "")
    c = ensemble(tmp_path, servers=servers, extra="sslQuorum=false\nclientPort=2999\n"
                 "clientPortAddress=127.0.0.1\n")
    assert (c.client_port, c.client_port_address) == (2999, "127.0.0.1")
    me = c.servers[2]
    assert (me.client_host, me.client_port, me.client_from_static) == ("127.0.0.1", 2999, True)
    assert me.zoo_cfg_value() == "127.0.0.1:2889:3889:participant"


def test_static_client_port_may_repeat_but_not_contradict_the_line(tmp_path: Path) -> None:
    assert ensemble(tmp_path, extra="sslQuorum=false\nclientPort=2182\n").client_port == 2182
    msg = refused(tmp_path, extra="sslQuorum=false\nclientPort=2999\n")
    assert msg.startswith("zoo.cfg: clientPort: 2999") and "server.2" in msg
    msg = refused(tmp_path, servers=THREE.replace(";2182", ";10.0.0.9:2182"),
                  extra="sslQuorum=false\nclientPortAddress=10.0.0.1\n")
    assert msg.startswith("zoo.cfg: clientPortAddress:")


def test_zookeeper_prefixed_keys(tmp_path: Path) -> None:
    c = ensemble(tmp_path, limits="zookeeper.initLimit=7\nzookeeper.syncLimit=3\n",
                 extra="zookeeper.sslQuorum=false\nzookeeper.cnxTimeout=1500\n"
                 "zookeeper.quorumListenOnAllIPs=true\n")
    assert (c.init_limit, c.sync_limit, c.cnx_timeout, c.quorum_listen_on_all_ips) == \
        (7, 3, 1500, True)


def test_observer(tmp_path: Path) -> None:
    servers = THREE + "server.4=127.0.0.1:2891:3891:observer;2184\n"
    c = ensemble(tmp_path, myid="4", servers=servers, extra="sslQuorum=false\npeerType=observer\n")
    assert c.peer_type == OBSERVER and c.me is not None and c.me.is_observer
    assert sorted(c.voters) == [1, 2, 3] and sorted(c.observers) == [4]
    # Without peerType the server list decides, as in Apache ZooKeeper.
    assert ensemble(tmp_path, myid="4", servers=servers).peer_type == OBSERVER


def test_peer_type_contradicting_the_server_list_is_refused(tmp_path: Path) -> None:
    servers = THREE + "server.4=127.0.0.1:2891:3891:observer;2184\n"
    msg = refused(tmp_path, myid="4", servers=servers, extra="sslQuorum=false\npeerType=participant\n")
    assert msg.startswith("zoo.cfg: peerType: peerType=participant, but server.4 says observer")
    msg = refused(tmp_path, myid="1", servers=servers, extra="sslQuorum=false\npeerType=observer\n")
    assert msg.startswith("zoo.cfg: peerType: peerType=observer, but server.1 says participant")


@pytest.mark.parametrize("myid, message", [
    (None, "zoo.cfg: dataDir: %s/myid is missing"),
    ("two\n", "zoo.cfg: myid: %s/myid holds 'two', not a server id number"),
    ("", "zoo.cfg: myid: %s/myid holds '', not a server id number"),
    ("7\n", "zoo.cfg: myid: %s/myid says 7, but there is no server.7 line (servers: 1, 2, 3)"),
])
def test_myid(tmp_path: Path, myid: Optional[str], message: str) -> None:
    assert refused(tmp_path, myid=myid).startswith(message % tmp_path)


def test_myid_with_whitespace(tmp_path: Path) -> None:
    assert ensemble(tmp_path, myid=" 3 \n").my_id == 3


def test_limits_required(tmp_path: Path) -> None:
    assert refused(tmp_path, limits="syncLimit=5\n").startswith("zoo.cfg: initLimit: not set")
    assert refused(tmp_path, limits="initLimit=5\n").startswith("zoo.cfg: syncLimit: not set")
    assert refused(tmp_path, limits="initLimit=0\nsyncLimit=5\n").startswith(
        "zoo.cfg:3: initLimit: expected a positive number of ticks")


@pytest.mark.parametrize("extra, message", [
    ("electionAlg=1\n", "electionAlg: only 3 (fast leader election) is supported"),
    ("peerType=voter\n", "peerType: expected participant or observer"),
    ("sslQuorum=maybe\n", "sslQuorum: expected true/false"),
    ("cnxTimeout=-1\n", "cnxTimeout: expected a positive integer"),
])
def test_bad_values(tmp_path: Path, extra: str, message: str) -> None:
    assert message in refused(tmp_path, extra="sslQuorum=false\n" + extra)


@pytest.mark.parametrize("servers, message", [
    ("server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2888:3889\n",
     "zoo.cfg: server.2: 127.0.0.1:2888 is both server.1's quorum port and server.2's quorum port"),
    ("server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:2888\n",
     "zoo.cfg: server.2: 127.0.0.1:2888 is both server.1's quorum port and server.2's election"),
    ("server.1=127.0.0.1:2888:3888;2181\nserver.2=127.0.0.1:2181:3889\n",
     "zoo.cfg: server.2: 127.0.0.1:2181 is both server.1's client port and server.2's quorum"),
])
def test_duplicate_ports(tmp_path: Path, servers: str, message: str) -> None:
    assert refused(tmp_path, myid="1", servers=servers).startswith(message)


def test_same_ports_on_different_hosts(tmp_path: Path) -> None:
    servers = "".join("server.%d=zk%d:2888:3888;2181\n" % (n, n) for n in (1, 2, 3))
    c = ensemble(tmp_path, servers=servers)
    assert c.client_port == 2181 and c.servers[1].host == "zk1"


def test_duplicate_and_bad_server_ids(tmp_path: Path) -> None:
    msg = refused(tmp_path, servers=THREE + "server.02=127.0.0.1:2900:3900\n")
    assert msg.startswith("zoo.cfg:8: server.02: server 2 is already given on line 6")
    assert "server ids are 0-255" in refused(tmp_path, servers=THREE + "server.256=h:1:2\n")
    assert "must be a number" in refused(tmp_path, servers=THREE + "server.x=h:1:2\n")
    msg = refused(tmp_path, servers=THREE + "server.4=127.0.0.1:2891\n")
    assert msg.startswith("zoo.cfg:8: server.4: expected host:quorumPort:electionPort")


def test_observers_need_a_quorum(tmp_path: Path) -> None:
    msg = refused(tmp_path, myid="1", servers="server.1=h:1:2:observer\nserver.2=h:3:4:observer\n")
    assert msg.startswith("zoo.cfg: server.1: observers without participants")
    msg = refused(tmp_path, myid="1", servers="server.1=h:1:2\nserver.2=h:3:4:observer\n")
    assert msg.startswith("zoo.cfg: server.2: observers without a quorum")


def test_two_servers_allowed_with_a_warning(tmp_path: Path) -> None:
    c = ensemble(tmp_path, servers="server.1=h:1:2\nserver.2=h:3:4\n")
    assert c.is_ensemble
    assert c.warnings == ["zoo.cfg: server.N: 2 participants: no server failure will be "
                          "tolerated; you need at least 3 servers"]
    four = THREE + "server.4=127.0.0.1:2891:3891\n"
    assert "consider an odd number" in ensemble(tmp_path, servers=four).warnings[0]


def test_one_server_runs_standalone_as_apache_does(tmp_path: Path) -> None:
    c = ensemble(tmp_path, myid=None, servers="server.1=127.0.0.1:2888:3888;2181\n", extra="",
                 limits="")
    assert not c.is_ensemble and c.my_id is None
    assert c.client_port == 2181
    assert "only one server specified" in c.warnings[0]
    c = ensemble(tmp_path, myid="1", servers="server.1=127.0.0.1:2888:3888;2181\n",
                 extra="sslQuorum=false\nstandaloneEnabled=false\n")
    assert c.is_ensemble and c.my_id == 1


def test_unsupported_ensemble_features(tmp_path: Path) -> None:
    msg = refused(tmp_path, extra="sslQuorum=false\nweight.1=2\n")
    assert msg.startswith("zoo.cfg: weight.1: hierarchical quorums")
    msg = refused(tmp_path, servers="", extra="dynamicConfigFile=zoo.cfg.dynamic\n")
    assert msg.startswith("zoo.cfg: dynamicConfigFile: not supported")
    assert "extendedTypesEnabled" in refused(
        tmp_path, myid="1", servers=THREE + "server.255=h:1:2\n",
        extra="sslQuorum=false\nextendedTypesEnabled=true\n")


# -- quorum TLS ----------------------------------------------------------------------------

def test_ensemble_without_a_tls_choice_is_refused_naming_both_ways_out(tmp_path: Path) -> None:
    msg = refused(tmp_path, myid=None, extra="")
    assert msg.startswith("zoo.cfg: sslQuorum: ")
    for way_out in ("ssl.quorum.keyFile", "ssl.quorum.certFile", "ssl.quorum.caFile",
                    "zktwist tls init --config zoo.cfg", "sslQuorum=false"):
        assert way_out in msg
    assert "\n" not in msg


def tls_files(tmp_path: Path) -> str:
    for name in ("me.key", "me.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    return ("ssl.quorum.keyFile=%s/me.key\nzookeeper.ssl.quorum.certFile=%s/me.pem\n"
            "ssl.quorum.caFile=%s/ca.pem\n" % (tmp_path, tmp_path, tmp_path))


def test_tls_files(tmp_path: Path) -> None:
    c = ensemble(tmp_path, extra=tls_files(tmp_path))
    assert c.ssl_quorum is True
    assert (c.ssl_quorum_key_file, c.ssl_quorum_cert_file, c.ssl_quorum_ca_file) == \
        tuple(str(tmp_path / n) for n in ("me.key", "me.pem", "ca.pem"))
    assert ensemble(tmp_path, extra="sslQuorum=true\n" + tls_files(tmp_path)).ssl_quorum is True


def test_tls_files_incomplete_or_missing(tmp_path: Path) -> None:
    files = tls_files(tmp_path)
    no_ca = "".join(line + "\n" for line in files.splitlines() if "caFile" not in line)
    msg = refused(tmp_path, extra=no_ca)
    assert msg.startswith("zoo.cfg: ssl.quorum.caFile: not set") and "sslQuorum=false" in msg
    msg = refused(tmp_path, extra="sslQuorum=true\n")
    assert msg.startswith("zoo.cfg: ssl.quorum.keyFile: not set")
    os.unlink(tmp_path / "me.pem")
    msg = refused(tmp_path, extra=files)
    assert msg.startswith("zoo.cfg: ssl.quorum.certFile: %s/me.pem: no such file" % tmp_path)
    assert "zktwist tls init" in msg
    # Tools (zktwist tls init) read the config before the files and myid exist.
    (tmp_path / "myid").unlink()
    c = from_text(cfg_text(tmp_path, extra=files), "zoo.cfg", check_local=False)
    assert c.is_ensemble and c.ssl_quorum and c.my_id is None


def test_ssl_quorum_false_wins_with_a_warning(tmp_path: Path) -> None:
    c = ensemble(tmp_path, extra="sslQuorum=false\n" + tls_files(tmp_path))
    assert c.ssl_quorum is False
    assert c.warnings and "sslQuorum=false" in c.warnings[0] and "unencrypted" in c.warnings[0]


def test_apache_pem_keystores(tmp_path: Path) -> None:
    for name in ("store.pem", "trust.pem"):
        (tmp_path / name).write_text("x")
    c = ensemble(tmp_path, extra="sslQuorum=true\nssl.quorum.keyStore.location=%s/store.pem\n"
                 "ssl.quorum.trustStore.location=%s/trust.pem\n" % (tmp_path, tmp_path))
    assert c.ssl_quorum_key_file == c.ssl_quorum_cert_file == str(tmp_path / "store.pem")
    assert c.ssl_quorum_ca_file == str(tmp_path / "trust.pem")
    msg = refused(tmp_path, extra="sslQuorum=true\nssl.quorum.keyStore.location=/etc/zk/k.jks\n"
                  "ssl.quorum.trustStore.location=/etc/zk/t.jks\n")
    assert msg.startswith("zoo.cfg: ssl.quorum.keyStore.location: /etc/zk/k.jks is not a PEM")


# -- standalone stays as it was; an ensemble gets its quorum services ---------------------

def test_standalone_unchanged(tmp_path: Path) -> None:
    text = ("tickTime=2000\ndataDir=%s\nclientPort=2999\ninitLimit=10\nsyncLimit=5\n"
            "sslQuorum=true\npeerType=observer\nelectionAlg=3\n" % tmp_path)
    c = from_text(text, "zoo.cfg")
    assert not c.is_ensemble and c.servers == {} and c.my_id is None
    assert c.client_port == 2999 and c.warnings == []
    assert c.effective()["serverId"] == "0"


def test_service_builds_an_ensemble_member(tmp_path: Path) -> None:
    from twisted.application import service

    from zktwist.server.ensemble import EnsembleServer
    from zktwist.service import makeService

    class Net:
        def __init__(self) -> None:
            self.election, self.quorum = service.Service(), service.Service()

    c = ensemble(tmp_path)
    svc = makeService(c, network=Net())
    assert [s.name for s in svc] == ["storage", "election", "quorum", "peer", "autopurge",
                                     "client"]
    assert isinstance(svc.server, EnsembleServer) and svc.server.sid == 2


def test_twistd_options_build_an_ensemble_member(tmp_path: Path) -> None:
    (tmp_path / "myid").write_text("1")
    path = tmp_path / "zoo.cfg"
    path.write_text(cfg_text(tmp_path))
    code = ("from zktwist.tap import Options, makeService\n"
            "o = Options(); o.parseOptions(['--config', %r])\n"
            "print(' '.join(s.name for s in makeService(o)))\n" % str(path))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["storage", "election", "quorum", "peer", "autopurge", "client"]


def test_data_dir_override_reads_myid_there(tmp_path: Path) -> None:
    from zktwist.tap import Options
    other = tmp_path / "other"
    other.mkdir()
    (other / "myid").write_text("3")
    (tmp_path / "myid").write_text("1")
    path = tmp_path / "zoo.cfg"
    path.write_text(cfg_text(tmp_path))
    o = Options()
    o.parseOptions(["--config", str(path), "--data-dir", str(other)])
    assert o.config.my_id == 3 and o.config.data_dir == str(other)


def test_example_configs_parse(tmp_path: Path) -> None:
    for n in (1, 2, 3):
        c = load(str(ROOT / "etc" / ("zktwist-3node-%d.cfg" % n)), check_local=False)
        assert c.is_ensemble and sorted(c.voters) == [1, 2, 3] and c.ssl_quorum
        assert c.ssl_quorum_key_file == "var/tls/server%d.key" % n
        assert c.ssl_quorum_ca_file == "var/tls/ca.pem"
        assert c.data_dir == "var/zktwist-%d" % n
        assert c.servers[n].client_port == 2180 + n
