"""A small blocking-socket ZooKeeper client that speaks raw jute.

It is deliberately independent of zktwist's own codec (plain :mod:`struct`), so
tests that use it check the server against the wire format itself, not against
a second copy of the server's encoder.

Typical use::

    with RawClient.open_session("127.0.0.1", port) as c:
        r = c.create("/a", b"x", flags=0)          # -> Reply
        assert r.err == OK and r.body == "/a"
        r = c.get_data("/a", watch=True)           # body: DataResponse(data, stat)
        c.set_data("/a", b"y")
        c.ping()                                   # the notification arrives before this reply
        assert [e.type for e in c.events] == [EVENT_NODE_DATA_CHANGED]

Main pieces:

* :class:`RawClient` -- one TCP connection. :meth:`RawClient.handshake` sends a
  ``ConnectRequest`` (with or without the trailing readOnly byte) and returns the
  decoded :class:`ConnectResponse` or ``None`` when the server closed without one.
  :meth:`RawClient.open_session` connects and handshakes in one go, and can
  re-attach to an existing session (id + password + lastZxidSeen).
* One method per opcode (``create``, ``create2``, ``create_container``,
  ``create_ttl``, ``delete``, ``exists``, ``get_data``, ``set_data``, ``get_acl``,
  ``set_acl``, ``get_children``, ``get_children2``, ``sync``, ``ping``, ``multi``,
  ``multi_read``, ``check_watches``, ``remove_watches``, ``auth``,
  ``set_watches``, ``set_watches2``, ``get_ephemerals``,
  ``get_all_children_number``, ``add_watch``, ``who_am_i``, ``close_session``).
  Each sends one request (``xid=`` overrides the automatic xid) and blocks for
  its :class:`Reply`. Every reply carries ``xid``, ``zxid``, ``err``, the
  decoded ``body`` (``None`` when the server sent no body), and ``extra``: any
  body bytes left over after decoding (``b""`` normally).
* :meth:`RawClient.request` sends any opcode with a ready-made record;
  :meth:`RawClient.submit` / :meth:`RawClient.read_reply` do the same split in two
  so requests can be pipelined; :meth:`RawClient.send_frame` and
  :meth:`RawClient.send_raw` put arbitrary bytes on the wire.
* Notifications (xid -1) are collected in :attr:`RawClient.events` as
  :class:`WatchEvent` in arrival order; each records ``after_replies``, the number
  of replies this connection had received before it arrived.
  :attr:`RawClient.history` holds replies and events interleaved in arrival order.
* Sub-operations for ``multi``/``multi_read`` are built with the ``op_*``
  helpers (``op_create``, ``op_create2``, ``op_create_container``,
  ``op_create_ttl``, ``op_delete``, ``op_set_data``, ``op_check``,
  ``op_get_data``, ``op_get_children``); results come back as
  :class:`MultiResult` ``(type, err, body)`` exactly as encoded.
* ``encode_*`` functions and :class:`Reader` are public for tests that want to
  build or parse records by hand.

All integers are big-endian and signed, as jute writes them.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import select
import socket
import struct
import time
from typing import Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

# --------------------------------------------------------------------------- constants

OP_NOTIFICATION = 0
OP_CREATE = 1
OP_DELETE = 2
OP_EXISTS = 3
OP_GET_DATA = 4
OP_SET_DATA = 5
OP_GET_ACL = 6
OP_SET_ACL = 7
OP_GET_CHILDREN = 8
OP_SYNC = 9
OP_PING = 11
OP_GET_CHILDREN2 = 12
OP_CHECK = 13
OP_MULTI = 14
OP_CREATE2 = 15
OP_RECONFIG = 16
OP_CHECK_WATCHES = 17
OP_REMOVE_WATCHES = 18
OP_CREATE_CONTAINER = 19
OP_DELETE_CONTAINER = 20
OP_CREATE_TTL = 21
OP_MULTI_READ = 22
OP_AUTH = 100
OP_SET_WATCHES = 101
OP_SASL = 102
OP_GET_EPHEMERALS = 103
OP_GET_ALL_CHILDREN_NUMBER = 104
OP_SET_WATCHES2 = 105
OP_ADD_WATCH = 106
OP_WHO_AM_I = 107
OP_CREATE_SESSION = -10
OP_CLOSE_SESSION = -11
OP_ERROR = -1

OP_NAMES = {
    0: "notification", 1: "create", 2: "delete", 3: "exists", 4: "getData", 5: "setData", 6: "getACL",
    7: "setACL", 8: "getChildren", 9: "sync", 11: "ping", 12: "getChildren2", 13: "check", 14: "multi",
    15: "create2", 16: "reconfig", 17: "checkWatches", 18: "removeWatches", 19: "createContainer",
    20: "deleteContainer", 21: "createTTL", 22: "multiRead", 100: "auth", 101: "setWatches", 102: "sasl",
    103: "getEphemerals", 104: "getAllChildrenNumber", 105: "setWatches2", 106: "addWatch", 107: "whoAmI",
    -10: "createSession", -11: "closeSession", -1: "error",
}

XID_NOTIFICATION = -1
XID_PING = -2
XID_AUTH = -4
XID_SET_WATCHES = -8

# error codes (KeeperException.Code)
OK = 0
SYSTEMERROR = -1
RUNTIMEINCONSISTENCY = -2
DATAINCONSISTENCY = -3
CONNECTIONLOSS = -4
MARSHALLINGERROR = -5
UNIMPLEMENTED = -6
OPERATIONTIMEOUT = -7
BADARGUMENTS = -8
UNKNOWNSESSION = -12
APIERROR = -100
NONODE = -101
NOAUTH = -102
BADVERSION = -103
NOCHILDRENFOREPHEMERALS = -108
NODEEXISTS = -110
NOTEMPTY = -111
SESSIONEXPIRED = -112
INVALIDACL = -114
AUTHFAILED = -115
SESSIONMOVED = -118
NOTREADONLY = -119
EPHEMERALONLOCALSESSION = -120
NOWATCHER = -121

# watch event types / states
EVENT_NONE = -1
EVENT_NODE_CREATED = 1
EVENT_NODE_DELETED = 2
EVENT_NODE_DATA_CHANGED = 3
EVENT_NODE_CHILDREN_CHANGED = 4
STATE_SYNC_CONNECTED = 3

# WatcherType for checkWatches/removeWatches
WATCHER_CHILDREN = 1
WATCHER_DATA = 2
WATCHER_ANY = 3

# addWatch modes
ADD_WATCH_PERSISTENT = 0
ADD_WATCH_PERSISTENT_RECURSIVE = 1

# CreateMode flags
PERSISTENT = 0
EPHEMERAL = 1
PERSISTENT_SEQUENTIAL = 2
EPHEMERAL_SEQUENTIAL = 3
CONTAINER = 4
PERSISTENT_WITH_TTL = 5
PERSISTENT_SEQUENTIAL_WITH_TTL = 6

# ACL perms
PERM_READ = 1
PERM_WRITE = 2
PERM_CREATE = 4
PERM_DELETE = 8
PERM_ADMIN = 16
PERM_ALL = 31


# --------------------------------------------------------------------------- records


class Stat(NamedTuple):
    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeralOwner: int
    dataLength: int
    numChildren: int
    pzxid: int


class ACL(NamedTuple):
    perms: int
    scheme: Optional[str]
    id: Optional[str]


OPEN_ACL_UNSAFE = [ACL(PERM_ALL, "world", "anyone")]
READ_ACL_UNSAFE = [ACL(PERM_READ, "world", "anyone")]
CREATOR_ALL_ACL = [ACL(PERM_ALL, "auth", "")]


def digest_id(user: str, password: str) -> str:
    """The id of a ``digest`` ACL entry for ``user:password`` (``user:BASE64(SHA1(user:password))``)."""
    h = hashlib.sha1(f"{user}:{password}".encode("utf-8")).digest()
    return f"{user}:{base64.b64encode(h).decode('ascii')}"


class ConnectResponse(NamedTuple):
    protocol_version: int
    timeout: int
    session_id: int
    passwd: Optional[bytes]
    read_only: Optional[bool]   # None when the server did not send the byte
    length: int                 # payload length of the frame (36 or 37 normally)


class DataResponse(NamedTuple):
    data: Optional[bytes]
    stat: Stat


class ChildrenResponse(NamedTuple):
    children: Optional[List[Optional[str]]]
    stat: Stat


class ACLResponse(NamedTuple):
    acl: Optional[List[ACL]]
    stat: Stat


class Create2Response(NamedTuple):
    path: Optional[str]
    stat: Stat


class MultiResult(NamedTuple):
    type: int    # result type as encoded in the MultiHeader
    err: int     # err as encoded in the MultiHeader
    body: Any    # decoded body; for type -1 the ErrorResponse err int


class ClientInfo(NamedTuple):
    auth_scheme: Optional[str]
    user: Optional[str]


class Reply(NamedTuple):
    xid: int
    zxid: int
    err: int
    op: int             # opcode of the request this reply answers (as the client believes)
    body: Any           # decoded body or None when no body was sent
    extra: bytes        # undecoded trailing bytes (b"" normally)
    raw: bytes          # the whole frame payload


class WatchEvent(NamedTuple):
    type: int
    state: int
    path: Optional[str]
    zxid: int
    after_replies: int  # replies received on this connection before the event arrived


class ConnectionClosed(Exception):
    """The server closed the connection (EOF) while a reply was expected."""


class DecodeError(Exception):
    pass


# --------------------------------------------------------------------------- encoding


def enc_int(v: int) -> bytes:
    return struct.pack(">i", v)


def enc_long(v: int) -> bytes:
    return struct.pack(">q", v)


def enc_bool(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def enc_buffer(v: Optional[bytes]) -> bytes:
    if v is None:
        return enc_int(-1)
    return enc_int(len(v)) + bytes(v)


def enc_string(v: Optional[str]) -> bytes:
    if v is None:
        return enc_int(-1)
    b = v.encode("utf-8", "surrogatepass")
    return enc_int(len(b)) + b


def enc_string_vector(v: Optional[Sequence[str]]) -> bytes:
    if v is None:
        return enc_int(-1)
    return enc_int(len(v)) + b"".join(enc_string(s) for s in v)


def enc_acl_list(acl: Optional[Iterable[Union[ACL, Tuple[int, str, str]]]]) -> bytes:
    if acl is None:
        return enc_int(-1)
    items = list(acl)
    return enc_int(len(items)) + b"".join(enc_int(p) + enc_string(s) + enc_string(i) for (p, s, i) in items)


def encode_connect_request(*, protocol_version: int = 0, last_zxid: int = 0, timeout: int = 30000,
                           session_id: int = 0, passwd: Optional[bytes] = None,
                           read_only: Optional[bool] = False) -> bytes:
    """ConnectRequest payload; ``read_only=None`` omits the optional trailing byte (44-byte request)."""
    if passwd is None:
        passwd = bytes(16)
    body = enc_int(protocol_version) + enc_long(last_zxid) + enc_int(timeout) + enc_long(session_id) + enc_buffer(passwd)
    if read_only is not None:
        body += enc_bool(read_only)
    return body


def encode_request_header(xid: int, op: int) -> bytes:
    return struct.pack(">ii", xid, op)


def encode_create(path: str, data: Optional[bytes] = b"", acl=OPEN_ACL_UNSAFE, flags: int = 0) -> bytes:
    return enc_string(path) + enc_buffer(data) + enc_acl_list(acl) + enc_int(flags)


def encode_create_ttl(path: str, data: Optional[bytes] = b"", acl=OPEN_ACL_UNSAFE, flags: int = PERSISTENT_WITH_TTL,
                      ttl: int = 60000) -> bytes:
    return encode_create(path, data, acl, flags) + enc_long(ttl)


def encode_path_version(path: str, version: int) -> bytes:
    return enc_string(path) + enc_int(version)


def encode_path_watch(path: str, watch: bool) -> bytes:
    return enc_string(path) + enc_bool(watch)


def encode_set_data(path: str, data: Optional[bytes], version: int = -1) -> bytes:
    return enc_string(path) + enc_buffer(data) + enc_int(version)


def encode_set_acl(path: str, acl, version: int = -1) -> bytes:
    return enc_string(path) + enc_acl_list(acl) + enc_int(version)


def encode_path_int(path: str, value: int) -> bytes:
    return enc_string(path) + enc_int(value)


def encode_auth(scheme: str, auth: Optional[bytes], type_: int = 0) -> bytes:
    return enc_int(type_) + enc_string(scheme) + enc_buffer(auth)


def encode_set_watches(relative_zxid: int, data=(), exist=(), child=()) -> bytes:
    return enc_long(relative_zxid) + enc_string_vector(list(data)) + enc_string_vector(list(exist)) + \
        enc_string_vector(list(child))


def encode_set_watches2(relative_zxid: int, data=(), exist=(), child=(), persistent=(),
                        persistent_recursive=()) -> bytes:
    return encode_set_watches(relative_zxid, data, exist, child) + enc_string_vector(list(persistent)) + \
        enc_string_vector(list(persistent_recursive))


def encode_multi_header(type_: int, done: bool, err: int) -> bytes:
    return enc_int(type_) + enc_bool(done) + enc_int(err)


SubOp = Tuple[int, bytes]
"""A multi sub-operation: (opcode, request record bytes)."""


def encode_multi(ops: Sequence[SubOp]) -> bytes:
    out = [encode_multi_header(op, False, -1) + rec for op, rec in ops]
    out.append(encode_multi_header(-1, True, -1))
    return b"".join(out)


def op_create(path, data=b"", acl=OPEN_ACL_UNSAFE, flags=0) -> SubOp:
    return (OP_CREATE, encode_create(path, data, acl, flags))


def op_create2(path, data=b"", acl=OPEN_ACL_UNSAFE, flags=0) -> SubOp:
    return (OP_CREATE2, encode_create(path, data, acl, flags))


def op_create_container(path, data=b"", acl=OPEN_ACL_UNSAFE, flags=CONTAINER) -> SubOp:
    return (OP_CREATE_CONTAINER, encode_create(path, data, acl, flags))


def op_create_ttl(path, data=b"", acl=OPEN_ACL_UNSAFE, flags=PERSISTENT_WITH_TTL, ttl=60000) -> SubOp:
    return (OP_CREATE_TTL, encode_create_ttl(path, data, acl, flags, ttl))


def op_delete(path, version=-1) -> SubOp:
    return (OP_DELETE, encode_path_version(path, version))


def op_set_data(path, data, version=-1) -> SubOp:
    return (OP_SET_DATA, encode_set_data(path, data, version))


def op_check(path, version) -> SubOp:
    return (OP_CHECK, encode_path_version(path, version))


def op_get_data(path, watch=False) -> SubOp:
    return (OP_GET_DATA, encode_path_watch(path, watch))


def op_get_children(path, watch=False) -> SubOp:
    return (OP_GET_CHILDREN, encode_path_watch(path, watch))


# --------------------------------------------------------------------------- decoding


class Reader:
    """Sequential jute reader over a bytes object."""

    def __init__(self, data: bytes, pos: builtins.int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> builtins.int:
        return len(self.data) - self.pos

    def rest(self) -> bytes:
        return self.data[self.pos:]

    def _take(self, n: builtins.int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(f"need {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self) -> builtins.int:
        return struct.unpack(">i", self._take(4))[0]

    def long(self) -> builtins.int:
        return struct.unpack(">q", self._take(8))[0]

    def bool(self) -> builtins.bool:
        return self._take(1) != b"\x00"

    def buffer(self) -> Optional[bytes]:
        n = self.int()
        if n == -1:
            return None
        return self._take(n)

    def string(self) -> Optional[str]:
        b = self.buffer()
        if b is None:
            return None
        try:
            # surrogatepass: Java writes non-BMP characters as CESU-8 surrogate pairs; keep them visible
            return b.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return b.decode("utf-8", "surrogateescape")

    def string_vector(self) -> Optional[List[Optional[str]]]:
        n = self.int()
        if n == -1:
            return None
        return [self.string() for _ in range(n)]

    def stat(self) -> Stat:
        return Stat(self.long(), self.long(), self.long(), self.long(), self.int(), self.int(), self.int(),
                    self.long(), self.int(), self.int(), self.long())

    def acl_list(self) -> Optional[List[ACL]]:
        n = self.int()
        if n == -1:
            return None
        return [ACL(self.int(), self.string(), self.string()) for _ in range(n)]


def decode_connect_response(payload: bytes) -> ConnectResponse:
    r = Reader(payload)
    pv, to, sid, pw = r.int(), r.int(), r.long(), r.buffer()
    ro = r.bool() if r.remaining() >= 1 else None
    return ConnectResponse(pv, to, sid, pw, ro, len(payload))


def _decode_multi(r: Reader) -> List[MultiResult]:
    results = []
    while True:
        type_, done, err = r.int(), r.bool(), r.int()
        if done:
            break
        body = _decode_multi_body(type_, r)
        results.append(MultiResult(type_, err, body))
    return results


def _decode_multi_body(type_: int, r: Reader) -> Any:
    if type_ == OP_CREATE:
        return r.string()
    if type_ in (OP_CREATE2, OP_CREATE_CONTAINER, OP_CREATE_TTL):
        return Create2Response(r.string(), r.stat())
    if type_ in (OP_DELETE, OP_CHECK):
        return None
    if type_ == OP_SET_DATA:
        return r.stat()
    if type_ == OP_GET_DATA:
        return DataResponse(r.buffer(), r.stat())
    if type_ == OP_GET_CHILDREN:
        return r.string_vector()
    if type_ == OP_ERROR:
        return r.int()
    raise DecodeError(f"unknown multi result type {type_}")


def decode_body(op: int, r: Reader) -> Any:
    """Decode the response record of ``op`` from ``r`` (only called when there are body bytes)."""
    if op == OP_CREATE:
        return r.string()
    if op in (OP_CREATE2, OP_CREATE_CONTAINER, OP_CREATE_TTL):
        return Create2Response(r.string(), r.stat())
    if op in (OP_EXISTS, OP_SET_DATA, OP_SET_ACL):
        return r.stat()
    if op == OP_GET_DATA:
        return DataResponse(r.buffer(), r.stat())
    if op == OP_GET_ACL:
        return ACLResponse(r.acl_list(), r.stat())
    if op == OP_GET_CHILDREN:
        return r.string_vector()
    if op == OP_GET_CHILDREN2:
        return ChildrenResponse(r.string_vector(), r.stat())
    if op == OP_SYNC:
        return r.string()
    if op in (OP_MULTI, OP_MULTI_READ):
        return _decode_multi(r)
    if op == OP_GET_EPHEMERALS:
        return r.string_vector()
    if op == OP_GET_ALL_CHILDREN_NUMBER:
        return r.int()
    if op == OP_ADD_WATCH:
        return r.int()
    if op == OP_WHO_AM_I:
        n = r.int()
        if n == -1:
            return None
        return [ClientInfo(r.string(), r.string()) for _ in range(n)]
    if op == OP_RECONFIG:
        return DataResponse(r.buffer(), r.stat())
    # delete, ping, checkWatches, removeWatches, auth, setWatches(2), closeSession: no record
    return None


# --------------------------------------------------------------------------- client


class RawClient:
    """One blocking TCP connection to a ZooKeeper-protocol server."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2181, *, timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._buf = bytearray()
        self.closed = False                 # EOF seen
        self.connect_response: Optional[ConnectResponse] = None
        self.session_id = 0
        self.passwd = bytes(16)
        self.last_zxid = 0                  # highest reply zxid seen (what a client sends as lastZxidSeen)
        self.events: List[WatchEvent] = []
        self.history: List[Union[Reply, WatchEvent]] = []
        self.replies_received = 0
        self._next_xid = 1
        self._pending: List[Tuple[int, int]] = []   # (xid, op) in send order
        self._stash: List[bytes] = []                # reply frames read while looking for events

    # ---- construction

    @classmethod
    def open_session(cls, host: str, port: int, *, session_timeout: int = 30000, session_id: int = 0,
                     passwd: Optional[bytes] = None, last_zxid: int = 0, read_only: Optional[bool] = False,
                     timeout: float = 10.0) -> "RawClient":
        """Connect and handshake; raises :class:`ConnectionClosed` when no ConnectResponse comes back.

        Pass ``session_id``/``passwd``/``last_zxid`` to re-attach to an existing session. A rejected
        session still returns a client: check ``connect_response.timeout``/``session_id`` (0 means rejected).
        """
        c = cls(host, port, timeout=timeout)
        resp = c.handshake(timeout=session_timeout, session_id=session_id, passwd=passwd, last_zxid=last_zxid,
                           read_only=read_only)
        if resp is None:
            c.close()
            raise ConnectionClosed("server closed the connection without a ConnectResponse")
        if session_id:
            c.last_zxid = last_zxid
        return c

    def handshake(self, *, timeout: int = 30000, session_id: int = 0, passwd: Optional[bytes] = None,
                  last_zxid: int = 0, read_only: Optional[bool] = False,
                  protocol_version: int = 0) -> Optional[ConnectResponse]:
        """Send a ConnectRequest; return the ConnectResponse, or None if the server closed the connection."""
        self.send_frame(encode_connect_request(protocol_version=protocol_version, last_zxid=last_zxid,
                                               timeout=timeout, session_id=session_id, passwd=passwd,
                                               read_only=read_only))
        payload = self.read_frame()
        if payload is None:
            return None
        resp = decode_connect_response(payload)
        self.connect_response = resp
        self.session_id = resp.session_id
        self.passwd = resp.passwd or bytes(16)
        return resp

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (the session stays alive on the server until it expires or is closed)."""
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    # ---- raw I/O

    def send_raw(self, data: bytes) -> None:
        """Write bytes exactly as given (no framing)."""
        self.sock.sendall(data)

    def send_frame(self, payload: bytes) -> None:
        """Write one length-prefixed frame."""
        self.sock.sendall(enc_int(len(payload)) + payload)

    def _recv_into_buf(self, timeout: Optional[float]) -> bool:
        """Read more bytes; False on EOF. Raises socket.timeout."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        finally:
            self.sock.settimeout(self.timeout)
        if not chunk:
            self.closed = True
            return False
        self._buf += chunk
        return True

    def read_frame(self, timeout: Optional[float] = None) -> Optional[bytes]:
        """Read one frame payload; None on EOF. Raises socket.timeout if nothing complete arrives in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if len(self._buf) >= 4:
                n = struct.unpack(">i", self._buf[:4])[0]
                if n < 0:
                    raise DecodeError(f"negative frame length {n}")
                if len(self._buf) >= 4 + n:
                    payload = bytes(self._buf[4:4 + n])
                    del self._buf[:4 + n]
                    return payload
            if self.closed:
                return None
            if deadline is None:
                t = self.timeout
            else:
                t = deadline - time.monotonic()
                if t <= 0:
                    raise socket.timeout("timed out waiting for a frame")
            if not self._recv_into_buf(t):
                if self._buf:
                    # a truncated trailing frame: report as EOF
                    return None
                return None

    def read_until_eof(self, timeout: float = 5.0) -> bool:
        """Drain the connection (recording events and stashing replies) until EOF; True if EOF was seen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                payload = self.read_frame(timeout=max(0.0, deadline - time.monotonic()))
            except socket.timeout:
                return False
            if payload is None:
                return True
            if not self._maybe_event(payload):
                self._stash.append(payload)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True if the server closes the connection within ``timeout`` (events and replies are kept)."""
        return self.read_until_eof(timeout)

    # ---- events

    def _maybe_event(self, payload: bytes) -> bool:
        if len(payload) >= 4 and struct.unpack(">i", payload[:4])[0] == XID_NOTIFICATION:
            r = Reader(payload)
            _xid, zxid, _err = r.int(), r.long(), r.int()
            ev = WatchEvent(r.int(), r.int(), r.string(), zxid, self.replies_received)
            self.events.append(ev)
            self.history.append(ev)
            return True
        return False

    def poll_events(self, timeout: float = 0.0) -> List[WatchEvent]:
        """Read whatever arrives within ``timeout``; returns the events newly collected.

        Replies read on the way are kept for :meth:`read_reply`.
        """
        before = len(self.events)
        deadline = time.monotonic() + timeout
        while True:
            if not self._buf_has_frame():
                if self.closed:
                    break
                remaining = max(0.0, deadline - time.monotonic())
                if not self._readable(remaining):
                    break
                if not self._recv_into_buf(self.timeout):
                    continue
                continue
            payload = self.read_frame()
            if payload is None:
                break
            if not self._maybe_event(payload):
                self._stash.append(payload)
        return self.events[before:]

    def _buf_has_frame(self) -> bool:
        if len(self._buf) < 4:
            return False
        return len(self._buf) >= 4 + struct.unpack(">i", self._buf[:4])[0]

    def _readable(self, timeout: float) -> bool:
        if self._buf_has_frame():
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def take_events(self) -> List[WatchEvent]:
        """Return and forget the collected events."""
        ev, self.events = self.events, []
        return ev

    # ---- requests

    def next_xid(self) -> int:
        x = self._next_xid
        self._next_xid += 1
        return x

    def submit(self, op: int, record: bytes = b"", xid: Optional[int] = None) -> int:
        """Send one request (header + record) without waiting; returns the xid used."""
        if xid is None:
            xid = {OP_PING: XID_PING, OP_AUTH: XID_AUTH, OP_SET_WATCHES: XID_SET_WATCHES,
                   OP_SET_WATCHES2: XID_SET_WATCHES}.get(op)
            if xid is None:
                xid = self.next_xid()
        self.send_frame(encode_request_header(xid, op) + record)
        self._pending.append((xid, op))
        return xid

    def read_reply(self, op: Optional[int] = None, timeout: Optional[float] = None) -> Reply:
        """Block for the next non-notification frame and decode it.

        The body is decoded as the reply to the pending request with the same xid (or, failing that,
        the oldest pending one, or ``op`` if given). Raises :class:`ConnectionClosed` on EOF.
        """
        while True:
            if self._stash:
                payload = self._stash.pop(0)
            else:
                frame = self.read_frame(timeout)
                if frame is None:
                    raise ConnectionClosed("connection closed by server")
                payload = frame
                if self._maybe_event(payload):
                    continue
            return self._decode_reply(payload, op)

    def _decode_reply(self, payload: bytes, op: Optional[int]) -> Reply:
        r = Reader(payload)
        xid, zxid, err = r.int(), r.long(), r.int()
        req_op = op
        for i, (pxid, pop) in enumerate(self._pending):
            if pxid == xid:
                del self._pending[i]
                req_op = pop if op is None else op
                break
        else:
            if req_op is None and self._pending:
                req_op = self._pending.pop(0)[1]
        body = None
        if r.remaining() and err == 0 and req_op is not None:
            body = decode_body(req_op, r)
        extra = r.rest()
        self.replies_received += 1
        if zxid > self.last_zxid:
            self.last_zxid = zxid
        rep = Reply(xid, zxid, err, req_op if req_op is not None else 0, body, extra, payload)
        self.history.append(rep)
        return rep

    def request(self, op: int, record: bytes = b"", xid: Optional[int] = None) -> Reply:
        """Send one request and block for its reply."""
        self.submit(op, record, xid)
        return self.read_reply()

    # ---- one method per opcode

    def create(self, path: str, data: Optional[bytes] = b"", acl=OPEN_ACL_UNSAFE, flags: int = 0, *,
               xid: Optional[int] = None) -> Reply:
        return self.request(OP_CREATE, encode_create(path, data, acl, flags), xid)

    def create2(self, path: str, data: Optional[bytes] = b"", acl=OPEN_ACL_UNSAFE, flags: int = 0, *,
                xid: Optional[int] = None) -> Reply:
        return self.request(OP_CREATE2, encode_create(path, data, acl, flags), xid)

    def create_container(self, path: str, data: Optional[bytes] = b"", acl=OPEN_ACL_UNSAFE,
                         flags: int = CONTAINER, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_CREATE_CONTAINER, encode_create(path, data, acl, flags), xid)

    def create_ttl(self, path: str, data: Optional[bytes] = b"", acl=OPEN_ACL_UNSAFE,
                   flags: int = PERSISTENT_WITH_TTL, ttl: int = 60000, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_CREATE_TTL, encode_create_ttl(path, data, acl, flags, ttl), xid)

    def delete(self, path: str, version: int = -1, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_DELETE, encode_path_version(path, version), xid)

    def exists(self, path: str, watch: bool = False, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_EXISTS, encode_path_watch(path, watch), xid)

    def get_data(self, path: str, watch: bool = False, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_GET_DATA, encode_path_watch(path, watch), xid)

    def set_data(self, path: str, data: Optional[bytes], version: int = -1, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_SET_DATA, encode_set_data(path, data, version), xid)

    def get_acl(self, path: str, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_GET_ACL, enc_string(path), xid)

    def set_acl(self, path: str, acl, version: int = -1, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_SET_ACL, encode_set_acl(path, acl, version), xid)

    def get_children(self, path: str, watch: bool = False, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_GET_CHILDREN, encode_path_watch(path, watch), xid)

    def get_children2(self, path: str, watch: bool = False, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_GET_CHILDREN2, encode_path_watch(path, watch), xid)

    def sync(self, path: str, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_SYNC, enc_string(path), xid)

    def ping(self, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_PING, b"", xid)

    def check(self, path: str, version: int, *, xid: Optional[int] = None) -> Reply:
        """A top-level check (op 13): not valid outside multi; 3.8.0 drops the connection."""
        return self.request(OP_CHECK, encode_path_version(path, version), xid)

    def multi(self, ops: Sequence[SubOp], *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_MULTI, encode_multi(ops), xid)

    def multi_read(self, ops: Sequence[SubOp], *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_MULTI_READ, encode_multi(ops), xid)

    def check_watches(self, path: str, watcher_type: int = WATCHER_ANY, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_CHECK_WATCHES, encode_path_int(path, watcher_type), xid)

    def remove_watches(self, path: str, watcher_type: int = WATCHER_ANY, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_REMOVE_WATCHES, encode_path_int(path, watcher_type), xid)

    def auth(self, scheme: str, auth: Optional[bytes], *, type_: int = 0, xid: Optional[int] = None) -> Reply:
        return self.request(OP_AUTH, encode_auth(scheme, auth, type_), xid)

    def add_digest(self, user: str, password: str) -> Reply:
        return self.auth("digest", f"{user}:{password}".encode("utf-8"))

    def set_watches(self, relative_zxid: int, data=(), exist=(), child=(), *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_SET_WATCHES, encode_set_watches(relative_zxid, data, exist, child), xid)

    def set_watches2(self, relative_zxid: int, data=(), exist=(), child=(), persistent=(),
                     persistent_recursive=(), *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_SET_WATCHES2, encode_set_watches2(relative_zxid, data, exist, child, persistent,
                                                                 persistent_recursive), xid)

    def get_ephemerals(self, prefix: str, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_GET_EPHEMERALS, enc_string(prefix), xid)

    def get_all_children_number(self, path: str, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_GET_ALL_CHILDREN_NUMBER, enc_string(path), xid)

    def add_watch(self, path: str, mode: int = ADD_WATCH_PERSISTENT, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_ADD_WATCH, encode_path_int(path, mode), xid)

    def who_am_i(self, *, xid: Optional[int] = None) -> Reply:
        return self.request(OP_WHO_AM_I, b"", xid)

    def close_session(self, *, xid: Optional[int] = None) -> Reply:
        """closeSession (op -11): the server replies, then closes the socket."""
        return self.request(OP_CLOSE_SESSION, b"", xid)
