"""Storage backends by name, found as plugins (``getPlugins(IStorageBackendFactory)``)."""

from __future__ import annotations

from typing import Any, Dict

from twisted.plugin import getPlugins

from zktwist.config import ConfigError
from zktwist.interfaces import IStorageBackendFactory


def backend_factories() -> Dict[str, Any]:
    import zktwist.plugins

    found: Dict[str, Any] = {}
    for factory in getPlugins(IStorageBackendFactory, zktwist.plugins):
        found.setdefault(factory.name, factory)
    return found


def available_backends() -> Dict[str, Any]:
    """Factories whose implementation imports (a backend still being written is left out)."""
    import importlib

    out = {}
    for name, factory in backend_factories().items():
        module = getattr(factory, "_module", None)
        if module is not None:
            try:
                importlib.import_module(module)
            except ImportError:
                continue
        out[name] = factory
    return out


def make_backend(config: Any) -> Any:
    factories = backend_factories()
    factory = factories.get(config.storage_backend)
    if factory is None:
        raise ConfigError("%s: storage.backend: unknown backend %r (available: %s)" % (
            config.path, config.storage_backend, ", ".join(sorted(factories))))
    try:
        return factory.create(config)
    except ImportError as e:
        raise ConfigError("%s: storage.backend: backend %r cannot be loaded: %s" % (
            config.path, config.storage_backend, e))
