"""Facts about a freshly started server (own server pair, so no other test's nodes are counted),
the default four-letter-word whitelist (servers started without ``4lw.commands.whitelist``), and
TTL nodes with extended types disabled."""

from __future__ import annotations

import pytest

from tests.support import rawclient as rc
from tests.differential.conftest import EXTENDED_TYPES_KEY, diff, make_pair_fixture
from tests.support.processes import four_letter

pytestmark = pytest.mark.differential

# this module's own pair: fresh servers with the zoo.cfg default 4lw whitelist (no whitelist line at all)
# and zookeeper.extendedTypesEnabled=false
pair = make_pair_fixture(extra_config={EXTENDED_TYPES_KEY: "false"}, default_whitelist=True)


def test_fresh_server_tree(zk_pair):
    """Trap 10: getAllChildrenNumber("/") counts the three system nodes; "/" lists only "zookeeper"."""

    def scenario(z):
        z.connect("a")
        z.a.get_all_children_number("/")
        z.a.get_children2("/")
        z.a.get_children2("/zookeeper")
        z.a.exists("/zookeeper/config")
        z.a.get_acl("/zookeeper/config")
        z.a.get_acl("/")
        z.a.get_all_children_number("")
        z.a.get_ephemerals("/")
        z.a.create("/n")
        z.a.get_all_children_number("/")
        z.a.get_children2("/")
        z.a.delete("/n")
        z.a.get_children2("/")

    diff(zk_pair, scenario, root="/n")


def test_default_four_letter_whitelist(zk_pair):
    """Trap 11: without a whitelist line only srvr is allowed; others get the 'not in the whitelist' text."""

    def scenario(z):
        for word in ("ruok", "envi", "mntr", "isro", "conf", "stat", "wchs", "dump", "cons"):
            z.four_letter(word)
        srvr = four_letter(z.port, "srvr")      # version and counters differ: compare its shape only
        z.note("-", "srvr has Mode: standalone", "Mode: standalone" in srvr)
        z.note("-", "srvr lines (names only)", sorted(line.split(":")[0] for line in srvr.splitlines() if line))

    diff(zk_pair, scenario)


def test_ttl_without_extended_types(zk_pair):
    """createTTL, and TTL flags anywhere, when zookeeper.extendedTypesEnabled is false."""

    def scenario(z):
        z.connect("a")
        R = z.root
        z.a.create(R)
        z.a.create_ttl(R + "/t", ttl=3600000)
        z.a.create_ttl(R + "/t", flags=rc.PERSISTENT_SEQUENTIAL_WITH_TTL, ttl=3600000)
        z.a.create_ttl(R + "/t", flags=0, ttl=3600000)
        z.a.create_ttl(R + "/t", ttl=0)
        z.a.create(R + "/t", flags=rc.PERSISTENT_WITH_TTL)
        z.a.multi([rc.op_create_ttl(R + "/t", ttl=3600000)])
        z.a.multi([rc.op_create(R + "/u"), rc.op_create_ttl(R + "/t", ttl=3600000)])
        z.a.create_container(R + "/c")                      # containers need no flag
        z.a.get_children2(R)

    diff(zk_pair, scenario)
