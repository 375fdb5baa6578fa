"""The fault-injecting TCP proxy alone, against a loopback echo server."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Iterator, List

import pytest

from tests.support.faultproxy import FaultProxy, Link
from tests.support.processes import PROJECT_ROOT


class EchoServer:
    """Echoes every byte back; counts connections it saw."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.received: List[bytes] = []
        self._conns: List[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                self.received.append(data)
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def link(echo: EchoServer) -> Iterator[Link]:
    proxy = FaultProxy()
    try:
        yield proxy.add_link("l", echo.port)
    finally:
        proxy.close()


def connect(link: Link, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", link.port), timeout=timeout)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += data
    return buf


def roundtrip(sock: socket.socket, payload: bytes = b"hello") -> bytes:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def test_pass_forwards_both_ways_including_large_payloads(link: Link) -> None:
    with connect(link) as s:
        assert roundtrip(s) == b"hello"
        big = bytes(range(256)) * 8192   # 2 MiB: exercises partial writes and back-pressure
        sender = threading.Thread(target=s.sendall, args=(big,))
        sender.start()
        assert recv_exactly(s, len(big)) == big
        sender.join()
    fwd, back = link.forwarded()
    assert fwd >= len(big) + 5 and back >= len(big) + 5


def test_cut_drops_live_connections_and_refuses_new_ones(link: Link, echo: EchoServer) -> None:
    s = connect(link)
    assert roundtrip(s) == b"hello"
    link.cut()
    with pytest.raises((ConnectionError, OSError)):
        s.settimeout(2)
        s.sendall(b"more")
        if not s.recv(10):
            raise ConnectionError("closed")
    s.close()
    before = echo.accepted
    with pytest.raises((ConnectionError, OSError)):
        with connect(link) as s2:
            s2.settimeout(2)
            s2.sendall(b"x")
            if not s2.recv(10):
                raise ConnectionError("closed")
    assert echo.accepted == before, "a cut link must not reach the target"
    assert link.refused >= 1
    link.restore()
    with connect(link) as s3:
        assert roundtrip(s3, b"back") == b"back"


def test_blackhole_forwards_nothing_then_delivers_held_bytes_on_heal(link: Link, echo: EchoServer) -> None:
    s = connect(link)
    assert roundtrip(s) == b"hello"
    link.blackhole()
    s.settimeout(0.5)
    s.sendall(b"held")
    with pytest.raises(socket.timeout):
        s.recv(10)
    time.sleep(0.2)
    assert b"held" not in b"".join(echo.received)
    # a new connection is accepted but never reaches the target
    before = echo.accepted
    s2 = connect(link)
    s2.settimeout(0.5)
    s2.sendall(b"void")
    with pytest.raises(socket.timeout):
        s2.recv(10)
    assert echo.accepted == before
    link.restore()
    s.settimeout(2)
    assert recv_exactly(s, 4) == b"held", "bytes held by a blackhole flow on once it heals"
    s.close()
    s2.close()


def test_one_way_blackhole(link: Link, echo: EchoServer) -> None:
    s = connect(link)
    assert roundtrip(s) == b"hello"
    link.blackhole("backward")
    s.settimeout(0.5)
    s.sendall(b"ping")
    with pytest.raises(socket.timeout):
        s.recv(10)
    deadline = time.monotonic() + 2
    while b"ping" not in b"".join(echo.received) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b"ping" in b"".join(echo.received), "the forward direction still passes"
    link.restore()
    s.settimeout(2)
    assert recv_exactly(s, 4) == b"ping"
    link.blackhole("forward")
    s.sendall(b"pong")
    s.settimeout(0.5)
    with pytest.raises(socket.timeout):
        s.recv(10)
    assert b"pong" not in b"".join(echo.received)
    s.close()


def test_delay_holds_each_chunk(link: Link) -> None:
    with connect(link) as s:
        t = time.monotonic()
        roundtrip(s)
        fast = time.monotonic() - t
        link.delay(150, "forward")
        t = time.monotonic()
        assert roundtrip(s, b"slow") == b"slow"
        slow = time.monotonic() - t
        assert slow >= 0.14 > fast
        link.delay(100)   # both ways: >= 200 ms per round trip, order kept
        s.sendall(b"a")
        s.sendall(b"b")
        t = time.monotonic()
        assert recv_exactly(s, 2) == b"ab"
        assert time.monotonic() - t >= 0.15
        link.restore()
        t = time.monotonic()
        roundtrip(s)
        assert time.monotonic() - t < 0.1


def test_closing_either_side_closes_the_other(link: Link) -> None:
    s = connect(link)
    assert roundtrip(s) == b"hello"
    s.close()
    deadline = time.monotonic() + 2
    while link.connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert link.connections == 0


def test_links_are_independent(echo: EchoServer) -> None:
    with FaultProxy() as proxy:
        a = proxy.add_link("a", echo.port)
        b = proxy.add_link("b", echo.port)
        a.cut()
        with connect(b) as s:
            assert roundtrip(s) == b"hello"
        assert "cut" in repr(a) and "pass" in repr(b)
        with pytest.raises(ValueError):
            proxy.add_link("a", echo.port)
        with pytest.raises(ValueError):
            b.blackhole("sideways")


def test_runs_as_a_process_controlled_from_stdin(echo: EchoServer) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faultproxy", f"x={echo.port}"],
        cwd=str(PROJECT_ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        name, port = proc.stdout.readline().split()
        assert name == "x" and proc.stdout.readline().strip() == "ready"
        with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as s:
            assert roundtrip(s) == b"hello"
        proc.stdin.write("cut x\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith("ok")
        with pytest.raises((ConnectionError, OSError)):
            with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as s:
                s.settimeout(2)
                s.sendall(b"x")
                if not s.recv(10):
                    raise ConnectionError("closed")
        proc.stdin.write("bogus x\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith("error")
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(10)
