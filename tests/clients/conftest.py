"""Fixtures for the smoke tests with three more real clients: Curator, the C client, node.

Every test drives an unmodified client program (a JVM, ``cli_mt``, ``node``)
against a real server process: zktwist (``twistd -n zktwist``) by default, or
Apache ZooKeeper 3.8 when ``ZKTWIST_TEST_TARGET=apache``; that is how the
expectations were checked against the real thing.  One server, started with
``extendedTypesEnabled=true`` (TTL nodes), is shared by the whole package;
each test works under its own unique path.

What the clients need is installed by ``tests/clients/install.sh``.  A test
whose client is missing skips with the reason, except under ``CI=true``, where
that is a failure (the same policy as ``require_apache_zookeeper``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

from tests.conftest import IN_CI, require_apache_zookeeper
from tests.support.processes import ApacheZooKeeperProcess, ServerProcess, ZKTwistProcess

HERE = Path(__file__).resolve().parent
INSTALL_SH = HERE / "install.sh"

TARGET = os.environ.get("ZKTWIST_TEST_TARGET", "zktwist").strip().lower() or "zktwist"
if TARGET not in ("zktwist", "apache"):
    raise pytest.UsageError(f"ZKTWIST_TEST_TARGET must be 'zktwist' or 'apache', not {TARGET!r}")

#: Server settings every client test relies on (TTL nodes for Curator and cli_mt).
#: Apache ZooKeeper turns an unknown zoo.cfg key into the ``zookeeper.``-prefixed
#: system property, so ``extendedTypesEnabled=true`` works for both servers.
SERVER_CONFIG: Dict[str, str] = {"extendedTypesEnabled": "true"}


def require_client(available: bool, reason: str) -> None:
    """Skip when a client is missing; under CI=true that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason}; CI must run the client smoke tests (see tests/clients/install.sh)")
    pytest.skip(f"{reason} (run tests/clients/install.sh)")


# ----------------------------------------------------------------------------- server


def _handshake_ok(port: int) -> bool:
    """True when the server completes a session handshake (then closes it)."""
    body = struct.pack(">iqiqi", 0, 0, 10000, 0, 16) + b"\x00" * 16 + b"\x00"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            buf = b""
            while len(buf) < 4 + 20:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                buf += chunk
            _, _, timeout, sid = struct.unpack(">iiiq", buf[:20])
            if timeout <= 0 or sid == 0:
                return False
            sock.sendall(struct.pack(">iii", 8, 1, -11))  # closeSession
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass
            return True
    except (OSError, struct.error):
        return False


def wait_until_serving(port: int, timeout: float = 30.0) -> None:
    """A listening port is not enough: Apache ZooKeeper accepts before it serves."""
    deadline = time.monotonic() + timeout
    while not _handshake_ok(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"server on 127.0.0.1:{port} never accepted a session")
        time.sleep(0.05)


def start_target(workdir: Path) -> ServerProcess:
    if TARGET == "apache":
        require_apache_zookeeper()
        server: ServerProcess = ApacheZooKeeperProcess(workdir=workdir, extra_config=SERVER_CONFIG)
    else:
        server = ZKTwistProcess(workdir=workdir, extra_config=SERVER_CONFIG)
    server.start()
    try:
        wait_until_serving(server.port)
    except BaseException:
        server.cleanup()
        raise
    return server


class SharedServer:
    """The package's server, started on first use (so skipped tests start nothing)."""

    def __init__(self, tmp_path_factory) -> None:
        self._tmp_path_factory = tmp_path_factory
        self.server: Optional[ServerProcess] = None

    def get(self) -> ServerProcess:
        if self.server is not None and self.server.proc is not None and self.server.proc.poll() is not None:
            # It died under an earlier test (which has reported that); start afresh.
            self.server.cleanup()
            self.server = None
        if self.server is None:
            self.server = start_target(self._tmp_path_factory.mktemp(f"clients-{TARGET}"))
        return self.server

    def cleanup(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


@pytest.fixture(scope="package")
def shared_server(tmp_path_factory) -> Iterator[SharedServer]:
    holder = SharedServer(tmp_path_factory)
    try:
        yield holder
    finally:
        holder.cleanup()


@pytest.fixture
def client_server(shared_server) -> Iterator[ServerProcess]:
    """The server under test (zktwist, or Apache ZooKeeper 3.8), shared by the client tests.

    Request it after the fixture that checks the client is installed, so a
    skipped test does not start a server.  A test fails if the server died
    under it.
    """
    server = shared_server.get()
    yield server
    if server.proc is not None and server.proc.poll() is not None:
        pytest.fail(f"the {server.name} server exited (status {server.proc.returncode}) during the test; "
                    f"log:\n{server_log_excerpt(server)}")


@pytest.fixture
def unique_path(request) -> str:
    """A znode path no other test uses (not created)."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    return f"/clients-{name}-{uuid.uuid4().hex[:8]}"


def server_log_excerpt(server: ServerProcess, limit: int = 3000) -> str:
    return server.log_text()[-limit:]


# ----------------------------------------------------------------------------- installs


def run_install(component: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Run ``install.sh <component>`` (idempotent); its output is returned for reasons."""
    return subprocess.run(
        ["bash", str(INSTALL_SH), component], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


NODE_CLIENT_SRC = HERE / "node"


def node_client_dir() -> Path:
    """Where install.sh puts node_modules: outside the checkout, keyed by the manifests' hash.

    Must agree with ``node_dir`` in install.sh:
    sha256 of package.json followed by package-lock.json, first 16 hex digits.
    """
    override = os.environ.get("ZKTWIST_NODE_CLIENT_DIR")
    if override:
        return Path(override)
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NODE_CLIENT_SRC / name).read_bytes())
    return Path(f"/tmp/zktwist-node-client-{digest.hexdigest()[:16]}")


def node_modules_ready() -> Optional[Path]:
    modules = node_client_dir() / "node_modules"
    if (modules / "node-zookeeper-client" / "package.json").exists() and (
            node_client_dir() / ".installed").exists():
        return modules
    return None
