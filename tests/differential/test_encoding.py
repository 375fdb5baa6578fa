"""String encoding on the wire (CESU-8 for non-BMP characters), odd bytes in paths and credentials,
and soft quotas (the /zookeeper/quota bookkeeping nodes)."""

from __future__ import annotations

import pytest

from tests.support import rawclient as rc
from tests.support.rawclient import ACL, digest_id
from tests.differential.conftest import diff

pytestmark = pytest.mark.differential

EMOJI = "\U0001F600"                 # outside the BMP: Java writes it as a CESU-8 surrogate pair
CESU8_EMOJI = b"\xed\xa0\xbd\xed\xb8\x80"


def _raw_path_request(op: int, path_bytes: bytes, tail: bytes) -> bytes:
    return rc.enc_int(len(path_bytes)) + path_bytes + tail


def test_non_bmp_and_unicode_paths(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.b.get_children(R, True)
        z.b.exists(R + "/" + EMOJI, True)
        z.a.create(R + "/" + EMOJI, EMOJI.encode("utf-8"))           # 4-byte UTF-8 in
        z.a.create2(R + "/\u00e9t\u00e9", b"")
        z.a.create(R + "/\u4e2d-", flags=rc.PERSISTENT_SEQUENTIAL)
        z.a.get_children(R)
        z.a.get_data(R + "/" + EMOJI)
        z.a.sync(R + "/" + EMOJI)
        z.barrier()
        # the same node addressed with the CESU-8 bytes Java would send
        rec = _raw_path_request(rc.OP_EXISTS, (R + "/").encode() + CESU8_EMOJI, rc.enc_bool(False))
        z.a.request(rc.OP_EXISTS, rec)
        rec = _raw_path_request(rc.OP_CREATE, (R + "/c").encode() + CESU8_EMOJI,
                                rc.enc_buffer(b"") + rc.enc_acl_list(rc.OPEN_ACL_UNSAFE) + rc.enc_int(0))
        z.a.request(rc.OP_CREATE, rec)
        # invalid UTF-8 and a lone surrogate in a path
        for bad in (b"\xff\xfe", b"\xc3", b"\xed\xa0\xbd", b"a\x00b", b"\x7f", b"\xc2\x85"):
            rec = _raw_path_request(rc.OP_CREATE, (R + "/x").encode() + bad,
                                    rc.enc_buffer(b"") + rc.enc_acl_list(rc.OPEN_ACL_UNSAFE) + rc.enc_int(0))
            z.a.request(rc.OP_CREATE, rec)
            z.a.request(rc.OP_GET_DATA, _raw_path_request(rc.OP_GET_DATA, (R + "/x").encode() + bad,
                                                          rc.enc_bool(False)))
        z.a.get_children(R)
        z.a.get_ephemerals(R + "/" + EMOJI)
        z.a.multi([rc.op_create(R + "/m" + EMOJI), rc.op_set_data(R + "/m" + EMOJI, b"1")])
        z.a.multi_read([rc.op_get_children(R), rc.op_get_data(R + "/m" + EMOJI)])
        z.a.delete(R + "/" + EMOJI)
        z.barrier()

    diff(zk_pair, scenario)


def test_unicode_credentials_and_acl_ids(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.add_digest("j\u00fcrgen" + EMOJI, "p\u00e4ss")
        z.a.who_am_i()
        z.a.create(R + "/u", b"", rc.CREATOR_ALL_ACL)
        z.a.get_acl(R + "/u")
        z.b.get_acl(R + "/u")
        z.a.create(R + "/v", b"", [ACL(31, "digest", digest_id("\u00e9", "\u00e9")), ACL(1, "world", "anyone")])
        z.b.get_acl(R + "/v")
        z.b.add_digest("\u00e9", "\u00e9")
        z.b.get_acl(R + "/v")
        z.a.auth("digest", b"bad\xff:utf8")                          # credential bytes that are not UTF-8
        z.a.who_am_i(_timeout=2.0)

    diff(zk_pair, scenario)


def test_soft_quota_bookkeeping(zk_pair):
    """A zookeeper_limits node under /zookeeper/quota makes the server maintain zookeeper_stats."""

    def scenario(z):
        z.connect("a")
        R = z.root
        q = "/zookeeper/quota" + R
        z.a.create(R, b"12345")
        z.a.create(R + "/c1", b"ab")
        z.a.create(q)
        z.a.create(q + "/zookeeper_limits", b"count=3,bytes=10")
        z.a.create(q + "/zookeeper_stats", b"count=0,bytes=0")
        z.a.get_data(q + "/zookeeper_stats")
        z.a.create(R + "/c2", b"xyz")
        z.a.get_data(q + "/zookeeper_stats")
        z.a.set_data(R + "/c1", b"abcdefghijk")                      # over the soft byte limit: allowed
        z.a.create(R + "/c3")
        z.a.create(R + "/c4")                                        # over the soft count limit: allowed
        z.a.get_data(q + "/zookeeper_stats")
        z.a.delete(R + "/c3")
        z.a.get_data(q + "/zookeeper_stats")
        z.a.get_children2(q)
        z.a.get_all_children_number("/zookeeper/quota")
        z.a.set_data(q + "/zookeeper_limits", b"count=-1,bytes=-1")
        z.a.create(R + "/c5")
        z.a.get_data(q + "/zookeeper_stats")
        z.a.create("/zookeeper/quota/x")
        z.a.set_data("/zookeeper/quota", b"q")
        z.a.get_data("/zookeeper/quota")

    diff(zk_pair, scenario)
