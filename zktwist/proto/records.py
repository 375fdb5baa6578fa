"""Request decoding and response encoding for every client opcode (zookeeper.jute).

Requests decode to plain tuples (cheap on the hot path); their shapes are
documented on :func:`decode_request`.  Responses are built as ``bytes``.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from zktwist.proto.consts import OpCode
from zktwist.proto.jute import (
    JuteError,
    Reader,
    encode_buffer,
    encode_strings,
    encode_ustring,
    java_utf8,
    pack_int,
)

ACL = Tuple[int, str, str]

_multi_header = struct.Struct(">i?i")
MULTI_DONE = _multi_header.pack(-1, True, -1)


def read_acl(r: Reader) -> ACL:
    perms = r.int()
    scheme = r.ustring()
    ident = r.ustring()
    return (perms, scheme if scheme is not None else None, ident if ident is not None else None)  # type: ignore[return-value]


def read_acls(r: Reader) -> Optional[List[ACL]]:
    return r.vector(read_acl)


def encode_acls(acls: Sequence[ACL]) -> bytes:
    parts = [pack_int(len(acls))]
    for perms, scheme, ident in acls:
        parts.append(pack_int(perms))
        parts.append(encode_ustring(scheme))
        parts.append(encode_ustring(ident))
    return b"".join(parts)


def _path(r: Reader) -> str:
    p = r.ustring()
    if p is None:
        raise JuteError("null path")
    return p


def _create(r: Reader) -> tuple:
    return (_path(r), r.buffer(), read_acls(r), r.int(), -1)


def _create_ttl(r: Reader) -> tuple:
    return (_path(r), r.buffer(), read_acls(r), r.int(), r.long())


def _path_version(r: Reader) -> tuple:
    return (_path(r), r.int())


def _path_watch(r: Reader) -> tuple:
    return (_path(r), r.bool())


def _set_data(r: Reader) -> tuple:
    return (_path(r), r.buffer(), r.int())


def _path_only(r: Reader) -> tuple:
    return (_path(r),)


def _set_acl(r: Reader) -> tuple:
    return (_path(r), read_acls(r), r.int())


def _path_type(r: Reader) -> tuple:
    return (_path(r), r.int())


def _sync(r: Reader) -> tuple:
    # sync only echoes its path, so a null path is echoed as null.
    return (r.ustring(),)


def _get_ephemerals(r: Reader) -> tuple:
    return (r.ustring(),)


def _paths(r: Reader) -> List[str]:
    # A null list makes DataTree.setWatches throw: MARSHALLINGERROR.
    values = r.strings()
    if values is None:
        raise JuteError("null watch list")
    return values


def _set_watches(r: Reader) -> tuple:
    return (r.long(), _paths(r), _paths(r), _paths(r), [], [])


def _set_watches2(r: Reader) -> tuple:
    return (r.long(), _paths(r), _paths(r), _paths(r), _paths(r), _paths(r))


def _auth(r: Reader) -> tuple:
    return (r.int(), r.ustring(), r.buffer())


WRITE_SUBOPS = {
    OpCode.create: _create,
    OpCode.create2: _create,
    OpCode.createContainer: _create,
    OpCode.createTTL: _create_ttl,
    OpCode.delete: _path_version,
    OpCode.setData: _set_data,
    OpCode.check: _path_version,
}
READ_SUBOPS = {
    OpCode.getChildren: _path_watch,
    OpCode.getData: _path_watch,
}


class MixedMultiError(JuteError):
    """A multi mixed read and write ops, or used an op not allowed there."""


def _multi(r: Reader) -> tuple:
    ops: List[Tuple[int, tuple]] = []
    kind = None
    while True:
        op_type = r.int()
        done = r.bool()
        r.int()  # err, ignored in requests
        if done:
            break
        if op_type in WRITE_SUBOPS:
            this_kind = "write"
            req = WRITE_SUBOPS[op_type](r)
        elif op_type in READ_SUBOPS:
            this_kind = "read"
            req = READ_SUBOPS[op_type](r)
        else:
            raise MixedMultiError("invalid type of op %d" % op_type)
        if kind is None:
            kind = this_kind
        elif kind != this_kind:
            raise MixedMultiError("mixing different kind of ops")
        ops.append((op_type, req))
    return tuple(ops)


DECODERS: Dict[int, Callable[[Reader], tuple]] = {
    OpCode.create: _create,
    OpCode.create2: _create,
    OpCode.createContainer: _create,
    OpCode.createTTL: _create_ttl,
    OpCode.delete: _path_version,
    OpCode.exists: _path_watch,
    OpCode.getData: _path_watch,
    OpCode.setData: _set_data,
    OpCode.getACL: _path_only,
    OpCode.setACL: _set_acl,
    OpCode.getChildren: _path_watch,
    OpCode.getChildren2: _path_watch,
    OpCode.sync: _sync,
    OpCode.check: _path_version,
    OpCode.multi: _multi,
    OpCode.multiRead: _multi,
    OpCode.checkWatches: _path_type,
    OpCode.removeWatches: _path_type,
    OpCode.getEphemerals: _get_ephemerals,
    OpCode.getAllChildrenNumber: _path_only,
    OpCode.setWatches: _set_watches,
    OpCode.setWatches2: _set_watches2,
    OpCode.addWatch: _path_type,
    OpCode.auth: _auth,
}

NO_BODY = frozenset((OpCode.ping, OpCode.closeSession, OpCode.whoAmI))


_unpack_int = struct.Struct(">i").unpack_from


def _fast_path_watch(data: bytes, offset: int) -> Optional[tuple]:
    """exists/getData/getChildren[2] without a Reader, for a well-formed ASCII path (else None)."""
    end = len(data)
    if offset + 4 > end:
        return None
    n = _unpack_int(data, offset)[0]
    start = offset + 4
    stop = start + n
    if n < 0 or stop >= end:
        return None
    raw = data[start:stop]
    if not raw.isascii():
        return None
    return (raw.decode("ascii"), data[stop] != 0)


def _fast_set_data(data: bytes, offset: int) -> Optional[tuple]:
    """setData without a Reader, for a well-formed request with an ASCII path (else None)."""
    end = len(data)
    if offset + 4 > end:
        return None
    n = _unpack_int(data, offset)[0]
    start = offset + 4
    stop = start + n
    if n < 0 or stop + 4 > end:
        return None
    raw = data[start:stop]
    if not raw.isascii():
        return None
    m = _unpack_int(data, stop)[0]
    start = stop + 4
    if m < 0:
        value: Optional[bytes] = None
        stop = start
    else:
        stop = start + m
        value = data[start:stop]
    if stop + 4 > end:
        return None
    return (raw.decode("ascii"), value, _unpack_int(data, stop)[0])


FAST_DECODERS: Dict[int, Callable[[bytes, int], Optional[tuple]]] = {
    OpCode.getData: _fast_path_watch,
    OpCode.exists: _fast_path_watch,
    OpCode.getChildren: _fast_path_watch,
    OpCode.getChildren2: _fast_path_watch,
    OpCode.setData: _fast_set_data,
}


def decode_request(op: int, data: bytes, offset: int) -> tuple:
    """Decode the record of opcode ``op`` that starts at ``offset`` in ``data``.

    Shapes: create* ``(path, data, acl, flags, ttl)``; delete/check ``(path, version)``;
    exists/getData/getChildren[2] ``(path, watch)``; setData ``(path, data, version)``;
    getACL/sync/getAllChildrenNumber ``(path,)``; setACL ``(path, acl, version)``;
    multi/multiRead ``((op, request), ...)``; checkWatches/removeWatches/addWatch
    ``(path, type_or_mode)``; getEphemerals ``(prefix,)``; setWatches[2]
    ``(relativeZxid, data, exist, child, persistent, recursive)``; auth
    ``(type, scheme, auth)``.  Raises :class:`JuteError` on malformed input and
    ``KeyError`` for an opcode with no record.
    """
    fast = FAST_DECODERS.get(op)
    if fast is not None and type(data) is bytes:
        req = fast(data, offset)
        if req is not None:
            return req
    if op in NO_BODY:
        return ()
    return DECODERS[op](Reader(data, offset))


def decode_write_request(op: int, frame: bytes) -> Any:
    """The request of a write frame (header at 0, record at 8) as Prep takes it.

    deleteContainer carries a bare path string; reconfig is never decoded
    (zktwist answers it with RECONFIGDISABLED); anything malformed comes back
    as the exception, which Prep turns into MARSHALLINGERROR.
    """
    try:
        if op == OpCode.deleteContainer:
            return frame[8:].decode("utf-8", "replace")
        if op == OpCode.reconfig:
            return None
        return decode_request(op, frame, 8)
    except (JuteError, KeyError) as e:
        return e


# -- responses ---------------------------------------------------------------

def multi_header(op_type: int, err: int) -> bytes:
    return _multi_header.pack(op_type, False, err)


def create_response(path: str) -> bytes:
    return encode_ustring(path)


def create2_response(path: str, stat: bytes) -> bytes:
    return encode_ustring(path) + stat


def get_data_response(data: Optional[bytes], stat: bytes) -> bytes:
    return encode_buffer(data) + stat


def children_response(children: Sequence[str]) -> bytes:
    return encode_strings(list(children))


def whoami_response(infos: Sequence[Tuple[str, Optional[str]]]) -> bytes:
    parts = [pack_int(len(infos))]
    for scheme, user in infos:
        parts.append(encode_ustring(scheme))
        parts.append(encode_ustring(user))
    return b"".join(parts)


# -- the handshake -------------------------------------------------------------

_connect_fixed = struct.Struct(">iqiq")


def decode_connect_request(data: bytes) -> Tuple[int, int, int, int, Optional[bytes], Optional[bool]]:
    """(protocolVersion, lastZxidSeen, timeOut, sessionId, passwd, readOnly or None)."""
    r = Reader(data)
    version = r.int()
    last_zxid = r.long()
    timeout = r.int()
    session_id = r.long()
    passwd = r.buffer()
    read_only: Optional[bool] = None
    if r.remaining() >= 1:
        read_only = r.bool()
    return version, last_zxid, timeout, session_id, passwd, read_only


_connect_response = struct.Struct(">iiqi")


def encode_connect_response(timeout: int, session_id: int, passwd: bytes,
                            read_only: Optional[bool]) -> bytes:
    body = _connect_response.pack(0, timeout, session_id, len(passwd)) + passwd
    if read_only is not None:
        body += b"\x01" if read_only else b"\x00"
    return pack_int(len(body)) + body


def encode_notification(event_type: int, state: int, path: str) -> bytes:
    raw = java_utf8(path)
    body = struct.pack(">iqiiii", -1, -1, 0, event_type, state, len(raw)) + raw
    return pack_int(len(body)) + body
