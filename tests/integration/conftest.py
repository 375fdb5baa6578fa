"""Fixtures for client integration tests (kazoo, zkCli.sh) against a real server.

The server under test is zktwist unless ``ZKTWIST_TEST_TARGET=apache``, in which
case every test runs against Apache ZooKeeper 3.8 instead; that is how the
expectations in these tests were checked against the real thing.

To keep the suite fast one server is shared per test module (``target_server``);
tests that must not disturb others (restarts, ...) use ``fresh_server``.  Every
test works under its own unique path (``base_path``).
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import struct
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

from tests.conftest import require_apache_zookeeper
from tests.support.processes import (
    ApacheZooKeeperProcess,
    ServerProcess,
    ZKTwistProcess,
)

TARGET = os.environ.get("ZKTWIST_TEST_TARGET", "zktwist").strip().lower() or "zktwist"
if TARGET not in ("zktwist", "apache"):
    raise pytest.UsageError(f"ZKTWIST_TEST_TARGET must be 'zktwist' or 'apache', not {TARGET!r}")

#: Upper bound for anything a test waits for (events, other threads, ...).
WAIT = 10.0


def target_is_apache() -> bool:
    return TARGET == "apache"


def handshake(port: int, session_id: int = 0, passwd: bytes = b"\x00" * 16,
              timeout_ms: int = 10000, io_timeout: float = WAIT) -> tuple:
    """A bare ConnectRequest (with the readOnly byte) from a raw socket.

    Returns ``(socket, negotiated_timeout, session_id, passwd)``; the caller
    owns the socket.
    """
    body = struct.pack(">iqiqi", 0, 0, timeout_ms, session_id, len(passwd)) + passwd + b"\x00"
    sock = socket.create_connection(("127.0.0.1", port), timeout=io_timeout)
    try:
        sock.sendall(struct.pack(">i", len(body)) + body)

        def read_exactly(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = sock.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("server closed the connection during the handshake")
                buf += chunk
            return buf

        (length,) = struct.unpack(">i", read_exactly(4))
        reply = read_exactly(length)
    except BaseException:
        sock.close()
        raise
    _, timeout, sid, plen = struct.unpack(">iiqi", reply[:20])
    return sock, timeout, sid, reply[20:20 + plen]


def close_session(sock: socket.socket) -> None:
    """Send closeSession (xid 1, op -11) on a raw handshaken socket and close it."""
    try:
        sock.sendall(struct.pack(">iii", 8, 1, -11))
        sock.settimeout(WAIT)
        while sock.recv(4096):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def wait_until_serving(port: int, timeout: float = 30.0) -> None:
    """Wait until the server completes a session handshake.

    A listening port is not enough: Apache ZooKeeper accepts connections before
    it serves them, and a client connecting in that window can hang until its
    read timeout.  The probe session is closed again.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock, negotiated, sid, _ = handshake(port, io_timeout=1.0)
        except (OSError, ConnectionError, struct.error):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        if negotiated > 0 and sid != 0:
            close_session(sock)
            return
        sock.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"server on port {port} never accepted a session")
        time.sleep(0.05)


def start_target(workdir: Path, extra_config: Optional[Dict[str, str]] = None,
                 port: Optional[int] = None) -> ServerProcess:
    """Start the server under test (zktwist, or Apache ZooKeeper when asked for)."""
    if target_is_apache():
        require_apache_zookeeper()
        server: ServerProcess = ApacheZooKeeperProcess(workdir=workdir, port=port, extra_config=extra_config)
    else:
        server = ZKTwistProcess(workdir=workdir, port=port, extra_config=extra_config)
    server.start()
    try:
        wait_until_serving(server.port)
    except BaseException:
        server.cleanup()
        raise
    return server


class GateProxy:
    """A TCP forwarder on 127.0.0.1 that can be shut (refusing clients) and reopened.

    Lets a test hold a client off a server while that server restarts, so the
    client reconnects only once the server is serving again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._open = True
        self._stopping = False
        self._pairs: Dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="gate-proxy", daemon=True)
        self._thread.start()

    def shut(self) -> None:
        """Drop every forwarded connection and refuse new ones."""
        with self._lock:
            self._open = False
            for sock in list(self._pairs):
                self._drop(sock)

    def reopen(self) -> None:
        with self._lock:
            self._open = True

    def _drop(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._sel.select(timeout=0.05):
                sock = key.fileobj
                with self._lock:
                    if sock is self._listener:
                        try:
                            client, _ = self._listener.accept()
                        except OSError:
                            continue
                        if not self._open:
                            client.close()
                            continue
                        try:
                            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                        except OSError:
                            client.close()
                            continue
                        self._pairs[client] = upstream
                        self._pairs[upstream] = client
                        self._sel.register(client, selectors.EVENT_READ)
                        self._sel.register(upstream, selectors.EVENT_READ)
                        continue
                    if sock not in self._pairs:
                        continue
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(sock)
                        continue
                    try:
                        self._pairs[sock].sendall(data)
                    except OSError:
                        self._drop(sock)

    def close(self) -> None:
        self._stopping = True
        self._thread.join(5)
        with self._lock:
            for sock in list(self._pairs):
                self._drop(sock)
        self._sel.close()
        self._listener.close()


@pytest.fixture(scope="module")
def target_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """One server per test module; tests keep apart by using unique paths."""
    server = start_target(tmp_path_factory.mktemp(f"{TARGET}-module"))
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def fresh_server(tmp_path) -> Iterator[ServerProcess]:
    """A server of its own, for tests that restart or otherwise disturb it."""
    server = start_target(tmp_path / TARGET)
    try:
        yield server
    finally:
        server.cleanup()


class ClientFactory:
    """Creates started KazooClients and stops every one of them at teardown."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.clients: list = []

    def __call__(self, server: Optional[ServerProcess] = None, chroot: str = "",
                 start: bool = True, **kwargs):
        kazoo_client = pytest.importorskip("kazoo.client")
        server = server or self.server
        kwargs.setdefault("timeout", 10.0)
        client = kazoo_client.KazooClient(hosts=f"127.0.0.1:{server.port}{chroot}", **kwargs)
        self.clients.append(client)
        if start:
            client.start(timeout=WAIT)
        return client

    def close_all(self) -> None:
        for client in self.clients:
            try:
                client.stop()
            except Exception:
                pass
            try:
                client.close()
            except Exception:
                pass


@pytest.fixture
def zk_factory(target_server) -> Iterator[ClientFactory]:
    factory = ClientFactory(target_server)
    try:
        yield factory
    finally:
        factory.close_all()


@pytest.fixture
def zk(zk_factory):
    """A connected kazoo client on the module's server."""
    return zk_factory()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:60]


@pytest.fixture
def base_path(zk, request) -> Iterator[str]:
    """A fresh, existing, unique znode path for this test; removed afterwards."""
    path = f"/it-{_slug(request.node.name)}-{uuid.uuid4().hex[:8]}"
    zk.create(path)
    yield path
    if zk.connected:
        try:
            zk.delete(path, recursive=True)
        except Exception:
            pass  # best effort: the module's server goes away soon anyway


def wait_until(predicate: Callable[[], object], timeout: float = WAIT, interval: float = 0.02,
               message: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class EventRecorder:
    """A thread-safe list of watch events (or any callback arguments)."""

    def __init__(self) -> None:
        self.items: list = []
        self._cond = threading.Condition()

    def __call__(self, *args):
        with self._cond:
            self.items.append(args[0] if len(args) == 1 else args)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.items) >= count, timeout):
                raise AssertionError(f"expected {count} events, got {len(self.items)}: {self.items!r}")
            return list(self.items)

    def snapshot(self) -> list:
        with self._cond:
            return list(self.items)


def settle(client) -> None:
    """Let in-flight notifications for ``client`` be delivered and dispatched.

    The server sends a notification before the reply to any later request on
    the same connection, so after a round trip plus a short pause for kazoo's
    callback thread, anything that was going to arrive has arrived.
    """
    client.exists("/")
    time.sleep(0.2)
