"""The quorum wire codec: every message round-trips; random or damaged bytes only ever raise CodecError.

Frames are also checked against a layout written here with :mod:`struct`
(4-byte length, 1-byte type, body), independently of the codec's tables.
"""

from __future__ import annotations

import struct
from typing import Any, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zktwist.core.txn import Txn, encode as txn_encode
from zktwist.proto.consts import OpCode
from zktwist.quorum import codec
from zktwist.quorum import messages as m
from zktwist.quorum.codec import CodecError, FrameDecoder, Hello, Welcome
from zktwist.quorum.election import NO_VOTE, Notification

I64 = st.integers(-(1 << 63), (1 << 63) - 1)
I32 = st.integers(-(1 << 31), (1 << 31) - 1)
TEXT = st.text(max_size=40)
# Txn strings are jute's (Java's per-UTF-16-unit encoding): characters outside the BMP do not
# round-trip through txn.encode/decode -- as in Apache ZooKeeper -- so txn strings stay in the BMP.
BMP = st.text(alphabet=st.characters(blacklist_categories=["Cs"], max_codepoint=0xFFFF),
              max_size=40)
PATH = st.text(alphabet=st.characters(blacklist_categories=["Cs"], max_codepoint=0xFFFF),
               min_size=1, max_size=30).map(
    lambda s: "/" + s.replace("\x00", ""))
DATA = st.one_of(st.none(), st.binary(max_size=200))
ACL = st.tuples(st.integers(0, 31), st.sampled_from(["world", "digest", "ip", "auth"]), BMP)


def _txns() -> st.SearchStrategy[Txn]:
    header = st.tuples(I64, I32, I64, I64)
    bodies = st.one_of(
        st.tuples(st.just(OpCode.setData), st.tuples(PATH, DATA, I32)),
        st.tuples(st.just(OpCode.create),
                  st.tuples(PATH, DATA, st.lists(ACL, max_size=3).map(tuple), st.booleans(), I32)),
        st.tuples(st.just(OpCode.delete), st.tuples(PATH)),
        st.tuples(st.just(OpCode.createSession), st.tuples(I32)),
        st.tuples(st.just(OpCode.closeSession),
                  st.tuples(st.lists(PATH, max_size=3).map(lambda p: tuple(p) or None))),
        st.tuples(st.just(OpCode.error), st.tuples(I32)),
        st.tuples(st.just(OpCode.multi), st.tuples(st.lists(st.one_of(
            st.tuples(st.just(int(OpCode.setData)), st.tuples(PATH, st.binary(max_size=20), I32)),
            st.tuples(st.just(int(OpCode.delete)), st.tuples(PATH)),
            st.tuples(st.just(int(OpCode.check)), st.tuples(PATH, I32)),
        ), max_size=3).map(tuple))),
    )
    return st.builds(lambda h, b: Txn(h[0], h[1], h[2], h[3], int(b[0]), b[1]), header, bodies)


TXNS = _txns()

# What a decoded request can hold (and a bit more): any nesting of these round-trips.
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), I64, st.integers(), st.binary(max_size=50),
              st.text(max_size=30), st.floats(allow_nan=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple)),
    max_leaves=20)
AUTH_IDS = st.lists(st.tuples(st.sampled_from(["digest", "ip", "super", "x509"]), TEXT),
                    max_size=3).map(tuple)

NOTIFICATIONS = st.builds(Notification, I64, st.integers(0, 3), I64, I64, I64, I64)
PACKETS = st.one_of(
    st.builds(m.FollowerInfo, I64, I64, st.booleans(), I64),
    st.builds(m.LeaderInfo, I64),
    st.builds(m.AckEpoch, I64, I64, st.booleans()),
    st.builds(m.Diff, I64),
    st.builds(m.Trunc, I64),
    st.builds(m.Snap, I64, st.binary(max_size=500)),
    st.builds(m.NewLeader, I64, st.text(max_size=100)),
    st.just(m.UpToDate()),
    st.builds(m.Proposal, TXNS),
    st.builds(m.Ack, I64),
    st.builds(m.Commit, I64),
    st.builds(m.Inform, TXNS),
    st.builds(m.Ping, I64, st.lists(st.tuples(I64, I32), max_size=5).map(tuple)),
    st.builds(m.Request, I64, I64, I32, I32, VALUES, AUTH_IDS),
    st.builds(m.Revalidate, I64, I32),
    st.builds(m.RevalidateReply, I64, st.booleans()),
    st.builds(m.SyncRequest, I64),
    st.builds(m.SyncReply, I64, I64),
)
ALL = st.one_of(NOTIFICATIONS, PACKETS, st.builds(Hello, I64, st.integers(0, 1)),
                st.builds(Welcome, I64))


def canon(msg: Any) -> Any:
    """A comparable form: Txn has no __eq__, so it is compared by its log encoding."""
    if isinstance(msg, (m.Proposal, m.Inform)):
        return (type(msg), txn_encode(msg.txn))
    return msg


def same_value(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (a tuple stays a tuple, a list a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return bool(a == b)


def test_every_quorum_packet_type_is_covered() -> None:
    covered = {type(x) for x in (m.FollowerInfo(1, 2), m.LeaderInfo(1), m.AckEpoch(1, 2),
                                 m.Diff(1), m.Trunc(1), m.Snap(1, b""), m.NewLeader(1),
                                 m.UpToDate(), m.Proposal(Txn(1, 1, 1, 1, 2, ("/a",))),
                                 m.Ack(1), m.Commit(1), m.Inform(Txn(1, 1, 1, 1, 2, ("/a",))),
                                 m.Ping(), m.Request(1, 1, 1, 1, ()), m.Revalidate(1, 1),
                                 m.RevalidateReply(1, True), m.SyncRequest(1), m.SyncReply(1))}
    assert covered == set(m.QUORUM_PACKETS)
    for cls in m.QUORUM_PACKETS:
        assert cls in codec._ENCODERS, cls


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(ALL)
def test_every_message_round_trips(msg: Any) -> None:
    frame = codec.encode(msg)
    length, = struct.unpack_from(">I", frame)
    assert length == len(frame) - 4 >= 1
    back = codec.decode(frame)
    assert type(back) is type(msg)
    assert canon(back) == canon(msg)
    if isinstance(msg, m.Request):
        assert same_value(back.req, msg.req) and same_value(back.auth_ids, msg.auth_ids)
    assert codec.encode(back) == frame
    # And through the stream decoder, split anywhere.
    for cut in (0, 1, 4, 5, len(frame) // 2, len(frame) - 1):
        d = FrameDecoder()
        got = d.feed(frame[:cut]) + d.feed(frame[cut:])
        assert [canon(x) for x in got] == [canon(msg)]
        assert d.pending() == 0


@given(st.lists(ALL, max_size=20), st.data())
def test_a_stream_of_messages_in_any_chunks(msgs: List[Any], data: st.DataObject) -> None:
    stream = b"".join(codec.encode(x) for x in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    d = FrameDecoder()
    got: List[Any] = []
    prev = 0
    for c in cuts + [len(stream)]:
        got += d.feed(stream[prev:c])
        prev = c
    assert [canon(x) for x in got] == [canon(x) for x in msgs]


@given(VALUES)
def test_request_values_round_trip_with_their_types(v: Any) -> None:
    assert same_value(codec.decode_value(codec.encode_value(v)), v)


def test_request_shapes_the_leader_preps() -> None:
    acl = [(31, "world", "anyone"), (1, "digest", "u:h=")]
    for op, req in ((OpCode.create, ("/a", b"x", acl, 0, -1)), (OpCode.setData, ("/a", None, 3)),
                    (OpCode.createSession, (30000,)), (OpCode.deleteContainer, "/c"),
                    (OpCode.multi, ((OpCode.create, ("/m", b"", acl, 2, -1)),
                                    (OpCode.check, ("/m", -1)))),
                    (OpCode.closeSession, ()), (OpCode.setACL, ("/é\ud800", acl, 0))):
        r = m.Request(3, 0x1234, 7, int(op), req, (("digest", "u:h="), ("ip", "127.0.0.1")))
        back = codec.decode(codec.encode(r))
        assert back == r and same_value(back.req, req)


def test_a_request_that_did_not_decode_stays_an_exception() -> None:
    r = m.Request(1, 2, 3, 4, ValueError("bad ACL"), ())
    back = codec.decode(codec.encode(r))
    assert isinstance(back.req, codec.RequestDecodeError) and isinstance(back.req, Exception)
    assert str(back.req) == "ValueError: bad ACL"
    assert codec.decode(codec.encode(back)) == back   # and stays itself


def test_no_vote_and_extremes() -> None:
    n = Notification(5, 3, NO_VOTE.leader, NO_VOTE.zxid, 1, NO_VOTE.peer_epoch)
    assert codec.decode(codec.encode(n)) == n


def test_frame_layout_is_as_documented() -> None:
    assert codec.encode(m.Ack(0x500000001)) == struct.pack(">IBq", 9, codec.T_ACK, 0x500000001)
    assert codec.encode(m.UpToDate()) == struct.pack(">IB", 1, codec.T_UP_TO_DATE)
    assert codec.encode(Hello(3, codec.QUORUM)) == struct.pack(
        ">IB4sBBq", 15, codec.T_HELLO, b"ZKTQ", codec.VERSION, 1, 3)
    t = Txn(1, 2, 3, 4, OpCode.setData, ("/x", b"v", 0))
    assert codec.encode(m.Proposal(t)) == struct.pack(">IB", 1 + len(txn_encode(t)),
                                                      codec.T_PROPOSAL) + txn_encode(t)


@pytest.mark.parametrize("msg", [object(), m.Ack("x"), m.Ack(1 << 70),  # type: ignore[arg-type]
                                 m.Request(1, 1, 1, 1, {"a": 1}),
                                 m.Request(1, 1, 1, 1, object()),
                                 m.Proposal(Txn(1, 1, 1, 1, 9999, ()))])
def test_what_cannot_be_encoded_raises_codec_error(msg: Any) -> None:
    with pytest.raises(CodecError):
        codec.encode(msg)


def test_deep_nesting_is_refused_both_ways() -> None:
    v: Any = ()
    for _ in range(codec.MAX_VALUE_DEPTH + 2):
        v = (v,)
    with pytest.raises(CodecError, match="nested deeper"):
        codec.encode_value(v)
    raw = b"t\x00\x00\x00\x01" * 100000 + b"N"
    with pytest.raises(CodecError, match="nested deeper"):
        codec.decode_value(raw)


@pytest.mark.parametrize("frame, why", [
    (b"\x00\x00\x00\x00\x0a", "frame length 0"),
    (struct.pack(">IB", 1, 200), "unknown frame type 200"),
    (struct.pack(">IBq", 9, codec.T_ACK, 1) + b"\x00", "frame says 9 bytes, has 10"),
    (struct.pack(">IBi", 5, codec.T_ACK, 1), "ACK body is 4 bytes"),
    (struct.pack(">IBqI", 13, codec.T_PING, 1, 1000), "PING with 1000 touches"),
    (struct.pack(">IB", 1, codec.T_PROPOSAL), "txn does not decode"),
    (struct.pack(">IBqqiiI", 29, codec.T_REQUEST, 1, 1, 1, 1, 0xFFFFFFFF), "unknown value tag"),
    (struct.pack(">IBqqiib", 27, codec.T_REQUEST, 1, 1, 1, 1, ord("N")) + b"N",
     "auth_ids is a NoneType"),
    (struct.pack(">IB4sBBq", 15, codec.T_HELLO, b"HTTP", 1, 0, 1), "not a zktwist peer"),
])
def test_malformed_frames(frame: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        codec.decode(frame)
    if why.startswith("frame says"):
        return   # a stream has no frame end but the length's
    with pytest.raises(CodecError, match=why):
        FrameDecoder().feed(frame + b"\x00" * 20)


def test_frame_limits_snap_large_others_small() -> None:
    d = FrameDecoder(max_frame=1000, max_snap=100_000)
    big = codec.encode(m.Snap(7, b"s" * 90_000))
    got = []
    for i in range(0, len(big), 7_000):    # arrives in chunks: collected, not re-joined each time
        got += d.feed(big[i:i + 7_000])
    assert got == [m.Snap(7, b"s" * 90_000)]
    with pytest.raises(CodecError, match="over the limit of 100000"):
        FrameDecoder(max_frame=1000, max_snap=100_000).feed(codec.encode(m.Snap(7, b"s" * 100_001)))
    # Refused from the header alone, before the body arrives.
    with pytest.raises(CodecError, match="over the limit of 1000"):
        FrameDecoder(max_frame=1000).feed(codec.encode(m.NewLeader(1, "c" * 1000))[:5])
    assert codec.DEFAULT_MAX_SNAP == 256 * 1024 * 1024


def test_good_messages_before_a_bad_frame_are_kept_and_the_stream_stays_broken() -> None:
    d = FrameDecoder()
    with pytest.raises(CodecError) as e:
        d.feed(codec.encode(m.Ack(1)) + codec.encode(m.Commit(1)) + struct.pack(">IB", 1, 250)
               + codec.encode(m.Ack(2)))
    assert e.value.messages == [m.Ack(1), m.Commit(1)]
    with pytest.raises(CodecError):
        d.feed(codec.encode(m.Ack(3)))


@settings(max_examples=1500)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_codec_error(data: bytes) -> None:
    d = FrameDecoder(max_frame=1 << 16, max_snap=1 << 16)
    try:
        d.feed(data)
    except CodecError:
        pass
    for t in codec._DECODERS:
        try:
            codec.decode_body(t, data)
        except CodecError:
            pass


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(ALL, st.data())
def test_damaged_frames_only_ever_raise_codec_error(msg: Any, data: st.DataObject) -> None:
    frame = bytearray(codec.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        frame = frame[:data.draw(st.integers(0, len(frame)))]
    try:
        codec.decode(bytes(frame))
    except CodecError:
        pass
    try:
        FrameDecoder().feed(bytes(frame))
    except CodecError:
        pass
