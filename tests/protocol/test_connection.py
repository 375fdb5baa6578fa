"""ClientConnection + StandaloneServer, byte for byte, without sockets or threads.

Each test builds a :class:`StandaloneServer` on a deterministic reactor (a
:class:`~twisted.internet.task.Clock` whose ``callFromThread`` schedules a
zero-delay call) with the group committer's thread pool replaced by one that
runs ``append_and_sync`` synchronously.  Bytes go in through
``dataReceived`` and come out of a :class:`StringTransport`; nothing happens
until the test pumps the clock, so "before the batch is durable" and "after"
are both observable.  Wall time (session expiry) follows the same clock.

The wire records are built and parsed here with :mod:`struct`, independently
of zktwist's codec (zookeeper-protocol reference sections 1.1-1.4, 1.13).
"""

from __future__ import annotations

import errno
import struct
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock, LoopingCall
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from zktwist.storage.memory import MemoryBackend as RealMemoryBackend
from zktwist.config import from_text
from zktwist.interfaces import IStorageBackend
from zktwist.server import standalone
from zktwist.server.connection import ClientConnection
from zktwist.server.standalone import StandaloneServer
from zktwist.storage.filelog import FileLogBackend

# ---------------------------------------------------------------------------------- wire

OP_CREATE, OP_DELETE, OP_EXISTS, OP_GET_DATA, OP_SET_DATA = 1, 2, 3, 4, 5
OP_GET_CHILDREN, OP_PING, OP_AUTH, OP_CLOSE = 8, 11, 100, -11
XID_NOTIFICATION, XID_PING, XID_AUTH = -1, -2, -4
OK, SYSTEMERROR, UNIMPLEMENTED, NONODE, AUTHFAILED = 0, -1, -6, -101, -115
EVENT_CREATED, EVENT_DELETED, EVENT_DATA_CHANGED = 1, 2, 3
STATE_SYNC_CONNECTED = 3
EPHEMERAL = 1
JUTE_MAXBUFFER = 0xFFFFF
OPEN_ACL = struct.pack(">ii", 1, 31) + b"".join(
    struct.pack(">i", len(s)) + s for s in (b"world", b"anyone"))

EPOCH_MS = 1_700_000_000_000  # a multiple of tickTime: expiry buckets are easy to predict
TICK_MS = 2000


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return i32(len(raw)) + raw


def buffer(b: Optional[bytes]) -> bytes:
    return i32(-1) if b is None else i32(len(b)) + b


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def connect_payload(*, last_zxid: int = 0, timeout: int = 30000, session_id: int = 0,
                    passwd: bytes = bytes(16), read_only: Optional[bool] = False) -> bytes:
    """ConnectRequest; ``read_only=None`` leaves out the trailing byte (44 bytes instead of 45)."""
    body = struct.pack(">iqiq", 0, last_zxid, timeout, session_id) + buffer(passwd)
    if read_only is not None:
        body += b"\x01" if read_only else b"\x00"
    return body


def request(xid: int, op: int, record: bytes = b"") -> bytes:
    return frame(struct.pack(">ii", xid, op) + record)


def create(xid: int, path: str, data: bytes = b"", flags: int = 0) -> bytes:
    return request(xid, OP_CREATE, string(path) + buffer(data) + OPEN_ACL + i32(flags))


def set_data(xid: int, path: str, data: bytes, version: int = -1) -> bytes:
    return request(xid, OP_SET_DATA, string(path) + buffer(data) + i32(version))


def get_data(xid: int, path: str, watch: bool = False) -> bytes:
    return request(xid, OP_GET_DATA, string(path) + (b"\x01" if watch else b"\x00"))


def exists(xid: int, path: str, watch: bool = False) -> bytes:
    return request(xid, OP_EXISTS, string(path) + (b"\x01" if watch else b"\x00"))


def ping() -> bytes:
    return request(XID_PING, OP_PING)


def auth(scheme: str, credentials: bytes) -> bytes:
    return request(XID_AUTH, OP_AUTH, i32(0) + string(scheme) + buffer(credentials))


def split_frames(data: bytes) -> List[bytes]:
    """Payloads of the length-prefixed frames in ``data``; no partial frame may be left."""
    out = []
    off = 0
    while off < len(data):
        assert len(data) - off >= 4, "truncated length prefix in %r" % data[off:]
        n = struct.unpack_from(">i", data, off)[0]
        assert 0 <= n <= len(data) - off - 4, "truncated frame (length %d) in server output" % n
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out


class ConnectResponse(NamedTuple):
    protocol_version: int
    timeout: int
    session_id: int
    passwd: bytes
    read_only: Optional[bool]
    size: int


def parse_connect_response(payload: bytes) -> ConnectResponse:
    version, timeout, sid, n = struct.unpack_from(">iiqi", payload, 0)
    passwd = payload[20:20 + n]
    rest = payload[20 + n:]
    assert len(rest) <= 1, "ConnectResponse has %d trailing bytes" % len(rest)
    read_only = None if not rest else rest != b"\x00"
    return ConnectResponse(version, timeout, sid, passwd, read_only, len(payload))


class Reply(NamedTuple):
    xid: int
    zxid: int
    err: int
    body: bytes


def parse_reply(payload: bytes) -> Reply:
    xid, zxid, err = struct.unpack_from(">iqi", payload, 0)
    return Reply(xid, zxid, err, payload[16:])


def parse_event(reply: Reply) -> Tuple[int, int, str]:
    assert reply.xid == XID_NOTIFICATION
    etype, state, n = struct.unpack_from(">iii", reply.body, 0)
    return etype, state, reply.body[12:12 + n].decode("utf-8")


def body_string(body: bytes) -> str:
    n = struct.unpack_from(">i", body, 0)[0]
    return body[4:4 + n].decode("utf-8")


# ------------------------------------------------------------------------ test doubles


class FakeReactor(Clock):
    """A Clock that also takes calls "from threads": they run at the next ``advance``.

    With ``hold`` set, results coming back from the storage "thread" are kept
    until :meth:`release`, so a test can act while a batch is in flight.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.held: List[Tuple[Any, tuple, dict]] = []

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        if self.hold:
            self.held.append((f, args, kw))
        else:
            self.callLater(0, f, *args, **kw)

    def release(self) -> None:
        self.hold = False
        held, self.held = self.held, []
        for f, args, kw in held:
            self.callLater(0, f, *args, **kw)


class SyncPool:
    """Stands in for the committer's ThreadPool: runs the work at once, in this thread."""

    def __init__(self) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def callInThreadWithCallback(self, onResult: Any, func: Any, *args: Any, **kw: Any) -> None:
        try:
            result = func(*args, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


@implementer(IStorageBackend)
class MemoryBackend(RealMemoryBackend):
    """zktwist's in-memory backend, recording every ``append_and_sync`` and able to fail once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[List[Tuple[int, bytes]]] = []
        self.fail_next: Optional[BaseException] = None  # type: ignore[assignment]
        self.closed = False

    @property
    def records(self) -> List[Tuple[int, bytes]]:
        return list(self.read_txns(0))

    def append_and_sync(self, records: List[Tuple[int, bytes]]) -> None:
        self.calls.append(list(records))
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        super().append_and_sync(records)

    def close(self) -> None:
        super().close()
        self.closed = True


class CountingTransport(StringTransport):
    """A StringTransport that counts ``write`` calls (one per reactor turn is expected)."""

    def __init__(self, host: str) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", host, 50000))
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


class Client:
    """One ClientConnection on a StringTransport, with helpers to talk and listen."""

    def __init__(self, harness: "Harness", host: str = "127.0.0.1") -> None:
        self.harness = harness
        self.transport = CountingTransport(host)
        self.conn = ClientConnection(harness.server)
        self.conn.makeConnection(self.transport)
        self.session_id = 0
        self.passwd = b""

    def send(self, data: bytes) -> None:
        self.conn.dataReceived(data)

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def frames(self) -> List[bytes]:
        return split_frames(self.take())

    def replies(self) -> List[Reply]:
        return [parse_reply(p) for p in self.frames()]

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def handshake(self, **kw: Any) -> ConnectResponse:
        self.send(frame(connect_payload(**kw)))
        self.harness.pump()
        frames = self.frames()
        assert len(frames) == 1, frames
        resp = parse_connect_response(frames[0])
        self.session_id = resp.session_id
        self.passwd = resp.passwd
        return resp

    def call(self, data: bytes) -> Reply:
        """Send one request, let the server finish, return the one reply."""
        self.send(data)
        self.harness.pump()
        replies = self.replies()
        assert len(replies) == 1, replies
        return replies[0]


class Harness:
    """A StandaloneServer on a FakeReactor, with session ticks every tickTime."""

    def __init__(self, tmp_path: Any, monkeypatch: Any, backend: Any = None,
                 extra_config: str = "") -> None:
        self.clock = FakeReactor()
        clock = self.clock
        monkeypatch.setattr(standalone, "wall_ms", lambda: EPOCH_MS + int(round(clock.seconds() * 1000)))
        self.config = from_text("dataDir=%s\ntickTime=%d\n%s" % (tmp_path, TICK_MS, extra_config))
        self.backend = backend if backend is not None else MemoryBackend()
        self.server = StandaloneServer(self.config, self.backend, self.clock)
        self.server.committer.pool = SyncPool()  # type: ignore[assignment]
        self.server.recover()
        self.ticks = LoopingCall(self.server.expire_sessions)
        self.ticks.clock = self.clock
        self.ticks.start(TICK_MS / 1000.0, now=False)

    def pump(self) -> None:
        """Run everything due now: committer flushes and durable callbacks."""
        self.clock.advance(0)

    def advance(self, seconds: float, step: float = 0.5) -> None:
        while seconds > 1e-9:
            d = min(step, seconds)
            self.clock.advance(d)
            seconds -= d

    def client(self, host: str = "127.0.0.1") -> Client:
        return Client(self, host)

    def session(self, **kw: Any) -> Client:
        c = self.client()
        resp = c.handshake(**kw)
        assert resp.session_id != 0 and resp.timeout > 0
        return c

    def stop(self) -> None:
        if self.ticks.running:
            self.ticks.stop()
        self.server.shutdown()


@pytest.fixture
def harness(tmp_path: Any, monkeypatch: Any) -> Iterator[Harness]:
    h = Harness(tmp_path, monkeypatch)
    yield h
    h.stop()


# ------------------------------------------------------------------------------ handshake


def test_memory_backend_provides_the_storage_interface() -> None:
    assert verifyObject(IStorageBackend, MemoryBackend())


@pytest.mark.parametrize("read_only, request_size, response_size", [
    (None, 44, 36),
    (False, 45, 37),
    (True, 45, 37),
])
def test_handshake_sizes_mirror_the_readonly_byte(harness: Harness, read_only: Optional[bool],
                                                  request_size: int, response_size: int) -> None:
    payload = connect_payload(timeout=10000, read_only=read_only)
    assert len(payload) == request_size
    c = harness.client()
    c.send(frame(payload))
    assert c.take() == b""  # the session is created by a txn: nothing before it is durable
    harness.pump()
    data = c.take()
    assert len(data) == 4 + response_size
    resp = parse_connect_response(split_frames(data)[0])
    assert resp.size == response_size
    assert resp.protocol_version == 0
    assert resp.timeout == 10000
    assert resp.session_id != 0
    assert (resp.session_id >> 56) & 0xFF == 1  # standalone: server id 1 in the top byte
    assert len(resp.passwd) == 16 and resp.passwd != bytes(16)
    # A standalone server is never read-only: the byte is mirrored, its value is false.
    assert resp.read_only is (None if read_only is None else False)
    assert not c.closed
    assert resp.session_id in harness.server.core.sessions.sessions


@pytest.mark.parametrize("requested, negotiated", [(1000, 2 * TICK_MS), (10 ** 7, 20 * TICK_MS)])
def test_session_timeout_is_clamped(harness: Harness, requested: int, negotiated: int) -> None:
    assert harness.client().handshake(timeout=requested).timeout == negotiated


def test_connect_request_split_across_many_reads(harness: Harness) -> None:
    data = frame(connect_payload(timeout=10000))
    c = harness.client()
    for i in range(len(data)):
        c.send(data[i:i + 1])
        harness.pump()
        if i < len(data) - 1:
            assert c.take() == b"" and not c.closed
    resp = parse_connect_response(c.frames()[0])
    assert resp.session_id != 0 and resp.size == 37


def test_connect_then_request_in_one_read_is_answered_after_the_connect_response(
        harness: Harness) -> None:
    c = harness.client()
    c.send(frame(connect_payload()) + exists(1, "/zookeeper") + ping())
    assert c.take() == b""  # nothing may be answered before the session exists
    harness.pump()
    frames = c.frames()
    assert len(frames) == 3
    resp = parse_connect_response(frames[0])
    assert resp.session_id != 0
    r1, r2 = parse_reply(frames[1]), parse_reply(frames[2])
    assert (r1.xid, r1.err) == (1, OK) and len(r1.body) == 68  # a Stat
    assert (r2.xid, r2.err, r2.body) == (XID_PING, OK, b"")


def test_connect_then_write_and_read_pipelined_before_the_session_exists(harness: Harness) -> None:
    c = harness.client()
    c.send(frame(connect_payload()) + create(1, "/p", b"v") + get_data(2, "/p"))
    assert c.take() == b""
    harness.pump()
    frames = c.frames()
    assert len(frames) == 3
    assert parse_connect_response(frames[0]).session_id != 0
    r1, r2 = parse_reply(frames[1]), parse_reply(frames[2])
    assert (r1.xid, r1.err, body_string(r1.body)) == (1, OK, "/p")
    assert (r2.xid, r2.err) == (2, OK)
    assert r2.body[:5] == buffer(b"v")
    assert r2.zxid == r1.zxid


def set_watches(relative_zxid: int, data: List[str] = (), exist: List[str] = (),  # type: ignore[assignment]
                child: List[str] = ()) -> bytes:  # type: ignore[assignment]
    def vec(items: List[str]) -> bytes:
        return i32(len(items)) + b"".join(string(x) for x in items)
    return request(-8, 101, struct.pack(">q", relative_zxid) + vec(list(data)) + vec(list(exist))
                   + vec(list(child)))


@pytest.mark.parametrize("reattach", [False, True])
def test_java_client_reconnect_pipeline(harness: Harness, reattach: bool) -> None:
    """ConnectRequest, auth, setWatches, then requests, all in one write (ClientCnxn.primeConnection)."""
    kw: Dict[str, Any] = {}
    if reattach:
        old = harness.session()
        zxid = old.call(create(1, "/watched", b"0")).zxid
        kw = dict(session_id=old.session_id, passwd=old.passwd, last_zxid=zxid)
    else:
        zxid = 0
    # A data watch on an existing node, an exist watch on a missing one
    # (either other combination fires at once: DataTree.setWatches).
    watches = dict(data=["/watched"]) if reattach else dict(exist=["/watched"])
    c = harness.client()
    c.send(frame(connect_payload(**kw)) + auth("digest", b"u:p")
           + set_watches(zxid, **watches) + exists(1, "/watched"))
    harness.pump()
    frames = c.frames()
    assert parse_connect_response(frames[0]).session_id != 0
    replies = [parse_reply(f) for f in frames[1:]]
    assert [(r.xid, r.err) for r in replies] == [
        (XID_AUTH, OK), (-8, OK), (1, OK if reattach else NONODE)]
    assert replies[1].body == b""
    # The data watch set by setWatches fires on the next change.
    other = harness.session()
    if reattach:
        assert other.call(set_data(1, "/watched", b"1")).err == OK
        expected = (EVENT_DATA_CHANGED, STATE_SYNC_CONNECTED, "/watched")
    else:
        assert other.call(create(1, "/watched")).err == OK
        expected = (EVENT_CREATED, STATE_SYNC_CONNECTED, "/watched")
    assert [parse_event(e) for e in c.replies()] == [expected]


def test_reattach_with_id_and_password_closes_the_first_connection(harness: Harness) -> None:
    first = harness.session(timeout=10000)
    r = first.call(create(1, "/eph", b"", EPHEMERAL))
    assert r.err == OK
    second = harness.client()
    second.send(frame(connect_payload(last_zxid=r.zxid, timeout=10000,
                                      session_id=first.session_id, passwd=first.passwd)))
    harness.pump()
    resp = parse_connect_response(second.frames()[0])
    assert resp.session_id == first.session_id
    assert resp.passwd == first.passwd
    assert resp.timeout == 10000
    assert first.closed
    assert not second.closed
    assert harness.server.by_session[first.session_id] is second.conn
    # The real transport reports the loss later: that must not detach the new owner.
    first.conn.connectionLost(None)
    assert harness.server.by_session[first.session_id] is second.conn
    # The session (and its ephemeral) lives on through the new connection.
    r = second.call(exists(2, "/eph"))
    assert (r.xid, r.err) == (2, OK)
    ephemeral_owner = struct.unpack_from(">q", r.body, 44)[0]  # Stat.ephemeralOwner
    assert ephemeral_owner == first.session_id


@pytest.mark.parametrize("read_only, size", [(False, 37), (None, 36)])
def test_wrong_password_gets_the_zero_connect_response_then_close(
        harness: Harness, read_only: Optional[bool], size: int) -> None:
    owner = harness.session()
    bad = bytes(b ^ 0xFF for b in owner.passwd)
    c = harness.client()
    c.send(frame(connect_payload(session_id=owner.session_id, passwd=bad, read_only=read_only)))
    harness.pump()
    frames = c.frames()
    assert len(frames) == 1
    assert len(frames[0]) == size
    resp = parse_connect_response(frames[0])
    assert (resp.protocol_version, resp.timeout, resp.session_id) == (0, 0, 0)
    assert resp.passwd == bytes(16)
    assert resp.read_only is (None if read_only is None else False)
    assert c.closed
    # Apache ZooKeeper 3.8 closes the session's current connection before it
    # checks the password (ZooKeeperServer.processConnectRequest); the session
    # itself lives on and the rightful owner can reattach.
    assert owner.closed
    assert owner.session_id in harness.server.core.sessions.sessions
    again = harness.client()
    again.send(frame(connect_payload(session_id=owner.session_id, passwd=owner.passwd)))
    harness.pump()
    assert parse_connect_response(again.frames()[0]).session_id == owner.session_id
    assert not again.closed


def test_unknown_session_gets_the_zero_connect_response(harness: Harness) -> None:
    from zktwist.core.sessions import session_password
    sid = 0x0100000000000042
    c = harness.client()
    c.send(frame(connect_payload(session_id=sid, passwd=session_password(sid))))
    harness.pump()
    resp = parse_connect_response(c.frames()[0])
    assert (resp.timeout, resp.session_id, resp.passwd) == (0, 0, bytes(16))
    assert c.closed


def test_last_zxid_seen_ahead_closes_without_reply(harness: Harness) -> None:
    c = harness.client()
    c.send(frame(connect_payload(last_zxid=harness.server.core.last_zxid + 100)))
    harness.pump()
    assert c.take() == b""
    assert c.closed
    assert harness.server.core.sessions.sessions == {}


# ---------------------------------------------------------------------- framing / requests


def test_several_frames_in_one_read_get_replies_in_order_in_one_write(harness: Harness) -> None:
    c = harness.session()
    writes = c.transport.writes
    c.send(exists(1, "/") + get_data(2, "/nope") + ping() + exists(3, "/zookeeper"))
    replies = c.replies()
    assert [(r.xid, r.err) for r in replies] == [(1, OK), (2, NONODE), (XID_PING, OK), (3, OK)]
    assert c.transport.writes == writes + 1


def test_frame_split_between_reads(harness: Harness) -> None:
    c = harness.session()
    data = exists(7, "/zookeeper") + exists(8, "/")
    c.send(data[:3])
    c.send(data[3:20])
    assert c.take() == b""
    c.send(data[20:])
    assert [r.xid for r in c.replies()] == [7, 8]


def test_read_after_write_waits_for_the_write(harness: Harness) -> None:
    c = harness.session()
    c.send(create(1, "/a", b"x") + exists(2, "/a") + ping() + get_data(3, "/a"))
    # The read must not overtake the write that precedes it.
    assert c.take() == b""
    harness.pump()
    replies = c.replies()
    assert [r.xid for r in replies] == [1, 2, XID_PING, 3]
    assert all(r.err == OK for r in replies)
    assert body_string(replies[0].body) == "/a"
    # The read sees the write, and carries its zxid.
    assert replies[1].zxid == replies[0].zxid == replies[3].zxid
    assert replies[3].body[:5] == buffer(b"x")


def test_read_before_write_is_answered_at_once(harness: Harness) -> None:
    c = harness.session()
    c.send(exists(1, "/b") + create(2, "/b"))
    first = c.replies()
    assert [(r.xid, r.err) for r in first] == [(1, NONODE)]
    harness.pump()
    assert [(r.xid, r.err) for r in c.replies()] == [(2, OK)]


def test_ping_reply(harness: Harness) -> None:
    c = harness.session()
    zxid = c.call(create(1, "/z")).zxid
    r = c.call(ping())
    assert r == Reply(XID_PING, zxid, OK, b"")


def test_watch_event_precedes_the_reply_of_the_write_that_fired_it(harness: Harness) -> None:
    c = harness.session()
    assert c.call(create(1, "/w", b"0")).err == OK
    assert c.call(get_data(2, "/w", watch=True)).err == OK
    c.send(set_data(3, "/w", b"1"))
    harness.pump()
    frames = [parse_reply(p) for p in c.frames()]
    assert [f.xid for f in frames] == [XID_NOTIFICATION, 3]
    assert parse_event(frames[0]) == (EVENT_DATA_CHANGED, STATE_SYNC_CONNECTED, "/w")
    assert frames[0].zxid == -1 and frames[0].err == 0  # 3.8.x sends zxid -1 on events


def test_watch_event_reaches_another_connection_before_its_next_reply(harness: Harness) -> None:
    watcher = harness.session()
    writer = harness.session()
    assert watcher.call(exists(1, "/x", watch=True)).err == NONODE
    writer.send(create(1, "/x"))
    watcher.send(exists(2, "/x"))  # answered at once: the create is not durable yet
    assert [(r.xid, r.err) for r in watcher.replies()] == [(2, NONODE)]
    harness.pump()
    events = watcher.replies()
    assert [parse_event(e) for e in events] == [(EVENT_CREATED, STATE_SYNC_CONNECTED, "/x")]
    assert [r.xid for r in writer.replies()] == [1]
    r = watcher.call(exists(3, "/x"))
    assert (r.xid, r.err) == (3, OK)


def test_unknown_opcode_gets_unimplemented_then_close(harness: Harness) -> None:
    c = harness.session()
    c.send(request(5, 999) + exists(6, "/"))
    replies = c.replies()
    assert replies == [Reply(5, -1, UNIMPLEMENTED, b"")]
    assert c.closed
    assert c.conn not in harness.server.connections


@pytest.mark.parametrize("length", [JUTE_MAXBUFFER + 1, -1, 0x7FFFFFFF])
def test_out_of_range_length_closes_without_reply(harness: Harness, length: int) -> None:
    c = harness.session()
    c.send(i32(length))
    assert c.take() == b""
    assert c.closed


def test_out_of_range_length_before_the_handshake_closes(harness: Harness) -> None:
    c = harness.client()
    c.send(i32(JUTE_MAXBUFFER + 1) + bytes(44))
    harness.pump()
    assert c.take() == b""
    assert c.closed
    assert harness.server.core.sessions.sessions == {}


def test_length_of_exactly_jute_maxbuffer_is_accepted(harness: Harness) -> None:
    c = harness.session()
    c.send(i32(JUTE_MAXBUFFER) + b"\x00" * 100)  # the rest has not arrived yet
    assert not c.closed and c.take() == b""


def test_close_session_replies_then_closes(harness: Harness) -> None:
    c = harness.session()
    assert c.call(create(1, "/mine", b"", EPHEMERAL)).err == OK
    c.send(request(2, OP_CLOSE))
    harness.pump()
    replies = c.replies()
    assert [(r.xid, r.err, r.body) for r in replies] == [(2, OK, b"")]
    assert c.closed
    assert harness.server.core.tree.get("/mine") is None
    assert c.session_id not in harness.server.core.sessions.sessions


def test_close_session_with_writes_pipelined_before_it(harness: Harness) -> None:
    """A read pipelined before closeSession is answered normally.

    Apache ZooKeeper checks a read's session in PrepRequestProcessor, in
    arrival order, before the closeSession behind it marks the session
    closing; checked live against 3.8.0: replies (1, 0), (2, 0), (3, 0).
    """
    c = harness.session()
    c.send(create(1, "/q1") + exists(2, "/q1") + request(3, OP_CLOSE))
    harness.pump()
    assert [(r.xid, r.err) for r in c.replies()] == [(1, OK), (2, OK), (3, OK)]
    assert c.closed


def test_nothing_after_close_session_is_served(harness: Harness) -> None:
    c = harness.session()
    c.send(request(1, OP_CLOSE) + exists(2, "/") + create(3, "/after"))
    harness.pump()
    assert [(r.xid, r.err) for r in c.replies()] == [(1, OK)]
    assert c.closed
    assert harness.server.core.tree.get("/after") is None


def test_auth_with_unknown_scheme_fails_and_closes(harness: Harness) -> None:
    c = harness.session()
    c.send(auth("nosuchscheme", b"whatever") + exists(1, "/"))
    replies = c.replies()
    assert replies == [Reply(XID_AUTH, 0, AUTHFAILED, b"")]
    assert c.closed


def test_auth_digest_succeeds_and_keeps_the_connection(harness: Harness) -> None:
    c = harness.session()
    c.send(auth("digest", b"user:secret") + exists(1, "/"))
    replies = c.replies()
    assert [(r.xid, r.zxid, r.err) for r in replies] == [(XID_AUTH, 0, OK), (1, harness.server.core.last_zxid, OK)]
    assert not c.closed


# ------------------------------------------------------------------------- sessions expire


def test_idle_session_expires_with_the_clock(harness: Harness) -> None:
    owner = harness.session(timeout=4000)  # the minimum: 2 * tickTime
    watcher = harness.session(timeout=40000)
    assert owner.call(create(1, "/eph", b"", EPHEMERAL)).err == OK
    assert watcher.call(exists(1, "/eph", watch=True)).err == OK

    harness.advance(3.5)
    assert not owner.closed
    assert owner.session_id in harness.server.core.sessions.sessions

    harness.advance(4.5)  # 8 s idle: past 4 s rounded up to the next tick
    assert owner.closed
    assert owner.session_id not in harness.server.core.sessions.sessions
    assert owner.session_id not in harness.server.by_session
    assert harness.server.core.tree.get("/eph") is None
    events = watcher.replies()
    assert [parse_event(e) for e in events] == [(EVENT_DELETED, STATE_SYNC_CONNECTED, "/eph")]
    assert not watcher.closed

    # Reattaching to the expired session is refused with the zero response.
    c = harness.client()
    c.send(frame(connect_payload(session_id=owner.session_id, passwd=owner.passwd)))
    harness.pump()
    resp = parse_connect_response(c.frames()[0])
    assert (resp.timeout, resp.session_id) == (0, 0)
    assert c.closed


def test_pings_keep_a_session_alive(harness: Harness) -> None:
    c = harness.session(timeout=4000)
    for _ in range(10):
        harness.advance(1.0)
        assert c.call(ping()).xid == XID_PING
    assert not c.closed
    assert c.session_id in harness.server.core.sessions.sessions


def test_expiry_of_a_session_whose_client_is_disconnected(harness: Harness) -> None:
    c = harness.session(timeout=4000)
    assert c.call(create(1, "/gone", b"", EPHEMERAL)).err == OK
    c.conn.connectionLost(None)
    assert c.session_id in harness.server.core.sessions.sessions  # a lost socket is not an expiry
    harness.advance(8)
    assert c.session_id not in harness.server.core.sessions.sessions
    assert harness.server.core.tree.get("/gone") is None


# ---------------------------------------------------------------------- group commit / log


def test_writes_in_one_read_share_one_append_and_sync(harness: Harness) -> None:
    backend = harness.backend
    c = harness.session()
    before = len(backend.calls)
    writes = c.transport.writes
    n = 12
    c.send(b"".join(create(i + 1, "/g%d" % i) for i in range(n)))
    harness.pump()
    assert len(backend.calls) == before + 1
    batch = backend.calls[-1]
    assert len(batch) == n
    zxids = [z for z, _ in batch]
    assert zxids == sorted(zxids) and len(set(zxids)) == n
    replies = c.replies()
    assert [r.xid for r in replies] == list(range(1, n + 1))
    assert [r.zxid for r in replies] == zxids
    assert c.transport.writes == writes + 1  # one durable batch, one transport.write


def test_writes_of_several_connections_in_one_turn_share_one_batch(harness: Harness) -> None:
    backend = harness.backend
    clients = [harness.session() for _ in range(4)]
    before = len(backend.calls)
    for i, c in enumerate(clients):
        c.send(create(1, "/c%d" % i))
    harness.pump()
    assert len(backend.calls) == before + 1
    assert len(backend.calls[-1]) == 4
    for c in clients:
        assert [(r.xid, r.err) for r in c.replies()] == [(1, OK)]


def test_log_failure_fails_the_write_and_the_server_keeps_serving(harness: Harness) -> None:
    backend = harness.backend
    c = harness.session()
    other = harness.session()
    last = harness.server.core.last_zxid
    backend.fail_next = OSError(errno.ENOSPC, "No space left on device")
    c.send(create(1, "/lost", b"x"))
    harness.pump()
    assert [(x.xid, x.err) for x in c.replies()] == [(1, SYSTEMERROR)]
    assert not c.closed
    assert harness.server.core.tree.get("/lost") is None
    assert harness.server.core.last_zxid == last
    assert backend.last_zxid() == last

    r = c.call(create(2, "/kept", b"y"))
    assert (r.xid, r.err) == (2, OK)
    assert r.zxid == last + 1  # the failed txn's zxid was handed back
    assert body_string(r.body) == "/kept"
    assert c.call(create(3, "/lost")).err == OK
    assert other.call(exists(1, "/kept")).err == OK
    assert [z for z, _ in backend.records][-2:] == [last + 1, last + 2]


def test_log_failure_with_a_read_queued_behind_the_write(harness: Harness) -> None:
    c = harness.session()
    harness.backend.fail_next = OSError(errno.ENOSPC, "No space left on device")
    c.send(create(1, "/f") + exists(2, "/f") + ping())
    harness.pump()
    assert [(r.xid, r.err) for r in c.replies()] == [(1, SYSTEMERROR), (2, NONODE), (XID_PING, OK)]
    assert not c.closed


def test_file_log_backend_end_to_end_and_recovery(tmp_path: Any, monkeypatch: Any) -> None:
    """The same flow over a real FileLogBackend; a failed sync leaves nothing in the log."""
    def backend() -> FileLogBackend:
        return FileLogBackend(str(tmp_path), prealloc_size=64 * 1024, fsync=True)

    h = Harness(tmp_path, monkeypatch, backend=backend())
    c = h.session()
    c.send(create(1, "/f1", b"one") + create(2, "/f2", b"two"))
    h.pump()
    assert [(r.xid, r.err) for r in c.replies()] == [(1, OK), (2, OK)]

    real_sync = h.backend.sync

    def failing_sync() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    h.backend.sync = failing_sync  # type: ignore[method-assign]
    assert c.call(create(3, "/f3")).err == SYSTEMERROR
    h.backend.sync = real_sync  # type: ignore[method-assign]
    assert c.call(create(4, "/f4", b"four")).err == OK
    last = h.server.core.last_zxid
    h.stop()

    again = Harness(tmp_path, monkeypatch, backend=backend())
    try:
        tree = again.server.core.tree
        assert tree.get("/f1") is not None and tree.get("/f2") is not None
        assert tree.get("/f4") is not None
        assert tree.get("/f3") is None
        assert again.server.core.last_zxid == last
        c2 = again.session(session_id=c.session_id, passwd=c.passwd, last_zxid=last)
        assert c2.session_id == c.session_id  # the session survived the restart
        r = c2.call(get_data(1, "/f4"))
        assert r.err == OK and r.body[:8] == buffer(b"four")
    finally:
        again.stop()


def test_writes_arriving_while_a_batch_is_in_flight_form_the_next_batch(harness: Harness) -> None:
    backend = harness.backend
    a = harness.session()
    b = harness.session()
    before = len(backend.calls)
    harness.clock.hold = True
    a.send(create(1, "/b1"))
    harness.pump()
    assert len(backend.calls) == before + 1  # batch 1 is being written
    a.send(create(2, "/b2") + exists(3, "/b2") + create(4, "/b3"))
    b.send(create(1, "/b4"))
    harness.pump()
    assert len(backend.calls) == before + 1  # one batch in flight at a time
    assert a.take() == b"" and b.take() == b""
    harness.clock.release()
    harness.pump()
    assert [len(batch) for batch in backend.calls[before:]] == [1, 3]
    replies = a.replies()
    assert [(r.xid, r.err) for r in replies] == [(1, OK), (2, OK), (3, OK), (4, OK)]
    assert replies[2].zxid == replies[1].zxid  # the read saw /b2 and nothing later
    assert [(r.xid, r.err) for r in b.replies()] == [(1, OK)]


def test_writes_queued_behind_a_failed_batch_fail_with_it(harness: Harness) -> None:
    backend = harness.backend
    c = harness.session()
    last = harness.server.core.last_zxid
    before = len(backend.calls)
    harness.clock.hold = True
    backend.fail_next = OSError(errno.ENOSPC, "No space left on device")
    c.send(create(1, "/x1"))
    harness.pump()
    c.send(create(2, "/x2") + exists(3, "/x2"))
    harness.pump()
    harness.clock.release()
    harness.pump()
    assert [(r.xid, r.err) for r in c.replies()] == [(1, SYSTEMERROR), (2, SYSTEMERROR), (3, NONODE)]
    assert len(backend.calls) == before + 1  # the queued txns were never written
    assert harness.server.core.last_zxid == last
    assert harness.server.outstanding == 0
    r = c.call(create(4, "/x3"))
    assert (r.xid, r.err, r.zxid) == (4, OK, last + 1)
    assert not c.closed


def test_log_failure_on_session_creation_closes_the_connection(harness: Harness) -> None:
    harness.backend.fail_next = OSError(errno.ENOSPC, "No space left on device")
    c = harness.client()
    c.send(frame(connect_payload()))
    harness.pump()
    assert c.take() == b""
    assert c.closed
    assert harness.server.core.sessions.sessions == {}
    assert harness.session().session_id != 0  # the next client is served


def test_global_outstanding_limit_pauses_and_resumes_reading(tmp_path: Any, monkeypatch: Any) -> None:
    h = Harness(tmp_path, monkeypatch, extra_config="globalOutstandingLimit=2\n")
    try:
        a = h.session()
        b = h.session()
        h.clock.hold = True
        a.send(create(1, "/o1") + create(2, "/o2"))
        assert a.transport.producerState == "producing"
        a.send(create(3, "/o3"))
        assert a.transport.producerState == "paused"
        assert b.transport.producerState == "paused"
        h.pump()
        h.clock.release()
        h.pump()
        assert [r.xid for r in a.replies()] == [1, 2, 3]
        assert a.transport.producerState == "producing"
        assert b.transport.producerState == "producing"
        assert h.server.outstanding == 0
    finally:
        h.stop()


def test_max_client_cnxns_per_ip(tmp_path: Any, monkeypatch: Any) -> None:
    h = Harness(tmp_path, monkeypatch, extra_config="maxClientCnxns=2\n")
    try:
        first = h.session()
        second = h.session()
        third = h.client()
        assert third.transport.disconnecting
        third.conn.connectionLost(None)  # the reactor reports the aborted socket
        elsewhere = h.client("10.0.0.7")
        assert not elsewhere.closed
        first.conn.connectionLost(None)
        again = h.client()
        assert not again.closed
        assert again.handshake().session_id != 0
        assert not second.closed
    finally:
        h.stop()


def test_request_sent_in_a_later_read_while_the_session_is_being_created(harness: Harness) -> None:
    c = harness.client()
    c.send(frame(connect_payload()))
    c.send(exists(1, "/"))
    c.send(ping())
    assert c.take() == b""
    harness.pump()
    frames = c.frames()
    assert parse_connect_response(frames[0]).session_id != 0
    assert [(parse_reply(f).xid, parse_reply(f).err) for f in frames[1:]] == [(1, OK), (XID_PING, OK)]


def test_malformed_connect_request_closes(harness: Harness) -> None:
    c = harness.client()
    c.send(frame(b"\x00" * 10))
    harness.pump()
    assert c.take() == b"" and c.closed


def test_request_shorter_than_its_header_closes(harness: Harness) -> None:
    c = harness.session()
    c.send(frame(b"\x00\x00\x00\x01"))
    assert c.take() == b"" and c.closed


def test_four_letter_word_on_the_client_port(harness: Harness) -> None:
    c = harness.client()
    c.send(b"srvr")
    out = c.take().decode("utf-8")
    assert out.startswith("Zookeeper version:")
    assert "Mode: standalone" in out
    assert c.closed


def test_four_letter_word_not_in_the_whitelist(harness: Harness) -> None:
    c = harness.client()
    c.send(b"ruok")
    assert c.take() == b"ruok is not executed because it is not in the whitelist.\n"
    assert c.closed
