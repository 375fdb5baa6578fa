"""zktwist: a ZooKeeper-compatible coordination service on Twisted."""

__version__ = "0.1.0"

# The ZooKeeper version zktwist reports (envi, srvr, mntr): clients and tools
# parse it, so it names the Apache ZooKeeper release whose behaviour we follow.
ZOOKEEPER_COMPAT_VERSION = "3.8.0"
