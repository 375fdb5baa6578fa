"""node-zookeeper-client (an unmodified pure-JavaScript client) against a real server.

tests/clients/node/smoke.js connects two clients and goes through persistent,
ephemeral and sequential creates, get/set with a data watch, getChildren with a
child watch, exists watches, a multi (and a failing one), 1 MB of data and pipelined writes, ACLs (digest auth), mkdirp and the
removal of ephemerals on close; it prints one PASS/FAIL line per step.

node-zookeeper-client is installed outside the checkout by
``tests/clients/install.sh node`` (which this test runs when it is missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.clients.conftest import (
    NODE_CLIENT_SRC,
    node_client_dir,
    node_modules_ready,
    require_client,
    run_install,
    server_log_excerpt,
)

NODE_TIMEOUT = 60

#: Every step smoke.js runs; each must print a PASS line.
STEPS = [
    "connect",
    "create-persistent",
    "create-ephemeral",
    "create-sequential",
    "get-set-watch",
    "get-children-watch",
    "exists-watch",
    "multi",
    "large-data",
    "acl-mkdirp-delete",
    "acl-digest",
    "session-close-removes-ephemerals",
    "cleanup",
]


@pytest.fixture(scope="module")
def node_modules():
    node = shutil.which("node")
    require_client(node is not None, "node is not installed")
    modules = node_modules_ready()
    install_output = ""
    if modules is None and shutil.which("npm"):
        result = run_install("node")
        install_output = result.stdout.decode(errors="replace")[-1500:]
        modules = node_modules_ready()
    require_client(
        modules is not None,
        f"node-zookeeper-client is not installed in {node_client_dir()} {install_output}".rstrip(),
    )
    return modules


def test_node_zookeeper_client_smoke(node_modules, client_server, unique_path):
    env = dict(os.environ, NODE_PATH=str(node_modules))
    started = time.monotonic()
    proc = subprocess.run(
        ["node", str(NODE_CLIENT_SRC / "smoke.js"), client_server.address, unique_path],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        timeout=NODE_TIMEOUT, env=env, cwd=str(NODE_CLIENT_SRC),
    )
    elapsed = time.monotonic() - started
    output = proc.stdout.decode(errors="replace")
    context = f"node smoke.js ({elapsed:.1f}s) output:\n{output}\nserver log:\n{server_log_excerpt(client_server)}"

    failures = [line for line in output.splitlines() if line.startswith("FAIL ")]
    assert not failures, context
    passed = {line.split()[1] for line in output.splitlines() if line.startswith("PASS ")}
    missing = [step for step in STEPS if step not in passed]
    assert not missing, f"steps without PASS: {missing}\n{context}"
    assert f"DONE {len(STEPS)} 0" in output, context
    assert proc.returncode == 0, context
