"""zktwist as a library: examples/embed.py, a .tac under twistd, and the service tree.

Anything that runs the real reactor runs in a subprocess (a reactor cannot be
restarted inside one pytest process); in-process tests use MemoryReactorClock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Callable

from twisted.application import service
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyClass, verifyObject

from zktwist.config import from_text
from zktwist.interfaces import IStorageBackend
from zktwist.service import ZKTwistService, makeService
from zktwist.storage.filelog import FileLogBackend

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "embed.py"
TWISTD = Path(sys.executable).with_name("twistd")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def test_file_log_backend_provides_the_storage_interface(tmp_path: Path) -> None:
    assert verifyClass(IStorageBackend, FileLogBackend)
    assert verifyObject(IStorageBackend, FileLogBackend(str(tmp_path)))


def test_embed_example_runs_and_reports(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLE)], cwd=str(tmp_path), env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    assert lines[0].startswith("zktwist listening on 127.0.0.1:"), out
    port = int(lines[0].rsplit(":", 1)[1])
    assert 0 < port < 65536
    assert "read back b'hello from kazoo'" in out
    assert "children of /: embedded, zookeeper" in out
    assert "server: 0 sessions" in out  # kazoo closed its session before the server stopped
    assert lines[-1] == "stopped cleanly"
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # it cleaned up after itself


TAC = '''
import os, socket, struct
from twisted.application import service
from twisted.internet import reactor, threads
from zktwist.config import from_text
from zktwist.service import makeService

application = service.Application("embedded-zktwist")
zk = makeService(from_text("dataDir=%s\\nclientPort=0\\nclientPortAddress=127.0.0.1\\n"
                           % os.environ["ZK_TEST_DATA"]))
zk.setServiceParent(application)


def handshake(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack(">iiqiqi", 45, 0, 0, 10000, 0, 16) + bytes(16) + b"\\x00")
        data = b""
        while len(data) < 41:
            chunk = s.recv(64)
            if not chunk:
                break
            data += chunk
    return data


def probe():
    d = threads.deferToThread(handshake, zk.port)
    def report(data):
        length, _, timeout, sid = struct.unpack_from(">iiiq", data)
        with open(os.environ["ZK_TEST_OUT"], "w") as f:
            f.write("port=%d length=%d timeout=%d sid=%x\\n" % (zk.port, length, timeout, sid))
    d.addBoth(report)
    d.addBoth(lambda _: reactor.stop())


reactor.callWhenRunning(probe)
'''


def test_tac_file_under_twistd(tmp_path: Path) -> None:
    """setServiceParent(application) under twistd: privilegedStartService, then startService."""
    tac = tmp_path / "embedded.tac"
    tac.write_text(textwrap.dedent(TAC))
    data = tmp_path / "data"
    out = tmp_path / "probe.txt"
    env = _env()
    env["ZK_TEST_DATA"] = str(data)
    env["ZK_TEST_OUT"] = str(out)
    proc = subprocess.run([str(TWISTD), "-n", "--pidfile=", "-l", "-", "-y", str(tac)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=60)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert out.exists(), log
    result = out.read_text()
    assert "length=37 timeout=10000" in result, result + log
    assert "sid=0" not in result.replace("sid=0x", "")
    assert "recovered 0 txns" in log
    assert "serving clients on 127.0.0.1:" in log
    assert "Traceback" not in log
    assert (data / "version-2").is_dir()


class MemoryReactorWithThreads(MemoryReactorClock):
    """A memory reactor that also takes calls from threads (the storage thread
    writes the start-up snapshot); they queue here and never run."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: "SimpleQueue[Callable[..., Any]]" = SimpleQueue()

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.from_threads.put(f)


def test_service_tree_in_process_on_a_memory_reactor(tmp_path: Path) -> None:
    reactor: Any = MemoryReactorWithThreads()
    config = from_text("dataDir=%s\nclientPort=0\nclientPortAddress=127.0.0.1\n" % tmp_path)
    zk = makeService(config, reactor)
    assert isinstance(zk, ZKTwistService)
    assert [s.name for s in zk] == ["storage", "sessions", "containers", "autopurge", "client"]
    assert zk.port is None  # not listening before it starts

    application = service.Application("host-app")
    zk.setServiceParent(application)
    assert zk.parent is service.IServiceCollection(application)

    service.IService(application).startService()
    try:
        assert zk.running
        assert zk.getServiceNamed("storage").recovered
        assert zk.server.serving
        [(port, factory, _backlog, interface)] = reactor.tcpServers
        assert (port, interface) == (0, "127.0.0.1")
        assert factory.server is zk.server
        assert zk.port == 0  # what the (fake) listening port reports
        assert (tmp_path / "version-2").is_dir()
    finally:
        service.IService(application).stopService()
    assert not zk.running
    assert not zk.server.serving
