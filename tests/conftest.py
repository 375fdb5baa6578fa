"""Shared pytest fixtures: real servers on free loopback ports, always stopped."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests.support.processes import (
    ApacheZooKeeperProcess,
    ZKTwistProcess,
    apache_zookeeper_available,
)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_apache_zookeeper() -> None:
    """Skip when Debian's zookeeper package is missing; under CI=true that is a failure."""
    if apache_zookeeper_available():
        return
    reason = "Apache ZooKeeper 3.8 (Debian package 'zookeeper') and java are not installed"
    if IN_CI:
        pytest.fail(f"{reason}; CI must run the differential tests")
    pytest.skip(reason)


@pytest.fixture
def zktwist_server(tmp_path) -> Iterator[ZKTwistProcess]:
    """A fresh zktwist server (twistd) on a free loopback port."""
    server = ZKTwistProcess(workdir=tmp_path / "zktwist")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def apache_zk(tmp_path) -> Iterator[ApacheZooKeeperProcess]:
    """A fresh Apache ZooKeeper 3.8 standalone server on a free loopback port."""
    require_apache_zookeeper()
    server = ApacheZooKeeperProcess(workdir=tmp_path / "apache-zk")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()
