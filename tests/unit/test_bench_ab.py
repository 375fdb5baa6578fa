"""Pure parts of the benchmark tooling: benchmarks/ab.py's parsing, medians,
ratios, table and py-spy summary, and zktwist bench's /proc and jcmd parsing.
(No timing is asserted anywhere: benchmarks report figures.)"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from zktwist.cli import bench

_AB_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "ab.py"
_spec = importlib.util.spec_from_file_location("benchmarks_ab", _AB_PATH)
assert _spec and _spec.loader
ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ab)


def _r(workload, server, rnd, **figs):
    return {"workload": workload, "server": server, "round": rnd, **figs}


def test_parse_bench_json_keeps_known_figures_only():
    text = json.dumps({"ops": 1234.5, "p50_ms": 1.0, "p99_ms": 2.5, "p999_ms": 9.0, "errors": 0,
                       "client_cpu_pct": 40.0, "server_cpu_pct": 99.0, "config": {"x": 1},
                       "server_pid": 42, "heap_per_znode": None})
    figs = ab.parse_bench_json(text)
    assert figs == {"ops": 1234.5, "p50": 1.0, "p99": 2.5, "p999": 9.0, "errors": 0.0,
                    "client_cpu": 40.0, "server_cpu": 99.0}


def test_parse_bench_json_fill():
    figs = ab.parse_bench_json(json.dumps({"rss_per_znode": 1000, "heap_per_znode": 450,
                                           "rss_after": 2**20, "fill_seconds": 3}))
    assert figs["rss_per_znode"] == 1000 and figs["heap_per_znode"] == 450
    assert figs["rss_after"] == 2**20 and figs["fill_seconds"] == 3


def test_median_odd_even_and_empty():
    assert ab.median([3, 1, 2]) == 2
    assert ab.median([4, 1, 3, 2]) == 2.5
    assert math.isnan(ab.median([]))


def test_medians_group_by_workload_and_server():
    rs = [_r("get-8x100", "apache", 1, ops=100.0, p99=5.0), _r("get-8x100", "apache", 2, ops=300.0, p99=7.0),
          _r("get-8x100", "apache", 3, ops=200.0, p99=6.0), _r("get-8x100", "zktwist", 1, ops=900.0)]
    med = ab.medians(rs)
    assert med[("get-8x100", "apache")] == {"ops": 200.0, "p99": 6.0}
    assert med[("get-8x100", "zktwist")] == {"ops": 900.0}


def test_ratio_handles_missing_and_zero():
    assert ab.ratio(6.0, 3.0) == 2.0
    assert ab.ratio(None, 3.0) is None
    assert ab.ratio(1.0, 0.0) is None
    assert ab.ratio(float("nan"), 1.0) is None


def test_ratio_cells_load_and_fill():
    rs = [_r("get-8x100", "apache", 1, ops=100.0, p50=2.0, p99=10.0),
          _r("get-8x100", "zktwist", 1, ops=300.0, p50=1.0, p99=5.0),
          _r("fill-100k", "apache", 1, rss_per_znode=4000.0, heap_per_znode=500.0),
          _r("fill-100k", "zktwist", 1, rss_per_znode=1000.0)]
    med = ab.medians(rs)
    assert ab.ratio_cells(med, "get-8x100") == {"ops": 3.0, "p50": 0.5, "p99": 0.5}
    assert ab.ratio_cells(med, "fill-100k") == {"rss/rss": 0.25, "rss/heap": 2.0}


def test_format_table_lists_rounds_medians_and_ratios():
    rs = [_r("get-8x100", "apache", 1, ops=100000.0, p50=2.0, p99=10.0, p999=12.0, client_cpu=50.0,
             server_cpu=150.0),
          _r("get-8x100", "zktwist", 1, ops=250000.0, p50=1.0, p99=4.0, p999=5.0, client_cpu=40.0,
             server_cpu=100.0),
          _r("get-8x100", "apache", 2, ops=120000.0, p50=2.0, p99=12.0, p999=14.0),
          _r("get-8x100", "zktwist", 2, ops=270000.0, p50=1.0, p99=6.0, p999=7.0)]
    text = ab.format_table(rs, ["get-8x100", "set-8x100"])
    assert "apache   round 1: 100.0k/s" in text
    assert "zktwist  round 2: 270.0k/s" in text
    assert "apache   median : 110.0k/s" in text
    assert "zktwist/apache: ops 2.36x  p50 0.50x  p99 0.45x" in text
    assert "| get-8x100 |" in text
    assert "| set-8x100 | - | - | ops n/a, p50 n/a, p99 n/a |" in text


def test_bench_command_fill_has_no_duration():
    cmd = ab.bench_command("fill-100k", 2181, 7, 10.0, 1.0, "/tmp/x.json")
    assert "--duration" not in cmd and "--znodes" in cmd and "100000" in cmd
    cmd = ab.bench_command("get-256x1", 2181, 7, 10.0, 1.0, "/tmp/x.json")
    assert cmd[cmd.index("--duration") + 1] == "10.0"
    assert cmd[cmd.index("--server-pid") + 1] == "7"
    assert cmd[cmd.index("--processes") + 1] == "2"


def test_default_workloads_exist_and_zoo_cfg_has_same_settings():
    assert all(w in ab.WORKLOADS for w in ab.DEFAULT_WORKLOADS)
    cfg = ab.zoo_cfg(Path("/d"), 1234)
    for line in ("tickTime=2000", "forceSync=yes", "maxClientCnxns=0", "clientPort=1234", "dataDir=/d"):
        assert line in cfg.splitlines()


def test_summarize_collapsed():
    raw = [
        "<module> (run.py:1);run (reactor.py:10);doPoll (epollreactor.py:5) 60",
        "<module> (run.py:1);run (reactor.py:10);dataReceived (conn.py:3);getData (core.py:7) 30",
        "<module> (run.py:1);run (reactor.py:10);dataReceived (conn.py:3) 10",
        "garbage line",
    ]
    text = ab.summarize_collapsed(raw)
    assert "samples: 100; idle in the poller: 60.0%" in text
    self_part, incl_part = text.split("inclusive time")
    assert "30.0%  getData (core.py:7)" in self_part
    assert "40.0%  dataReceived (conn.py:3)" in incl_part
    assert "100.0%  run (reactor.py:10)" in incl_part
    assert ab.summarize_collapsed([]) == "no samples\n"
    reactor = ab.summarize_collapsed(raw + ["<module> (t.py:1);Thread.run (threading.py:1);wait (t.py:2) 100"],
                                     only="run (reactor.py")
    assert "samples of stacks with run (reactor.py: 100; idle in the poller: 60.0%" in reactor


def test_parse_listening_inodes():
    lines = [
        "   0: 0100007F:0885 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0  0 5555 1 0",
        "   1: 0100007F:0885 0100007F:C350 01 00000000:00000000 00:00000000 00000000  0  0 6666 1 0",
        "   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0  0 7777 1 0",
    ]
    assert bench.parse_listening_inodes(lines, 0x885) == [5555]
    assert bench.parse_listening_inodes(lines, 80) == [7777]
    assert bench.parse_listening_inodes(lines, 81) == []


def test_parse_heap_used():
    g1 = (" garbage-first heap   total 264192K, used 52141K [0x0000000640000000, 0x0000000800000000)\n"
          "  region size 4096K, 1 young (4096K), 0 survivors (0K)\n")
    assert bench.parse_heap_used(g1) == 52141 * 1024
    serial = " def new generation   total 9792K, used 1719K [0x...)\n"
    assert bench.parse_heap_used(serial) == 1719 * 1024
    assert bench.parse_heap_used("nothing") == 0


def test_fill_paths_and_pct():
    dirs, leaves = bench.fill_paths("/b", 2500)
    assert dirs == ["/b/d0000", "/b/d0001", "/b/d0002"]
    assert len(leaves) == 2500 and leaves[0] == "/b/d0000/n0000000" and leaves[-1] == "/b/d0002/n0002499"
    assert bench.pct([], 0.5) == 0.0
    vals = [float(i) for i in range(100)]
    assert bench.pct(vals, 0.5) == 50.0 and bench.pct(vals, 0.99) == 99.0 and bench.pct(vals, 1.0) == 99.0


@pytest.mark.parametrize("spec,expected", [("", 0), ("0", 0), ("123", 123)])
def test_resolve_pid_explicit(spec, expected):
    assert bench._resolve_pid(spec, 1) == expected
