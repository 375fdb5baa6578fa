"""Bad, hostile and malformed input on the client port, byte for byte.

Every case here was run against Apache ZooKeeper 3.8.0 (Debian's package) with
a raw socket, and the test encodes what it did: either an error reply with a
given code (the connection staying usable), or the connection closed, with or
without a reply first.  After every bad client the server must still serve a
good client on a new connection, and the data a good client (kazoo) wrote
before the tests must be intact, stat and all.

Targets: zktwist always; with ``ZKTWIST_TEST_TARGET=apache`` the same tests
also run against Apache ZooKeeper 3.8, which is how the expectations are
proven.  One server per target is shared by the whole module.

The wire helpers below are deliberately tiny and independent of zktwist's own
codec (plain :mod:`struct`); this file must not import zktwist.

Facts worth knowing when reading the expectations (all seen on 3.8.0):

* A frame length < 0 or > jute.maxbuffer (1,048,575) closes the connection as
  soon as the 4-byte length is read, with no reply, before or after the
  handshake; a zero length closes it too.  A payload of exactly 1,048,575 bytes
  is accepted.
* A ConnectRequest that is too short (or whose passwd length runs past the
  frame) closes the connection without a reply; trailing bytes after the
  readOnly byte are ignored; the reply carries the readOnly byte only when the
  request did.
* A request record that cannot be decoded (a vector count of 2^31-1, a string
  or buffer length past the end of the frame, a missing field, a bad multi)
  gets ``(xid, zxid, -5 MARSHALLINGERROR)`` with no body and the connection
  stays open.  A malformed auth packet closes the connection instead.
* An unknown opcode gets ``(xid, -1, -6 UNIMPLEMENTED)``, then the connection
  is closed.
* Paths are decoded as UTF-8 with U+FFFD for bad bytes (sync echoes
  ``/bad\\xef\\xbf\\xbd`` for ``/bad\\xff``); U+FFFD, and the surrogates Java
  makes of 4-byte UTF-8, fail path validation, so create/setData answer
  BADARGUMENTS while reads answer NONODE.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import uuid
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest

from tests.conftest import require_apache_zookeeper
from tests.support.processes import ApacheZooKeeperProcess, ServerProcess, ZKTwistProcess

kazoo_client = pytest.importorskip("kazoo.client")
from kazoo.exceptions import NoNodeError  # noqa: E402
from kazoo.security import OPEN_ACL_UNSAFE  # noqa: E402

# --------------------------------------------------------------------------- constants

MAXBUFFER = 1048575          # jute.maxbuffer default (0xfffff)
IO_TIMEOUT = 5.0             # how long to wait for a reply or for the server to close
QUIET = 0.3                  # how long "no reply arrives" is watched for

OK = 0
MARSHALLINGERROR = -5
UNIMPLEMENTED = -6
BADARGUMENTS = -8
NONODE = -101
SESSIONEXPIRED = -112
INVALIDACL = -114

OP_CREATE, OP_DELETE, OP_EXISTS, OP_GETDATA, OP_SETDATA = 1, 2, 3, 4, 5
OP_GETACL, OP_SETACL, OP_GETCHILDREN, OP_SYNC, OP_PING = 6, 7, 8, 9, 11
OP_MULTI, OP_AUTH, OP_SETWATCHES, OP_CLOSE = 14, 100, 101, -11

XID_PING, XID_AUTH, XID_SETWATCHES = -2, -4, -8
INT_MAX = 2 ** 31 - 1

SEED = "/bad-input"
SEED_TREE = {
    SEED: b"seed \x00\xff\xfe binary",
    f"{SEED}/a": b"alpha",
    f"{SEED}/b": b"",
    f"{SEED}/c": "gr\u00fc\u00dfe \u2603".encode("utf-8"),
}

# --------------------------------------------------------------------------- jute by hand


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def boolean(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def ustr(s) -> bytes:
    """ustring/buffer: int length + bytes (``None`` is length -1)."""
    if s is None:
        return i32(-1)
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return i32(len(b)) + b


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def connect_request(timeout_ms: int = 10000, session_id: int = 0, passwd: Optional[bytes] = b"\0" * 16,
                    last_zxid: int = 0, read_only: Optional[bool] = False, protocol_version: int = 0) -> bytes:
    body = i32(protocol_version) + i64(last_zxid) + i32(timeout_ms) + i64(session_id) + ustr(passwd)
    if read_only is not None:
        body += boolean(read_only)
    return body


CR45 = connect_request()
assert len(CR45) == 45


def header(xid: int, op: int) -> bytes:
    return i32(xid) + i32(op)


def acl(perms: int = 31, scheme="world", ident="anyone") -> bytes:
    return i32(perms) + ustr(scheme) + ustr(ident)


OPEN_ACL = i32(1) + acl()


def create_req(xid: int, path, data: bytes = b"", flags: int = 0, acls: bytes = OPEN_ACL) -> bytes:
    return header(xid, OP_CREATE) + ustr(path) + ustr(data) + acls + i32(flags)


def get_data_req(xid: int, path, watch: bool = False) -> bytes:
    return header(xid, OP_GETDATA) + ustr(path) + boolean(watch)


def set_data_req(xid: int, path, data: bytes, version: int = -1) -> bytes:
    return header(xid, OP_SETDATA) + ustr(path) + ustr(data) + i32(version)


def path_req(xid: int, op: int, path, tail: bytes = b"") -> bytes:
    return header(xid, op) + ustr(path) + tail


def multi_header(op: int, done: bool, err: int) -> bytes:
    return i32(op) + boolean(done) + i32(err)


MULTI_END = multi_header(-1, True, -1)
PING = header(XID_PING, OP_PING)


class Reply(NamedTuple):
    xid: int
    zxid: int
    err: int
    body: bytes


class ConnectResponse(NamedTuple):
    protocol_version: int
    timeout: int
    session_id: int
    passwd: bytes
    read_only: Optional[bool]
    size: int


def parse_connect_response(payload: bytes) -> ConnectResponse:
    pv, timeout, sid, plen = struct.unpack(">iiqi", payload[:20])
    plen = max(plen, 0)
    passwd = payload[20:20 + plen]
    rest = payload[20 + plen:]
    return ConnectResponse(pv, timeout, sid, passwd, (rest[0] != 0) if rest else None, len(payload))


def parse_reply(payload: bytes) -> Reply:
    assert len(payload) >= 16, f"reply shorter than a ReplyHeader: {payload!r}"
    xid, zxid, err = struct.unpack(">iqi", payload[:16])
    return Reply(xid, zxid, err, payload[16:])


def split_frames(data: bytes) -> List[bytes]:
    frames = []
    while len(data) >= 4:
        (n,) = struct.unpack(">i", data[:4])
        frames.append(data[4:4 + n])
        data = data[4 + n:]
    assert not data, f"trailing partial frame from the server: {data!r}"
    return frames


def stat_from(body: bytes) -> Tuple[int, ...]:
    """The 68-byte Stat: czxid mzxid ctime mtime version cversion aversion owner dataLength numChildren pzxid."""
    assert len(body) == 68, f"Stat must be 68 bytes, got {len(body)}"
    return struct.unpack(">qqqqiiiqiiq", body)


class Conn:
    """One raw TCP connection to the server under test."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closed = False

    # -- sending
    def send(self, data: bytes) -> bool:
        """Send everything; ``False`` when the server had already closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def send_frame(self, payload: bytes) -> bool:
        return self.send(frame(payload))

    # -- receiving
    def _recv_exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError(f"server closed the connection after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def read_frame(self) -> bytes:
        (n,) = struct.unpack(">i", self._recv_exactly(4))
        return self._recv_exactly(n)

    def read_reply(self) -> Reply:
        return parse_reply(self.read_frame())

    def read_until_eof(self, timeout: float = IO_TIMEOUT) -> Tuple[bytes, bool]:
        """Everything the server sends until it closes: ``(data, closed)``; closed is False on timeout."""
        self.sock.settimeout(timeout)
        data = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    return data, True
                if not chunk:
                    return data, True
                data += chunk
            return data, False
        except socket.timeout:
            return data, False
        finally:
            self.sock.settimeout(IO_TIMEOUT)

    def nothing_arrives(self, wait: float = QUIET) -> bytes:
        """Bytes that arrive within ``wait`` seconds (b"" when none); does not consume past them."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return b""
        finally:
            self.sock.settimeout(IO_TIMEOUT)

    # -- conversations
    def handshake(self, request: bytes = CR45) -> ConnectResponse:
        assert self.send_frame(request)
        return parse_connect_response(self.read_frame())

    def request(self, payload: bytes) -> Reply:
        assert self.send_frame(payload), "server closed the connection before the request was sent"
        return self.read_reply()

    def ping(self) -> None:
        """A ping round trip: proves the connection is open and in sync."""
        reply = self.request(PING)
        assert (reply.xid, reply.err, reply.body) == (XID_PING, OK, b""), reply

    def half_close(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        """Close with a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


def assert_closed_silently(conn: Conn, what: str) -> None:
    data, closed = conn.read_until_eof()
    assert data == b"", f"{what}: expected no reply, got {data!r}"
    assert closed, f"{what}: expected the server to close the connection, it stayed open {IO_TIMEOUT}s"


def assert_replies_then_closed(conn: Conn, what: str) -> List[Reply]:
    data, closed = conn.read_until_eof()
    assert closed, f"{what}: expected the server to close the connection (got {data!r} and no close)"
    return [parse_reply(f) for f in split_frames(data)]


def assert_rejected_session(resp: ConnectResponse) -> None:
    """What 3.8 sends for an expired/unknown session or a wrong password, before closing."""
    assert resp.timeout == 0 and resp.session_id == 0 and resp.passwd == b"\0" * 16, resp
    assert resp.protocol_version == 0, resp


# --------------------------------------------------------------------------- the servers


def _targets() -> List[str]:
    wanted = os.environ.get("ZKTWIST_TEST_TARGET", "zktwist").strip().lower() or "zktwist"
    return ["zktwist", "apache"] if wanted == "apache" else ["zktwist"]


class Target:
    """A running server plus the good client that seeded it."""

    def __init__(self, name: str, server: ServerProcess) -> None:
        self.name = name
        self.server = server
        self.port = server.port
        self.kazoo = kazoo_client.KazooClient(hosts=server.address, timeout=10.0)
        self.seed: Dict[str, Tuple[bytes, object]] = {}

    def connect(self) -> Conn:
        return Conn(self.port)

    def session(self, request: bytes = CR45) -> Conn:
        conn = self.connect()
        resp = conn.handshake(request)
        assert resp.timeout > 0 and resp.session_id != 0, resp
        return conn

    def scratch(self) -> str:
        """A fresh empty node for tests that write."""
        return self.kazoo.create(f"/bad-input-scratch-{uuid.uuid4().hex[:10]}", b"scratch")

    def assert_serving(self) -> None:
        """The server is alive, takes a new good client, and the seeded data is intact."""
        proc = self.server.proc
        assert proc is not None and proc.poll() is None, (
            f"{self.name} died (exit {proc.returncode if proc else None}); log:\n{self.server.log_text()}")
        conn = self.connect()
        try:
            resp = conn.handshake()
            assert resp.timeout > 0 and resp.session_id != 0 and resp.read_only is False, resp
            for xid, (path, data) in enumerate(SEED_TREE.items(), start=1):
                reply = conn.request(get_data_req(xid, path))
                assert (reply.xid, reply.err) == (xid, OK), reply
                (dlen,) = struct.unpack(">i", reply.body[:4])
                assert reply.body[4:4 + dlen] == data, f"{path}: data changed"
                stat = stat_from(reply.body[4 + dlen:])
                seeded = self.seed[path][1]
                assert stat == (seeded.czxid, seeded.mzxid, seeded.ctime, seeded.mtime, seeded.version,
                                seeded.cversion, seeded.aversion, seeded.ephemeralOwner, seeded.dataLength,
                                seeded.numChildren, seeded.pzxid), f"{path}: stat changed"
            reply = conn.request(path_req(100, OP_GETCHILDREN, SEED, boolean(False)))
            assert reply.err == OK, reply
            (count,) = struct.unpack(">i", reply.body[:4])
            assert count == 3, reply
            reply = conn.request(header(101, OP_CLOSE))
            assert (reply.xid, reply.err, reply.body) == (101, OK, b""), reply
            assert_closed_silently(conn, "after closeSession")
        finally:
            conn.close()
        # The long-lived kazoo session (another connection, opened before any bad client) still works.
        for path, data in SEED_TREE.items():
            got, stat = self.kazoo.get(path)
            assert (got, stat) == (data, self.seed[path][1]), path
        assert self.kazoo.get_acls(SEED)[0] == OPEN_ACL_UNSAFE


def _wait_until_serving(port: int, timeout: float = 30.0) -> None:
    """A listening port is not enough (Apache accepts before it serves): wait for a session."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = Conn(port)
            try:
                conn.sock.settimeout(1.0)
                resp = conn.handshake()
                if resp.timeout > 0:
                    conn.send_frame(header(1, OP_CLOSE))
                    conn.read_until_eof(2.0)
                    return
            finally:
                conn.close()
        except (OSError, EOFError, struct.error):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"server on {port} never accepted a session")
        time.sleep(0.05)


@pytest.fixture(scope="module", params=_targets())
def target(request, tmp_path_factory) -> Iterator[Target]:
    name = request.param
    if name == "apache":
        require_apache_zookeeper()
        server: ServerProcess = ApacheZooKeeperProcess(workdir=tmp_path_factory.mktemp("apache-bad-input"))
    else:
        server = ZKTwistProcess(workdir=tmp_path_factory.mktemp("zktwist-bad-input"))
    server.start()
    t = Target(name, server)
    try:
        _wait_until_serving(server.port)
        t.kazoo.start(timeout=15)
        for path, data in SEED_TREE.items():
            t.kazoo.create(path, data)
        for path in SEED_TREE:
            t.seed[path] = t.kazoo.get(path)
        yield t
    finally:
        try:
            t.kazoo.stop()
            t.kazoo.close()
        except Exception:
            pass
        server.cleanup()


@pytest.fixture
def bad(target) -> Iterator[Target]:
    """The target; after the test, every connection the test opened is closed and the server must still serve."""
    opened: List[Conn] = []
    orig_connect = target.connect

    def tracking_connect() -> Conn:
        conn = orig_connect()
        opened.append(conn)
        return conn

    target.connect = tracking_connect  # type: ignore[method-assign]
    try:
        yield target
    finally:
        target.connect = orig_connect  # type: ignore[method-assign]
        for conn in opened:
            conn.close()
    target.assert_serving()


# --------------------------------------------------------------------------- framing

# (id, bytes sent as the very first thing on a fresh connection)
PRE_HANDSHAKE_CLOSE = [
    ("negative-length-1", i32(-1)),
    ("negative-length-5", i32(-5) + b"abcde"),
    ("negative-length-min", i32(-2 ** 31)),
    ("zero-length", i32(0)),
    ("length-maxbuffer+1", i32(MAXBUFFER + 1)),
    ("length-int-max", i32(INT_MAX)),
    # garbage
    ("http-request", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("deadbeef-then-connect", b"\xde\xad\xbe\xef" + frame(CR45)),
    ("not-a-4lw-then-connect", b"xyzw" + frame(CR45)),
    ("short-frame-then-connect", frame(b"hello") + frame(CR45)),
    # ConnectRequest too short (44 and 45 are the real sizes)
    ("connect-43-bytes", frame(CR45[:43])),
    ("connect-40-bytes", frame(CR45[:40])),
    ("connect-28-bytes-no-passwd", frame(CR45[:28])),
    ("connect-20-bytes", frame(CR45[:20])),
    ("connect-4-bytes", frame(CR45[:4])),
    ("connect-passwd-len-past-frame", frame(CR45[:24] + i32(100) + b"\0" * 17)),
    ("connect-passwd-len-int-max", frame(CR45[:24] + i32(INT_MAX) + b"\0" * 17)),
    # lastZxidSeen ahead of the server: "client must try another server"
    ("connect-zxid-from-future", frame(connect_request(last_zxid=1 << 40))),
    # requests before any handshake (parsed as a ConnectRequest, which they are not)
    ("getdata-before-handshake", frame(get_data_req(1, SEED))),
    ("ping-before-handshake", frame(PING)),
    ("close-before-handshake", frame(header(1, OP_CLOSE))),
    ("create-before-handshake", frame(create_req(1, "/bad-input-pre", b"x"))),
]


@pytest.mark.parametrize("data", [c[1] for c in PRE_HANDSHAKE_CLOSE], ids=[c[0] for c in PRE_HANDSHAKE_CLOSE])
def test_bad_first_bytes_close_without_reply(bad, data):
    conn = bad.connect()
    conn.send(data)
    assert_closed_silently(conn, "bad first frame")
    assert bad.kazoo.exists("/bad-input-pre") is None


# (id, bytes sent on an established session)
POST_HANDSHAKE_CLOSE = [
    ("negative-length-1", i32(-1)),
    ("negative-length-min", i32(-2 ** 31)),
    ("zero-length", i32(0)),
    ("length-maxbuffer+1", i32(MAXBUFFER + 1)),
    ("length-int-max", i32(INT_MAX)),
    ("http-request", b"GET / HTTP/1.1\r\n\r\n"),
    ("4lw-after-handshake", b"ruok"),
    ("frame-shorter-than-request-header", frame(i32(1))),
    ("auth-packet-truncated", frame(header(XID_AUTH, OP_AUTH) + i32(0))),
    ("auth-buffer-len-past-frame", frame(header(XID_AUTH, OP_AUTH) + i32(0) + ustr("digest") + i32(1000) + b"a:b")),
]


@pytest.mark.parametrize("data", [c[1] for c in POST_HANDSHAKE_CLOSE], ids=[c[0] for c in POST_HANDSHAKE_CLOSE])
def test_bad_frame_after_handshake_closes_without_reply(bad, data):
    conn = bad.session()
    conn.send(data)
    assert_closed_silently(conn, "bad frame after the handshake")


@pytest.mark.parametrize("handshaken", [False, True], ids=["before-handshake", "after-handshake"])
def test_truncated_frame_then_half_close(bad, handshaken):
    """A length promising 100 bytes, 3 sent, then FIN: the server closes too, without a reply."""
    conn = bad.session() if handshaken else bad.connect()
    conn.send(i32(100) + b"abc")
    conn.half_close()
    assert_closed_silently(conn, "truncated frame then FIN")


@pytest.mark.parametrize("handshaken", [False, True], ids=["before-handshake", "after-handshake"])
@pytest.mark.parametrize("cut", [2, 4, 20], ids=["in-length", "after-length", "in-payload"])
def test_truncated_frame_then_reset(bad, handshaken, cut):
    """The client dies (RST) in the middle of a frame; the server just drops the connection."""
    conn = bad.session() if handshaken else bad.connect()
    conn.send(frame(create_req(1, "/bad-input-reset", b"x" * 100))[:cut])
    time.sleep(0.05)
    conn.abort()
    time.sleep(0.05)
    assert bad.kazoo.exists("/bad-input-reset") is None


def test_partial_frame_stalls_only_its_own_connection(bad):
    """A frame trickling in byte by byte (slowloris) holds up nobody else and is then served whole."""
    path = bad.scratch()
    slow = bad.connect()
    hs = frame(CR45)
    slow.send(hs[:3])
    bad.assert_serving()
    slow.send(hs[3:30])
    assert slow.nothing_arrives() == b""
    bad.assert_serving()
    slow.send(hs[30:])
    resp = parse_connect_response(slow.read_frame())
    assert resp.timeout > 0 and resp.session_id != 0
    req = frame(set_data_req(7, path, b"slow but fine"))
    for start, end in ((0, 2), (2, 6), (6, 13), (13, len(req) - 1)):
        slow.send(req[start:end])
        assert slow.nothing_arrives(0.1) == b""
    bad.assert_serving()
    slow.send(req[-1:])
    reply = slow.read_reply()
    assert (reply.xid, reply.err) == (7, OK), reply
    assert stat_from(reply.body)[4] == 1  # version
    assert bad.kazoo.get(path)[0] == b"slow but fine"


def test_frame_of_exactly_maxbuffer_is_accepted(bad):
    """setData and create whose payload is exactly jute.maxbuffer (1,048,575 bytes) both succeed."""
    parent = bad.scratch()
    conn = bad.session()
    node = f"{parent}/big"
    overhead = len(create_req(1, node, b""))
    data = bytes(range(256)) * (MAXBUFFER // 256 + 1)
    req = create_req(1, node, data[:MAXBUFFER - overhead])
    assert len(req) == MAXBUFFER
    reply = conn.request(req)
    assert (reply.xid, reply.err) == (1, OK), reply
    overhead = len(set_data_req(2, parent, b""))
    req = set_data_req(2, parent, data[:MAXBUFFER - overhead])
    assert len(req) == MAXBUFFER
    reply = conn.request(req)
    assert (reply.xid, reply.err) == (2, OK), reply
    assert stat_from(reply.body)[8] == MAXBUFFER - overhead  # dataLength
    conn.ping()
    # The server sends the near-1MiB value back (its own replies are not size-checked).
    reply = conn.request(get_data_req(3, parent))
    assert (reply.xid, reply.err) == (3, OK)
    (dlen,) = struct.unpack(">i", reply.body[:4])
    assert reply.body[4:4 + dlen] == data[:MAXBUFFER - overhead]
    assert bad.kazoo.get(node)[1].dataLength == MAXBUFFER - len(create_req(1, node, b""))


def test_frame_of_maxbuffer_plus_one_closes_without_writing(bad):
    """One byte more (1,048,576) and the connection is closed with no reply; nothing is written."""
    path = bad.scratch()
    conn = bad.session()
    overhead = len(set_data_req(1, path, b""))
    req = set_data_req(1, path, b"z" * (MAXBUFFER + 1 - overhead))
    assert len(req) == MAXBUFFER + 1
    conn.send(frame(req))
    assert_closed_silently(conn, "frame of maxbuffer + 1")
    data, stat = bad.kazoo.get(path)
    assert (data, stat.version) == (b"scratch", 0)


# --------------------------------------------------------------------------- the handshake record


@pytest.mark.parametrize("request_bytes,resp_size", [
    (CR45[:44], 36),                                   # no readOnly byte: none in the reply either
    (CR45, 37),
    (CR45 + b"\0", 37),                                # trailing bytes are ignored
    (CR45 + b"\0" * 15, 37),
    (connect_request(passwd=b""), 37),                 # empty passwd for a new session
    (connect_request(passwd=None), 37),                # null passwd (length -1)
    (connect_request(protocol_version=5), 37),         # protocolVersion is not checked
], ids=["44-bytes", "45-bytes", "46-bytes", "60-bytes", "empty-passwd", "null-passwd", "protocol-version-5"])
def test_odd_sized_connect_request_is_accepted(bad, request_bytes, resp_size):
    conn = bad.connect()
    resp = conn.handshake(request_bytes)
    assert resp.size == resp_size, resp
    assert resp.protocol_version == 0 and resp.timeout > 0 and resp.session_id != 0, resp
    assert len(resp.passwd) == 16
    conn.ping()
    reply = conn.request(get_data_req(5, SEED))
    assert (reply.xid, reply.err) == (5, OK)


def test_all_ones_connect_request_is_rejected_as_unknown_session(bad):
    """45 bytes of 0xff: session id -1 is unknown, so the rejected-session reply, then close."""
    conn = bad.connect()
    conn.send(frame(b"\xff" * 45))
    frames = conn.read_until_eof()
    assert frames[1], "server must close after rejecting the session"
    [payload] = split_frames(frames[0])
    resp = parse_connect_response(payload)
    assert_rejected_session(resp)
    assert resp.size == 37


def test_unknown_session_id_is_rejected(bad):
    conn = bad.connect()
    resp = conn.handshake(connect_request(session_id=0x0100_0000_0BAD_F00D))
    assert_rejected_session(resp)
    assert_closed_silently(conn, "after the rejected-session reply")


def test_wrong_password_is_rejected(bad):
    """Rejected; but 3.8 closes the session's current connection *before* checking the password.

    The session itself survives: its owner reconnects with the right password.
    """
    good = bad.connect()
    resp = good.handshake()
    good.ping()
    other = bad.connect()
    rejected = other.handshake(connect_request(session_id=resp.session_id,
                                               passwd=bytes(b ^ 0x5A for b in resp.passwd)))
    assert_rejected_session(rejected)
    assert_closed_silently(other, "after the rejected-session reply")
    assert_closed_silently(good, "the owner's connection (closed as for any reconnect)")
    again = bad.connect()
    resumed = again.handshake(connect_request(session_id=resp.session_id, passwd=resp.passwd))
    assert (resumed.session_id, resumed.passwd) == (resp.session_id, resp.passwd), resumed
    assert resumed.timeout == resp.timeout
    again.ping()


# --------------------------------------------------------------------------- undecodable request records

MISSING = "/bad-input-missing"

# (id, request payload with xid 1 unless it is a special-xid packet) -> MARSHALLINGERROR, connection open
MARSHALLING = [
    ("setacl-vector-int-max", header(1, OP_SETACL) + ustr(SEED) + i32(INT_MAX) + acl() + i32(-1)),
    ("setacl-vector-int-max-missing-node", header(1, OP_SETACL) + ustr(MISSING) + i32(INT_MAX) + acl() + i32(-1)),
    ("setacl-vector-2-holding-1", header(1, OP_SETACL) + ustr(SEED) + i32(2) + acl() + i32(-1)),
    ("create-acl-vector-int-max", header(1, OP_CREATE) + ustr(MISSING) + ustr(b"") + i32(INT_MAX) + acl() + i32(0)),
    ("multi-create-acl-vector-int-max", header(1, OP_MULTI) + multi_header(OP_CREATE, False, -1) + ustr(MISSING)
     + ustr(b"") + i32(INT_MAX) + acl() + i32(0) + MULTI_END),
    ("multi-without-end-marker", header(1, OP_MULTI) + multi_header(OP_CREATE, False, -1) + ustr(MISSING)
     + ustr(b"") + OPEN_ACL + i32(0)),
    ("multi-unknown-sub-op", header(1, OP_MULTI) + multi_header(99, False, -1) + ustr(MISSING) + MULTI_END),
    ("multi-read-op-in-write-multi", header(1, OP_MULTI) + multi_header(OP_GETDATA, False, -1) + ustr(SEED)
     + boolean(False) + MULTI_END),
    ("setwatches-vector-int-max", header(XID_SETWATCHES, OP_SETWATCHES) + i64(0) + i32(INT_MAX) + ustr(SEED)),
    ("setdata-buffer-len-past-frame", header(1, OP_SETDATA) + ustr(SEED) + i32(1000) + b"abc"),
    ("setdata-buffer-len-int-max", header(1, OP_SETDATA) + ustr(SEED) + i32(INT_MAX) + b"abc"),
    ("setdata-missing-version", header(1, OP_SETDATA) + ustr(SEED) + ustr(b"new")),
    ("getdata-path-len-past-frame", header(1, OP_GETDATA) + i32(1000) + SEED.encode() + b"\0"),
    ("getdata-path-len-int-max", header(1, OP_GETDATA) + i32(INT_MAX) + SEED.encode() + b"\0"),
    ("getdata-path-len-minus-5", header(1, OP_GETDATA) + i32(-5) + SEED.encode() + b"\0"),
    ("getdata-null-path", header(1, OP_GETDATA) + i32(-1) + b"\0"),
    ("getdata-missing-watch-flag", header(1, OP_GETDATA) + ustr(SEED)),
    ("create-path-len-past-frame", header(1, OP_CREATE) + i32(1000) + MISSING.encode()),
    ("create-data-len-past-frame", header(1, OP_CREATE) + ustr(MISSING) + i32(1000) + b"abc"),
    ("getacl-empty-body", header(1, OP_GETACL)),
    ("delete-missing-version", header(1, OP_DELETE) + ustr(MISSING)),
]


@pytest.mark.parametrize("payload", [c[1] for c in MARSHALLING], ids=[c[0] for c in MARSHALLING])
def test_undecodable_request_gets_marshalling_error(bad, payload):
    conn = bad.session()
    (xid,) = struct.unpack(">i", payload[:4])
    reply = conn.request(payload)
    assert (reply.xid, reply.err, reply.body) == (xid, MARSHALLINGERROR, b""), reply
    conn.ping()
    reply = conn.request(get_data_req(9, SEED))
    assert (reply.xid, reply.err) == (9, OK), reply
    assert bad.kazoo.exists(MISSING) is None


@pytest.mark.parametrize("count", [-1, 0, -2], ids=["null", "empty", "minus-2"])
def test_null_or_empty_acl_vector_is_invalid_acl(bad, count):
    """A count of -1 is a null vector; 0 and (oddly) -2 read as empty: all are InvalidACL."""
    conn = bad.session()
    reply = conn.request(header(1, OP_SETACL) + ustr(SEED) + i32(count) + i32(-1))
    assert (reply.xid, reply.err, reply.body) == (1, INVALIDACL, b""), reply
    reply = conn.request(header(2, OP_CREATE) + ustr(MISSING) + ustr(b"") + i32(count) + i32(0))
    assert (reply.xid, reply.err, reply.body) == (2, INVALIDACL, b""), reply
    conn.ping()
    assert bad.kazoo.exists(MISSING) is None


def test_trailing_bytes_after_a_record_are_ignored(bad):
    conn = bad.session()
    reply = conn.request(get_data_req(1, SEED) + b"junk after the record")
    assert (reply.xid, reply.err) == (1, OK), reply
    (dlen,) = struct.unpack(">i", reply.body[:4])
    assert reply.body[4:4 + dlen] == SEED_TREE[SEED]
    conn.ping()


# --------------------------------------------------------------------------- invalid UTF-8 and odd paths

BAD_UTF8 = [
    ("lone-ff", b"\xff"),
    ("truncated-2-byte", b"\xc3"),
    ("truncated-3-byte", b"\xe2\x82"),
    ("overlong-slash", b"\xc0\xaf"),
    ("encoded-surrogate", b"\xed\xa0\x80"),
    # Valid UTF-8, but outside the BMP: Java holds it as a surrogate pair, which path validation rejects.
    ("4-byte-emoji", "\U0001F600".encode("utf-8")),
]


@pytest.mark.parametrize("bad_bytes", [c[1] for c in BAD_UTF8], ids=[c[0] for c in BAD_UTF8])
def test_invalid_utf8_path(bad, bad_bytes):
    conn = bad.session()
    top = b"/bad-input-utf8-" + bad_bytes
    under_seed = SEED.encode() + b"/x" + bad_bytes
    under_missing = MISSING.encode() + b"/x" + bad_bytes
    cases = [
        (create_req(1, top, b"x"), BADARGUMENTS),
        (create_req(2, top, b"x", flags=2), BADARGUMENTS),           # sequential too
        (create_req(3, under_seed, b"x"), BADARGUMENTS),
        (create_req(4, under_missing, b"x"), NONODE),                 # the parent is looked up first
        (set_data_req(5, top, b"y"), BADARGUMENTS),                   # setData validates before lookup
        (get_data_req(6, top), NONODE),                               # reads just miss
        (path_req(7, OP_EXISTS, top, boolean(False)), NONODE),
        (path_req(8, OP_GETCHILDREN, top, boolean(False)), NONODE),
        (path_req(9, OP_DELETE, top, i32(-1)), NONODE),
    ]
    for payload, err in cases:
        (xid,) = struct.unpack(">i", payload[:4])
        reply = conn.request(payload)
        assert (reply.xid, reply.err, reply.body) == (xid, err, b""), (payload, reply)
    conn.ping()
    children = bad.kazoo.get_children("/")
    assert not [c for c in children if c.startswith("bad-input-utf8")], children


def test_invalid_utf8_in_acl_is_invalid_acl(bad):
    conn = bad.session()
    reply = conn.request(create_req(1, MISSING, b"x", acls=i32(1) + acl(31, "world", b"any\xffone")))
    assert (reply.xid, reply.err) == (1, INVALIDACL), reply
    reply = conn.request(create_req(2, MISSING, b"x", acls=i32(1) + acl(31, b"wor\xffld", "anyone")))
    assert (reply.xid, reply.err) == (2, INVALIDACL), reply
    conn.ping()
    assert bad.kazoo.exists(MISSING) is None


def test_sync_echoes_the_decoded_path(bad):
    """The server decodes bad bytes to U+FFFD (not an error), and writes jute strings as Java does (CESU-8)."""
    conn = bad.session()
    reply = conn.request(path_req(1, OP_SYNC, b"/bad\xff"))
    assert (reply.xid, reply.err) == (1, OK), reply
    assert reply.body == ustr("/bad\ufffd".encode("utf-8"))
    reply = conn.request(path_req(2, OP_SYNC, "/e\U0001F600".encode("utf-8")))
    assert (reply.xid, reply.err) == (2, OK), reply
    assert reply.body == ustr(b"/e\xed\xa0\xbd\xed\xb8\x80")  # U+D83D U+DE00, 3 bytes each
    conn.ping()


def test_binary_data_is_not_decoded(bad):
    """Data is a buffer, never text: invalid UTF-8 there is stored and returned as is."""
    path = bad.scratch()
    conn = bad.session()
    reply = conn.request(set_data_req(1, path, b"\xff\xfe\xc0\xaf\xed\xa0\x80\x00"))
    assert (reply.xid, reply.err) == (1, OK), reply
    assert bad.kazoo.get(path)[0] == b"\xff\xfe\xc0\xaf\xed\xa0\x80\x00"


# --------------------------------------------------------------------------- unknown opcodes

UNKNOWN_OPS = [0, 10, 23, 99, 108, 999, -1, -3, -12, INT_MAX, -2 ** 31]


@pytest.mark.parametrize("op", UNKNOWN_OPS, ids=[str(op) for op in UNKNOWN_OPS])
def test_unknown_opcode_is_unimplemented_then_closed(bad, op):
    conn = bad.session()
    conn.send_frame(header(42, op) + b"whatever")
    replies = assert_replies_then_closed(conn, f"unknown opcode {op}")
    assert replies == [Reply(42, -1, UNIMPLEMENTED, b"")], replies


def test_unknown_opcode_after_good_requests(bad):
    conn = bad.session()
    reply = conn.request(get_data_req(1, SEED))
    assert reply.err == OK
    conn.ping()
    conn.send_frame(header(2, 4242))
    replies = assert_replies_then_closed(conn, "unknown opcode")
    assert replies == [Reply(2, -1, UNIMPLEMENTED, b"")], replies


# --------------------------------------------------------------------------- after closeSession


@pytest.mark.parametrize("follow_up,late_err", [
    (PING, SESSIONEXPIRED),
    (get_data_req(2, SEED), SESSIONEXPIRED),
    (create_req(2, "/bad-input-after-close", b"x"), SESSIONEXPIRED),
    (set_data_req(2, SEED, b"overwritten after close"), SESSIONEXPIRED),
    (header(2, OP_CLOSE), OK),
], ids=["ping", "getdata", "create", "setdata", "close-again"])
def test_nothing_is_served_after_close_session(bad, follow_up, late_err):
    """Pipelined after closeSession: the close is answered, then the socket is closed.

    A request already read when the close is processed is not served: 3.8 either
    drops it (usual) or answers it with SESSIONEXPIRED (-112) -- a second
    closeSession with OK -- before closing; either is accepted here.  The write
    never happens (the seed check after the test covers setData).
    """
    conn = bad.session()
    conn.send(frame(header(1, OP_CLOSE)) + frame(follow_up))
    replies = assert_replies_then_closed(conn, "closeSession")
    (follow_xid,) = struct.unpack(">i", follow_up[:4])
    got = [(r.xid, r.err, r.body) for r in replies]
    assert got in ([(1, OK, b"")], [(1, OK, b""), (follow_xid, late_err, b"")]), replies
    assert bad.kazoo.exists("/bad-input-after-close") is None


def test_closed_session_cannot_be_resumed(bad):
    conn = bad.connect()
    resp = conn.handshake()
    reply = conn.request(header(1, OP_CLOSE))
    assert (reply.xid, reply.err) == (1, OK)
    assert_closed_silently(conn, "after closeSession")
    again = bad.connect()
    rejected = again.handshake(connect_request(session_id=resp.session_id, passwd=resp.passwd))
    assert_rejected_session(rejected)
    assert_closed_silently(again, "after the rejected-session reply")


def test_ephemeral_of_closed_session_is_gone(bad):
    parent = bad.scratch()
    conn = bad.session()
    reply = conn.request(create_req(1, f"{parent}/eph", b"", flags=1))
    assert reply.err == OK, reply
    assert bad.kazoo.exists(f"{parent}/eph") is not None
    conn.send(frame(header(2, OP_CLOSE)))
    replies = assert_replies_then_closed(conn, "closeSession")
    assert [(r.xid, r.err) for r in replies] == [(2, OK)]
    with pytest.raises(NoNodeError):
        bad.kazoo.get(f"{parent}/eph")
