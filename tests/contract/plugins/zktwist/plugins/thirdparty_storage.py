"""A third-party storage backend, dropped into a ``zktwist/plugins`` directory.

Only ``tests/contract/test_plugin_discovery.py`` puts this directory on the
plugin path: it stands for a backend shipped outside zktwist, found by
``twisted.plugin.getPlugins`` without installing anything.  (No
``__init__.py`` here or in ``zktwist/`` above: ``pluginPackagePaths`` only
adds directories that are not packages of their own.)
"""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from zktwist.interfaces import IStorageBackendFactory
from zktwist.storage.memory import MemoryBackend

NAME = "contract-thirdparty"
BROKEN_NAME = "contract-broken"


class ThirdPartyBackend(MemoryBackend):
    """The in-memory backend under another name."""

    name = NAME


@implementer(IPlugin, IStorageBackendFactory)
class ThirdPartyBackendFactory:
    name = NAME
    description = "A test-only third-party backend (tests/contract/plugins)"

    def create(self, config: Any) -> ThirdPartyBackend:
        return ThirdPartyBackend.from_config(config)


@implementer(IPlugin, IStorageBackendFactory)
class BrokenBackendFactory:
    """A backend whose implementation does not import (as one still being written)."""

    name = BROKEN_NAME
    description = "A test-only backend whose module is missing (tests/contract/plugins)"
    _module = "zktwist.plugins.contract_no_such_module"

    def create(self, config: Any) -> Any:
        import importlib

        return importlib.import_module(self._module).Backend.from_config(config)


thirdparty = ThirdPartyBackendFactory()
broken = BrokenBackendFactory()
