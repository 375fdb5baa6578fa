"""The wire codec of the election and quorum links (zktwist's own format, version 1).

Not Apache ZooKeeper's quorum protocol: an ensemble is all zktwist.  Every
frame is::

    length: uint32 (big-endian; counts the type byte and the body)
    type:   uint8
    body:   length - 1 bytes

A connection starts with :class:`Hello` (the dialling side says which server
it is, on which channel, in which codec version) and, on the quorum channel,
:class:`Welcome` from the accepting side; then election
:class:`~zktwist.quorum.election.Notification` or Zab packets
(:data:`~zktwist.quorum.messages.QUORUM_PACKETS`) follow.  Fixed-size bodies
are single :mod:`struct` records; txns travel as :func:`zktwist.core.txn.encode`
bytes; a forwarded request's ``req`` and ``auth_ids`` use a small tagged value
encoding (:func:`encode_value`: None, bool, int, float, bytes, str, tuple,
list, and an exception standing for a request that did not decode) -- never
pickle.

Anything malformed -- a frame over its size limit, an unknown type, a body of
the wrong size, trailing bytes, a txn that does not decode -- raises
:class:`CodecError` and nothing else; the link is then closed.  Frames are
limited to :data:`DEFAULT_MAX_FRAME` bytes, except SNAP (a whole snapshot),
limited to :data:`DEFAULT_MAX_SNAP`.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from zktwist.core import txn as txn_codec
from zktwist.core.txn import Txn
from zktwist.proto.consts import OpCode
from zktwist.quorum import messages as m
from zktwist.quorum.election import Notification

VERSION = 1
DEFAULT_MAX_FRAME = 4 * 1024 * 1024      # everything but SNAP
DEFAULT_MAX_SNAP = 256 * 1024 * 1024     # SNAP carries a whole snapshot
MAX_VALUE_DEPTH = 32                     # nesting of a request tuple

#: The two channels a Hello names.
ELECTION, QUORUM = 0, 1
CHANNEL_NAMES = {ELECTION: "election", QUORUM: "quorum"}

_MAGIC = b"ZKTQ"


class CodecError(ValueError):
    """A frame could not be encoded or decoded.

    ``messages``: when raised by :meth:`FrameDecoder.feed`, the messages that
    arrived complete and well-formed before the bad frame (deliver them, then
    close the link).
    """

    def __init__(self, message: str, messages: Optional[List[Any]] = None) -> None:
        super().__init__(message)
        self.messages: List[Any] = messages if messages is not None else []


class RequestDecodeError(Exception):
    """Stands for a forwarded request that did not decode at its origin.

    :meth:`zktwist.core.prep.Prep.prep` takes an exception as ``req`` and
    answers MARSHALLINGERROR; this carries the original's type name and text.
    """

    def __eq__(self, other: object) -> bool:
        return type(other) is RequestDecodeError and self.args == other.args

    def __hash__(self) -> int:
        return hash(self.args)


# -- transport-level frames -------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    """First frame of every connection, from the dialling side."""
    sid: int
    channel: int
    version: int = VERSION


@dataclass(frozen=True)
class Welcome:
    """The accepting side admitted the dialler (quorum links: the dialler's link_up)."""
    sid: int
    version: int = VERSION


# -- frame types ------------------------------------------------------------------------

T_HELLO, T_WELCOME, T_NOTIFICATION = 1, 2, 3
T_FOLLOWER_INFO, T_LEADER_INFO, T_ACK_EPOCH = 10, 11, 12
T_DIFF, T_TRUNC, T_SNAP, T_NEW_LEADER, T_UP_TO_DATE = 13, 14, 15, 16, 17
T_PROPOSAL, T_ACK, T_COMMIT, T_INFORM, T_PING = 20, 21, 22, 23, 24
T_REQUEST, T_REVALIDATE, T_REVALIDATE_REPLY, T_SYNC_REQUEST, T_SYNC_REPLY = 25, 26, 27, 28, 29

_head = struct.Struct(">IB")
HEADER_SIZE = _head.size
_q = struct.Struct(">q")
_qq = struct.Struct(">qq")
_qi = struct.Struct(">qi")
_q_bool = struct.Struct(">q?")
_hello = struct.Struct(">4sBBq")
_welcome = struct.Struct(">4sBq")
_notification = struct.Struct(">qbqqqq")
_follower_info = struct.Struct(">qq?q")
_ack_epoch = struct.Struct(">qq?")
_ping_head = struct.Struct(">qI")
_request_head = struct.Struct(">qqii")
_u32 = struct.Struct(">I")
_d = struct.Struct(">d")

# Pre-bound packers for the hot path: (frame header + fixed body) in one pack.
_frame_q = struct.Struct(">IBq")
_frame_qq = struct.Struct(">IBqq")
_FRAME_Q_LEN = 1 + 8
_FRAME_QQ_LEN = 1 + 16


def _frame(type_: int, body: bytes) -> bytes:
    return _head.pack(len(body) + 1, type_) + body


# -- the txn bytes cache ------------------------------------------------------------------
#
# A txn is encoded once where it is made or received and those bytes are reused: the
# leader's PROPOSAL to each follower, its own log append and its proposal-size statistic;
# a learner's log append (the very bytes the leader sent).  Keyed by the Txn object's
# identity; each entry holds the Txn, so the id cannot be reused while it is cached.
# Reactor thread only.  Bounded by entries and bytes (oldest out first).

_TXN_CACHE: "OrderedDict[int, Tuple[Txn, bytes]]" = OrderedDict()
# A txn is looked up in the reactor turn that made or received it: a small cache will do
# (and a big one costs the garbage collector more than the encodes it saves).
_TXN_CACHE_MAX = 1024
_TXN_CACHE_MAX_BYTES = 2 * 1024 * 1024
_TXN_CACHE_ENTRY_MAX = 64 * 1024
_txn_cache_bytes = [0]


def remember_txn_bytes(t: Txn, raw: bytes) -> None:
    """``raw`` is ``t``'s encoding (as decoded from, or encoded for, the wire)."""
    n = len(raw)
    if n > _TXN_CACHE_ENTRY_MAX:
        return
    cache = _TXN_CACHE
    size = _txn_cache_bytes
    while cache and (len(cache) >= _TXN_CACHE_MAX or size[0] + n > _TXN_CACHE_MAX_BYTES):
        # (OrderedDict: a plain dict's next(iter()) slows down as its front fills with
        # deleted slots)
        size[0] -= len(cache.popitem(last=False)[1][1])
    prev = cache.get(id(t))
    if prev is not None:
        size[0] -= len(prev[1])
    cache[id(t)] = (t, raw)
    size[0] += n


def txn_bytes(t: Txn) -> bytes:
    """``zktwist.core.txn.encode(t)``, from the cache when ``t`` was encoded or decoded
    here lately."""
    hit = _TXN_CACHE.get(id(t))
    if hit is not None and hit[0] is t:
        return hit[1]
    raw = txn_codec.encode(t)
    remember_txn_bytes(t, raw)
    return raw


def _txn_bytes(t: Any) -> bytes:
    try:
        return txn_bytes(t)
    except Exception as e:
        raise CodecError("txn %r does not encode: %s" % (t, e))


# -- tagged values (Request.req, Request.auth_ids) -----------------------------------------

_V_NONE, _V_TRUE, _V_FALSE, _V_INT, _V_BIGINT = b"N", b"T", b"F", b"i", b"I"
_V_FLOAT, _V_BYTES, _V_STR, _V_TUPLE, _V_LIST, _V_EXC = b"d", b"b", b"s", b"t", b"l", b"E"
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _enc_value(v: Any, out: List[bytes], depth: int) -> None:
    if depth > MAX_VALUE_DEPTH:
        raise CodecError("request value nested deeper than %d" % MAX_VALUE_DEPTH)
    if v is None:
        out.append(_V_NONE)
    elif v is True:
        out.append(_V_TRUE)
    elif v is False:
        out.append(_V_FALSE)
    elif isinstance(v, int):
        if _INT64[0] <= v <= _INT64[1]:
            out.append(_V_INT + _q.pack(v))
        else:
            raw = int(v).to_bytes((v.bit_length() + 8) // 8, "big", signed=True)
            out.append(_V_BIGINT + _u32.pack(len(raw)) + raw)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        raw = bytes(v)
        out.append(_V_BYTES + _u32.pack(len(raw)) + raw)
    elif isinstance(v, str):
        raw = v.encode("utf-8", "surrogatepass")
        out.append(_V_STR + _u32.pack(len(raw)) + raw)
    elif isinstance(v, (tuple, list)):
        out.append((_V_TUPLE if isinstance(v, tuple) else _V_LIST) + _u32.pack(len(v)))
        for item in v:
            _enc_value(item, out, depth + 1)
    elif isinstance(v, float):
        out.append(_V_FLOAT + _d.pack(v))
    elif isinstance(v, BaseException):
        text = ("%s: %s" % (type(v).__name__, v) if not isinstance(v, RequestDecodeError)
                else str(v.args[0] if v.args else ""))
        raw = text.encode("utf-8", "surrogatepass")
        out.append(_V_EXC + _u32.pack(len(raw)) + raw)
    else:
        raise CodecError("cannot encode a %s in a request" % type(v).__name__)


def encode_value(v: Any) -> bytes:
    """The tagged encoding of ``v`` (see the module docstring)."""
    out: List[bytes] = []
    _enc_value(v, out, 0)
    return b"".join(out)


def _dec_value(data: bytes, o: int, end: int, depth: int) -> Tuple[Any, int]:
    if o >= end:
        raise CodecError("truncated request value")
    if depth > MAX_VALUE_DEPTH:
        raise CodecError("request value nested deeper than %d" % MAX_VALUE_DEPTH)
    tag = data[o:o + 1]
    o += 1
    if tag == _V_INT:
        if o + 8 > end:
            raise CodecError("truncated int")
        return _q.unpack_from(data, o)[0], o + 8
    if tag == _V_STR or tag == _V_BYTES or tag == _V_BIGINT or tag == _V_EXC:
        if o + 4 > end:
            raise CodecError("truncated length")
        n = _u32.unpack_from(data, o)[0]
        o += 4
        if o + n > end:
            raise CodecError("a length of %d runs past the frame" % n)
        raw = data[o:o + n]
        o += n
        if tag == _V_BYTES:
            return raw, o
        if tag == _V_BIGINT:
            return int.from_bytes(raw, "big", signed=True), o
        try:
            text = raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as e:
            raise CodecError("bad UTF-8 in a request string: %s" % e)
        return (text if tag == _V_STR else RequestDecodeError(text)), o
    if tag == _V_TUPLE or tag == _V_LIST:
        if o + 4 > end:
            raise CodecError("truncated count")
        n = _u32.unpack_from(data, o)[0]
        o += 4
        if n > end - o:   # every item takes at least one byte
            raise CodecError("a count of %d runs past the frame" % n)
        items = []
        for _ in range(n):
            item, o = _dec_value(data, o, end, depth + 1)
            items.append(item)
        return (tuple(items) if tag == _V_TUPLE else items), o
    if tag == _V_NONE:
        return None, o
    if tag == _V_TRUE:
        return True, o
    if tag == _V_FALSE:
        return False, o
    if tag == _V_FLOAT:
        if o + 8 > end:
            raise CodecError("truncated float")
        return _d.unpack_from(data, o)[0], o + 8
    raise CodecError("unknown value tag %r" % tag)


def decode_value(data: bytes) -> Any:
    """Inverse of :func:`encode_value`; the whole of ``data`` must be one value."""
    v, o = _dec_value(data, 0, len(data), 0)
    if o != len(data):
        raise CodecError("%d trailing bytes after a value" % (len(data) - o))
    return v


# -- encoding ---------------------------------------------------------------------------

def _enc_notification(n: Notification) -> bytes:
    return _head.pack(1 + _notification.size, T_NOTIFICATION) + _notification.pack(
        n.sid, n.state, n.leader, n.zxid, n.election_epoch, n.peer_epoch)


def _enc_proposal(p: m.Proposal) -> bytes:
    return _frame(T_PROPOSAL, _txn_bytes(p.txn))


def _enc_inform(p: m.Inform) -> bytes:
    return _frame(T_INFORM, _txn_bytes(p.txn))


def _enc_ack(p: m.Ack) -> bytes:
    return _frame_q.pack(_FRAME_Q_LEN, T_ACK, p.zxid)


def _enc_commit(p: m.Commit) -> bytes:
    return _frame_q.pack(_FRAME_Q_LEN, T_COMMIT, p.zxid)


def _enc_ping(p: m.Ping) -> bytes:
    touches = p.touches
    body = _ping_head.pack(p.zxid, len(touches))
    if touches:
        body += b"".join(_qi.pack(s, t) for s, t in touches)
    return _frame(T_PING, body)


# The forwarded setData's shape, (ASCII path, bytes or None, int) with no auth ids, has a
# fast path both ways: the same bytes and values the general tagged encoding gives.
_T3_STR = _V_TUPLE + _u32.pack(3) + _V_STR
_NONE_INT = _V_NONE + _V_INT


# A session's auth ids (its ("ip", address) at least) repeat on every forwarded request:
# their encoding is memoised both ways (only for tuples of str pairs, so equal keys are
# identical values).
_AUTH_ENC: Dict[Tuple[Any, ...], bytes] = {}
_AUTH_DEC: Dict[bytes, Tuple[Any, ...]] = {}
_AUTH_MEMO_MAX = 512


def _plain_auth(auth: Any) -> bool:
    return type(auth) is tuple and all(
        type(i) is tuple and all(type(x) is str for x in i) for i in auth)


def _auth_bytes(auth_ids: Any) -> bytes:
    key = auth_ids if type(auth_ids) is tuple else tuple(auth_ids)
    if not _plain_auth(key):
        out: List[bytes] = []
        _enc_value(key, out, 0)
        return b"".join(out)
    raw = _AUTH_ENC.get(key)
    if raw is None:
        out = []
        _enc_value(key, out, 0)
        raw = b"".join(out)
        if len(_AUTH_ENC) >= _AUTH_MEMO_MAX:
            _AUTH_ENC.clear()
        _AUTH_ENC[key] = raw
    return raw


def _enc_request(p: m.Request) -> bytes:
    head = _request_head.pack(p.origin_sid, p.session_id, p.cxid, p.op)
    req = p.req
    auth = _auth_bytes(p.auth_ids)
    if type(req) is tuple and len(req) == 3:
        path, data, version = req
        if type(path) is str and type(version) is int and path.isascii() and \
                _INT64[0] <= version <= _INT64[1]:
            raw = path.encode("ascii")
            if type(data) is bytes:
                body = b"".join((head, _T3_STR, _u32.pack(len(raw)), raw, _V_BYTES,
                                 _u32.pack(len(data)), data, _V_INT, _q.pack(version), auth))
                return _head.pack(len(body) + 1, T_REQUEST) + body
            if data is None:
                body = b"".join((head, _T3_STR, _u32.pack(len(raw)), raw, _NONE_INT,
                                 _q.pack(version), auth))
                return _head.pack(len(body) + 1, T_REQUEST) + body
    out = [head]
    _enc_value(req, out, 0)
    out.append(auth)
    return _frame(T_REQUEST, b"".join(out))


_ENCODERS: Dict[type, Callable[[Any], bytes]] = {
    Notification: _enc_notification,
    m.Proposal: _enc_proposal,
    m.Ack: _enc_ack,
    m.Commit: _enc_commit,
    m.Inform: _enc_inform,
    m.Ping: _enc_ping,
    m.Request: _enc_request,
    m.FollowerInfo: lambda p: _frame(T_FOLLOWER_INFO, _follower_info.pack(
        p.sid, p.accepted_epoch, p.observer, p.config_version)),
    m.LeaderInfo: lambda p: _frame_q.pack(_FRAME_Q_LEN, T_LEADER_INFO, p.new_epoch),
    m.AckEpoch: lambda p: _frame(T_ACK_EPOCH, _ack_epoch.pack(
        p.current_epoch, p.last_zxid, p.already_accepted)),
    m.Diff: lambda p: _frame_q.pack(_FRAME_Q_LEN, T_DIFF, p.zxid),
    m.Trunc: lambda p: _frame_q.pack(_FRAME_Q_LEN, T_TRUNC, p.zxid),
    m.Snap: lambda p: _frame(T_SNAP, _q.pack(p.zxid) + bytes(p.data)),
    m.NewLeader: lambda p: _frame(T_NEW_LEADER, _q.pack(p.zxid)
                                  + p.config.encode("utf-8", "surrogatepass")),
    m.UpToDate: lambda p: _head.pack(1, T_UP_TO_DATE),
    m.Revalidate: lambda p: _frame(T_REVALIDATE, _qi.pack(p.session_id, p.timeout)),
    m.RevalidateReply: lambda p: _frame(T_REVALIDATE_REPLY, _q_bool.pack(p.session_id, p.valid)),
    m.SyncRequest: lambda p: _frame_q.pack(_FRAME_Q_LEN, T_SYNC_REQUEST, p.id),
    m.SyncReply: lambda p: _frame_qq.pack(_FRAME_QQ_LEN, T_SYNC_REPLY, p.id, p.zxid),
    Hello: lambda p: _frame(T_HELLO, _hello.pack(_MAGIC, p.version, p.channel, p.sid)),
    Welcome: lambda p: _frame(T_WELCOME, _welcome.pack(_MAGIC, p.version, p.sid)),
}


def encode(msg: Any) -> bytes:
    """One whole frame for ``msg`` (a Notification, a Zab packet, Hello or Welcome)."""
    enc = _ENCODERS.get(type(msg))
    if enc is None:
        raise CodecError("no wire format for %r" % (msg,))
    try:
        return enc(msg)
    except CodecError:
        raise
    except (struct.error, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise CodecError("cannot encode %r: %s" % (msg, e))


# -- decoding ---------------------------------------------------------------------------

def _fixed(s: struct.Struct, body: bytes, what: str) -> Tuple[Any, ...]:
    if len(body) != s.size:
        raise CodecError("%s body is %d bytes, expected %d" % (what, len(body), s.size))
    return s.unpack(body)


_set_data_head = struct.Struct(">qiqqii")   # TxnHeader + the path's length
_i = struct.Struct(">i")
_SET_DATA = int(OpCode.setData)


def _fast_set_data(body: bytes) -> Optional[Txn]:
    """A setData txn with an ASCII path without a jute Reader (the write hot path); None
    for anything else (the general decoder then decides)."""
    end = len(body)
    if end < 44:
        return None
    session_id, cxid, zxid, time, type_, n = _set_data_head.unpack_from(body, 0)
    if type_ != _SET_DATA or n < 0:
        return None
    o = 36 + n
    if o + 8 > end:
        return None
    raw = body[36:o]
    if not raw.isascii():
        return None
    k = _i.unpack_from(body, o)[0]
    o += 4
    if k < 0:
        if k != -1 or o + 4 != end:
            return None
        data: Optional[bytes] = None
    else:
        if o + k + 4 != end:
            return None
        data = body[o:o + k]
        o += k
    return Txn(session_id, cxid, zxid, time, type_,
               (raw.decode("ascii"), data, _i.unpack_from(body, o)[0]))


def _dec_txn(body: bytes, what: str) -> Any:
    t = _fast_set_data(body)
    if t is None:
        try:
            t = txn_codec.decode(body)
        except Exception as e:   # struct/Jute/Value/Key/Recursion errors from a hostile body
            raise CodecError("%s: txn does not decode: %s: %s" % (what, type(e).__name__, e))
    # The learner logs exactly the bytes the leader sent (no second encode).
    remember_txn_bytes(t, body)
    return t


def _d_notification(body: bytes) -> Notification:
    return Notification(*_fixed(_notification, body, "notification"))


def _d_proposal(body: bytes) -> m.Proposal:
    return m.Proposal(_dec_txn(body, "PROPOSAL"))


def _d_inform(body: bytes) -> m.Inform:
    return m.Inform(_dec_txn(body, "INFORM"))


def _d_ack(body: bytes) -> m.Ack:
    if len(body) != 8:
        raise CodecError("ACK body is %d bytes, expected 8" % len(body))
    return m.Ack(_q.unpack(body)[0])


def _d_commit(body: bytes) -> m.Commit:
    if len(body) != 8:
        raise CodecError("COMMIT body is %d bytes, expected 8" % len(body))
    return m.Commit(_q.unpack(body)[0])


def _d_ping(body: bytes) -> m.Ping:
    if len(body) < _ping_head.size:
        raise CodecError("truncated PING")
    zxid, n = _ping_head.unpack_from(body, 0)
    if len(body) != _ping_head.size + n * _qi.size:
        raise CodecError("PING with %d touches is %d bytes" % (n, len(body)))
    touches = tuple(_qi.iter_unpack(body[_ping_head.size:])) if n else ()
    return m.Ping(zxid, touches)


def _fast_req3(body: bytes, end: int) -> Optional[Tuple[Any, int]]:
    """(ASCII str, bytes or None, int) at the start of a REQUEST's value (after its
    ``_T3_STR`` prefix), or None: the general decoder then decides."""
    o = _request_head.size + 6
    if o + 4 > end:
        return None
    n = _u32.unpack_from(body, o)[0]
    o += 4
    if o + n > end:
        return None
    raw = body[o:o + n]
    o += n
    if not raw.isascii() or o >= end:
        return None
    tag = body[o]
    data: Optional[bytes]
    if tag == 0x62:  # b
        if o + 5 > end:
            return None
        k = _u32.unpack_from(body, o + 1)[0]
        o += 5
        if o + k > end:
            return None
        data = body[o:o + k]
        o += k
    elif tag == 0x4E:  # N
        data = None
        o += 1
    else:
        return None
    if o + 9 > end or body[o] != 0x69:  # i
        return None
    return (raw.decode("ascii"), data, _q.unpack_from(body, o + 1)[0]), o + 9


def _d_request(body: bytes) -> m.Request:
    if len(body) < _request_head.size:
        raise CodecError("truncated REQUEST")
    origin, session_id, cxid, op = _request_head.unpack_from(body, 0)
    end = len(body)
    fast = _fast_req3(body, end) if body.startswith(_T3_STR, _request_head.size) else None
    if fast is not None:
        req, o = fast
    else:
        req, o = _dec_value(body, _request_head.size, end, 0)
    tail = body[o:]
    auth: Any = _AUTH_DEC.get(tail)
    if auth is not None:
        o = end
    else:
        auth, o = _dec_value(body, o, end, 0)
        if o == end and _plain_auth(auth):
            if len(_AUTH_DEC) >= _AUTH_MEMO_MAX:
                _AUTH_DEC.clear()
            _AUTH_DEC[tail] = auth
    if o != end:
        raise CodecError("%d trailing bytes after a REQUEST" % (end - o))
    if not isinstance(auth, tuple):
        raise CodecError("REQUEST auth_ids is a %s, not a tuple" % type(auth).__name__)
    return m.Request(origin, session_id, cxid, op, req, auth)


def _d_snap(body: bytes) -> m.Snap:
    if len(body) < 8:
        raise CodecError("truncated SNAP")
    return m.Snap(_q.unpack_from(body, 0)[0], body[8:])


def _d_new_leader(body: bytes) -> m.NewLeader:
    if len(body) < 8:
        raise CodecError("truncated NEWLEADER")
    try:
        config = body[8:].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as e:
        raise CodecError("NEWLEADER config is not UTF-8: %s" % e)
    return m.NewLeader(_q.unpack_from(body, 0)[0], config)


def _d_follower_info(body: bytes) -> m.FollowerInfo:
    sid, epoch, observer, version = _fixed(_follower_info, body, "FOLLOWERINFO")
    return m.FollowerInfo(sid, epoch, observer, version)


def _d_ack_epoch(body: bytes) -> m.AckEpoch:
    return m.AckEpoch(*_fixed(_ack_epoch, body, "ACKEPOCH"))


def _d_q(cls: Callable[[int], Any], what: str) -> Callable[[bytes], Any]:
    def dec(body: bytes) -> Any:
        if len(body) != 8:
            raise CodecError("%s body is %d bytes, expected 8" % (what, len(body)))
        return cls(_q.unpack(body)[0])
    return dec


def _d_up_to_date(body: bytes) -> m.UpToDate:
    if body:
        raise CodecError("UPTODATE has a %d-byte body" % len(body))
    return m.UpToDate()


def _d_hello(body: bytes) -> Hello:
    magic, version, channel, sid = _fixed(_hello, body, "HELLO")
    if magic != _MAGIC:
        raise CodecError("not a zktwist peer (magic %r)" % magic)
    return Hello(sid, channel, version)


def _d_welcome(body: bytes) -> Welcome:
    magic, version, sid = _fixed(_welcome, body, "WELCOME")
    if magic != _MAGIC:
        raise CodecError("not a zktwist peer (magic %r)" % magic)
    return Welcome(sid, version)


_DECODERS: Dict[int, Callable[[bytes], Any]] = {
    T_NOTIFICATION: _d_notification,
    T_PROPOSAL: _d_proposal,
    T_ACK: _d_ack,
    T_COMMIT: _d_commit,
    T_INFORM: _d_inform,
    T_PING: _d_ping,
    T_REQUEST: _d_request,
    T_FOLLOWER_INFO: _d_follower_info,
    T_LEADER_INFO: _d_q(m.LeaderInfo, "LEADERINFO"),
    T_ACK_EPOCH: _d_ack_epoch,
    T_DIFF: _d_q(m.Diff, "DIFF"),
    T_TRUNC: _d_q(m.Trunc, "TRUNC"),
    T_SNAP: _d_snap,
    T_NEW_LEADER: _d_new_leader,
    T_UP_TO_DATE: _d_up_to_date,
    T_REVALIDATE: lambda b: m.Revalidate(*_fixed(_qi, b, "REVALIDATE")),
    T_REVALIDATE_REPLY: lambda b: m.RevalidateReply(*_fixed(_q_bool, b, "REVALIDATEREPLY")),
    T_SYNC_REQUEST: _d_q(m.SyncRequest, "SYNCREQUEST"),
    T_SYNC_REPLY: lambda b: m.SyncReply(*_fixed(_qq, b, "SYNCREPLY")),
    T_HELLO: _d_hello,
    T_WELCOME: _d_welcome,
}


def decode_body(type_: int, body: bytes) -> Any:
    """The message in a frame of type ``type_`` whose body is ``body``."""
    dec = _DECODERS.get(type_)
    if dec is None:
        raise CodecError("unknown frame type %d" % type_)
    try:
        return dec(body)
    except CodecError:
        raise
    except Exception as e:   # e.g. RecursionError, MemoryError-free struct errors
        raise CodecError("frame type %d does not decode: %s: %s" % (type_, type(e).__name__, e))


def decode(frame: bytes, max_frame: int = DEFAULT_MAX_FRAME,
           max_snap: int = DEFAULT_MAX_SNAP) -> Any:
    """The message in one whole frame (header included); CodecError for anything else."""
    frame = bytes(frame)
    if len(frame) < HEADER_SIZE:
        raise CodecError("a frame needs %d bytes, got %d" % (HEADER_SIZE, len(frame)))
    length, type_ = _head.unpack_from(frame, 0)
    _check_length(length, type_, max_frame, max_snap)
    if len(frame) != 4 + length:
        raise CodecError("frame says %d bytes, has %d" % (length, len(frame) - 4))
    return decode_body(type_, frame[HEADER_SIZE:])


def _check_length(length: int, type_: int, max_frame: int, max_snap: int) -> None:
    if length < 1:
        raise CodecError("frame length %d" % length)
    limit = max_snap if type_ == T_SNAP else max_frame
    if length - 1 > limit:
        raise CodecError("frame of type %d is %d bytes, over the limit of %d"
                         % (type_, length - 1, limit))


class FrameDecoder:
    """Splits a byte stream into messages.

    :meth:`feed` returns the messages completed by ``data``; on a malformed
    frame it raises :class:`CodecError` carrying the good messages before it
    (``error.messages``), and every later call raises again (the stream has
    lost its framing).  A big frame (SNAP) is collected in chunks, not by
    repeated concatenation.
    """

    __slots__ = ("max_frame", "max_snap", "_buf", "_chunks", "_have", "_need", "_type",
                 "_broken")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME,
                 max_snap: int = DEFAULT_MAX_SNAP) -> None:
        self.max_frame = max_frame
        self.max_snap = max_snap
        self._buf = b""
        # A large frame in progress: its chunks, their total size, the body size, its type.
        self._chunks: List[bytes] = []
        self._have = 0
        self._need = -1
        self._type = 0
        self._broken: Optional[CodecError] = None

    def pending(self) -> int:
        """Bytes received but not yet part of a decoded message."""
        return len(self._buf) + self._have

    def feed(self, data: bytes) -> List[Any]:
        if self._broken is not None:
            raise CodecError(str(self._broken))
        out: List[Any] = []
        try:
            if self._need >= 0:
                rest = self._collect(data, out)
                if rest is None:
                    return out
                data = rest
            buf = self._buf + data if self._buf else data
            o = 0
            end = len(buf)
            unpack_head = _head.unpack_from
            decoders = _DECODERS
            max_frame = self.max_frame
            while end - o >= HEADER_SIZE:
                length, type_ = unpack_head(buf, o)
                if length < 1 or length - 1 > max_frame:
                    _check_length(length, type_, max_frame, self.max_snap)
                stop = o + 4 + length
                if stop > end:
                    if length > 65536:
                        # Big frame: collect it in chunks.
                        self._need = length - 1
                        self._type = type_
                        rest = buf[o + HEADER_SIZE:]
                        self._chunks = [rest]
                        self._have = len(rest)
                        self._buf = b""
                        return out
                    break
                dec = decoders.get(type_)
                if dec is None:
                    raise CodecError("unknown frame type %d" % type_)
                body = buf[o + HEADER_SIZE:stop]
                o = stop
                try:
                    out.append(dec(body))
                except CodecError:
                    raise
                except Exception as e:
                    raise CodecError("frame type %d does not decode: %s: %s"
                                     % (type_, type(e).__name__, e))
            self._buf = buf[o:] if o < end else b""
            return out
        except CodecError as e:
            self._broken = e
            self._buf = b""
            self._chunks = []
            e.messages = out
            raise

    def _collect(self, data: bytes, out: List[Any]) -> Optional[bytes]:
        """Add ``data`` to the big frame in progress; the bytes after it once it is complete."""
        missing = self._need - self._have
        if len(data) < missing:
            self._chunks.append(data)
            self._have += len(data)
            return None
        self._chunks.append(data[:missing])
        body = b"".join(self._chunks)
        type_ = self._type
        self._chunks = []
        self._have = 0
        self._need = -1
        out.append(decode_body(type_, body))
        return data[missing:]
