"""Differential tests: the same operations against Apache ZooKeeper 3.8 and zktwist, every reply compared."""
