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
