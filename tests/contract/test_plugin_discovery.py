"""Storage backends are ``twisted.plugin`` plugins in ``zktwist.plugins``.

The shipped ones are found by ``getPlugins(IStorageBackendFactory,
zktwist.plugins)``; a third-party one dropped into a ``zktwist/plugins``
directory on ``sys.path`` is found too, without installing anything.  The
third-party plugin here is ``tests/contract/plugins/zktwist/plugins/
thirdparty_storage.py``; :func:`use_test_plugins` puts it on the plugin path
the way Tahoe-LAFS's ``UseTestPlugins`` fixture does for ``twisted.plugins``,
and takes it (and the ``dropin.cache`` Twisted writes next to it) away again.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Iterator, List

import pytest
from twisted.plugin import pluginPackagePaths
from zope.interface.verify import verifyObject

import zktwist.plugins
from zktwist import config as zkconfig
from zktwist.config import ConfigError
from zktwist.interfaces import IStorageBackend, IStorageBackendFactory
from zktwist.storage import registry

HERE = Path(__file__).resolve().parent
TEST_PLUGINS = HERE / "plugins"                       # goes on sys.path
TEST_PLUGIN_DIR = TEST_PLUGINS / "zktwist" / "plugins"  # what pluginPackagePaths finds there
THIRD_PARTY = "contract-thirdparty"
THIRD_PARTY_MODULE = "zktwist.plugins.thirdparty_storage"
BROKEN = "contract-broken"  # registered by the same module; its implementation is missing


def _remove_written_files() -> None:
    cache = TEST_PLUGIN_DIR / "dropin.cache"
    if cache.exists():
        cache.unlink()


@contextlib.contextmanager
def use_test_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    """``tests/contract/plugins`` on ``sys.path`` and in ``zktwist.plugins.__path__``, then gone."""
    with monkeypatch.context() as mp:
        mp.syspath_prepend(str(TEST_PLUGINS))
        mp.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ next to the plugin
        # zktwist/plugins/__init__.py ran pluginPackagePaths at import time;
        # the new sys.path entry adds what it would have seen, at the front.
        added = [p for p in pluginPackagePaths(zktwist.plugins.__name__)
                 if p not in zktwist.plugins.__path__]
        assert str(TEST_PLUGIN_DIR) in added
        for p in reversed(added):
            zktwist.plugins.__path__.insert(0, p)
        try:
            yield added
        finally:
            for p in added:
                while p in zktwist.plugins.__path__:
                    zktwist.plugins.__path__.remove(p)
                sys.path_importer_cache.pop(p, None)
            sys.modules.pop(THIRD_PARTY_MODULE, None)
            if hasattr(zktwist.plugins, "thirdparty_storage"):
                delattr(zktwist.plugins, "thirdparty_storage")
            importlib.invalidate_caches()
            _remove_written_files()


@pytest.fixture
def test_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    with use_test_plugins(monkeypatch) as added:
        yield added


def write_config(tmp_path: Path, backend: str) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("tickTime=2000\ndataDir=%s\nclientPort=2181\nstorage.backend=%s\n"
                   % (data, backend))
    return cfg


# --------------------------------------------------------------------------- shipped backends


def test_shipped_backends_are_found() -> None:
    found = registry.backend_factories()
    assert {"filelog", "memory", "sqlite"} <= set(found)
    for name, factory in found.items():
        assert verifyObject(IStorageBackendFactory, factory)
        assert factory.name == name
        assert isinstance(factory.description, str) and factory.description
        assert "\n" not in factory.description


def test_available_backends() -> None:
    available = registry.available_backends()
    assert {"filelog", "memory"} <= set(available)
    assert set(available) <= set(registry.backend_factories())
    try:
        importlib.import_module("zktwist.storage.sqlite")
    except ImportError:
        assert "sqlite" not in available
    else:
        assert "sqlite" in available


@pytest.mark.parametrize("name", ["filelog", "memory", "sqlite"])
def test_config_builds_each_available_backend(tmp_path: Path, name: str) -> None:
    if name not in registry.available_backends():
        pytest.skip("the %s backend does not import yet" % name)
    cfg = zkconfig.load(str(write_config(tmp_path, name)))
    backend = registry.make_backend(cfg)
    assert verifyObject(IStorageBackend, backend)
    assert backend.name == name
    backend.open()
    backend.close()


def test_default_backend_is_filelog(tmp_path: Path) -> None:
    cfg = zkconfig.from_text("dataDir=%s\n" % tmp_path)
    assert registry.make_backend(cfg).name == "filelog"


def test_unknown_backend_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "no-such-backend")
    cfg = zkconfig.load(str(path))
    with pytest.raises(ConfigError) as info:
        registry.make_backend(cfg)
    message = str(info.value)
    assert "storage.backend" in message
    assert str(path) in message
    assert "no-such-backend" in message
    for name in registry.backend_factories():
        assert name in message, "%r is not among the names the error offers" % name


# --------------------------------------------------------------------------- a third-party plugin


def test_third_party_plugin_is_not_found_without_its_directory() -> None:
    assert THIRD_PARTY not in registry.backend_factories()


def test_third_party_plugin_is_found(test_plugins: List[str]) -> None:
    found = registry.backend_factories()
    assert THIRD_PARTY in found
    assert {"filelog", "memory", "sqlite"} <= set(found), "the shipped backends are still there"
    factory = found[THIRD_PARTY]
    assert verifyObject(IStorageBackendFactory, factory)
    assert type(factory).__module__ == THIRD_PARTY_MODULE
    assert THIRD_PARTY in registry.available_backends()


def test_config_builds_third_party_backend(tmp_path: Path, test_plugins: List[str]) -> None:
    cfg = zkconfig.load(str(write_config(tmp_path, THIRD_PARTY)))
    backend = registry.make_backend(cfg)
    assert type(backend).__module__ == THIRD_PARTY_MODULE
    assert verifyObject(IStorageBackend, backend)
    assert backend.name == THIRD_PARTY
    backend.open()
    backend.append_and_sync([(1, b"x" * 20)])
    assert backend.last_zxid() == 1
    backend.close()


def test_unknown_backend_error_lists_third_party_plugins(tmp_path: Path,
                                                         test_plugins: List[str]) -> None:
    cfg = zkconfig.load(str(write_config(tmp_path, "no-such-backend")))
    with pytest.raises(ConfigError) as info:
        registry.make_backend(cfg)
    assert THIRD_PARTY in str(info.value)


def test_backend_that_does_not_import_is_not_available(test_plugins: List[str]) -> None:
    assert BROKEN in registry.backend_factories()
    assert BROKEN not in registry.available_backends()


def test_backend_that_does_not_import_is_a_config_error(tmp_path: Path,
                                                         test_plugins: List[str]) -> None:
    """config.py: every problem is a ConfigError naming the key and the file."""
    path = write_config(tmp_path, BROKEN)
    cfg = zkconfig.load(str(path))
    try:
        registry.make_backend(cfg)
    except ConfigError as e:
        message = str(e)
    except Exception as e:
        pytest.fail("storage.backend=%s (registered, its module does not import) raised %r, "
                    "not a ConfigError" % (BROKEN, e))
    else:
        pytest.fail("storage.backend=%s built a backend from a module that does not exist" % BROKEN)
    assert "storage.backend" in message
    assert str(path) in message
    assert BROKEN in message


def test_test_plugins_are_cleaned_up(monkeypatch: pytest.MonkeyPatch) -> None:
    path_before = list(sys.path)
    plugin_path_before = list(zktwist.plugins.__path__)
    with use_test_plugins(monkeypatch):
        assert THIRD_PARTY in registry.backend_factories()
        assert str(TEST_PLUGINS) in sys.path
    assert sys.path == path_before
    assert list(zktwist.plugins.__path__) == plugin_path_before
    assert THIRD_PARTY_MODULE not in sys.modules
    assert not (TEST_PLUGIN_DIR / "dropin.cache").exists()
    assert THIRD_PARTY not in registry.backend_factories()
    # Nothing but the plugin itself is left under tests/contract/plugins.
    left = sorted(str(p.relative_to(TEST_PLUGINS)) for p in TEST_PLUGINS.rglob("*") if p.is_file())
    assert left == ["zktwist/plugins/thirdparty_storage.py"]
