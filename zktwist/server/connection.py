"""One client TCP connection: framing, the handshake, ordering of replies and events.

Replies on a connection go out in request order: a read is answered at once
unless this connection still waits for an earlier write (or ping, or read
queued behind one), in which case it waits its turn.  Watch events are
appended to the same output buffer the moment their txn is applied, so a
client always sees an event before any reply that reflects the change.  All
output of one ``dataReceived`` (or one durable batch) leaves in one
``transport.write``.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, List, Optional, Tuple

from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Server as _TCPServer
from twisted.logger import Logger

from zktwist.core.acl import java_set_order
from zktwist.core.database import ZooKeeperCore
from zktwist.core.txn import Txn
from zktwist.proto import records
from zktwist.proto.consts import (
    AUTH_XID,
    Err,
    KeeperState,
    OpCode,
    PING_XID,
)
from zktwist.proto.jute import JuteError, unpack_request_header

_framed_reply_header = struct.Struct(">iiqi")
pack_framed_reply_header = _framed_reply_header.pack

if TYPE_CHECKING:
    from typing import Union

    from zktwist.server.ensemble import EnsembleServer
    from zktwist.server.standalone import StandaloneServer

    Server = Union[StandaloneServer, EnsembleServer]

log = Logger()
_int = struct.Struct(">i")

INIT, CONNECTING, ESTABLISHED, CLOSED = range(4)

# Opcodes a client may send (Request.isValid) that we route.
WRITE_OPS = frozenset((
    OpCode.create, OpCode.create2, OpCode.createContainer, OpCode.createTTL, OpCode.delete,
    OpCode.setData, OpCode.setACL, OpCode.multi, OpCode.check, OpCode.reconfig,
    OpCode.deleteContainer,
))
# Requests that make a txn (answered when it is applied; updatelatency).
_UPDATE_OPS = WRITE_OPS | {OpCode.closeSession}
READ_OPS = frozenset((
    OpCode.exists, OpCode.getData, OpCode.getACL, OpCode.getChildren, OpCode.getChildren2,
    OpCode.sync, OpCode.multiRead, OpCode.checkWatches, OpCode.removeWatches,
    OpCode.getEphemerals, OpCode.getAllChildrenNumber, OpCode.setWatches, OpCode.setWatches2,
    OpCode.addWatch, OpCode.whoAmI,
))


def _send(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, but sent at once when the socket has nothing queued.

    Twisted's write only buffers and waits for the reactor's next writability
    poll (two epoll_ctl calls and a poll round per reply).  When a plain TCP
    transport has nothing buffered, the socket usually takes the whole reply
    now; whatever it does not take (or any error) goes through
    ``transport.write`` as before, so ordering, flow control and error handling
    stay Twisted's.
    """
    if (type(transport) is _TCPServer and transport.connected and not transport.disconnecting
            and not transport._tempDataLen and not transport.dataBuffer
            and not transport._writeDisconnected and not transport.TLS):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0
        if sent >= len(data):
            return
        if sent:
            data = data[sent:]
    transport.write(data)


class Entry:
    """A request waiting for its turn to be answered."""

    __slots__ = ("xid", "op", "req", "reply", "zxid", "started", "err")

    def __init__(self, xid: int, op: int, req: Any, started: float, err: int = 0) -> None:
        self.xid = xid
        self.op = op
        self.req = req
        self.err = err  # a read's session check, made when it arrived (PrepRequestProcessor order)
        self.reply: Optional[bytes] = None  # set when a write's txn is applied
        self.zxid = 0
        self.started = started


class ClientConnection(Protocol):
    #: Queued request types answered only once the server says so (a write's txn applied;
    #: an ensemble member's sync also waits for its leader).
    AWAIT_OPS: "frozenset[int] | set[int]" = _UPDATE_OPS

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.state = INIT
        self._buf = bytearray()
        self.out: List[bytes] = []
        self.queue: Deque[Entry] = deque()
        self.session_id = 0
        self.timeout = 0
        self.auth_ids: List[Tuple[str, str]] = []
        self.remote_ip = ""
        self.read_only_byte: Optional[bool] = None
        self.paused = False
        # Set once the client sent closeSession: nothing after it is served.
        self.closing_session = False
        # Statistics for cons/stat.
        self.established_at = 0.0
        self.packets_received = 0
        self.packets_sent = 0
        self.last_op = "NA"
        self.last_cxid = -1
        self.last_zxid = -1
        self.last_response = 0.0
        self.last_latency = 0
        self.min_latency = -1
        self.max_latency = 0
        self.total_latency = 0
        self.latency_count = 0

    # -- transport events -----------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.remote_ip = getattr(peer, "host", "")
        self.auth_ids = [("ip", self.remote_ip)]
        if not self.server.connection_opened(self):
            self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.queue.clear()
        self.server.connection_closed(self)

    def dataReceived(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        server = self.server
        server.read_clock()
        server.stats.incr("bytes_received_count", len(data))
        buf = self._buf
        if not buf and self.state == ESTABLISHED:
            # The usual case: frames straight out of ``data``, no copy into the buffer.
            maxbuf = server.config.jute_maxbuffer
            off = 0
            n = len(data)
            unpack = _int.unpack_from
            request = self._request
            while n - off >= 4:
                length = unpack(data, off)[0]
                if length < 0 or length > maxbuf:
                    log.info("Closing connection from {ip}: frame length {n} out of range",
                             ip=self.remote_ip, n=length)
                    self.close()
                    return
                if n - off - 4 < length:
                    break
                start = off + 4
                off = start + length
                request(data[start:off])
                if self.state == CLOSED:
                    return
            if off < n:
                buf += data[off:]
            if self.session_id:
                server.touch(self)
            self.flush()
            return
        buf += data
        maxbuf = self.server.config.jute_maxbuffer
        off = 0
        n = len(buf)
        try:
            while n - off >= 4:
                length = _int.unpack_from(buf, off)[0]
                if self.state == INIT and off == 0:
                    word = bytes(buf[0:4])
                    if self.server.is_four_letter_word(word):
                        self.server.run_four_letter_word(self, word.decode("ascii"))
                        return
                if length < 0 or length > maxbuf:
                    log.info("Closing connection from {ip}: frame length {n} out of range",
                             ip=self.remote_ip, n=length)
                    self.close()
                    return
                if n - off - 4 < length:
                    break
                start = off + 4
                off = start + length
                frame = bytes(buf[start:off])
                if self.state == ESTABLISHED:
                    self._request(frame)
                elif self.state == INIT:
                    self._connect(frame)
                elif self.state == CONNECTING:
                    self._pending_frames.append(frame)
                else:
                    return
                if self.state == CLOSED:
                    return
        finally:
            if off:
                del buf[:off]
        if self.session_id:
            self.server.touch(self)
        self.flush()

    # -- output ------------------------------------------------------------------------

    def flush(self) -> None:
        out = self.out
        if out and self.state != CLOSED:
            _send(self.transport, b"".join(out) if len(out) > 1 else out[0])
            n = len(out)
            self.packets_sent += n
            stats = self.server.stats
            stats.packets_sent += n
            sizes = stats.response_sizes
            if n == 1:
                sizes.set_last(len(out[0]) - 4)
            else:
                lengths = [len(f) for f in out]
                sizes.set_last(min(lengths) - 4)
                sizes.set_last(max(lengths) - 4)
                sizes.set_last(lengths[-1] - 4)
            out.clear()

    def send_reply(self, xid: int, zxid: int, err: int, body: Optional[bytes]) -> None:
        if body is not None and err == 0:
            self.out.append(pack_framed_reply_header(16 + len(body), xid, zxid, err) + body)
        else:
            self.out.append(pack_framed_reply_header(16, xid, zxid, err))

    def process_event(self, event_type: int, path: str) -> None:
        """A watch fired (called by the core's watch tables)."""
        if self.state == CLOSED:
            return
        self.out.append(records.encode_notification(event_type, KeeperState.SyncConnected, path))
        self.server.dirty.add(self)

    def close(self) -> None:
        """Send what is buffered, then close the socket."""
        if self.state == CLOSED:
            return
        self.flush()
        self.transport.loseConnection()  # type: ignore[union-attr]
        self.connectionLost(None)

    # -- the handshake -------------------------------------------------------------------

    def _connect(self, frame: bytes) -> None:
        try:
            (_version, last_zxid, timeout, session_id, passwd,
             read_only) = records.decode_connect_request(frame)
        except JuteError:
            log.info("Closing connection from {ip}: malformed ConnectRequest", ip=self.remote_ip)
            self.close()
            return
        self._pending_frames: List[bytes] = []
        self.read_only_byte = read_only
        self.server.stats.incr("connection_request_count")
        self.server.stats.packets_received += 1
        self.packets_received += 1
        self.server.connect(self, last_zxid, timeout, session_id, passwd)

    def established(self, session_id: int, timeout: int, passwd: bytes) -> None:
        """The session is ready: answer the ConnectRequest and run what the client pipelined."""
        self.session_id = session_id
        self.timeout = timeout
        self.state = ESTABLISHED
        self.established_at = time.time()
        resp = records.encode_connect_response(
            timeout, session_id, passwd, False if self.read_only_byte is not None else None)
        self.out.append(resp)
        frames = getattr(self, "_pending_frames", [])
        self._pending_frames = []
        for frame in frames:
            if self.state != ESTABLISHED:
                break
            self._request(frame)
        self.flush()

    def reject(self) -> None:
        """Expired session or wrong password: the zero ConnectResponse, then close."""
        self.out.append(records.encode_connect_response(
            0, 0, b"\x00" * 16, False if self.read_only_byte is not None else None))
        self.close()

    # -- requests ---------------------------------------------------------------------------

    def _request(self, frame: bytes) -> None:
        server = self.server
        server.stats.packets_received += 1
        self.packets_received += 1
        if len(frame) < 8:
            self.close()
            return
        if self.closing_session:
            return
        xid, op = unpack_request_header(frame, 0)
        if op == OpCode.auth:
            self._auth(xid, frame)
            return
        now = server.mono
        if op in READ_OPS:
            try:
                req = records.decode_request(op, frame, 8)
            except JuteError:
                req = None
            if self.queue:
                # Check the session now, in arrival order: a closeSession
                # pipelined behind this read must not fail it.
                self.queue.append(Entry(xid, op, req, now,
                                        server.core.session_error(self.session_id)))
            else:
                self._answer_read(xid, op, req, now)
        elif op == OpCode.ping:
            if self.queue:
                self.queue.append(Entry(xid, op, None, now))
            else:
                self.send_reply(PING_XID, server.core.last_zxid, 0, None)
        elif op in WRITE_OPS:
            server.submit_write(self, xid, op, frame, now)
        elif op == OpCode.closeSession:
            self.closing_session = True
            server.submit_close(self, xid, now)
        else:
            # Unknown or unsupported opcode: UNIMPLEMENTED, then close (UnimplementedRequestProcessor).
            self.send_reply(xid, -1, Err.UNIMPLEMENTED, None)
            self.close()

    def _auth(self, xid: int, frame: bytes) -> None:
        try:
            _type, scheme, auth = records.decode_request(OpCode.auth, frame, 8)
        except JuteError:
            self.close()
            return
        ids = self.server.core.authenticate(scheme, auth, self.remote_ip)
        if ids is None:
            self.server.stats.auth_failed += 1
            self.send_reply(xid, 0, Err.AUTHFAILED, None)
            self.close()
            return
        added = [i for i in ids if i not in self.auth_ids]
        if added:
            self.auth_ids = java_set_order(self.auth_ids + added)
        self.send_reply(xid, 0, 0, None)

    def _answer_read(self, xid: int, op: int, req: Any, started: float,
                     session_checked: bool = False, session_err: int = 0) -> None:
        server = self.server
        core = server.core
        if session_err:
            err, body = session_err, None
        elif req is None:
            err, body = Err.MARSHALLINGERROR, None
        else:
            err, body = core.read(self.session_id, op, req, self.auth_ids, self,
                                  check_session=not session_checked)
        zxid = core.last_zxid
        reply_xid = xid
        self.send_reply(reply_xid, zxid, err, body)
        self._record(xid, zxid, op, started)

    def _record(self, xid: int, zxid: int, op: int, started: float) -> None:
        server = self.server
        latency = int((server.mono - started) * 1000)
        if xid >= 0:
            self.last_cxid = xid
        self.last_zxid = zxid
        self.last_op = OP_ABBREV.get(op, "NA")
        self.last_response = server.wall
        self.last_latency = latency
        if self.min_latency < 0 or latency < self.min_latency:
            self.min_latency = latency
        if latency > self.max_latency:
            self.max_latency = latency
        self.total_latency += latency
        self.latency_count += 1
        server.stats.record_latency(latency, op in _UPDATE_OPS)

    def write_applied(self, entry: Entry, reply: Optional[bytes]) -> None:
        """A write of this connection was applied; answer everything now due, in order."""
        entry.reply = reply
        self.drain()
        self.server.dirty.add(self)

    def answer_write(self, entry: Entry, txn: Txn, result: Any) -> None:
        """Reply to write ``entry`` whose ``txn`` was applied with ``result`` (both servers)."""
        zxid = entry.zxid = txn.zxid
        if entry.op == OpCode.check and txn.type == OpCode.check:
            # 3.8.0 logs a passing top-level check and never answers it
            # (FinalRequestProcessor fails to build the reply); the
            # connection stays open and later requests are answered.
            self.write_applied(entry, b"")
            return
        err, body = ZooKeeperCore.write_reply(entry.op, result)
        if body is not None and err == 0:
            frame = pack_framed_reply_header(16 + len(body), entry.xid, zxid, err) + body
        else:
            frame = pack_framed_reply_header(16, entry.xid, zxid, err)
        self.write_applied(entry, frame)

    def answer_close(self, entry: Entry, zxid: int) -> None:
        """The closeSession txn was applied: reply, send everything now, close."""
        entry.zxid = zxid
        self.write_applied(entry, pack_framed_reply_header(16, entry.xid, zxid, 0))
        self.flush()
        self.close()

    def drain(self) -> None:
        queue = self.queue
        server = self.server
        awaited = self.AWAIT_OPS
        while queue:
            head = queue[0]
            if head.op in awaited:
                if head.reply is None:
                    return
                queue.popleft()
                if head.reply:
                    self.out.append(head.reply)
                self._record(head.xid, head.zxid, head.op, head.started)
                if head.op == OpCode.closeSession:
                    queue.clear()
                    return
            elif head.op == OpCode.ping:
                queue.popleft()
                self.send_reply(PING_XID, server.core.last_zxid, 0, None)
            else:
                queue.popleft()
                self._answer_read(head.xid, head.op, head.req, head.started, True, head.err)
            if self.state == CLOSED:
                return


OP_ABBREV = {
    OpCode.create: "CREA", OpCode.create2: "CREA", OpCode.createContainer: "CREA",
    OpCode.createTTL: "CREA", OpCode.delete: "DELE", OpCode.exists: "EXIS",
    OpCode.getData: "GETD", OpCode.setData: "SETD", OpCode.getACL: "GACL", OpCode.setACL: "SACL",
    OpCode.getChildren: "GETC", OpCode.getChildren2: "GETC", OpCode.sync: "SYNC",
    OpCode.ping: "PING", OpCode.multi: "MULT", OpCode.multiRead: "MLTR",
    OpCode.checkWatches: "CHKW", OpCode.removeWatches: "REMW", OpCode.getEphemerals: "GETE",
    OpCode.getAllChildrenNumber: "GETACN", OpCode.setWatches: "SETW", OpCode.setWatches2: "STW2",
    OpCode.addWatch: "ADDW", OpCode.whoAmI: "HOMI", OpCode.closeSession: "CLOSE",
    OpCode.check: "CHEC",
}
