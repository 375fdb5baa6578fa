"""Facts about a freshly started server (own server pair, so no other test's nodes are counted),
and the default four-letter-word whitelist (servers started without ``4lw.commands.whitelist``)."""

from __future__ import annotations

import pytest

from tests.differential.conftest import diff, make_pair_fixture
from tests.support.processes import four_letter

pytestmark = pytest.mark.differential

# this module's own pair: fresh servers with the zoo.cfg default 4lw whitelist (no whitelist line at all)
pair = make_pair_fixture(default_whitelist=True)


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
