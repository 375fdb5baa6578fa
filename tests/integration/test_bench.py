"""Smoke tests of ``zktwist bench``'s options against a real zktwist process.

Only that the options work and report their figures; no timing is asserted
(benchmarks report figures, see benchmarks/README.md).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.support.processes import ZKTwistProcess, four_letter
from zktwist.cli import bench
from zktwist.proto.jute import encode_ustring


@pytest.fixture(scope="module")
def server():
    with ZKTwistProcess(extra_config={"maxClientCnxns": "0"}) as srv:
        yield srv


def _run(server, tmp_path, *extra):
    out = tmp_path / "out.json"
    rc = bench.main(["--server", server.address, "--json", str(out), *extra])
    return rc, json.loads(out.read_text())


def _gone(server, path):
    s = bench.Session("127.0.0.1", server.port)
    try:
        err, _ = s.call(bench.OP_EXISTS, encode_ustring(path) + b"\x00")
    finally:
        s.close()
    return err == -101  # NoNode


def test_find_listening_pid(server):
    assert bench.find_listening_pid(server.port) == server.proc.pid
    assert bench.proc_rss(server.proc.pid) > 0
    assert bench.proc_cpu(server.proc.pid) > 0


def test_load_with_idle_sessions_watches_and_auto_pid(server, tmp_path, capsys):
    rc, res = _run(server, tmp_path, "--workload", "mix", "--sessions", "2", "--outstanding", "5",
                   "--duration", "0.5", "--warmup", "0.1", "--idle-sessions", "20", "--watches", "200",
                   "--server-pid", "auto")
    assert rc == 0
    assert res["errors"] == 0 and res["watch_errors"] == 0
    assert res["ops"] > 0 and res["p50_ms"] > 0 and res["p99_ms"] >= res["p50_ms"]
    assert res["server_pid"] == server.proc.pid
    assert res["server_cpu_pct"] > 0 and res["client_cpu_pct"] > 0 and res["client_total_cpu_s"] > 0
    assert res["config"]["idle_sessions"] == 20
    assert res["machine_cpu_pct"] > 0 and res["other_cpu_pct"] >= 0 and res["cpus"] >= 1
    printed = capsys.readouterr().out
    assert "idle_sessions=20 watches=200" in printed and "server_cpu=" in printed
    # everything the bench created is gone, and so are its sessions' watches
    assert "Total watches:0" in four_letter(server.port, "wchs")
    assert _gone(server, "/zktwist-bench-%d" % os.getpid())


def test_idle_sessions_hold_the_watches(server):
    base = "/idle-watch-test"
    setup = bench.Session("127.0.0.1", server.port)
    setup.call(bench.OP_CREATE, bench.create_body(base, b""))
    paths = bench.watch_paths(base, 30)
    assert setup.pipeline((bench.OP_CREATE, bench.create_body(p, b"v")) for p in paths) == [0] * 30
    idle = bench.IdleSessions("127.0.0.1", server.port, 3, ping_interval=0.05)
    try:
        assert bench.set_watches(idle.sessions, paths) == 0
        idle.start()
        wchs = four_letter(server.port, "wchs")
        assert "3 connections watching 30 paths" in wchs and "Total watches:30" in wchs
    finally:
        idle.stop()
        setup.pipeline([(bench.OP_DELETE, bench.delete_body(p)) for p in paths + [base]])
        setup.close()


def test_fill_reports_server_memory(server, tmp_path):
    rc, res = _run(server, tmp_path, "--workload", "fill", "--znodes", "2500",
                   "--server-pid", str(server.proc.pid))
    assert rc == 0 and res["errors"] == 0 and res["znodes"] == 2500
    assert res["rss_before"] > 0 and res["rss_after"] > 0
    assert "rss_per_znode" in res and "heap_per_znode" not in res  # not a JVM
    assert "delete_seconds" in res
    assert _gone(server, "/zktwist-bench-%d" % os.getpid())


def test_create_workload_and_no_server_pid(server, tmp_path):
    rc, res = _run(server, tmp_path, "--workload", "create", "--sessions", "2", "--outstanding", "3",
                   "--duration", "0.3", "--warmup", "0.1", "--processes", "2")
    assert rc == 0 and res["errors"] == 0 and res["ops"] > 0
    assert res["server_pid"] == 0 and "server_cpu_pct" not in res
