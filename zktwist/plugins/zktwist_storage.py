"""The storage backends zktwist ships, as plugins."""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from zktwist.interfaces import IStorageBackendFactory


@implementer(IPlugin, IStorageBackendFactory)
class _Factory:
    def __init__(self, name: str, description: str, module: str, cls: str) -> None:
        self.name = name
        self.description = description
        self._module = module
        self._cls = cls

    def create(self, config: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(self._module), self._cls).from_config(config)


filelog = _Factory("filelog", "Apache ZooKeeper's log.* and snapshot.* files (the default)",
                   "zktwist.storage.filelog", "FileLogBackend")
memory = _Factory("memory", "In memory, lost on exit: for tests and the simulator",
                  "zktwist.storage.memory", "MemoryBackend")
sqlite = _Factory("sqlite", "One SQLite database per data dir (WAL, synchronous=FULL)",
                  "zktwist.storage.sqlite", "SQLiteBackend")
