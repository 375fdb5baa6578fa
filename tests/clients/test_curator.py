"""Apache Curator 5 (Debian's libcurator-framework-java / libcurator-recipes-java) against a real server.

One JVM runs tests/clients/CuratorSmoke.java (``java -cp <jars> File.java``,
compiled in memory): two CuratorFramework sessions go through
creatingParentContainersIfNeeded (containers, op 19), InterProcessMutex,
LeaderLatch, CuratorCache, PersistentWatcher (addWatch, op 106, recursive), a
plain persistent watch and removeWatches, transactions (multi), 200 pipelined
background creates, digest ACLs, SharedCount / DistributedAtomicLong,
getEphemerals / getAllChildrenNumber / sync / getConfig on the plain handle,
and TTL nodes (createTTL, op 21; the server runs with extendedTypesEnabled=true).
The program prints one PASS/FAIL line per step; this test checks every step
passed.  ``ZKTWIST_TEST_TARGET=apache`` runs it against Apache ZooKeeper 3.8.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.clients.conftest import HERE, require_client, server_log_excerpt

JAVA_DIR = Path("/usr/share/java")

#: Curator and what it needs on the client side (no netty: the default NIO socket).
REQUIRED_JARS = [
    "curator-recipes.jar",
    "curator-framework.jar",
    "curator-client.jar",
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "guava.jar",
    "slf4j-api.jar",
]
#: Logging to stderr at WARN, so a failure shows what Curator complained about.
OPTIONAL_JARS = ["slf4j-simple.jar"]

PROGRAM = HERE / "CuratorSmoke.java"
JVM_TIMEOUT = 90

#: Every step CuratorSmoke.java runs; each must print a PASS line.
STEPS = [
    "connect",
    "crud",
    "containers",
    "mutex",
    "leader-latch",
    "curator-cache",
    "persistent-recursive-watch",
    "persistent-watch-and-remove",
    "transaction",
    "pipelined",
    "acl",
    "counters",
    "raw-zookeeper",
    "ttl",
    "cleanup",
]


@pytest.fixture
def curator_classpath() -> str:
    """The JVM classpath for CuratorSmoke.java; skips (fails under CI) when something is missing."""
    java = shutil.which("java")
    missing = [name for name in REQUIRED_JARS if not (JAVA_DIR / name).exists()]
    require_client(
        java is not None and not missing,
        "Curator needs java and, in /usr/share/java, " + ", ".join(missing or ["(java)"])
        + " (Debian packages libcurator-framework-java, libcurator-recipes-java, zookeeper)",
    )
    jars = REQUIRED_JARS + [name for name in OPTIONAL_JARS if (JAVA_DIR / name).exists()]
    return os.pathsep.join(str(JAVA_DIR / name) for name in jars)


def test_curator_smoke(curator_classpath, client_server, unique_path, tmp_path):
    command = [
        "java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-Dorg.slf4j.simpleLogger.logFile=System.err",
        "-cp", curator_classpath, str(PROGRAM), client_server.address, unique_path,
    ]
    started = time.monotonic()
    stderr_path = tmp_path / "curator.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
            timeout=JVM_TIMEOUT, cwd=str(tmp_path),
        )
    elapsed = time.monotonic() - started
    output = proc.stdout.decode(errors="replace")
    log = stderr_path.read_text(errors="replace")
    context = (f"CuratorSmoke.java ({elapsed:.1f}s, exit {proc.returncode}) output:\n{output}\n"
               f"stderr (last 4000 chars):\n{log[-4000:]}\nserver log:\n{server_log_excerpt(client_server)}")

    failures = [line for line in output.splitlines() if line.startswith("FAIL ")]
    assert not failures, context
    passed = {line.split()[1] for line in output.splitlines() if line.startswith("PASS ")}
    missing = [step for step in STEPS if step not in passed]
    assert not missing, f"steps without PASS: {missing}\n{context}"
    assert f"DONE {len(STEPS)} 0" in output, context
    assert proc.returncode == 0, context
