"""zktwist's own plugin package: storage backends are found here with ``getPlugins``.

Third-party backends drop a module providing
:class:`zktwist.interfaces.IStorageBackendFactory` into any ``zktwist/plugins``
directory on ``sys.path``; ``pluginPackagePaths`` makes them all one package.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # type: ignore[name-defined]
__all__ = []  # type: ignore[var-annotated]
