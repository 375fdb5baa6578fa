"""Simulated ZooKeeper clients and their workload.

Each client has one session and one request in flight at a time, like a
synchronous kazoo caller.  Its operations are recorded in the format of
:mod:`zktwist.sim.linearizability`: a write whose reply never came
(connection loss, server crash, request timeout) gets ``ret=None`` -- it may
have happened or not.  The workload runs over a handful of paths under a
persistent parent the client creates first, so the checker's per-path model
applies (the parent always exists).
"""

from __future__ import annotations

import random
import struct
from typing import Any, List, Optional, Tuple

from zktwist.core.database import ZooKeeperCore
from zktwist.core.tree import OPEN_ACL_UNSAFE, ApplyResult
from zktwist.proto.consts import OpCode
from zktwist.sim.linearizability import Op

PARENT = "/sim"

ERR_NAMES = {0: "ok", -101: "nonode", -110: "nodeexists", -103: "badversion"}

_version_of_stat = struct.Struct(">qqqqi")

# (kind, weight)
KINDS: Tuple[Tuple[str, int], ...] = (
    ("create", 14), ("delete", 8), ("set", 20), ("cas", 16), ("check", 8), ("read", 14),
    ("syncread", 12),
)


def stat_version(stat: Optional[bytes]) -> int:
    if not stat:
        return -1
    return int(_version_of_stat.unpack_from(stat)[4])


def write_outcome(kind: str, op: int, result: ApplyResult) -> Any:
    """The checker's result for a write, or None when it failed for another reason.

    ``ZooKeeperCore.write_reply`` gives the client's error code (for a multi,
    the first failing sub-op's is in ``result.err``); anything but ok, nonode,
    nodeexists and badversion (an expired or moved session, say) is an
    ErrorTxn that changed nothing, and is left out of the history.
    """
    err, body = ZooKeeperCore.write_reply(op, result)
    if op == OpCode.multi:
        err = result.err
    name = ERR_NAMES.get(err)
    if name is None:
        return None
    if name != "ok":
        return name
    if kind == "set":
        return ("ok", stat_version(body))
    if kind == "cas":
        subs = result.multi or []
        return ("ok", stat_version(subs[-1].stat)) if subs else "ok"
    return "ok"


class Request:
    """The one request a client has in flight."""

    __slots__ = ("kind", "path", "value", "version", "cxid", "op", "req", "call", "record",
                 "token")

    def __init__(self, kind: str, path: str, value: Optional[bytes], version: int, cxid: int,
                 op: int, req: Any, call: int, record: bool, token: Any) -> None:
        self.kind = kind
        self.path = path
        self.value = value
        self.version = version
        self.cxid = cxid
        self.op = op
        self.req = req
        self.call = call
        self.record = record
        self.token = token


class SimClient:
    """State of one client; the world moves it along (see World._client_*)."""

    def __init__(self, cid: int, rng: random.Random, paths: List[str], timeout: int,
                 request_timeout: int) -> None:
        self.cid = cid
        self.rng = rng
        self.paths = paths
        self.session_timeout = timeout
        self.request_timeout = request_timeout
        self.session_id = 0
        self.passwd = b""
        self.server: Optional[int] = None
        self.token: Any = None
        self.connected = False
        self.conn_no = 0
        self.cxid = 0
        self.counter = 0
        self.parent_done = False
        self.pending: Optional[Request] = None
        self.versions: dict = {}
        self.history: List[Op] = []
        self.stopped = False
        self.sessions = 0

    def next_request(self, now: int) -> Request:
        """Pick the next operation (the parent's create until it exists)."""
        self.cxid += 1
        rng = self.rng
        if not self.parent_done:
            return Request("create", PARENT, b"", -1, self.cxid, OpCode.create,
                           (PARENT, b"", list(OPEN_ACL_UNSAFE), 0, -1), now, False, self.token)
        total = sum(w for _, w in KINDS)
        r = rng.randrange(total)
        for kind, w in KINDS:
            if r < w:
                break
            r -= w
        path = rng.choice(self.paths)
        self.counter += 1
        value = b"%d.%d" % (self.cid, self.counter)
        known = self.versions.get(path)
        if rng.random() < 0.25 or known is None:
            version = rng.randrange(-1, 3)
        else:
            version = known
        if kind == "create":
            return Request(kind, path, value, -1, self.cxid, OpCode.create,
                           (path, value, list(OPEN_ACL_UNSAFE), 0, -1), now, True, self.token)
        if kind == "delete":
            if rng.random() < 0.3:
                version = -1
            return Request(kind, path, None, version, self.cxid, OpCode.delete, (path, version),
                           now, True, self.token)
        if kind == "set":
            if rng.random() < 0.3:
                version = -1
            return Request(kind, path, value, version, self.cxid, OpCode.setData,
                           (path, value, version), now, True, self.token)
        if kind == "cas":
            if version < 0:
                version = 0
            return Request(kind, path, value, version, self.cxid, OpCode.multi,
                           ((OpCode.check, (path, version)), (OpCode.setData, (path, value, -1))),
                           now, True, self.token)
        if kind == "check":
            if version < 0:
                version = 0
            return Request(kind, path, None, version, self.cxid, OpCode.multi,
                           ((OpCode.check, (path, version)),), now, True, self.token)
        return Request(kind, path, None, -1, self.cxid, OpCode.getData, (path, False), now, True,
                       self.token)

    def finish(self, now: Optional[int], result: Any) -> Optional[Request]:
        """The pending request ended (``now`` None: outcome unknown); record it."""
        r = self.pending
        self.pending = None
        if r is None:
            return None
        if not r.record:
            if now is not None and result in ("ok", "nodeexists"):
                self.parent_done = True
            return r
        if now is not None and result is None:
            return r  # an error that changed nothing
        if now is None and r.kind in ("read", "syncread", "check"):
            return r  # cannot have changed anything
        self.history.append(Op(self.cid, r.call, now, r.kind, r.path, r.value, r.version,
                               result))
        if now is not None:
            if isinstance(result, tuple):
                self.versions[r.path] = result[-1]
            elif r.kind == "create" and result == "ok":
                self.versions[r.path] = 0
            elif result == "nonode":
                self.versions.pop(r.path, None)
        return r
