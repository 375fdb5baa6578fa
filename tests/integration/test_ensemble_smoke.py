"""A real 3-node zktwist ensemble: three ``twistd -n zktwist`` processes on loopback, quorum TLS.

Certificates come from ``zktwist tls init``; each member has its own dataDir
with ``myid``.  kazoo clients connect to every member: a write on a follower
is forwarded to the leader, and after ``sync`` every member reads it.  srvr
shows one leader and two followers.  Every process is stopped in the fixture's
finally, whatever happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

import pytest

from tests.support.processes import (
    ZKTwistEnsembleMember,
    four_letter,
    wait_for_modes,
    zktwist_ensemble,
)

kazoo = pytest.importorskip("kazoo.client")


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[List[ZKTwistEnsembleMember]]:
    members = zktwist_ensemble(tmp_path, 3, tls=True)
    try:
        for m in members:
            m.start()
        yield members
    finally:
        for m in members:
            m.stop()


def test_three_members_serve_writes_and_reads(ensemble: List[ZKTwistEnsembleMember]) -> None:
    modes = wait_for_modes(ensemble, timeout=30.0)
    assert sorted(modes.values()) == ["follower", "follower", "leader"], modes
    by_sid = {m.sid: m for m in ensemble}
    follower = by_sid[min(s for s, mode in modes.items() if mode == "follower")]
    leader = by_sid[next(s for s, mode in modes.items() if mode == "leader")]

    clients = {}
    try:
        for m in ensemble:
            c = kazoo.KazooClient(hosts=m.address, timeout=10.0)
            c.start(timeout=15)
            clients[m.sid] = c
        w = clients[follower.sid]
        w.create("/smoke", b"written on a follower")
        w.set("/smoke", b"v2")
        for sid, c in clients.items():
            c.sync("/smoke")
            data, stat = c.get("/smoke")
            assert data == b"v2" and stat.version == 1, sid
        config, _ = clients[leader.sid].get("/zookeeper/config")
        lines = config.decode().split("\n")
        assert lines[-1] == "version=0"
        assert [ln.split("=", 1)[0] for ln in lines[:-1]] == ["server.1", "server.2", "server.3"]
    finally:
        for c in clients.values():
            c.stop()
            c.close()

    mntr = dict(ln.split("\t", 1) for ln in four_letter(leader.port, "mntr").splitlines())
    assert mntr["zk_server_state"] == "leader"
    assert mntr["zk_synced_followers"] == "2" and mntr["zk_followers"] == "2"
    assert "zk_pending_syncs" in mntr
    fmntr = dict(ln.split("\t", 1) for ln in four_letter(follower.port, "mntr").splitlines())
    assert int(fmntr["zk_zktwist_forwarded_writes"]) >= 2
    assert int(fmntr["zk_zktwist_local_reads"]) >= 1
    assert "Mode: follower\n" in four_letter(follower.port, "srvr")
