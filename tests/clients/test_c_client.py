"""The ZooKeeper C client (``cli_mt`` from Debian's zookeeper-bin 3.8) against a real server.

cli_mt reads commands on stdin and prints replies, watch events and errors on
stderr.  Each command is typed only after the previous reply arrived (an
expect-style driver), so the transcript is deterministic apart from times,
zxids, session ids and the order of children.  Two cli_mt processes run at
once: the second watches the first's ephemeral nodes disappear when the first
quits (closeSession).

The patterns below are what cli_mt prints against Apache ZooKeeper 3.8
(``ZKTWIST_TEST_TARGET=apache`` re-checks them).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

from tests.clients.conftest import require_client, server_log_excerpt

CLI_MT = Path("/usr/lib/zookeeper/bin/cli_mt")
WAIT = 10.0

# Stat lines as cli_mt's dumpStat prints them (numbers in hex).
STAT_VERSION = re.compile(r"\tversion=([0-9a-f]+)\taversion=([0-9a-f]+)\n")
STAT_OWNER = re.compile(r"\tephemeralOwner = ([0-9a-f]+)\n")


class CliMt:
    """One cli_mt process: send a line, then wait for a pattern in its output."""

    def __init__(self, address: str, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [str(CLI_MT), address], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._buf = ""
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buf += data.decode("utf-8", "replace")
                self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return self._buf

    def mark(self) -> int:
        with self._cond:
            return len(self._buf)

    def send(self, line: str) -> int:
        """Type a command; returns the output position before it (for ``expect``)."""
        start = self.mark()
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        return start

    def expect(self, pattern: str, since: int = 0, timeout: float = WAIT) -> "re.Match[str]":
        """Wait until ``pattern`` (a regex) matches the output after position ``since``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search(self._buf, since)
                if match:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise AssertionError(
                        f"{self.name}: no {pattern!r} in the output after position {since} "
                        f"({'exited' if self._eof else f'{timeout}s'}); output:\n{self._buf}")
                self._cond.wait(remaining)

    def run(self, line: str, pattern: str, timeout: float = WAIT) -> "re.Match[str]":
        return self.expect(pattern, self.send(line), timeout)

    def absent(self, pattern: str, since: int) -> None:
        match = re.search(pattern, self.output[since:])
        assert match is None, f"{self.name}: unexpected {match.group(0)!r}; output:\n{self.output}"

    def quit(self) -> int:
        self.send("quit")
        try:
            return self.proc.wait(WAIT)
        finally:
            self._reader.join(WAIT)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()  # cli_mt says "bye" and closes its session on EOF
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


@pytest.fixture
def cli_mt() -> Path:
    require_client(CLI_MT.exists() and os.access(CLI_MT, os.X_OK),
                   f"{CLI_MT} (Debian package 'zookeeper-bin') is not installed")
    return CLI_MT


@pytest.fixture
def cli_factory(cli_mt, client_server):
    made: List[CliMt] = []

    def make(name: str) -> CliMt:
        cli = CliMt(client_server.address, name)
        made.append(cli)
        cli.expect(r"Got a new session id: 0x([0-9a-f]+)\n")
        return cli

    yield make
    for cli in made:
        cli.close()


def created(base: str, path: str, name: Optional[str] = None) -> str:
    """cli_mt's reply to ``create`` of ``path`` that made node ``name``."""
    return rf"\[{re.escape(path)}\]: rc = 0\n\tname = {re.escape(name or path)}\n"


def rc_line(path: str, rc: int) -> str:
    return rf"{re.escape(path)}: rc = {rc}\n"


def children_of(cli: CliMt, path: str, since: int) -> List[str]:
    """The children listed by the ``ls``/``ls2`` reply after ``since``."""
    match = cli.expect(rf"{re.escape(path)}: rc = 0\n((?:\t[^\n]*\n)*)time = ", since)
    return sorted(line.strip() for line in match.group(1).splitlines())


def test_cli_mt_smoke(client_server, cli_factory, unique_path):
    base = unique_path
    try:
        _scenario(cli_factory, base)
    except AssertionError as e:
        raise AssertionError(f"{e}\nserver log:\n{server_log_excerpt(client_server)}") from None


def _scenario(cli_factory, base: str) -> None:
    a = cli_factory("cli_mt A")
    session_a = a.expect(r"Got a new session id: 0x([0-9a-f]+)\n").group(1)

    # create: persistent, ephemeral, sequential, ephemeral sequential, create2, container, TTL
    a.run(f"create {base}", created(base, base))
    a.run(f"create +e {base}/eph", created(base, f"{base}/eph"))
    a.run(f"create +s {base}/seq-", created(base, f"{base}/seq-", f"{base}/seq-0000000001"))
    a.run(f"create +es {base}/es-", created(base, f"{base}/es-", f"{base}/es-0000000002"))
    m = a.run(f"create2 {base}/two", created(base, f"{base}/two") + r"\tctime = [^\n]*\n"
              r"\tczxid=([0-9a-f]+)\n\tmtime=[^\n]*\n\tmzxid=([0-9a-f]+)\n"
              r"\tversion=0\taversion=0\n\tephemeralOwner = 0\n")
    assert m.group(1) == m.group(2), m.group(0)
    a.run(f"create +c {base}/cont", created(base, f"{base}/cont"))
    a.run(f"create +t=5000 {base}/ttl", created(base, f"{base}/ttl"))
    a.run(f"create {base}", rf"\[{re.escape(base)}\]: rc = -110\n")  # ZNODEEXISTS

    # ephemeralOwner: the session for an ephemeral; clients see 0 for containers
    # and TTL nodes (Apache ZooKeeper hides their internal owner values).
    for child, owner in (("eph", session_a), ("cont", "0"), ("ttl", "0")):
        since = a.send(f"get {base}/{child}")
        a.expect(rc_line(f"{base}/{child}", 0) + r" value_len = 3\nnew\nStat:\n", since)
        got = a.expect(STAT_OWNER.pattern, since).group(1)
        assert got == owner, f"{child}: ephemeralOwner {got}, expected {owner}\n{a.output[since:]}"

    # get (with a watch), set fires it, get again
    since = a.send(f"get {base}")
    a.expect(rc_line(base, 0) + r" value_len = 3\nnew\nStat:\n", since)
    assert a.expect(STAT_VERSION.pattern, since).groups() == ("0", "0")
    since = a.send(f"set {base} hello")
    a.expect(rf"Watcher CHANGED_EVENT state = CONNECTED_STATE for path {re.escape(base)}\n", since)
    a.expect(rf"{re.escape(base)}: rc = 0 Stat:\n", since)
    assert a.expect(STAT_VERSION.pattern, since).groups() == ("1", "0")
    since = a.send(f"get {base}")
    a.expect(rc_line(base, 0) + r" value_len = 5\nhello\nStat:\n", since)
    assert a.expect(STAT_VERSION.pattern, since).groups() == ("1", "0")

    # ls / ls2 (ls leaves a child watch)
    expected = sorted(["cont", "eph", "es-0000000002", "seq-0000000001", "ttl", "two"])
    assert children_of(a, base, a.send(f"ls {base}")) == expected
    since = a.send(f"ls2 {base}")
    assert children_of(a, base, since) == expected
    a.expect(r"time = [^\n]*\n\tctime = ", since)
    assert a.expect(STAT_VERSION.pattern, since).groups() == ("1", "0")

    # sync
    a.run(f"sync {base}", created(base, base))

    # getConfig (standalone: empty data, aversion -1) and the /zookeeper subtree
    since = a.send("config")
    a.expect(r"/zookeeper/config: rc = 0\n value_len = 0\n\nStat:\n", since)
    assert a.expect(STAT_VERSION.pattern, since).groups() == ("0", "ffffffff")
    assert children_of(a, "/zookeeper", a.send("ls /zookeeper")) == ["config", "quota"]

    # exists with a watch: on a missing node (ZNONODE, watch set), then created
    a.run(f"exists {base}/later", rf"Error -101 for {re.escape(base)}/later\n")
    since = a.send(f"create {base}/later")
    a.expect(created(base, f"{base}/later"), since)
    a.expect(rf"Watcher CREATED_EVENT state = CONNECTED_STATE for path {re.escape(base)}/later\n", since)
    a.expect(rf"Watcher CHILD_EVENT state = CONNECTED_STATE for path {re.escape(base)}\n", since)
    # exists on an existing node (silent), then a change fires it
    since = a.send(f"exists {base}/later")
    since = a.send(f"set {base}/later x")
    a.expect(rf"Watcher CHANGED_EVENT state = CONNECTED_STATE for path {re.escape(base)}/later\n", since)
    a.expect(rf"{re.escape(base)}/later: rc = 0 Stat:\n", since)
    a.absent(r"Error -?\d+ for ", since)

    # errors: delete of a missing node, delete of a node with children
    a.run(f"delete {base}/nope", rc_line(f"{base}/nope", -101))
    a.run(f"delete {base}", rc_line(base, -111))

    # A second client watches A's ephemerals go when A quits (closeSession).
    b = cli_factory("cli_mt B")
    session_b = b.expect(r"Got a new session id: 0x([0-9a-f]+)\n").group(1)
    assert session_b != session_a
    since_b = b.send(f"exists {base}/eph")
    b.send(f"exists {base}/es-0000000002")
    b.run(f"ls {base}", rc_line(base, 0))  # a round trip: both exists watches are set
    b.absent(r"Error -?\d+ for ", since_b)
    since_b = b.mark()
    assert a.quit() == 0, a.output
    b.expect(rf"Watcher DELETED_EVENT state = CONNECTED_STATE for path {re.escape(base)}/eph\n", since_b)
    b.expect(rf"Watcher DELETED_EVENT state = CONNECTED_STATE for path {re.escape(base)}/es-0000000002\n",
             since_b)
    b.expect(rf"Watcher CHILD_EVENT state = CONNECTED_STATE for path {re.escape(base)}\n", since_b)
    assert children_of(b, base, b.send(f"ls {base}")) == sorted(
        ["cont", "later", "seq-0000000001", "ttl", "two"])

    # B cleans up; the base is gone afterwards.
    for child in ("cont", "later", "seq-0000000001", "ttl", "two"):
        b.run(f"delete {base}/{child}", rc_line(f"{base}/{child}", 0))
    b.run(f"delete {base}", rc_line(base, 0))
    b.run(f"ls {base}", rc_line(base, -101))
    assert b.quit() == 0, b.output
