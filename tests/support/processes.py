"""Real server processes for tests: zktwist under twistd and Apache ZooKeeper 3.8.

Every server binds 127.0.0.1 on a free port, is waited for with ``ruok``-free
probing (a plain TCP connect, since the 4lw whitelist may be narrow), and is
always stopped: use them as context managers or through the pytest fixtures in
``tests/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
ZOOKEEPER_CONF_DIR = Path("/etc/zookeeper/conf")
ZKCLI = Path("/usr/share/zookeeper/bin/zkCli.sh")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def four_letter(port: int, word: str, timeout: float = 5.0) -> str:
    """Send a four-letter word and return the whole text reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(word.encode("ascii"))
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def apache_zookeeper_available() -> bool:
    return ZOOKEEPER_JAR.exists() and shutil.which("java") is not None


def twistd_executable() -> str:
    candidate = Path(sys.executable).parent / "twistd"
    return str(candidate) if candidate.exists() else (shutil.which("twistd") or "twistd")


class ServerProcess:
    """Base: a child process serving the ZooKeeper protocol on ``self.port``."""

    name = "server"

    def __init__(self, workdir: Optional[Path] = None, port: Optional[int] = None,
                 extra_config: Optional[Dict[str, str]] = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.port = port or free_port()
        self.extra_config = dict(extra_config or {})
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.workdir / "server.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def config_lines(self) -> List[str]:
        lines = [
            "tickTime=2000",
            f"dataDir={self.data_dir}",
            f"clientPort={self.port}",
            "clientPortAddress=127.0.0.1",
            "4lw.commands.whitelist=*",
        ]
        lines += [f"{k}={v}" for k, v in self.extra_config.items()]
        return lines

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "zoo.cfg"
        path.write_text("\n".join(self.config_lines()) + "\n")
        return path

    def command(self, config: Path) -> List[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        config = self.write_config()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(config), cwd=str(self.workdir), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} failed to start; log:\n{self.log_text()}")
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (SIGKILL by default) and reap the process."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class ZKTwistProcess(ServerProcess):
    """``twistd -n zktwist --config zoo.cfg`` from the current environment."""

    name = "zktwist"

    def command(self, config: Path) -> List[str]:
        return [
            twistd_executable(), "-n", "--pidfile=", "--logfile=-", "zktwist", "--config", str(config),
        ]

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        env_path = os.environ.get("PYTHONPATH", "")
        # Run from the checkout so the tests exercise the code under test.
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env_path) if p)
        try:
            return super().start(timeout)
        finally:
            if env_path:
                os.environ["PYTHONPATH"] = env_path
            else:
                os.environ.pop("PYTHONPATH", None)


class ApacheZooKeeperProcess(ServerProcess):
    """Apache ZooKeeper 3.8 standalone from Debian's ``zookeeper`` package."""

    name = "apache-zk"

    def config_lines(self) -> List[str]:
        return super().config_lines() + ["admin.enableServer=false"]

    def command(self, config: Path) -> List[str]:
        props = []
        for key, value in self.extra_config.items():
            if key in ("jute.maxbuffer", "zookeeper.extendedTypesEnabled", "readonlymode.enabled"):
                props.append(f"-D{key}={value}")
        return [
            "java", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dzookeeper.log.dir={self.workdir}", "-Dzookeeper.root.logger=INFO,CONSOLE",
            *props,
            "-cp", f"{ZOOKEEPER_CONF_DIR}:{ZOOKEEPER_JAR}",
            "org.apache.zookeeper.server.ZooKeeperServerMain", str(config),
        ]


# -- zktwist ensembles ----------------------------------------------------------------------


def zktwist_executable() -> str:
    """The ``zktwist`` console script of the current environment."""
    candidate = Path(sys.executable).parent / "zktwist"
    return str(candidate) if candidate.exists() else (shutil.which("zktwist") or "zktwist")


def tls_init(out_dir: Path, sids: List[int]) -> Path:
    """``zktwist tls init --servers ... --out DIR``: a CA and one certificate per member."""
    subprocess.run([zktwist_executable(), "tls", "init", "--servers",
                    ",".join(str(s) for s in sids), "--out", str(out_dir)],
                   check=True, capture_output=True, timeout=120)
    return out_dir


class ZKTwistEnsembleMember(ZKTwistProcess):
    """Member ``sid`` of a zktwist ensemble: ``server.N`` lines, ``dataDir/myid``, quorum TLS.

    ``servers`` maps every member's id to ``(client_port, quorum_port, election_port)``;
    ``peer_addresses`` may name another host:quorum:election for a member as seen from
    this one (a fault proxy sits there); ``tls_dir`` holds ``zktwist tls init``'s files,
    or None for ``sslQuorum=false``.
    """

    name = "zktwist"

    def __init__(self, sid: int, servers: Dict[int, "tuple[int, int, int]"],
                 workdir: Path, tls_dir: Optional[Path] = None,
                 extra_config: Optional[Dict[str, str]] = None,
                 peer_addresses: Optional[Dict[int, str]] = None,
                 tick_time: int = 500, init_limit: int = 10, sync_limit: int = 4) -> None:
        super().__init__(workdir=workdir, port=servers[sid][0], extra_config=extra_config)
        self._own_workdir = False
        self.sid = sid
        self.servers = dict(servers)
        self.tls_dir = tls_dir
        self.peer_addresses = dict(peer_addresses or {})
        self.tick_time, self.init_limit, self.sync_limit = tick_time, init_limit, sync_limit

    def server_line(self, sid: int) -> str:
        client, quorum, election = self.servers[sid]
        peer = self.peer_addresses.get(sid, "127.0.0.1:%d:%d" % (quorum, election))
        return "server.%d=%s:participant;127.0.0.1:%d" % (sid, peer, client)

    def config_lines(self) -> List[str]:
        lines = [
            f"tickTime={self.tick_time}",
            f"initLimit={self.init_limit}",
            f"syncLimit={self.sync_limit}",
            f"dataDir={self.data_dir}",
            "4lw.commands.whitelist=*",
        ]
        lines += [self.server_line(sid) for sid in sorted(self.servers)]
        if self.tls_dir is None:
            lines.append("sslQuorum=false")
        else:
            lines += ["sslQuorum=true",
                      f"ssl.quorum.keyFile={self.tls_dir}/server{self.sid}.key",
                      f"ssl.quorum.certFile={self.tls_dir}/server{self.sid}.pem",
                      f"ssl.quorum.caFile={self.tls_dir}/ca.pem"]
        lines += [f"{k}={v}" for k, v in self.extra_config.items()]
        return lines

    def write_config(self) -> Path:
        path = super().write_config()
        (self.data_dir / "myid").write_text(f"{self.sid}\n")
        return path

    def mode(self) -> Optional[str]:
        """``Mode:`` from srvr (leader/follower/observer), or None while not serving."""
        try:
            text = four_letter(self.port, "srvr", timeout=2.0)
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("Mode: "):
                return line[6:].strip()
        return None


def zktwist_ensemble(workdir: Path, n: int = 3, tls: bool = True,
                     **member_kw: object) -> List[ZKTwistEnsembleMember]:
    """``n`` members on free loopback ports (not started), certificates made when ``tls``."""
    ports: List[int] = []
    while len(ports) < 3 * n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    servers = {sid: (ports[3 * (sid - 1)], ports[3 * (sid - 1) + 1], ports[3 * (sid - 1) + 2])
               for sid in range(1, n + 1)}
    tls_dir = tls_init(workdir / "tls", list(servers)) if tls else None
    return [ZKTwistEnsembleMember(sid, servers, workdir / f"member{sid}", tls_dir,
                                  **member_kw)  # type: ignore[arg-type]
            for sid in servers]


def wait_for_modes(members: List[ZKTwistEnsembleMember], timeout: float = 30.0) -> Dict[int, str]:
    """Wait until every member serves with exactly one leader; returns {sid: mode}."""
    deadline = time.monotonic() + timeout
    modes: Dict[int, Optional[str]] = {}
    while time.monotonic() < deadline:
        modes = {m.sid: m.mode() for m in members}
        if all(modes.values()) and list(modes.values()).count("leader") == 1:
            return {sid: str(mode) for sid, mode in modes.items()}
        time.sleep(0.1)
    raise TimeoutError(f"no stable leader after {timeout}s: {modes}")
