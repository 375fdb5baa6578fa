"""Start-up and snapshot figures in ``mntr``, as Apache ZooKeeper 3.8 reports them.

A server restarted on its data dir says in ``mntr`` how many txns it replayed
after its snapshot (``startup_txns_loaded``) and how long loading the snapshot,
replaying the log, the whole database load and each snapshot took
(``startup_snap_load_time``, ``startup_txns_load_time``, ``dbinittime``,
``snapshottime``, in ms).  Operators watch these to know how long a restart
takes; ``benchmarks/storage.py`` reads them from both servers.

The replayed count is compared with Apache ZooKeeper 3.8 running the same
steps: one session that creates 40 znodes and closes is 42 txns (createSession,
40 creates, closeSession) after the snapshot both servers take at start-up.
"""

from __future__ import annotations

import time
from typing import Dict

import pytest
from kazoo.client import KazooClient

from tests.conftest import require_apache_zookeeper
from tests.integration.conftest import TARGET
from tests.integration.test_durability import require_backend
from tests.support.processes import ApacheZooKeeperProcess, ServerProcess, ZKTwistProcess, four_letter

pytestmark = pytest.mark.skipif(TARGET == "apache", reason="starts both servers itself")

WRITES = 40
STARTUP_SUMMARIES = ("snapshottime", "startup_snap_load_time", "startup_txns_load_time",
                     "startup_txns_loaded", "dbinittime")


def mntr(port: int) -> Dict[str, str]:
    """mntr once the server serves (Apache ZooKeeper listens before it has loaded its data)."""
    deadline = time.monotonic() + 60
    while True:
        text = four_letter(port, "mntr")
        if "zk_version" in text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    out: Dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        out[key] = value
    return out


def write_and_restart(server: ServerProcess) -> Dict[str, str]:
    """Start, make WRITES znodes in one session, stop (SIGTERM), start again: the new mntr."""
    server.start()
    try:
        zk = KazooClient(hosts=server.address, timeout=10)
        zk.start(timeout=20)
        try:
            for i in range(WRITES):
                zk.create("/startup-%03d" % i, b"x" * 100)
        finally:
            zk.stop()
            zk.close()
        server.stop()
        server.start()
        return mntr(server.port)
    finally:
        server.cleanup()


def check_startup_figures(values: Dict[str, str]) -> None:
    for name in STARTUP_SUMMARIES:
        for stat in ("avg", "min", "max", "cnt", "sum"):
            assert "zk_%s_%s" % (stat, name) in values, (name, stat)
    # Each start loaded a snapshot once, and the restart took one start-up snapshot.
    assert values["zk_cnt_startup_snap_load_time"] == "1"
    assert values["zk_cnt_dbinittime"] == "1"
    assert int(values["zk_cnt_snapshottime"]) >= 1
    assert values["zk_cnt_startup_txns_loaded"] == "1"


@pytest.mark.parametrize("backend", ["filelog", "sqlite"])
def test_zktwist_reports_what_its_restart_replayed(tmp_path, backend):
    require_backend(backend)
    values = write_and_restart(ZKTwistProcess(tmp_path / backend,
                                              extra_config={"storage.backend": backend}))
    check_startup_figures(values)
    assert values["zk_max_startup_txns_loaded"] == str(WRITES + 2)


def test_replayed_count_as_apache_zookeeper(tmp_path):
    require_apache_zookeeper()
    apache = write_and_restart(ApacheZooKeeperProcess(tmp_path / "apache"))
    ours = write_and_restart(ZKTwistProcess(tmp_path / "zktwist"))
    check_startup_figures(apache)
    assert ours["zk_max_startup_txns_loaded"] == apache["zk_max_startup_txns_loaded"]
