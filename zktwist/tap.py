"""twistd/twist options and service construction for ``twistd zktwist``."""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.python import usage

from zktwist.config import ConfigError, ServerConfig, load


def _fail(message: str) -> None:
    """One clear line on stderr and exit status 1: never a traceback for bad config."""
    sys.stderr.write("zktwist: error: %s\n" % message)
    sys.stderr.flush()
    raise SystemExit(1)


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run a ZooKeeper-compatible server. The config file uses Apache ZooKeeper's "
                "zoo.cfg syntax and keys; --port and --data-dir override it.")
    optParameters = [
        ["config", "c", None, "Path to a zoo.cfg-syntax config file."],
        ["port", "p", None, "Client port (overrides clientPort)."],
        ["data-dir", "d", None, "Data directory (overrides dataDir)."],
    ]

    def postOptions(self) -> None:
        try:
            if self["config"]:
                overrides = [("dataDir", self["data-dir"])] if self["data-dir"] else []
                config = load(self["config"], overrides=overrides)
            elif self["data-dir"]:
                config = ServerConfig()
                config.path = "<command line>"
                config.data_dir = self["data-dir"]
                config.finish()
            else:
                _fail("no configuration: give --config PATH (zoo.cfg syntax) or --data-dir DIR")
                return
        except ConfigError as e:
            _fail(str(e))
            return
        if self["port"] is not None:
            try:
                port = int(self["port"])
                if not 0 <= port <= 65535:
                    raise ValueError
            except ValueError:
                _fail("--port: expected a port number 0-65535, got %r" % self["port"])
            config.client_port = port
        if self["data-dir"] is not None:
            config.data_dir = self["data-dir"]
            if "dataLogDir" not in config.raw:
                config.data_log_dir = self["data-dir"]
        for w in config.warnings:
            sys.stderr.write("zktwist: warning: %s\n" % w)
        try:
            os.makedirs(config.data_dir, exist_ok=True)
            os.makedirs(config.data_log_dir, exist_ok=True)
        except OSError as e:
            _fail("%s: dataDir: cannot create %s: %s" % (config.path, config.data_dir, e.strerror))
        self.config = config


def makeService(options: Options) -> Any:
    from zktwist.config import ConfigError as _ConfigError
    from zktwist.service import makeService as make

    try:
        return make(options.config)
    except _ConfigError as e:
        _fail(str(e))
