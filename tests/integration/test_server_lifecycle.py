"""Server-driven behaviour with real processes: session expiry, container and TTL reaping,
the per-IP connection limit, and the jute.maxbuffer frame limit with other clients unharmed."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from kazoo.client import KazooClient

from tests.support.processes import ZKTwistProcess


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def _connect_raw(port: int, timeout_ms: int = 4000) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(_frame(struct.pack(">iqiq", 0, 0, timeout_ms, 0) + struct.pack(">i", 16) + b"\0" * 16 + b"\0"))
    got = b""
    while len(got) < 4 + 37:
        chunk = s.recv(64)
        assert chunk, "server closed during the handshake"
        got += chunk
    return s


OPEN_ACL = struct.pack(">ii", 1, 31) + struct.pack(">i", 5) + b"world" + struct.pack(">i", 6) + b"anyone"


def _raw_create(sock: socket.socket, path: str, data: bytes, flags: int, op: int = 1,
                ttl: int = -1, xid: int = 1) -> int:
    """Create through a raw session (kazoo 2.11 has no container or TTL API); returns err."""
    p = path.encode()
    body = (struct.pack(">ii", xid, op) + struct.pack(">i", len(p)) + p + struct.pack(">i", len(data))
            + data + OPEN_ACL + struct.pack(">i", flags))
    if op == 21:
        body += struct.pack(">q", ttl)
    sock.sendall(_frame(body))
    reply = sock.recv(4096)
    return struct.unpack_from(">iqi", reply, 4)[2]


def _wait_for(predicate, timeout: float = 15.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ZKTwistProcess(
        workdir=tmp_path_factory.mktemp("lifecycle"),
        extra_config={
            "extendedTypesEnabled": "true",
            "znode.container.checkIntervalMs": "300",
            "maxClientCnxns": "20",
        },
    )
    srv.extra_config["tickTime"] = "500"
    srv.start()
    yield srv
    srv.cleanup()


@pytest.fixture
def zk(server):
    client = KazooClient(server.address, timeout=10)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


def test_an_abandoned_session_expires_and_its_ephemerals_go(server, zk):
    raw = _connect_raw(server.port, timeout_ms=1000)  # clamped up to 2 x tickTime = 1000 ms
    assert _raw_create(raw, "/abandoned", b"", flags=1) == 0
    assert zk.exists("/abandoned").ephemeralOwner != 0
    deleted = []
    zk.exists("/abandoned", watch=lambda event: deleted.append(event))
    started = time.monotonic()
    # Stay silent: no pings. The server expires the session after its timeout.
    assert _wait_for(lambda: zk.exists("/abandoned") is None, timeout=10)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed <= 6, elapsed
    assert _wait_for(lambda: bool(deleted))
    assert deleted[0].type == "DELETED"
    # The expired session's socket was closed by the server.
    raw.settimeout(5)
    assert raw.recv(1024) == b""
    raw.close()


def test_a_container_is_reaped_after_its_last_child_goes(server, zk):
    raw = _connect_raw(server.port, timeout_ms=20000)
    assert _raw_create(raw, "/box", b"", flags=4, op=19) == 0
    raw.close()
    zk.create("/box/item")
    time.sleep(1.0)
    assert zk.exists("/box") is not None, "a container with a child must stay"
    zk.delete("/box/item")
    assert _wait_for(lambda: zk.exists("/box") is None, timeout=10)


def test_a_container_that_never_had_a_child_stays(server, zk):
    raw = _connect_raw(server.port, timeout_ms=20000)
    assert _raw_create(raw, "/never-used", b"", flags=4, op=19) == 0
    raw.close()
    time.sleep(1.5)
    assert zk.exists("/never-used") is not None


def test_a_ttl_node_expires_only_when_childless_and_idle(server, zk):
    raw = _connect_raw(server.port, timeout_ms=20000)
    assert _raw_create(raw, "/ttl-node", b"x", flags=5, op=21, ttl=800) == 0
    assert _raw_create(raw, "/ttl-parent", b"", flags=5, op=21, ttl=800, xid=2) == 0
    zk.create("/ttl-parent/child")
    assert zk.exists("/ttl-node").ephemeralOwner == 0  # the TTL marker is masked
    assert _wait_for(lambda: zk.exists("/ttl-node") is None, timeout=10)
    assert zk.exists("/ttl-parent") is not None, "a TTL node with children must stay"
    raw.close()


def test_connections_per_ip_are_limited_and_others_keep_working(server, zk):
    socks = []
    try:
        for _ in range(25):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.3)
        closed = 0
        for s in socks:
            s.settimeout(0.2)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except ConnectionResetError:
                closed += 1
            except socket.timeout:
                pass
        # 20 allowed from 127.0.0.1, one of them is the kazoo fixture's.
        assert closed >= 25 - 19
    finally:
        for s in socks:
            s.close()
    assert _wait_for(lambda: zk.exists("/") is not None)


def test_an_oversized_frame_closes_only_that_connection(server, zk):
    zk.create("/kept", b"value")
    bad = _connect_raw(server.port)
    bad.sendall(struct.pack(">i", 0xFFFFF + 1) + b"\0" * 1024)
    bad.settimeout(5)
    try:
        assert bad.recv(1024) == b""
    except ConnectionResetError:
        pass
    bad.close()
    assert zk.get("/kept")[0] == b"value"
    big = b"y" * (0xFFFFF - 64)
    zk.set("/kept", big)
    assert len(zk.get("/kept")[0]) == len(big)
