"""Jute binary encoding (BinaryInputArchive / BinaryOutputArchive) with ``struct``.

Everything is big-endian and signed.  A buffer or string of length -1 is null,
a vector of count -1 is null.  Decoding never trusts a length: any length that
runs past the end of the frame raises :class:`JuteError`, so a hostile count of
2^31-1 costs nothing.
"""

from __future__ import annotations

import builtins
import codecs
import struct
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")

_int = struct.Struct(">i")
_long = struct.Struct(">q")
_int_long = struct.Struct(">iq")
_reply_header = struct.Struct(">iqi")
_request_header = struct.Struct(">ii")

pack_int = _int.pack
pack_long = _long.pack
pack_reply_header = _reply_header.pack
unpack_request_header = _request_header.unpack_from
unpack_int = _int.unpack_from
unpack_long = _long.unpack_from

FALSE = b"\x00"
TRUE = b"\x01"
NULL_BUFFER = _int.pack(-1)


def _java_replace(err: UnicodeError) -> Tuple[str, int]:
    """Decode errors as Java's UTF-8 decoder reports them.

    An encoded surrogate (``ED A0..BF xx``, as CESU-8 writers produce) is one
    malformed sequence of three bytes there, so it becomes one U+FFFD.
    """
    assert isinstance(err, UnicodeDecodeError)
    data, start = err.object, err.start
    if (start + 2 < len(data) and data[start] == 0xED and 0xA0 <= data[start + 1] <= 0xBF
            and 0x80 <= data[start + 2] <= 0xBF):
        return "\ufffd", start + 3
    return "\ufffd", err.end


codecs.register_error("zktwist-java-replace", _java_replace)


class JuteError(ValueError):
    """A record could not be decoded (ZooKeeper answers MARSHALLINGERROR or closes)."""


class Reader:
    """Reads jute values from ``data`` starting at ``offset``."""

    __slots__ = ("data", "offset", "end")

    def __init__(self, data: bytes, offset: int = 0, end: Optional[int] = None) -> None:
        self.data = data
        self.offset = offset
        self.end = len(data) if end is None else end

    def remaining(self) -> builtins.int:
        return self.end - self.offset

    def int(self) -> int:
        o = self.offset
        if o + 4 > self.end:
            raise JuteError("truncated int")
        self.offset = o + 4
        return _int.unpack_from(self.data, o)[0]

    def long(self) -> builtins.int:
        o = self.offset
        if o + 8 > self.end:
            raise JuteError("truncated long")
        self.offset = o + 8
        return _long.unpack_from(self.data, o)[0]

    def bool(self) -> bool:
        o = self.offset
        if o >= self.end:
            raise JuteError("truncated bool")
        self.offset = o + 1
        return self.data[o] != 0

    def buffer(self) -> Optional[bytes]:
        n = self.int()
        if n < 0:
            # Java's reader treats any negative length as null.
            return None
        o = self.offset
        if o + n > self.end:
            raise JuteError("unreasonable buffer length %d" % n)
        self.offset = o + n
        return bytes(self.data[o:o + n])

    def ustring(self) -> Optional[str]:
        n = self.int()
        if n < 0:
            return None
        o = self.offset
        if o + n > self.end:
            raise JuteError("unreasonable string length %d" % n)
        self.offset = o + n
        raw = self.data[o:o + n]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            # Java's decoder substitutes U+FFFD for malformed input.
            return bytes(raw).decode("utf-8", "zktwist-java-replace")

    def vector(self, item: Callable[["Reader"], T]) -> Optional[List[T]]:
        n = self.int()
        if n < 0:
            return None
        # Every item is at least one byte: a count larger than what is left is a lie.
        if n > self.end - self.offset:
            raise JuteError("unreasonable vector count %d" % n)
        return [item(self) for _ in range(n)]

    def strings(self) -> Optional[List[str]]:
        return self.vector(_read_ustring)


def _read_ustring(r: Reader) -> str:
    s = r.ustring()
    return "" if s is None else s


def write_buffer(out: List[bytes], value: Optional[bytes]) -> None:
    if value is None:
        out.append(NULL_BUFFER)
    else:
        out.append(_int.pack(len(value)))
        out.append(value)


def encode_buffer(value: Optional[bytes]) -> bytes:
    if value is None:
        return NULL_BUFFER
    return _int.pack(len(value)) + value


def java_utf8(value: str) -> bytes:
    """UTF-8 as Java's ``String.getBytes(UTF_8)`` writes it from jute.

    Java strings are UTF-16: a character outside the BMP is a surrogate pair,
    and each surrogate is written as its own 3-byte sequence (CESU-8).
    """
    if value.isascii():
        return value.encode("ascii")
    if max(value) <= "\uffff":
        return value.encode("utf-8", "surrogatepass")
    chars = []
    for ch in value:
        o = ord(ch)
        if o > 0xFFFF:
            o -= 0x10000
            chars.append(chr(0xD800 + (o >> 10)))
            chars.append(chr(0xDC00 + (o & 0x3FF)))
        else:
            chars.append(ch)
    return "".join(chars).encode("utf-8", "surrogatepass")


def encode_ustring(value: Optional[str]) -> bytes:
    if value is None:
        return NULL_BUFFER
    raw = java_utf8(value)
    return _int.pack(len(raw)) + raw


def encode_strings(values: Optional[Sequence[str]]) -> bytes:
    if values is None:
        return NULL_BUFFER
    parts = [_int.pack(len(values))]
    for v in values:
        raw = java_utf8(v)
        parts.append(_int.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def encode_bool(value: bool) -> bytes:
    return TRUE if value else FALSE


def pack_int_long(i: int, q: int) -> bytes:
    return _int_long.pack(i, q)


def split_int_long(data: bytes, offset: int = 0) -> Tuple[int, int]:
    return _int_long.unpack_from(data, offset)  # type: ignore[return-value]
