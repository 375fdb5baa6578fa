"""``zktwist bench --hosts``: load sessions spread over a real 3-node ensemble's members."""

from __future__ import annotations

import json
import re
from typing import Iterator

import pytest

from tests.conftest import require_apache_zookeeper
from tests.support.ensemble import Ensemble
from zktwist.cli import bench

_RECEIVED = re.compile(r"^Received:\s*(\d+)", re.M)


@pytest.fixture(params=[
    pytest.param("apache", id="apache"),
    pytest.param("zktwist", id="zktwist"),
])
def ensemble(request, tmp_path) -> Iterator[Ensemble]:
    if request.param == "apache":
        require_apache_zookeeper()
    ens = Ensemble(request.param, workdir=tmp_path / "ensemble", tick_time=2000)
    ens.start()
    try:
        yield ens
    finally:
        ens.stop()


def received(ens: Ensemble, sid: int) -> int:
    m = _RECEIVED.search(ens[sid].four_letter("srvr"))
    assert m, "srvr shows no Received: line"
    return int(m.group(1))


def test_parse_hosts() -> None:
    assert bench.parse_hosts("127.0.0.1:2181, h:2182,:2183") == [
        ("127.0.0.1", 2181), ("h", 2182), ("127.0.0.1", 2183)]
    with pytest.raises(ValueError):
        bench.parse_hosts(" , ")


@pytest.mark.parametrize("workload", ["get", "set"])
def test_sessions_go_round_robin_to_every_member(ensemble: Ensemble, tmp_path, workload: str) -> None:
    before = {sid: received(ensemble, sid) for sid in ensemble.members}
    out = tmp_path / "out.json"
    rc = bench.main(["--hosts", ensemble.hosts, "--workload", workload, "--sessions", "6",
                     "--outstanding", "10", "--processes", "2", "--duration", "0.5", "--warmup", "0.1",
                     "--json", str(out)])
    res = json.loads(out.read_text())
    assert rc == 0 and res["errors"] == 0 and res["ops"] > 0
    # every member served its share of the load sessions (2 each), not just the first
    for sid in ensemble.members:
        got = received(ensemble, sid) - before[sid]
        assert got > 100, f"member {sid} received only {got} requests"
