"""Shared helpers for the pure-core unit tests (this module holds no tests).

The harness drives :class:`ZooKeeperCore` the way the standalone shell does --
``prep.prep`` then ``apply`` then ``write_reply`` -- with an explicit clock.
Replies are parsed here with ``struct`` rather than with zktwist's own codec, so
the tests do not trust the code under test to read its own output.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

from zktwist.core.database import CoreConfig, ZooKeeperCore
from zktwist.core.txn import Txn
from zktwist.proto.consts import OpCode

OPEN = [(31, "world", "anyone")]
READ_ONLY = [(1, "world", "anyone")]
LOCAL_IP = ("ip", "127.0.0.1")
T0 = 1_700_000_000_000  # a plausible wall clock, ms

INT_MIN = -(1 << 31)
INT_MAX = (1 << 31) - 1


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


_STAT = struct.Struct(">qqqqiiiqiiq")
assert _STAT.size == 68


def parse_stat(raw: bytes, offset: int = 0) -> Stat:
    return Stat(*_STAT.unpack_from(raw, offset))


def digest_id(user_password: str) -> str:
    """user:BASE64(SHA1(user:password)), written out independently of zktwist.core.acl."""
    user = user_password.split(":", 1)[0]
    return user + ":" + base64.b64encode(hashlib.sha1(user_password.encode()).digest()).decode()


class Recorder:
    """A fake connection: records every ``process_event(type, path)``."""

    def __init__(self, name: str = "w") -> None:
        self.name = name
        self.events: List[Tuple[int, str]] = []

    def process_event(self, event_type: int, path: str) -> None:
        self.events.append((event_type, path))

    def take(self) -> List[Tuple[int, str]]:
        out, self.events = self.events, []
        return out

    def __repr__(self) -> str:
        return "Recorder(%s)" % self.name


# -- byte parsing ---------------------------------------------------------------

class _Buf:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.o = offset

    def int(self) -> int:
        v = struct.unpack_from(">i", self.data, self.o)[0]
        self.o += 4
        return v

    def long(self) -> int:
        v = struct.unpack_from(">q", self.data, self.o)[0]
        self.o += 8
        return v

    def bool(self) -> bool:
        v = self.data[self.o]
        self.o += 1
        return v != 0

    def buffer(self) -> Optional[bytes]:
        n = self.int()
        if n < 0:
            return None
        v = self.data[self.o:self.o + n]
        self.o += n
        return bytes(v)

    def string(self) -> Optional[str]:
        b = self.buffer()
        return None if b is None else b.decode("utf-8")

    def stat(self) -> Stat:
        s = parse_stat(self.data, self.o)
        self.o += 68
        return s

    def at_end(self) -> bool:
        return self.o == len(self.data)


def parse_create(body: bytes) -> str:
    b = _Buf(body)
    p = b.string()
    assert b.at_end()
    return p  # type: ignore[return-value]


def parse_create2(body: bytes) -> Tuple[str, Stat]:
    b = _Buf(body)
    p = b.string()
    s = b.stat()
    assert b.at_end()
    return p, s  # type: ignore[return-value]


def parse_get_data(body: bytes) -> Tuple[Optional[bytes], Stat]:
    b = _Buf(body)
    d = b.buffer()
    s = b.stat()
    assert b.at_end()
    return d, s


def parse_children(body: bytes, with_stat: bool = False):
    b = _Buf(body)
    n = b.int()
    kids = [b.string() for _ in range(n)]
    if with_stat:
        s = b.stat()
        assert b.at_end()
        return kids, s
    assert b.at_end()
    return kids


def parse_acl_response(body: bytes) -> Tuple[List[Tuple[int, str, str]], Stat]:
    b = _Buf(body)
    n = b.int()
    acl = []
    for _ in range(n):
        perms = b.int()
        scheme = b.string()
        ident = b.string()
        acl.append((perms, scheme, ident))
    s = b.stat()
    assert b.at_end()
    return acl, s


def parse_whoami(body: bytes) -> List[Tuple[str, Optional[str]]]:
    b = _Buf(body)
    n = b.int()
    out = [(b.string(), b.string()) for _ in range(n)]
    assert b.at_end()
    return out  # type: ignore[return-value]


class MultiResult(NamedTuple):
    type: int
    err: int
    value: Any  # path / (path, stat) / stat / error code / None / (data, stat) / children


def parse_multi(body: bytes) -> List[MultiResult]:
    """MultiResponse: (MultiHeader + body)* then MultiHeader(-1, true, -1)."""
    b = _Buf(body)
    out: List[MultiResult] = []
    while True:
        t = b.int()
        done = b.bool()
        err = b.int()
        if done:
            assert (t, err) == (-1, -1)
            break
        if t == OpCode.create:
            v: Any = b.string()
        elif t == OpCode.create2:
            v = (b.string(), b.stat())
        elif t in (OpCode.delete, OpCode.check):
            v = None
        elif t == OpCode.setData:
            v = b.stat()
        elif t == OpCode.getData:
            v = (b.buffer(), b.stat())
        elif t == OpCode.getChildren:
            n = b.int()
            v = [b.string() for _ in range(n)]
        elif t == -1:
            v = b.int()
            assert v == err, "ErrorResponse body must repeat the header err"
        else:
            raise AssertionError("unexpected multi result type %d" % t)
        out.append(MultiResult(t, err, v))
    assert b.at_end()
    return out


# -- request builders (the tuples records.decode_request produces) ---------------

def create_req(path: str, data: Optional[bytes] = b"", acl: Optional[Sequence] = None,
               flags: int = 0, ttl: int = -1) -> tuple:
    return (path, data, list(OPEN if acl is None else acl), flags, ttl)


def op_create(path: str, data: Optional[bytes] = b"", acl=None, flags: int = 0,
              op: int = OpCode.create, ttl: int = -1) -> tuple:
    return (op, create_req(path, data, acl, flags, ttl))


def op_delete(path: str, version: int = -1) -> tuple:
    return (OpCode.delete, (path, version))


def op_set_data(path: str, data: Optional[bytes], version: int = -1) -> tuple:
    return (OpCode.setData, (path, data, version))


def op_check(path: str, version: int) -> tuple:
    return (OpCode.check, (path, version))


# -- the harness --------------------------------------------------------------------

class Harness:
    """One ZooKeeperCore, one default session, a controllable clock."""

    def __init__(self, now: int = T0, timeout: int = 30000, **config: Any) -> None:
        self.now = now
        self.core = ZooKeeperCore(CoreConfig(**config), now)
        self.cxid = 0
        self.last_txn: Optional[Txn] = None
        self.last_result: Any = None
        self.sid = self.new_session(timeout)

    # plumbing
    @property
    def tree(self):
        return self.core.tree

    @property
    def prep(self):
        return self.core.prep

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now

    def new_session(self, timeout: int = 30000) -> int:
        sid = self.core.sessions.new_session_id()
        txn = self.core.prep.prep_create_session(sid, timeout, self.now)
        self.core.apply(txn, self.now)
        return sid

    def auth(self, *extra: Tuple[str, str]) -> List[Tuple[str, str]]:
        return [LOCAL_IP, *extra]

    def prep_only(self, op: int, req: Any, sid: Optional[int] = None,
                  auth: Optional[Sequence] = None) -> Txn:
        self.cxid += 1
        return self.core.prep.prep(self.sid if sid is None else sid, self.cxid, op, req,
                                   self.auth() if auth is None else list(auth), self.now)

    def apply(self, txn: Txn):
        self.last_txn = txn
        self.last_result = self.core.apply(txn, self.now)
        return self.last_result

    def write(self, op: int, req: Any, sid: Optional[int] = None,
              auth: Optional[Sequence] = None) -> Tuple[int, Optional[bytes]]:
        txn = self.prep_only(op, req, sid, auth)
        result = self.apply(txn)
        return self.core.write_reply(op, result)

    def read(self, op: int, req: tuple, watcher: Any = None, sid: Optional[int] = None,
             auth: Optional[Sequence] = None) -> Tuple[int, Optional[bytes]]:
        return self.core.read(self.sid if sid is None else sid, op, req,
                              self.auth() if auth is None else list(auth), watcher)

    # conveniences
    def create(self, path: str, data: Optional[bytes] = b"", acl=None, flags: int = 0,
               op: int = OpCode.create, ttl: int = -1, sid: Optional[int] = None,
               auth: Optional[Sequence] = None) -> Tuple[int, Optional[bytes]]:
        return self.write(op, create_req(path, data, acl, flags, ttl), sid, auth)

    def mk(self, path: str, data: Optional[bytes] = b"", acl=None, flags: int = 0,
           op: int = OpCode.create, ttl: int = -1, sid: Optional[int] = None,
           auth: Optional[Sequence] = None) -> str:
        """Create and assert success; returns the created path."""
        err, body = self.create(path, data, acl, flags, op, ttl, sid, auth)
        assert err == 0, "create %s failed with %d" % (path, err)
        assert body is not None
        return parse_create(body) if op == OpCode.create else parse_create2(body)[0]

    def delete(self, path: str, version: int = -1, **kw: Any) -> int:
        return self.write(OpCode.delete, (path, version), **kw)[0]

    def set_data(self, path: str, data: Optional[bytes], version: int = -1, **kw: Any):
        return self.write(OpCode.setData, (path, data, version), **kw)

    def set_acl(self, path: str, acl, version: int = -1, **kw: Any):
        return self.write(OpCode.setACL, (path, list(acl), version), **kw)

    def multi(self, ops: Sequence[tuple], **kw: Any) -> Tuple[int, Optional[bytes]]:
        return self.write(OpCode.multi, tuple(ops), **kw)

    def stat(self, path: str) -> Stat:
        err, body = self.read(OpCode.exists, (path, False))
        assert err == 0, "exists %s: %d" % (path, err)
        return parse_stat(body)  # type: ignore[arg-type]

    def get_data(self, path: str, watcher: Any = None, **kw: Any):
        err, body = self.read(OpCode.getData, (path, watcher is not None), watcher, **kw)
        if err:
            return err, None, None
        data, stat = parse_get_data(body)  # type: ignore[arg-type]
        return 0, data, stat

    def children(self, path: str, watcher: Any = None, **kw: Any):
        err, body = self.read(OpCode.getChildren, (path, watcher is not None), watcher, **kw)
        if err:
            return err, None
        return 0, sorted(parse_children(body))  # type: ignore[arg-type]

    def exists(self, path: str, watcher: Any = None) -> int:
        return self.read(OpCode.exists, (path, watcher is not None), watcher)[0]

    def get_acl(self, path: str, **kw: Any):
        err, body = self.read(OpCode.getACL, (path,), **kw)
        if err:
            return err, None, None
        acl, stat = parse_acl_response(body)  # type: ignore[arg-type]
        return 0, acl, stat

    def persisted_cversion(self, path: str) -> int:
        return self.tree.nodes[path].cversion
