"""ACLs: schemes, fixup on create/setACL, checks per op, getACL masking, super and skipACL (reference 1.11).

Oracle: PrepRequestProcessor.fixupACL, ZooKeeperServer.checkACL,
DigestAuthenticationProvider, IPAuthenticationProvider, FinalRequestProcessor
(getACL, getData, getChildren, getAllChildrenNumber) of Apache ZooKeeper 3.8.0.
"""

from __future__ import annotations

import pytest

from zktwist.proto.consts import CreateMode, Err, OpCode, Perms

from tests.unit.test_core_support import (
    LOCAL_IP,
    OPEN,
    READ_ONLY,
    Harness,
    create_req,
    digest_id,
    parse_multi,
    parse_whoami,
)

BOB = digest_id("bob:secret")
ALICE = digest_id("alice:pw")


def test_known_digest_value():
    assert BOB == "bob:fyVmFCwVbTJYrznoSu1koqYEYF0="  # the reference's live example


# -- authentication ------------------------------------------------------------------------

def test_digest_auth_adds_hashed_id():
    h = Harness()
    assert h.core.authenticate("digest", b"bob:secret", "127.0.0.1") == [("digest", BOB)]
    # everything after the first colon is the password
    assert h.core.authenticate("digest", b"bob:se:cr:et", "127.0.0.1") == \
        [("digest", digest_id("bob:se:cr:et"))]


def test_digest_auth_with_undecodable_bytes_is_accepted_like_java():
    """DigestAuthenticationProvider.handleAuthentication: ``new String(authData)`` replaces bad bytes."""
    h = Harness()
    assert h.core.authenticate("digest", b"bob:\xff", "127.0.0.1") == \
        [("digest", digest_id("bob:\ufffd"))]


def test_super_digest_adds_super_first():
    h = Harness(super_digest=digest_id("super:pw"))
    assert h.core.authenticate("digest", b"super:pw", "10.1.1.1") == \
        [("super", ""), ("digest", digest_id("super:pw"))]
    assert h.core.authenticate("digest", b"super:other", "10.1.1.1") == \
        [("digest", digest_id("super:other"))]


def test_ip_auth_and_unknown_scheme():
    h = Harness()
    assert h.core.authenticate("ip", b"whatever", "10.9.8.7") == [("ip", "10.9.8.7")]
    assert h.core.authenticate("sasl", b"x", "10.9.8.7") is None
    assert h.core.authenticate("nope", b"x", "10.9.8.7") is None


# -- fixup ------------------------------------------------------------------------------

def acl_after_create(h: Harness, acl, auth=None):
    err, _ = h.create("/n", acl=acl, auth=auth)
    if err:
        return err
    stored = h.tree.nodes["/n"].acl
    assert h.delete("/n") == 0
    return list(stored)


@pytest.mark.parametrize("acl", [
    [],
    [(31, "world", "someone")],
    [(31, "world", "")],
    [(31, "nosuch", "x")],
    [(31, "super", "")],
    [(31, None, "anyone")],
    [(31, "digest", "bob")],
    [(31, "digest", "a:b:c")],
    [(31, "digest", "bob:")],
    [(31, "ip", "1.2.3")],
    [(31, "ip", "1.2.3.256")],
    [(31, "ip", "1.2.3.4/33")],
    [(31, "ip", "1.2.3.4/-1")],
    [(31, "ip", "1.2.3.4/x")],
    [(31, "ip", "::1")],
    [(31, "ip", "localhost")],
    OPEN + [(1, "digest", "nocolon")],
])
def test_invalid_acls(acl):
    h = Harness()
    assert h.create("/n", acl=acl)[0] == Err.INVALIDACL
    h.mk("/s")
    assert h.set_acl("/s", acl)[0] == Err.INVALIDACL


@pytest.mark.parametrize("acl", [
    [(31, "digest", ":x")],
    [(31, "digest", "bob:anything")],
    [(31, "ip", "1.2.3.4")],
    [(31, "ip", "10.0.0.0/8")],
    [(31, "ip", "0.0.0.0/0")],
    [(0, "world", "anyone")],
])
def test_valid_acls(acl):
    h = Harness()
    assert acl_after_create(h, acl) == acl


def test_ip_acl_id_with_empty_prefix_length_is_invalid():
    """IPAuthenticationProvider.isValid: "1.2.3.4/".split("/", 2) -> ["1.2.3.4", ""]; parseInt("") throws."""
    h = Harness()
    assert h.create("/n", acl=[(31, "ip", "1.2.3.4/")])[0] == Err.INVALIDACL


def test_ip_acl_octets_are_parsed_with_integer_parseint():
    """v4addr2Bytes uses Integer.parseInt per octet, so "010" and "+1" are valid octets."""
    h = Harness()
    assert acl_after_create(h, [(31, "ip", "010.0.0.1")]) == [(31, "ip", "010.0.0.1")]
    assert acl_after_create(h, [(31, "ip", "+127.0.0.1")]) == [(31, "ip", "+127.0.0.1")]
    h.mk("/ipz", acl=[(31, "ip", "010.0.0.1")])
    assert h.get_data("/ipz", auth=[("ip", "10.0.0.1")])[0] == 0


@pytest.mark.parametrize("scheme", ["world", "digest", "ip"])
def test_null_acl_id_is_a_marshalling_error(scheme):
    """fixupACL: id.getId().equals("anyone") / provider.isValid(null) dereference the null id.

    The NullPointerException reaches pRequestHelper's catch (Exception): MARSHALLINGERROR.
    """
    h = Harness()
    assert h.create("/n", acl=[(31, scheme, None)])[0] == Err.MARSHALLINGERROR


def test_duplicates_are_removed_in_order():
    h = Harness()
    acl = [(31, "world", "anyone"), (1, "world", "anyone"), (31, "world", "anyone"),
           (1, "world", "anyone")]
    assert acl_after_create(h, acl) == [(31, "world", "anyone"), (1, "world", "anyone")]


def test_auth_scheme_expands_to_authenticated_ids_only():
    h = Harness()
    auth = [LOCAL_IP, ("digest", BOB), ("super", ""), ("digest", ALICE)]
    assert acl_after_create(h, [(5, "auth", "")], auth=auth) == \
        [(5, "digest", BOB), (5, "digest", ALICE)]
    assert acl_after_create(h, [(31, "auth", "ignored"), (1, "world", "anyone")], auth=auth) == \
        [(31, "digest", BOB), (31, "digest", ALICE), (1, "world", "anyone")]


@pytest.mark.parametrize("auth", [[LOCAL_IP], [LOCAL_IP, ("super", "")], []])
def test_auth_scheme_without_credentials_is_invalid(auth):
    h = Harness()
    assert h.create("/n", acl=[(31, "auth", "")], auth=auth)[0] == Err.INVALIDACL
    h.mk("/s")
    assert h.set_acl("/s", [(31, "auth", "")], auth=auth)[0] == Err.INVALIDACL


def test_set_acl_expands_auth_too():
    h = Harness()
    h.mk("/s")
    assert h.set_acl("/s", [(31, "auth", "")], auth=[LOCAL_IP, ("digest", BOB)])[0] == 0
    assert list(h.tree.nodes["/s"].acl) == [(31, "digest", BOB)]


# -- checks per op ----------------------------------------------------------------------

def only(perm: int):
    return [(perm, "world", "anyone")]


class TestPermissionPerOp:
    def setup_method(self):
        self.h = Harness()

    def test_create_needs_create_on_parent_only(self):
        h = self.h
        h.mk("/g", acl=only(Perms.CREATE))
        h.mk("/g/p", acl=only(Perms.CREATE))
        assert h.create("/g/p/c")[0] == 0
        h.mk("/np", acl=only(Perms.ALL & ~Perms.CREATE))
        assert h.create("/np/c")[0] == Err.NOAUTH

    def test_delete_needs_delete_on_parent(self):
        h = self.h
        h.mk("/d")
        h.mk("/d/c", acl=only(0))
        assert h.set_acl("/d", only(Perms.ALL & ~Perms.DELETE))[0] == 0
        assert h.delete("/d/c") == Err.NOAUTH
        assert h.set_acl("/d", only(Perms.DELETE))[0] == 0
        assert h.delete("/d/c") == 0

    def test_set_data_needs_write(self):
        h = self.h
        h.mk("/w", acl=only(Perms.ALL & ~Perms.WRITE))
        assert h.set_data("/w", b"x")[0] == Err.NOAUTH
        h.mk("/w2", acl=only(Perms.WRITE))
        assert h.set_data("/w2", b"x")[0] == 0

    def test_set_acl_needs_admin(self):
        h = self.h
        h.mk("/a", acl=only(Perms.ALL & ~Perms.ADMIN))
        assert h.set_acl("/a", OPEN)[0] == Err.NOAUTH
        h.mk("/a2", acl=only(Perms.ADMIN))
        assert h.set_acl("/a2", OPEN)[0] == 0

    def test_reads_need_read_except_exists_and_sync(self):
        h = self.h
        h.mk("/r", acl=only(Perms.ALL & ~Perms.READ))
        assert h.get_data("/r")[0] == Err.NOAUTH
        assert h.children("/r")[0] == Err.NOAUTH
        assert h.read(OpCode.getChildren2, ("/r", False))[0] == Err.NOAUTH
        assert h.read(OpCode.getAllChildrenNumber, ("/r",))[0] == Err.NOAUTH
        # 3.8.0 exists() checks no ACL (ZOOKEEPER-2590 came in 3.8.4)
        assert h.exists("/r") == 0
        assert h.read(OpCode.sync, ("/r",))[0] == 0
        err, body = h.read(OpCode.multiRead, ((OpCode.getData, ("/r", False)),
                                              (OpCode.getChildren, ("/r", False))))
        assert err == 0
        assert [(r.type, r.err) for r in parse_multi(body)] == [(-1, Err.NOAUTH), (-1, Err.NOAUTH)]

    def test_check_in_multi_needs_read(self):
        h = self.h
        h.mk("/r", acl=only(Perms.ALL & ~Perms.READ))
        err, body = h.multi([(OpCode.check, ("/r", 0))])
        assert [(r.type, r.err) for r in parse_multi(body)] == [(-1, Err.NOAUTH)]

    def test_digest_acl(self):
        h = self.h
        h.mk("/d", b"secret", acl=[(Perms.ALL, "digest", BOB)], auth=[LOCAL_IP, ("digest", BOB)])
        assert h.get_data("/d")[0] == Err.NOAUTH
        assert h.get_data("/d", auth=[LOCAL_IP, ("digest", ALICE)])[0] == Err.NOAUTH
        assert h.get_data("/d", auth=[LOCAL_IP, ("digest", BOB)])[1] == b"secret"
        # the id must match exactly, under the same scheme
        assert h.get_data("/d", auth=[("ip", BOB)])[0] == Err.NOAUTH

    def test_ip_acl(self):
        h = self.h
        h.mk("/ip", acl=[(Perms.ALL, "ip", "10.0.0.0/8")])
        assert h.get_data("/ip")[0] == Err.NOAUTH
        assert h.get_data("/ip", auth=[("ip", "10.200.3.4")])[0] == 0
        assert h.get_data("/ip", auth=[("ip", "11.0.0.1")])[0] == Err.NOAUTH
        h.mk("/ip2", acl=[(Perms.ALL, "ip", "127.0.0.1")])
        assert h.get_data("/ip2")[0] == 0
        assert h.get_data("/ip2", auth=[("ip", "127.0.0.2")])[0] == Err.NOAUTH
        h.mk("/ip3", acl=[(Perms.ALL, "ip", "192.168.1.77/24")])
        assert h.get_data("/ip3", auth=[("ip", "192.168.1.1")])[0] == 0
        assert h.get_data("/ip3", auth=[("ip", "192.168.2.1")])[0] == Err.NOAUTH

    def test_perm_bits_must_match(self):
        h = self.h
        h.mk("/mix", acl=[(Perms.READ, "digest", BOB), (Perms.WRITE, "world", "anyone")])
        assert h.get_data("/mix")[0] == Err.NOAUTH
        assert h.set_data("/mix", b"")[0] == 0
        assert h.get_data("/mix", auth=[("digest", BOB)])[0] == 0

    def test_empty_acl_on_a_node_allows_everything(self):
        h = self.h
        h.mk("/e")
        h.tree.nodes["/e"].acl = ()
        assert h.get_data("/e")[0] == 0
        assert h.set_data("/e", b"x")[0] == 0
        assert h.create("/e/c")[0] == 0
        assert h.delete("/e/c") == 0
        assert h.set_acl("/e", OPEN)[0] == 0


def test_super_bypasses_every_check():
    sd = digest_id("super:pw")
    h = Harness(super_digest=sd)
    h.mk("/locked", b"x", acl=[(Perms.ALL, "digest", BOB)], auth=[("digest", BOB)])
    h.mk("/locked/c", acl=[(Perms.ALL, "digest", BOB)], auth=[("digest", BOB)])
    sup = h.core.authenticate("digest", b"super:pw", "127.0.0.1")
    auth = [LOCAL_IP, *sup]
    assert h.get_data("/locked", auth=auth)[1] == b"x"
    assert h.set_data("/locked", b"y", auth=auth)[0] == 0
    assert h.create("/locked/d", auth=auth)[0] == 0
    assert h.delete("/locked/c", auth=auth) == 0
    err, acl, _ = h.get_acl("/locked", auth=auth)
    assert (err, acl) == (0, [(Perms.ALL, "digest", BOB)])  # unmasked: super has ADMIN
    assert h.set_acl("/locked", OPEN, auth=auth)[0] == 0
    assert h.set_data("/zookeeper/config", b"", auth=auth)[0] == 0


def test_skip_acl_allows_everything():
    h = Harness(skip_acl=True)
    h.mk("/locked", b"x", acl=[(Perms.ALL, "digest", BOB)], auth=[("digest", BOB)])
    assert h.get_data("/locked")[1] == b"x"
    assert h.set_data("/locked", b"y")[0] == 0
    assert h.create("/locked/c")[0] == 0
    assert h.delete("/locked/c") == 0
    err, acl, _ = h.get_acl("/locked")
    assert (err, acl) == (0, [(Perms.ALL, "digest", BOB)])
    assert h.set_acl("/zookeeper/config", OPEN)[0] == 0
    # fixup still runs: skipACL does not make bad ACLs acceptable
    assert h.create("/bad", acl=[])[0] == Err.INVALIDACL


# -- getACL ----------------------------------------------------------------------------------

def test_get_acl_masks_digest_ids_without_admin():
    h = Harness()
    acl = [(Perms.READ, "world", "anyone"), (Perms.ALL, "digest", BOB),
           (Perms.READ, "ip", "127.0.0.1")]
    h.mk("/m", acl=acl, auth=[LOCAL_IP, ("digest", BOB)])
    err, got, stat = h.get_acl("/m")
    assert err == 0
    assert got == [(Perms.READ, "world", "anyone"), (Perms.ALL, "digest", "bob:x"),
                   (Perms.READ, "ip", "127.0.0.1")]
    assert stat == h.stat("/m")
    err, got, _ = h.get_acl("/m", auth=[LOCAL_IP, ("digest", BOB)])
    assert (err, got) == (0, acl)


def test_get_acl_needs_read_or_admin():
    h = Harness()
    h.mk("/admin_only", acl=[(Perms.ADMIN, "world", "anyone"), (Perms.ALL, "digest", ALICE)])
    err, got, _ = h.get_acl("/admin_only")
    assert (err, got) == (0, [(Perms.ADMIN, "world", "anyone"), (Perms.ALL, "digest", ALICE)])
    h.mk("/write_only", acl=[(Perms.WRITE, "world", "anyone")])
    assert h.get_acl("/write_only")[0] == Err.NOAUTH
    assert h.get_acl("/missing")[0] == Err.NONODE


def test_get_acl_returns_stat_with_aversion():
    h = Harness()
    h.mk("/v")
    h.set_acl("/v", OPEN)
    h.set_acl("/v", OPEN)
    err, acl, stat = h.get_acl("/v")
    assert (err, acl, stat.aversion) == (0, OPEN, 2)


# -- whoAmI --------------------------------------------------------------------------------

def test_who_am_i():
    h = Harness()
    err, body = h.read(OpCode.whoAmI, (), auth=[LOCAL_IP, ("super", ""), ("digest", BOB)])
    assert err == 0
    # AuthUtil.getClientInfos: a scheme without a provider has a null user, sent as ""
    assert parse_whoami(body) == [("ip", "127.0.0.1"), ("super", ""), ("digest", "bob")]


def test_ephemeral_create_acl_is_fixed_up_too():
    h = Harness()
    assert h.create("/e", acl=[], flags=CreateMode.EPHEMERAL)[0] == Err.INVALIDACL
    assert h.write(OpCode.create2, create_req("/e", acl=[(1, "auth", "")]))[0] == Err.INVALIDACL
    assert h.create("/e", acl=READ_ONLY, flags=CreateMode.EPHEMERAL)[0] == 0
