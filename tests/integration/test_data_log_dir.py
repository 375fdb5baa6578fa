"""dataLogDir apart from dataDir: logs go to one, snapshots to the other, and recovery uses both."""

from __future__ import annotations

import os

from kazoo.client import KazooClient

from tests.support.processes import ZKTwistProcess


def test_logs_and_snapshots_in_separate_directories_survive_a_restart(tmp_path):
    log_dir = tmp_path / "txnlog"
    server = ZKTwistProcess(workdir=tmp_path / "srv",
                            extra_config={"dataLogDir": str(log_dir), "snapCount": "40"})
    server.start()
    try:
        zk = KazooClient(server.address, timeout=10)
        zk.start(timeout=15)
        zk.create("/apart", b"")
        for i in range(150):
            zk.create("/apart/n%03d" % i, b"v%d" % i)
        zk.stop()
        zk.close()
        server.stop()
        logs = sorted(os.listdir(log_dir / "version-2"))
        snaps = sorted(os.listdir(server.data_dir / "version-2"))
        assert any(n.startswith("log.") for n in logs), logs
        assert not any(n.startswith("snapshot.") for n in logs), logs
        assert any(n.startswith("snapshot.") for n in snaps), snaps
        assert not any(n.startswith("log.") for n in snaps), snaps
        server.start()
        zk = KazooClient(server.address, timeout=10)
        zk.start(timeout=15)
        children = zk.get_children("/apart")
        assert len(children) == 150
        assert zk.get("/apart/n149")[0] == b"v149"
        zk.stop()
        zk.close()
    finally:
        server.cleanup()
