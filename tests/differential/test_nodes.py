"""Ephemeral, container and TTL nodes; multiRead; getEphemerals; getAllChildrenNumber; sync."""

from __future__ import annotations

import pytest

from tests.support import rawclient as rc
from tests.support.rawclient import (
    CONTAINER, EPHEMERAL, EPHEMERAL_SEQUENTIAL, PERSISTENT_SEQUENTIAL, PERSISTENT_SEQUENTIAL_WITH_TTL,
    PERSISTENT_WITH_TTL, READ_ACL_UNSAFE, ACL, op_check, op_create, op_create2, op_create_container, op_create_ttl,
    op_delete, op_get_children, op_get_data, op_set_data,
)
from tests.differential.conftest import diff

pytestmark = pytest.mark.differential


def test_ephemerals(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.b.create(R)
        z.a.create(R + "/e", b"x", flags=EPHEMERAL)
        z.a.create2(R + "/e2", flags=EPHEMERAL)
        z.a.create(R + "/s-", flags=EPHEMERAL_SEQUENTIAL)
        z.a.create(R + "/e/c")                               # no children for ephemerals
        z.a.create(R + "/e/c", flags=EPHEMERAL)
        z.a.create(R + "/e/", flags=PERSISTENT_SEQUENTIAL)
        z.a.multi([op_create(R + "/e/c")])
        z.b.create(R + "/e/c")                               # from another session too
        z.a.exists(R + "/e")
        z.b.get_data(R + "/e")
        z.a.set_data(R + "/e", b"y")
        z.b.set_data(R + "/e", b"z")                          # any session may write it
        z.b.exists(R + "/e", True)
        z.b.get_data(R + "/e2", True)
        z.b.get_children(R, True)
        z.b.add_watch(R, rc.ADD_WATCH_PERSISTENT_RECURSIVE)
        z.b.exists(R + "/s-0000000002", True)
        z.a.get_ephemerals(R)
        z.b.get_ephemerals(R)
        z.a.close_session()                                   # ephemerals vanish, b is notified
        z.barrier()
        z.b.get_children2(R)
        z.b.exists(R + "/e")
        z.b.get_ephemerals("/")
        # an ephemeral deleted explicitly by another session
        z.connect("c")
        z.c.create(R + "/f", flags=EPHEMERAL)
        z.b.delete(R + "/f")
        z.c.get_ephemerals("")
        z.c.close_session()
        z.barrier()
        z.b.get_children2(R)

    diff(zk_pair, scenario)


def test_get_ephemerals_prefixes(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create(R + "/p")
        z.a.create(R + "/p/e1", flags=EPHEMERAL)
        z.a.create(R + "/pe", flags=EPHEMERAL)
        z.a.create(R + "/q-", flags=EPHEMERAL_SEQUENTIAL)
        z.b.create(R + "/p/other", flags=EPHEMERAL)
        for prefix in ("", "/", R, R + "/", R + "/p", R + "/p/", R + "/pe", R + "/q", R + "/zzz", "nonsense", R + "/p/e1"):
            z.a.get_ephemerals(prefix)
        z.b.get_ephemerals(R)
        z.a.delete(R + "/pe")
        z.a.get_ephemerals(R)

    diff(zk_pair, scenario)


def test_get_all_children_number(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.get_all_children_number(R)
        z.a.create(R + "/a")
        z.a.create(R + "/a/b")
        z.a.create(R + "/a/b/c")
        z.a.create(R + "/d", flags=EPHEMERAL)
        z.a.get_all_children_number(R)
        z.a.get_all_children_number(R + "/a")
        z.a.get_all_children_number(R + "/a/b/c")
        z.a.get_all_children_number(R + "/missing")
        z.a.get_all_children_number(R + "/")
        z.a.get_all_children_number("bad")
        z.a.get_all_children_number("/zookeeper")
        z.a.get_all_children_number("/zookeeper/quota")

    diff(zk_pair, scenario)


def test_sync_echo(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        for p in (R, "/", R + "/missing", "bad", "", R + "/", "/zookeeper/config"):
            z.a.sync(p)
        z.a.request(rc.OP_SYNC, rc.enc_string(None), _timeout=2.0)

    diff(zk_pair, scenario)


def test_container_rules(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R)
        z.a.create_container(R + "/c", b"d")
        z.a.create(R + "/c/e", flags=EPHEMERAL)                  # ephemeral under a container
        z.a.create(R + "/c/p")
        z.a.create_container(R + "/c/cc")                        # container under a container
        z.a.get_children2(R + "/c")
        z.a.exists(R + "/c")
        z.a.get_ephemerals(R)
        z.a.delete(R + "/c")                                      # not empty
        z.a.delete(R + "/c/p")
        z.a.delete(R + "/c/cc")
        z.a.set_data(R + "/c", b"e", 0)
        z.a.set_acl(R + "/c", READ_ACL_UNSAFE + [ACL(31, "world", "anyone")], 0)
        z.a.get_acl(R + "/c")
        z.a.close_session()
        z.barrier()
        z.b.get_children2(R + "/c")                              # empty container stays until the reaper runs
        z.b.create_container(R + "/c2", flags=EPHEMERAL)
        z.b.create_container(R + "/c2", flags=CONTAINER | 1)
        z.b.create_container(R + "/c2", flags=PERSISTENT_WITH_TTL)
        z.b.create_container(R + "/c2", flags=-1)
        z.b.create_container(R + "/missing/c")
        z.b.create_container("bad")
        z.b.multi([op_create_container(R + "/mc"), op_create(R + "/mc/x"), op_create(R + "/cf", flags=CONTAINER)])
        z.b.get_children2(R)
        z.b.delete(R + "/mc/x")
        z.b.delete(R + "/mc")
        z.b.get_children2(R)

    diff(zk_pair, scenario)


def test_ttl_rules(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.create_ttl(R + "/t", b"v", ttl=3600000)
        z.a.create_ttl(R + "/t", ttl=3600000)                         # exists
        z.a.create_ttl(R + "/s-", flags=PERSISTENT_SEQUENTIAL_WITH_TTL, ttl=3600000)
        z.a.create_ttl(R + "/s-", flags=PERSISTENT_SEQUENTIAL_WITH_TTL, ttl=1)
        z.a.exists(R + "/t")
        z.a.get_data(R + "/t")
        z.a.create(R + "/t/e", flags=EPHEMERAL)                      # ephemeral under TTL
        z.a.create_ttl(R + "/t/tt", ttl=3600000)                     # TTL under TTL
        z.a.get_children2(R + "/t")
        z.a.create(R + "/e", flags=EPHEMERAL)
        z.a.create_ttl(R + "/e/t", ttl=3600000)                      # TTL under an ephemeral: -108
        z.a.create_ttl(R + "/missing/t", ttl=3600000)
        for flags in (0, 1, 2, 3, 4, 7, -1):
            z.a.create_ttl(R + f"/f{flags}", flags=flags, ttl=3600000)
        for ttl in (0, -1, (1 << 40) - 1, 1 << 40, 1 << 62):
            z.a.create_ttl(R + f"/ttl{ttl}", ttl=ttl)
        z.a.create(R + "/viaop1", flags=PERSISTENT_WITH_TTL)
        z.a.create(R + "/viaop1", flags=PERSISTENT_SEQUENTIAL_WITH_TTL)
        z.a.create2(R + "/viaop15", flags=PERSISTENT_WITH_TTL)
        z.a.create_container(R + "/viaop19", flags=PERSISTENT_WITH_TTL)
        z.a.multi([op_create_ttl(R + "/mt", ttl=3600000), op_create_ttl(R + "/mt/", flags=PERSISTENT_SEQUENTIAL_WITH_TTL,
                                                                          ttl=3600000)])
        z.a.multi([op_create_ttl(R + "/mt2", ttl=0)])
        z.a.multi([op_create(R + "/mt3", flags=PERSISTENT_WITH_TTL)])
        z.a.get_children2(R)
        z.a.get_ephemerals(R)

    diff(zk_pair, scenario)


def test_multi_results_for_every_create_kind(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.multi([op_create(R + "/a", b"1"), op_create2(R + "/b", b"2"), op_create_container(R + "/c"),
                   op_create_ttl(R + "/d", ttl=3600000), op_create(R + "/e", flags=EPHEMERAL),
                   op_create2(R + "/s", flags=EPHEMERAL_SEQUENTIAL), op_set_data(R + "/a", b"x", 0),
                   op_check(R + "/b", 0), op_delete(R + "/e")])
        z.a.get_children2(R)
        # a sub-op type that is not allowed in multi
        z.a.multi([(rc.OP_GET_DATA, rc.encode_path_watch(R, False))], _timeout=2.0)
        z.a.ping(_timeout=2.0)

    diff(zk_pair, scenario)


def test_multi_read(zk_pair):
    def scenario(z):
        z.connect("a")
        z.connect("b")
        R = z.root
        z.a.create(R, b"r")
        z.a.create(R + "/x", None)
        z.a.create(R + "/y")
        z.a.create(R + "/noread", b"s", [ACL(rc.PERM_ALL & ~rc.PERM_READ, "world", "anyone")])
        z.b.multi_read([op_get_data(R, True), op_get_children(R, True), op_get_data(R + "/x"),
                        op_get_data(R + "/missing"), op_get_children(R + "/missing"), op_get_data(R + "/noread"),
                        op_get_children(R + "/noread"), op_get_data("bad"), op_get_children(R + "/y")])
        z.b.multi_read([])
        z.a.set_data(R, b"changed")                         # multiRead set no watches
        z.a.create(R + "/z")
        z.barrier()
        # a write op inside multiRead, a read op inside multi
        z.b.multi_read([op_get_data(R), op_create(R + "/w")], _timeout=2.0)
        z.b.ping(_timeout=2.0)

    diff(zk_pair, scenario)


def test_multi_read_with_write_closes_or_errors(zk_pair):
    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.multi([op_create(R + "/w"), op_get_data(R)], _timeout=2.0)
        z.a.ping(_timeout=2.0)
        z.a.exists(R + "/w", _timeout=2.0)

    diff(zk_pair, scenario)
