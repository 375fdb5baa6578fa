"""ACL schemes (world, auth, digest, ip), masked digest ids, auth packets and their failures, whoAmI."""

from __future__ import annotations

import pytest

from tests.support import rawclient as rc
from tests.support.rawclient import ACL, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, CREATOR_ALL_ACL, digest_id
from tests.differential.conftest import diff

pytestmark = pytest.mark.differential

BOB = digest_id("bob", "secret")
ALICE = digest_id("alice", "pw")


def test_world_acl_variants(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/w1", b"", [ACL(31, "world", "nobody")])
        z.a.create(R + "/w2", b"", [ACL(31, "world", "")])
        z.a.create(R + "/w3", b"", [ACL(0, "world", "anyone")])           # perms 0
        z.a.create(R + "/w4", b"", [ACL(255, "world", "anyone")])         # extra perm bits
        z.a.create(R + "/w5", b"", [ACL(-1, "world", "anyone")])
        z.a.create(R + "/w6", b"", [ACL(31, "World", "anyone")])          # scheme is case sensitive
        z.a.create(R + "/dup", b"", [ACL(31, "world", "anyone"), ACL(31, "world", "anyone"),
                                     ACL(1, "world", "anyone")])
        for p in ("/w3", "/w4", "/w5", "/dup"):
            z.a.get_acl(R + p)
            z.a.get_data(R + p)
            z.a.set_data(R + p, b"x")
            z.a.create(R + p + "/c")
        z.a.set_acl(R + "/dup", [ACL(1, "world", "anyone"), ACL(1, "world", "anyone")])
        z.a.get_acl(R + "/dup")
        z.a.set_acl(R + "/dup", [ACL(31, "foo", "bar")])                 # unknown scheme
        z.a.set_acl(R + "/dup", [ACL(31, "super", "x")])

    diff(zk_pair, scenario)


def test_auth_scheme_expansion(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/x", b"", CREATOR_ALL_ACL)                       # no credentials: InvalidACL
        z.a.create(R + "/x", b"", [ACL(31, "auth", "whatever")])
        z.a.add_digest("bob", "secret")
        z.a.create(R + "/x", b"", CREATOR_ALL_ACL)                       # -> digest:bob:<hash>
        z.a.get_acl(R + "/x")
        z.a.add_digest("alice", "pw")
        z.a.add_digest("bob", "secret")                                  # same credential twice
        z.a.create(R + "/y", b"", [ACL(rc.PERM_READ | rc.PERM_ADMIN, "auth", "")] + READ_ACL_UNSAFE)
        z.a.get_acl(R + "/y")
        z.a.set_acl(R + "/x", [ACL(rc.PERM_ALL, "auth", ""), ACL(rc.PERM_READ, "auth", "")])
        z.a.get_acl(R + "/x")
        z.a.who_am_i()
        z.b.get_data(R + "/x")
        z.b.get_acl(R + "/x")
        z.b.get_acl(R + "/y")                           # READ, no ADMIN: masked ids
        z.b.create(R + "/z", b"", CREATOR_ALL_ACL)
        z.b.multi([rc.op_create(R + "/z", b"", CREATOR_ALL_ACL)])

    diff(zk_pair, scenario)


def test_digest_acl_and_masking(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("bob")
        z.connect("anon")
        R = z.root
        z.a.create(R)
        z.bob.add_digest("bob", "secret")
        z.a.create(R + "/d", b"data", [ACL(31, "digest", BOB), ACL(rc.PERM_READ, "world", "anyone")])
        z.a.create(R + "/only", b"data", [ACL(31, "digest", BOB)])
        z.a.create(R + "/adm", b"data", [ACL(31, "digest", BOB), ACL(rc.PERM_ADMIN, "world", "anyone")])
        for who in ("anon", "bob"):
            h = z[who]
            h.get_acl(R + "/d")          # anon: READ only -> "bob:x"
            h.get_acl(R + "/only")       # anon: neither READ nor ADMIN
            h.get_acl(R + "/adm")        # anon: ADMIN -> full id
            h.get_data(R + "/only")
            h.set_data(R + "/d", b"w")
            h.create(R + "/only/c")
            h.get_children2(R + "/only")
            h.exists(R + "/only")
            h.get_all_children_number(R + "/only")
        z.anon.add_digest("bob", "wrong")
        z.anon.get_data(R + "/only")
        z.anon.add_digest("bob", "secret")
        z.anon.get_data(R + "/only")
        z.anon.delete(R + "/only/c")
        # malformed digest ids
        z.a.create(R + "/bad1", b"", [ACL(31, "digest", "nocolon")])
        z.a.create(R + "/bad2", b"", [ACL(31, "digest", "a:b:c")])
        z.a.create(R + "/bad3", b"", [ACL(31, "digest", ":")])
        z.a.create(R + "/ok", b"", [ACL(31, "digest", "bob:notahash")])
        z.a.get_acl(R + "/ok")
        z.bob.delete(R + "/only/c")
        z.bob.set_acl(R + "/only", OPEN_ACL_UNSAFE, 0)
        z.anon.get_acl(R + "/only")

    diff(zk_pair, scenario)


def test_ip_acl(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        for i, ipid in enumerate(["127.0.0.1", "127.0.0.0/8", "10.0.0.0/8", "127.0.0.1/32", "127.0.0.2",
                                  "0.0.0.0/0", "127.0.0.1/0"]):
            z.a.create(f"{R}/ip{i}", b"v", [ACL(31, "ip", ipid)])
            z.a.get_data(f"{R}/ip{i}")
            z.a.get_acl(f"{R}/ip{i}")
        for i, ipid in enumerate(["not-an-ip", "127.0.0.1/33", "127.0.0", "", "::1", "1.2.3.4/-1", "300.1.1.1"]):
            z.a.create(f"{R}/bad{i}", b"v", [ACL(31, "ip", ipid)])
        z.a.who_am_i()
        z.a.auth("ip", b"10.1.1.1")            # the ip provider's auth packet
        z.a.who_am_i()
        z.a.get_data(R + "/ip2")

    diff(zk_pair, scenario)


@pytest.mark.parametrize("scheme,auth", [
    ("foo", b"bar"),             # unknown scheme: AUTHFAILED, then the connection closes
    ("digest", b"nocolon"),      # malformed digest credential
    ("digest", b""),
    ("digest", None),
    ("world", b"anyone"),
    ("super", b"x"),
    ("auth", b""),
], ids=["unknown-scheme", "digest-nocolon", "digest-empty", "digest-null", "world", "super", "auth"])
def test_auth_packet_outcomes(zk_pair, scheme, auth):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.b.create(R)
        z.a.auth(scheme, auth)
        z.a.who_am_i(_timeout=2.0)
        z.b.exists(R)

    diff(zk_pair, scenario)


def test_auth_failure_closes_connection_session_survives(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/e", flags=rc.EPHEMERAL)
        z.b.exists(R + "/e", True)
        z.a.auth("nosuch", b"x")
        z.expect_eof("a", 3.0)
        z.b.exists(R + "/e")                   # the session (and its ephemeral) survive the closed connection
        z.reattach("a")
        z.a.get_ephemerals(R)
        z.a.who_am_i()                         # the failed auth left no identity
        z.a.close_session()
        z.barrier()

    diff(zk_pair, scenario)


def test_who_am_i(zk_pair):
    def scenario(z):
        z.connect("a")
        z.a.who_am_i()
        z.a.add_digest("bob", "secret")
        z.a.who_am_i()
        z.a.add_digest("alice", "pw")
        z.a.add_digest("bob", "secret")
        z.a.add_digest("bob", "other")
        z.a.who_am_i()
        z.a.add_digest("carol:x", "y")         # user:password split at the first colon
        z.a.who_am_i()

    diff(zk_pair, scenario)
