"""Handshake and session life cycle: negotiation, re-attach, rejected sessions, unknown opcodes, closeSession."""

from __future__ import annotations

import pytest

from tests.support import rawclient as rc
from tests.support.rawclient import EPHEMERAL
from tests.differential.conftest import diff

pytestmark = pytest.mark.differential


@pytest.mark.parametrize("timeout", [1000, 4000, 30000, 40000, 10 ** 7, 0, -5])
def test_session_timeout_negotiation(zk_pair, timeout):
    def scenario(z):
        z.connect("a", session_timeout=timeout)
        z.a.ping()

    diff(zk_pair, scenario)


def test_reattach_with_password(zk_pair):
    """Same id + password on a new connection: the old connection is closed, ephemerals survive."""

    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/e", flags=EPHEMERAL)
        z.b.exists(R + "/e", True)
        z.reattach("a")
        z.a.exists(R + "/e")
        z.a.get_ephemerals(R)
        z.a.create(R + "/e2", flags=EPHEMERAL)
        z.a.get_ephemerals(R)
        z.reattach("a", last_zxid=0)                  # an older lastZxidSeen is fine
        z.a.ping()
        z.reattach("a", read_only=None)               # 44-byte re-attach
        z.a.ping()
        z.reattach("a", session_timeout=1000)         # renegotiated timeout
        z.a.close_session()
        z.barrier()
        z.b.get_children(R)

    diff(zk_pair, scenario)


def test_reattach_wrong_password(zk_pair):
    """A wrong password gets the all-zero ConnectResponse and a close; the old connection is untouched."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        for wrong in (b"\x01" * 16, b"", bytes(16), None):
            z.reattach("a", passwd=wrong if wrong is not None else b"\x02" * 17)
            z.a.exists(R)                          # is the old connection still usable?
            z.reattach("a")                         # get a working connection back
            z.a.exists(R)

    diff(zk_pair, scenario)


def test_reattach_unknown_and_closed_sessions(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        # a session id nobody owns
        z.handshake_raw("x", rc.encode_connect_request(session_id=z.a.client.session_id + 1000,
                                                       passwd=bytes(16)), note="unknown session id")
        # a closed session
        z.b.close_session()
        z.reattach("b")
        z.a.ping()

    diff(zk_pair, scenario)


def test_last_zxid_seen_ahead_is_refused(zk_pair):
    """lastZxidSeen beyond the server's: closed without a ConnectResponse (new and re-attaching sessions)."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.reattach("a", last_zxid=z.a.last_zxid + 1)
        z.reattach("a", last_zxid=z.a.last_zxid + (1 << 40))
        z.a.ping()
        z.connect("n", last_zxid=z.a.last_zxid + 5)
        z.connect("m", last_zxid=z.a.last_zxid)      # equal is fine
        z.m.ping()

    diff(zk_pair, scenario)


@pytest.mark.parametrize("op", [55, 10, 0, 20, 23, 99, 108, -12, 1000])
def test_unknown_opcode(zk_pair, op):
    """UNIMPLEMENTED (-6) with zxid -1, then the connection is closed (the session survives)."""

    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.b.create(R)
        z.a.request(op, rc.enc_string(R), _timeout=2.0)
        z.expect_eof("a", 1.0)
        z.b.ping()
        z.reattach("a")
        z.a.ping()

    diff(zk_pair, scenario)


def test_close_session_pipelined_behind_a_read(zk_pair):
    """closeSession pipelined behind a read: both answered in order, then the close.

    (A request pipelined *after* closeSession is not compared: whether Apache ZooKeeper reads it before
    closing the socket, and so logs an error txn for it, is a race.)"""

    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.b.create(R)
        z.a.create(R + "/e", flags=EPHEMERAL)
        c = z.a.client
        c.submit(rc.OP_EXISTS, rc.encode_path_watch(R + "/e", False))
        c.submit(rc.OP_CLOSE_SESSION)
        z.note("a", "reply 1", z._norm_reply(c.read_reply()))
        z.note("a", "reply 2", z._norm_reply(c.read_reply()))
        z.mark_closed("a")
        z.expect_eof("a", 1.0)
        z.b.exists(R + "/e")
        z.b.ping()

    diff(zk_pair, scenario)


def test_close_session_with_explicit_xid_and_ephemerals(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.b.create(R)
        for i in range(4):
            z.a.create(f"{R}/e{i}", flags=EPHEMERAL)
        z.b.get_children(R, True)
        z.b.add_watch(R, rc.ADD_WATCH_PERSISTENT_RECURSIVE)
        z.b.exists(R + "/e2", True)
        z.a.close_session(xid=4242)
        z.barrier()
        z.b.get_children2(R)

    diff(zk_pair, scenario)


def test_requests_before_and_inside_handshake(zk_pair):
    """Bytes pipelined right behind the ConnectRequest are served after the session is established."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        c = rc.RawClient("127.0.0.1", z.port)
        frames = [rc.encode_connect_request(timeout=30000),
                  rc.encode_request_header(-4, rc.OP_AUTH) + rc.encode_auth("digest", b"u:p"),
                  rc.encode_request_header(-8, rc.OP_SET_WATCHES) + rc.encode_set_watches(0, [R], [], []),
                  rc.encode_request_header(1, rc.OP_EXISTS) + rc.encode_path_watch(R, True),
                  rc.encode_request_header(2, rc.OP_WHO_AM_I)]
        c.send_raw(b"".join(rc.enc_int(len(f)) + f for f in frames))
        resp = rc.decode_connect_response(c.read_frame())
        z.note("p", "pipelined handshake", z._norm_connect("p", resp))
        z.sessions_to_close["p"] = (resp.session_id, resp.passwd)
        c._pending = [(-4, rc.OP_AUTH), (-8, rc.OP_SET_WATCHES), (1, rc.OP_EXISTS), (2, rc.OP_WHO_AM_I)]
        for _ in range(4):
            z.note("p", "pipelined reply", z._norm_reply(c.read_reply()))
        z.a.set_data(R, b"x")
        c.ping()
        z.note("p", "events", z._norm_events(c.take_events(), False))
        c.close_session()
        c.close()

    diff(zk_pair, scenario)


def test_protocol_version_and_odd_handshakes(zk_pair):
    def scenario(z):
        z.handshake_raw("a", rc.encode_connect_request(protocol_version=1), note="protocolVersion=1")
        z.handshake_raw("b", rc.encode_connect_request(protocol_version=-1), note="protocolVersion=-1")
        z.handshake_raw("c", rc.encode_connect_request(passwd=b""), note="empty passwd, new session")
        z.handshake_raw("d", rc.encode_connect_request(passwd=None) + b"\x01\x02", note="2 trailing bytes")

    diff(zk_pair, scenario)


def test_four_letter_words(zk_pair):
    def scenario(z):
        z.four_letter("ruok")
        z.four_letter("isro")

    diff(zk_pair, scenario)


def test_pipelined_requests_keep_order_and_events_precede_replies(zk_pair):
    """A burst of requests on one connection: replies in request order, each notification before the
    first reply that reflects the change that triggered it."""

    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        c = z.a.client
        burst = [
            (rc.OP_CREATE, rc.encode_create(R + "/x", b"1")),
            (rc.OP_GET_DATA, rc.encode_path_watch(R + "/x", True)),
            (rc.OP_EXISTS, rc.encode_path_watch(R + "/y", True)),
            (rc.OP_GET_CHILDREN, rc.encode_path_watch(R, True)),
            (rc.OP_SET_DATA, rc.encode_set_data(R + "/x", b"2", 0)),
            (rc.OP_PING, b""),
            (rc.OP_SET_DATA, rc.encode_set_data(R + "/x", b"3", 0)),        # BadVersion
            (rc.OP_CREATE, rc.encode_create(R + "/y")),
            (rc.OP_SYNC, rc.enc_string(R)),
            (rc.OP_MULTI, rc.encode_multi([rc.op_delete(R + "/y"), rc.op_set_data(R + "/x", b"4")])),
            (rc.OP_GET_DATA, rc.encode_path_watch(R + "/x", False)),
            (rc.OP_GET_CHILDREN2, rc.encode_path_watch(R, False)),
            (rc.OP_DELETE, rc.encode_path_version(R + "/x", -1)),
            (rc.OP_GET_ALL_CHILDREN_NUMBER, rc.enc_string(R)),
        ]
        for op, rec in burst:
            c.submit(op, rec)
        for _ in burst:
            reply = c.read_reply()
            z.note("a", "pipelined reply", (z._norm_events(c.take_events(), False), z._norm_reply(reply)))
        # another session's burst against the same nodes, with a watcher on the first session
        z.a.exists(R + "/z", True)
        cb = z.b.client
        for op, rec in [(rc.OP_CREATE, rc.encode_create(R + "/z")), (rc.OP_SET_DATA, rc.encode_set_data(R + "/z", b"q")),
                        (rc.OP_DELETE, rc.encode_path_version(R + "/z", 1))]:
            cb.submit(op, rec)
        for _ in range(3):
            z.note("b", "pipelined reply", z._norm_reply(cb.read_reply()))
        z.barrier()

    diff(zk_pair, scenario)
