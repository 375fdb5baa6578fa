"""Transactions: what the log stores and every server applies, in Apache ZooKeeper's format.

A :class:`Txn` is a TxnHeader (session, cxid, zxid, time, type) plus a body
tuple whose shape depends on the type (see :data:`BODY_SHAPES`).  ``encode``
and ``decode`` produce the exact bytes of ZooKeeper's ``log.*`` entries
(TxnHeader followed by the txn record), so the file log stays readable by
ZooKeeper's own tools.
"""

from __future__ import annotations

import struct
from typing import List, Optional, Tuple

from zktwist.proto.consts import OpCode
from zktwist.proto.jute import NULL_BUFFER, Reader, encode_buffer, encode_ustring, pack_int
from zktwist.proto.records import encode_acls, read_acls

_header = struct.Struct(">qiqqi")

BODY_SHAPES = {
    OpCode.create: "(path, data, acl, ephemeral, parent_cversion)",
    OpCode.create2: "(path, data, acl, ephemeral, parent_cversion)",
    OpCode.createContainer: "(path, data, acl, parent_cversion)",
    OpCode.createTTL: "(path, data, acl, parent_cversion, ttl)",
    OpCode.delete: "(path,)",
    OpCode.deleteContainer: "(path,)",
    OpCode.setData: "(path, data, version)",
    OpCode.setACL: "(path, acl, version)",
    OpCode.check: "(path, version)",
    OpCode.createSession: "(timeout,)",
    OpCode.closeSession: "(paths or None,)",
    OpCode.error: "(err,)",
    OpCode.multi: "(((type, body), ...),)",
}


class Txn:
    __slots__ = ("session_id", "cxid", "zxid", "time", "type", "body")

    def __init__(self, session_id: int, cxid: int, zxid: int, time: int, type_: int,
                 body: tuple) -> None:
        self.session_id = session_id
        self.cxid = cxid
        self.zxid = zxid
        self.time = time
        self.type = type_
        self.body = body

    def __repr__(self) -> str:
        return "Txn(session=0x%x, cxid=%d, zxid=0x%x, type=%d, body=%r)" % (
            self.session_id, self.cxid, self.zxid, self.type, self.body)


def encode_body(type_: int, body: tuple) -> bytes:
    if type_ in (OpCode.create, OpCode.create2):
        path, data, acl, ephemeral, pcv = body
        return (encode_ustring(path) + encode_buffer(data) + encode_acls(acl)
                + (b"\x01" if ephemeral else b"\x00") + pack_int(pcv))
    if type_ == OpCode.createContainer:
        path, data, acl, pcv = body
        return encode_ustring(path) + encode_buffer(data) + encode_acls(acl) + pack_int(pcv)
    if type_ == OpCode.createTTL:
        path, data, acl, pcv, ttl = body
        return (encode_ustring(path) + encode_buffer(data) + encode_acls(acl) + pack_int(pcv)
                + struct.pack(">q", ttl))
    if type_ in (OpCode.delete, OpCode.deleteContainer):
        return encode_ustring(body[0])
    if type_ == OpCode.setData:
        path, data, version = body
        return encode_ustring(path) + encode_buffer(data) + pack_int(version)
    if type_ == OpCode.setACL:
        path, acl, version = body
        return encode_ustring(path) + encode_acls(acl) + pack_int(version)
    if type_ == OpCode.check:
        return encode_ustring(body[0]) + pack_int(body[1])
    if type_ == OpCode.createSession:
        return pack_int(body[0])
    if type_ == OpCode.closeSession:
        paths = body[0]
        if paths is None:
            return b""
        return pack_int(len(paths)) + b"".join(encode_ustring(p) for p in paths)
    if type_ == OpCode.error:
        return pack_int(body[0])
    if type_ == OpCode.multi:
        parts = [pack_int(len(body[0]))]
        for sub_type, sub_body in body[0]:
            parts.append(pack_int(sub_type))
            parts.append(encode_buffer(encode_body(sub_type, sub_body)))
        return b"".join(parts)
    raise ValueError("no txn record for type %d" % type_)


_set_data_head = struct.Struct(">qiqqii")  # TxnHeader + the path's length


def encode(txn: Txn) -> bytes:
    type_ = txn.type
    if type_ == OpCode.setData:
        path, data, version = txn.body
        if path.isascii():
            raw = path.encode("ascii")
            head = _set_data_head.pack(txn.session_id, txn.cxid, txn.zxid, txn.time, type_,
                                       len(raw))
            if data is None:
                return head + raw + NULL_BUFFER + pack_int(version)
            return head + raw + pack_int(len(data)) + data + pack_int(version)
    return _header.pack(txn.session_id, txn.cxid, txn.zxid, txn.time, type_) + encode_body(
        type_, txn.body)


def _acl_tuple(r: Reader) -> tuple:
    return tuple(read_acls(r) or ())


def decode_body(type_: int, r: Reader) -> tuple:
    if type_ in (OpCode.create, OpCode.create2):
        return (r.ustring(), r.buffer(), _acl_tuple(r), r.bool(), r.int())
    if type_ == OpCode.createContainer:
        return (r.ustring(), r.buffer(), _acl_tuple(r), r.int())
    if type_ == OpCode.createTTL:
        return (r.ustring(), r.buffer(), _acl_tuple(r), r.int(), r.long())
    if type_ in (OpCode.delete, OpCode.deleteContainer):
        return (r.ustring(),)
    if type_ in (OpCode.setData, OpCode.reconfig):
        return (r.ustring(), r.buffer(), r.int())
    if type_ == OpCode.setACL:
        return (r.ustring(), _acl_tuple(r), r.int())
    if type_ == OpCode.check:
        return (r.ustring(), r.int())
    if type_ == OpCode.createSession:
        return (r.int(),)
    if type_ == OpCode.closeSession:
        # No body (closeSessionTxn.enabled=false), or only the 12-byte
        # TxnDigest{int version=2, long digest} Apache ZooKeeper appends.
        if r.remaining() < 4 or (r.remaining() == 12
                                 and r.data[r.offset:r.offset + 4] == b"\x00\x00\x00\x02"):
            return (None,)
        return (tuple(r.strings() or ()),)
    if type_ == OpCode.error:
        return (r.int(),)
    if type_ == OpCode.multi:
        n = r.int()
        subs: List[Tuple[int, tuple]] = []
        for _ in range(n):
            sub_type = r.int()
            raw = r.buffer() or b""
            subs.append((sub_type, decode_body(sub_type, Reader(raw))))
        return (tuple(subs),)
    raise ValueError("unknown txn type %d" % type_)


def decode(data: bytes) -> Txn:
    session_id, cxid, zxid, time, type_ = _header.unpack_from(data, 0)
    r = Reader(data, _header.size)
    return Txn(session_id, cxid, zxid, time, type_, decode_body(type_, r))
