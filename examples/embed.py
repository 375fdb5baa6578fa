"""Embedding zktwist in another Twisted program.

zktwist is an ordinary Twisted service tree, so a program can run a ZooKeeper
server next to its own services.  In a ``.tac`` file for twistd::

    from twisted.application import service
    from zktwist.config import load
    from zktwist.service import makeService

    application = service.Application("my-app")
    makeService(load("/etc/zktwist/zktwist.cfg")).setServiceParent(application)

This script does the same by hand under ``task.react``: it builds a config in
code, starts the service on a free port (``clientPort=0``; ``service.port``
tells which port was bound), lets a kazoo client (blocking, so in a thread)
create and read a node, and stops everything cleanly.  Run it with::

    .venv/bin/python examples/embed.py
"""

import tempfile

from kazoo.client import KazooClient
from twisted.internet import task, threads

from zktwist.config import from_text
from zktwist.service import makeService


def talk_to(port):
    """Plain blocking client code; it runs in a thread, not in the reactor."""
    zk = KazooClient(hosts="127.0.0.1:%d" % port, timeout=10)
    zk.start(timeout=10)
    try:
        zk.create("/embedded/greeting", b"hello from kazoo", makepath=True)
        data, stat = zk.get("/embedded/greeting")
        return data, stat.czxid, zk.get_children("/")
    finally:
        zk.stop()
        zk.close()


async def main(reactor, data_dir):
    config = from_text(
        "dataDir=%s\n"
        "clientPort=0\n"                    # any free port
        "clientPortAddress=127.0.0.1\n"
        "tickTime=2000\n" % data_dir,
        path="<embed.py>")
    service = makeService(config, reactor)  # a MultiService: storage, sessions, containers, client
    service.startService()                  # recovers the log, then listens
    try:
        print("zktwist listening on 127.0.0.1:%d" % service.port)
        data, czxid, children = await threads.deferToThread(talk_to, service.port)
        print("created /embedded/greeting (czxid 0x%x), read back %r" % (czxid, data))
        print("children of /: %s" % ", ".join(sorted(children)))
        print("server: %d sessions, last zxid 0x%x" % (
            len(service.server.core.sessions), service.server.core.last_zxid))
    finally:
        await service.stopService()         # closes the port first, the log last
    print("stopped cleanly")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="zktwist-embed-") as tmp:
        # react() runs the reactor until main() finishes, then exits the
        # process: status 0 on success, 1 (with a traceback) on failure.
        task.react(lambda reactor: task.ensureDeferred(main(reactor, tmp)))
