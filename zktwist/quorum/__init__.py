"""Replication: leader election and Zab as pure state machines (see docs/replication.md)."""
