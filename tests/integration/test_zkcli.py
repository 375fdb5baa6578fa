"""zkCli.sh (the Java client from Debian's zookeeper 3.8 package) against a real server.

One zkCli.sh process runs a whole script fed on stdin (a JVM start per command
would be slow).  A client-side-only marker command between the steps splits the
transcript into one section per step, and each section is compared with what
Apache ZooKeeper 3.8 prints for the same step (the expected texts below were
captured from it; ``ZKTWIST_TEST_TARGET=apache`` re-checks them, and
``test_transcript_matches_live_apache_zookeeper`` compares with a live Apache
server as well).  Times, zxids and session ids are normalised.

zkCli.sh 3.8 has no multi/transaction command, so the multi step is done by the
Java client itself: a tiny single-file program run with ``java File.java``
against /usr/share/java/zookeeper.jar.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from tests.conftest import IN_CI, require_apache_zookeeper
from tests.integration.conftest import TARGET, start_target, target_is_apache, wait_until_serving
from tests.support.processes import ZKCLI, ZOOKEEPER_JAR, ApacheZooKeeperProcess

pytestmark = pytest.mark.zkcli

ZOOKEEPER_JUTE_JAR = Path("/usr/share/java/zookeeper-jute.jar")
JVM_TIMEOUT = 90
EXTENDED_TYPES = {"zookeeper.extendedTypesEnabled": "true"}

#: A command that zkCli rejects without talking to the server; its message splits the transcript.
MARKER_COMMAND = "ls /zkcli-step-marker/"
MARKER_OUTPUT = "Path must not end with / character"

BOB_DIGEST = "bob:fyVmFCwVbTJYrznoSu1koqYEYF0="  # digest of bob:secret


def require_zkcli() -> None:
    """Skip when zkCli.sh or java is missing; under CI=true that is a failure."""
    if ZKCLI.exists() and ZOOKEEPER_JAR.exists() and shutil.which("java"):
        return
    reason = f"{ZKCLI} (Debian package 'zookeeper') or java is not installed"
    if IN_CI:
        pytest.fail(f"{reason}; CI must run the zkCli tests")
    pytest.skip(reason)


def java_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["TZ"] = "UTC"
    # Quick JVM start: these clients run for a second or two.
    env["CLIENT_JVMFLAGS"] = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto"
    return env


def run_zkcli(port: int, commands: List[str], separate_stderr: bool = False):
    """Run one zkCli.sh process over ``commands`` (stdin).

    Returns stdout and stderr merged, in order, as a user sees them; with
    ``separate_stderr`` returns ``(stdout, stderr)``.
    """
    script = "\n".join(commands + ["quit"]) + "\n"
    proc = subprocess.run(
        [str(ZKCLI), "-server", f"127.0.0.1:{port}"], input=script.encode(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT, timeout=JVM_TIMEOUT,
        env=java_env(), cwd="/tmp",
    )
    out = proc.stdout.decode("utf-8", "replace")
    if separate_stderr:
        return out, proc.stderr.decode("utf-8", "replace")
    return out


#: What a step that prints nothing at all yields (a blank line is "" instead).
NO_OUTPUT = "<no output>"


def split_transcript(output: str, steps: int) -> List[str]:
    """Split zkCli output into one text per step (lines joined; NO_OUTPUT when none)."""
    sections: List[List[str]] = [[]]
    for line in output.splitlines():
        if line.startswith("SLF4J:"):
            continue
        if line == MARKER_OUTPUT:
            sections.append([])
        else:
            sections[-1].append(line)
    # sections[0] is the banner, then one per step, then what `quit` printed
    assert len(sections) >= steps + 2, (
        f"zkCli transcript has {len(sections) - 1} of {steps + 1} step markers; output:\n{output[-3000:]}")
    return ["\n".join(lines) if lines else NO_OUTPUT for lines in sections[1:steps + 1]]


_STAT_TIME = re.compile(r"^(ctime|mtime) = .*$", re.M)
_STAT_ZXID = re.compile(r"^(cZxid|mZxid|pZxid) = (0x[0-9a-f]+)$", re.M)
_STAT_OWNER = re.compile(r"^ephemeralOwner = 0x(?!0$)[0-9a-f]+$", re.M)


def normalise(section: str, sort_list: bool = False) -> str:
    """Replace times, zxids (numbered by first appearance) and session ids by placeholders."""
    section = _STAT_TIME.sub(lambda m: f"{m.group(1)} = <time>", section)
    seen: Dict[str, str] = {}

    def zxid(m: re.Match) -> str:
        token = seen.setdefault(m.group(2), f"<zxid{len(seen) + 1}>")
        return f"{m.group(1)} = {token}"

    section = _STAT_ZXID.sub(zxid, section)
    section = _STAT_OWNER.sub("ephemeralOwner = <session>", section)
    if sort_list:
        section = re.sub(r"^\[(.*)\]$", lambda m: "[" + ", ".join(sorted(m.group(1).split(", "))) + "]",
                         section, flags=re.M)
    return section


def stat(zxids: str = "111", cversion: int = 0, version: int = 0, aversion: int = 0,
         owner: str = "0x0", length: int = 0, children: int = 0) -> str:
    """An expected `get -s`/`stat` block; ``zxids`` gives the placeholder number of c/m/pZxid."""
    c, m, p = (f"<zxid{d}>" for d in zxids)
    return (f"cZxid = {c}\nctime = <time>\nmZxid = {m}\nmtime = <time>\npZxid = {p}\n"
            f"cversion = {cversion}\ndataVersion = {version}\naclVersion = {aversion}\n"
            f"ephemeralOwner = {owner}\ndataLength = {length}\nnumChildren = {children}")


class Step:
    def __init__(self, group: str, command: str, expected: str, sort_list: bool = False) -> None:
        self.group = group
        self.command = command
        self.expected = expected
        self.sort_list = sort_list


S = Step
NOAUTH = "Insufficient permission : {}"
# The script: every step's expected output, as Apache ZooKeeper 3.8.0 prints it.
STEPS: List[Step] = [
    # create, incl. -e, -s, -c and -t
    S("create", "create /zc", "Created /zc"),
    S("create", "create /zc/a hello", "Created /zc/a"),
    S("create", "create /zc/a again", "Node already exists: /zc/a"),
    S("create", 'create /zc/empty ""', "Created /zc/empty"),
    S("create", "create -e /zc/eph edata", "Created /zc/eph"),
    S("create", "create -s /zc/seq- s1", "Created /zc/seq-0000000003"),
    S("create", "create -s /zc/seq- s2", "Created /zc/seq-0000000004"),
    S("create", "create -e -s /zc/es- x", "Created /zc/es-0000000005"),
    S("create", "create -c /zc/cont", "Created /zc/cont"),
    S("create", "create /zc/noparent/x", "Node does not exist: /zc/noparent/x"),
    S("create", "create /zc/eph/child", "Ephemerals cannot have children: /zc/eph/child"),
    S("ttl", "create -t 100000 /zc/ttl tdata", "Created /zc/ttl"),
    S("ttl", "create -s -t 5000 /zc/sttl- x", "Created /zc/sttl-0000000008"),
    # get / get -s
    S("get", "get /zc/a", "hello"),
    S("get", "get /zc", "null"),
    S("get", "get /zc/empty", ""),
    S("get", "get -s /zc/a", "hello\n" + stat("111", length=5)),
    S("get", "get -s /zc/eph", "edata\n" + stat("111", owner="<session>", length=5)),
    S("get", "get -s /zc/cont", "null\n" + stat("111")),
    S("get", "get /zc/missing", "Node does not exist: /zc/missing"),
    S("ttl", "get -s /zc/ttl", "tdata\n" + stat("111", length=5)),
    # set
    S("set", "set /zc/a world", NO_OUTPUT),
    S("set", "set -v 5 /zc/a bad", "version No is not valid : /zc/a"),
    S("set", "set -s -v 1 /zc/a world2", stat("121", version=2, length=6)),
    S("set", "set /zc/missing x", "Node does not exist: /zc/missing"),
    S("set", "get /zc/a", "world2"),
    # stat
    S("stat", "stat /zc", stat("112", cversion=9, children=9)),
    S("stat", "stat /zc/missing", "Node does not exist: /zc/missing"),
    # ls
    S("ls", "ls /zc", "[a, cont, empty, eph, es-0000000005, seq-0000000003, seq-0000000004, "
                      "sttl-0000000008, ttl]"),
    S("ls", "ls -s /zc", "[a, cont, empty, eph, es-0000000005, seq-0000000003, seq-0000000004, "
                         "sttl-0000000008, ttl]\n" + stat("112", cversion=9, children=9)),
    S("ls", "ls -R /zc", "/zc\n/zc/a\n/zc/cont\n/zc/empty\n/zc/eph\n/zc/es-0000000005\n/zc/seq-0000000003\n"
                         "/zc/seq-0000000004\n/zc/sttl-0000000008\n/zc/ttl"),
    S("ls", "ls /zc/missing", "Node does not exist: /zc/missing"),
    S("ls", "ls /zookeeper", "[config, quota]"),
    S("ls", "ls -R /zookeeper", "/zookeeper\n/zookeeper/config\n/zookeeper/quota"),
    # getAcl / setAcl / addauth
    S("acl", "getAcl /zc/a", "'world,'anyone\n: cdrwa"),
    S("acl", "getAcl -s /zc/a", "'world,'anyone\n: cdrwa\n" + stat("121", version=2, length=6)),
    S("acl", f"setAcl /zc/a digest:{BOB_DIGEST}:cdrwa", NO_OUTPUT),
    S("acl", "get /zc/a", NOAUTH.format("/zc/a")),
    S("acl", "getAcl /zc/a", NOAUTH.format("/zc/a")),
    S("acl", "set /zc/a nope", NOAUTH.format("/zc/a")),
    S("acl", "create /zc/authacl data auth::cdrwa",
      "KeeperErrorCode = InvalidACL for /zc/authacl\nAcl is not valid : /zc/authacl"),
    S("addauth", "addauth digest bob:secret", NO_OUTPUT),
    S("addauth", "get /zc/a", "world2"),
    S("addauth", "getAcl /zc/a", f"'digest,'{BOB_DIGEST}\n: cdrwa"),
    S("addauth", "create /zc/authacl data auth::cdrwa", "Created /zc/authacl"),
    S("addauth", "getAcl /zc/authacl", f"'digest,'{BOB_DIGEST}\n: cdrwa"),
    S("acl", "setAcl -s /zc/a world:anyone:r", stat("121", version=2, aversion=2, length=6)),
    S("acl", "getAcl /zc/a", "'world,'anyone\n: r"),
    S("acl", "set /zc/a nope", NOAUTH.format("/zc/a")),
    S("acl", "setAcl /zc/a world:anyone:cdrwa", NOAUTH.format("/zc/a")),
    S("acl", "create /zc/ipacl data ip:127.0.0.1:cdrwa", "Created /zc/ipacl"),
    S("acl", "getAcl /zc/ipacl", "'ip,'127.0.0.1\n: cdrwa"),
    S("acl", "get /zc/ipacl", "data"),
    S("acl", "setAcl /zc/ipacl ip:10.0.0.1:cdrwa", NO_OUTPUT),
    S("acl", "get /zc/ipacl", NOAUTH.format("/zc/ipacl")),
    S("acl", "create /zc/badacl x world:someone:cdrwa",
      "KeeperErrorCode = InvalidACL for /zc/badacl\nAcl is not valid : /zc/badacl"),
    S("addauth", "whoami", "Auth scheme: User\ndigest: bob\nip: 127.0.0.1"),
    # other requests zkCli makes
    S("misc", "getAllChildrenNumber /zc", "11"),
    S("misc", "getAllChildrenNumber /", "15"),
    S("misc", "getEphemerals /zc", "[/zc/eph, /zc/es-0000000005]", sort_list=True),
    S("misc", "getEphemerals /nothing", "[]"),
    S("misc", "sync /zc", "Sync is OK"),
    S("misc", "config", ""),
    S("misc", "delete /zookeeper", "Arguments are not valid : /zookeeper"),
    S("misc", "delete /zookeeper/quota", "Arguments are not valid : /zookeeper/quota"),
    # delete
    S("delete", "delete /zc", "Node not empty: /zc"),
    S("delete", "delete /zc/nonexistent", "Node does not exist: /zc/nonexistent"),
    S("delete", "delete -v 3 /zc/seq-0000000003", "version No is not valid : /zc/seq-0000000003"),
    S("delete", "delete -v 0 /zc/seq-0000000003", NO_OUTPUT),
    S("delete", "delete /zc/es-0000000005", NO_OUTPUT),
    S("delete", "ls /zc", "[a, authacl, cont, empty, eph, ipacl, seq-0000000004, sttl-0000000008, ttl]"),
    # watches set by zkCli (the events are checked by test_zkcli_watch_events)
    S("watch", "get -w /zc/empty", ""),
    S("watch", "set /zc/empty changed", NO_OUTPUT),
    S("watch", "ls -w /zc/cont", "[]"),
    S("watch", "create /zc/cont/new", "Created /zc/cont/new"),
    S("watch", "stat -w /zc/nothere", "Node does not exist: /zc/nothere"),
    S("watch", "create /zc/nothere", "Created /zc/nothere"),
    S("watch", "ls -w /zc/seq-0000000004", "[]"),
    S("watch", "removewatches /zc/seq-0000000004", NO_OUTPUT),
    S("watch", "removewatches /zc/seq-0000000004", "KeeperErrorCode = No such watcher for /zc/seq-0000000004"),
    # soft quotas: limits written by the client, usage kept up to date by the server
    S("quota", "setquota -n 100 /zc/cont", NO_OUTPUT),
    S("quota", "setquota -b 1000 /zc/cont", NO_OUTPUT),
    S("quota", "create /zc/cont/q 12345", "Created /zc/cont/q"),
    S("quota", "set /zc/cont 12", NO_OUTPUT),
    S("quota", "listquota /zc/cont",
      "absolute path is /zookeeper/quota/zc/cont/zookeeper_limits\n"
      "Output quota for /zc/cont count=100,bytes=1000=;byteHardLimit=-1;countHardLimit=-1\n"
      "Output stat for /zc/cont count=3,bytes=7"),
    S("quota", "delete /zc/cont/q", NO_OUTPUT),
    S("quota", "listquota /zc/cont",
      "absolute path is /zookeeper/quota/zc/cont/zookeeper_limits\n"
      "Output quota for /zc/cont count=100,bytes=1000=;byteHardLimit=-1;countHardLimit=-1\n"
      "Output stat for /zc/cont count=2,bytes=2"),
    S("quota", "delquota /zc/cont", NO_OUTPUT),
    S("quota", "listquota /zc/cont",
      "absolute path is /zookeeper/quota/zc/cont/zookeeper_limits\nquota for /zc/cont does not exist."),
    # deleteall
    S("deleteall", "deleteall /zc/missing", "Node does not exist: /zc/missing"),
    # deleteall lists the whole subtree first: an unreadable node stops it before any delete
    S("deleteall", "deleteall /zc", NOAUTH.format("/zc/ipacl")),
    S("deleteall", "ls /zc", "[a, authacl, cont, empty, eph, ipacl, nothere, seq-0000000004, sttl-0000000008, ttl]"),
    S("deleteall", "delete /zc/ipacl", NO_OUTPUT),
    S("deleteall", "deleteall /zc", NO_OUTPUT),
    S("deleteall", "ls /zc", "Node does not exist: /zc"),
    S("deleteall", "stat /zc", "Node does not exist: /zc"),
]

class Transcript:
    def __init__(self, raw: str, sections: List[str], started: float) -> None:
        self.raw = raw
        self.sections = sections
        self.started = started

    def normalised(self) -> List[str]:
        return [normalise(sec, step.sort_list) for sec, step in zip(self.sections, STEPS)]


def run_script(port: int) -> Transcript:
    # Watch notifications print from another thread at any time: keep them out of this transcript.
    commands = ["printwatches off", MARKER_COMMAND]
    for step in STEPS:
        commands += [step.command, MARKER_COMMAND]
    started = time.time()
    raw = run_zkcli(port, commands)
    return Transcript(raw, split_transcript(raw, len(STEPS)), started)


def check_group(transcript: Transcript, group: str) -> None:
    mismatches = []
    for index, (step, actual) in enumerate(zip(STEPS, transcript.normalised())):
        if step.group != group:
            continue
        if actual != step.expected:
            mismatches.append(f"step {index} `{step.command}`:\n  expected: {step.expected!r}\n"
                              f"  actual:   {actual!r}")
    assert not mismatches, "zkCli output differs from Apache ZooKeeper's:\n" + "\n".join(mismatches)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def zkcli_server(tmp_path_factory):
    require_zkcli()
    server = start_target(tmp_path_factory.mktemp(f"{TARGET}-zkcli"), extra_config=EXTENDED_TYPES)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def transcript(zkcli_server) -> Transcript:
    return run_script(zkcli_server.port)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("group", ["create", "get", "set", "stat", "ls", "acl", "addauth", "misc",
                                   "delete", "watch", "deleteall"])
def test_zkcli_commands(transcript, group):
    check_group(transcript, group)


def test_zkcli_create_ttl(transcript):
    """create -t (the server runs with extendedTypesEnabled=true)."""
    check_group(transcript, "ttl")


def test_zkcli_create_ttl_refused_without_extended_types(tmp_path):
    """Without extendedTypesEnabled a TTL create is UNIMPLEMENTED."""
    require_zkcli()
    server = start_target(tmp_path / TARGET)
    try:
        out = run_zkcli(server.port, ["printwatches off", "create -t 1000 /ttl x", "create -s -t 1000 /sttl x",
                                      "create /x", "ls /"])
    finally:
        server.cleanup()
    lines = [line for line in out.splitlines() if not line.startswith(("SLF4J:", "WATCHER::", "WatchedEvent"))]
    start = lines.index("JLine support is disabled")
    assert [line for line in lines[start + 1:] if line] == [
        "KeeperErrorCode = Unimplemented for /ttl",
        "KeeperErrorCode = Unimplemented for /sttl",
        "Created /x",
        "[x, zookeeper]",
    ]


def test_zkcli_quota_commands(transcript):
    check_group(transcript, "quota")


WATCH_SCRIPT = [
    "create /zcw",
    'create /zcw/empty ""',
    "get -w /zcw/empty",
    "set /zcw/empty changed",
    "ls -w /zcw",
    "create /zcw/new",
    "stat -w /zcw/nothere",
    "create /zcw/nothere",
    "get -w /zcw/new",
    "ls -w /zcw/new",
    "delete /zcw/new",
    "ls -w /zcw/nothere",
    "removewatches /zcw/nothere",
    "removewatches /zcw/nothere",
    "get -w /zcw/missing",
    "create /zcw/missing",
    "deleteall /zcw",
]

#: The watch events zkCli prints (on stdout, from its event thread) for WATCH_SCRIPT.
EXPECTED_EVENTS = [
    "WatchedEvent state:SyncConnected type:None path:null",
    "WatchedEvent state:SyncConnected type:NodeDataChanged path:/zcw/empty",
    "WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/zcw",
    "WatchedEvent state:SyncConnected type:NodeCreated path:/zcw/nothere",
    # get -w and ls -w on the same node, then one delete: zkCli's single default
    # watcher is told once
    "WatchedEvent state:SyncConnected type:NodeDeleted path:/zcw/new",
    "WatchedEvent state:SyncConnected type:ChildWatchRemoved path:/zcw/nothere",
    "WatchedEvent state:Closed type:None path:null",
]


def test_zkcli_watch_events(zkcli_server, transcript):
    out, err = run_zkcli(zkcli_server.port, WATCH_SCRIPT, separate_stderr=True)
    events = [line for line in out.splitlines() if line.startswith("WatchedEvent ")]
    assert sorted(events) == sorted(EXPECTED_EVENTS), out
    assert "KeeperErrorCode = No such watcher for /zcw/nothere" in err
    assert "Node does not exist: /zcw/missing" in err  # get -w on a missing node arms no watch


def test_zkcli_times_are_wall_clock_ms(transcript):
    """ctime/mtime print as dates (in UTC here): they must be the server's wall clock."""
    times = re.findall(r"^[cm]time = (.*)$", transcript.raw, re.M)
    assert times
    for text in times:
        parsed = time.mktime(time.strptime(text, "%a %b %d %H:%M:%S UTC %Y")) - time.timezone
        assert abs(parsed - transcript.started) < 120, text


def test_zkcli_session_ephemerals_gone_after_quit(zkcli_server, transcript):
    out = run_zkcli(zkcli_server.port, ["create -e /zc-quit-eph x", "quit"])
    assert "Created /zc-quit-eph" in out
    out = run_zkcli(zkcli_server.port, ["stat /zc-quit-eph", "getAllChildrenNumber /zookeeper"])
    assert "Node does not exist: /zc-quit-eph" in out
    assert "\n2\n" in out


@pytest.mark.differential
def test_transcript_matches_live_apache_zookeeper(transcript, tmp_path):
    """The same script on a live Apache ZooKeeper 3.8 prints the same (normalised) text."""
    if target_is_apache():
        pytest.skip("the target already is Apache ZooKeeper")
    require_apache_zookeeper()
    with ApacheZooKeeperProcess(workdir=tmp_path / "apache", extra_config=EXTENDED_TYPES) as apache:
        wait_until_serving(apache.port)
        reference = run_script(apache.port)
    diffs = [f"step {i} `{step.command}`:\n  apache:  {want!r}\n  zktwist: {got!r}"
             for i, (step, want, got) in enumerate(zip(STEPS, reference.normalised(), transcript.normalised()))
             if want != got]
    assert not diffs, "\n".join(diffs)


# --------------------------------------------------------------------------- multi via the Java client

MULTI_JAVA = r"""
import java.util.*;
import java.util.concurrent.*;
import org.apache.zookeeper.*;
import org.apache.zookeeper.data.*;

public class ZkMulti {
    static String describe(OpResult r) {
        if (r instanceof OpResult.CreateResult) {
            OpResult.CreateResult c = (OpResult.CreateResult) r;
            return "create " + c.getPath() + (c.getStat() == null ? "" : " stat.version=" + c.getStat().getVersion());
        } else if (r instanceof OpResult.SetDataResult) {
            return "setData version=" + ((OpResult.SetDataResult) r).getStat().getVersion();
        } else if (r instanceof OpResult.DeleteResult) {
            return "delete";
        } else if (r instanceof OpResult.CheckResult) {
            return "check";
        } else if (r instanceof OpResult.GetDataResult) {
            OpResult.GetDataResult g = (OpResult.GetDataResult) r;
            return "getData " + (g.getData() == null ? "null" : new String(g.getData()))
                + " version=" + g.getStat().getVersion();
        } else if (r instanceof OpResult.GetChildrenResult) {
            List<String> c = new ArrayList<>(((OpResult.GetChildrenResult) r).getChildren());
            Collections.sort(c);
            return "getChildren " + c;
        } else if (r instanceof OpResult.ErrorResult) {
            return "error " + KeeperException.Code.get(((OpResult.ErrorResult) r).getErr());
        }
        return "unknown " + r.getType();
    }

    static void run(ZooKeeper zk, String label, List<Op> ops) throws Exception {
        try {
            List<OpResult> results = zk.multi(ops);
            System.out.println(label + ": ok");
            for (OpResult r : results) System.out.println("  " + describe(r));
        } catch (KeeperException e) {
            System.out.println(label + ": " + e.code());
            for (OpResult r : e.getResults()) System.out.println("  " + describe(r));
        }
    }

    public static void main(String[] args) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(args[0], 10000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) connected.countDown();
        });
        if (!connected.await(20, TimeUnit.SECONDS)) throw new RuntimeException("no connection");
        String b = args[1];
        List<ACL> open = ZooDefs.Ids.OPEN_ACL_UNSAFE;
        zk.create(b, new byte[0], open, CreateMode.PERSISTENT);
        zk.create(b + "/pre", "v0".getBytes(), open, CreateMode.PERSISTENT);
        zk.create(b + "/doomed", null, open, CreateMode.PERSISTENT);

        run(zk, "multi-commit", Arrays.asList(
            Op.create(b + "/m1", "one".getBytes(), open, CreateMode.PERSISTENT),
            Op.create(b + "/m1/child", null, open, CreateMode.PERSISTENT),
            Op.setData(b + "/pre", "v1".getBytes(), 0),
            Op.check(b + "/pre", 1),
            Op.delete(b + "/doomed", -1),
            Op.create(b + "/s-", null, open, CreateMode.PERSISTENT_SEQUENTIAL),
            Op.create(b + "/s-", null, open, CreateMode.EPHEMERAL_SEQUENTIAL)));

        run(zk, "multi-rollback", Arrays.asList(
            Op.create(b + "/never", null, open, CreateMode.PERSISTENT),
            Op.setData(b + "/pre", "v2".getBytes(), -1),
            Op.check(b + "/pre", 0),
            Op.delete(b + "/m1", -1)));

        run(zk, "multi-notempty", Arrays.asList(Op.delete(b + "/m1", -1)));

        Transaction t = zk.transaction();
        t.create(b + "/t1", "tx".getBytes(), open, CreateMode.PERSISTENT);
        t.setData(b + "/t1", "tx2".getBytes(), 0);
        t.check(b + "/t1", 1);
        System.out.println("transaction: ok");
        for (OpResult r : t.commit()) System.out.println("  " + describe(r));

        run(zk, "multi-read", Arrays.asList(
            Op.getData(b + "/pre"),
            Op.getChildren(b),
            Op.getData(b + "/missing"),
            Op.getData(b + "/m1")));

        Stat st = zk.exists(b + "/pre", false);
        System.out.println("pre version=" + st.getVersion() + " data=" + new String(zk.getData(b + "/pre", false, null)));
        List<String> kids = zk.getChildren(b, false);
        Collections.sort(kids);
        System.out.println("children " + kids);
        System.out.println("m1 child czxid == m1 czxid: "
            + (zk.exists(b + "/m1/child", false).getCzxid() == zk.exists(b + "/m1", false).getCzxid()));
        zk.close();
    }
}
"""

MULTI_EXPECTED = """\
multi-commit: ok
  create /zc-multi/m1
  create /zc-multi/m1/child
  setData version=1
  check
  delete
  create /zc-multi/s-0000000003
  create /zc-multi/s-0000000004
multi-rollback: BADVERSION
  error OK
  error OK
  error BADVERSION
  error RUNTIMEINCONSISTENCY
multi-notempty: NOTEMPTY
  error NOTEMPTY
transaction: ok
  create /zc-multi/t1
  setData version=1
  check
multi-read: ok
  getData v1 version=1
  getChildren [m1, pre, s-0000000003, s-0000000004, t1]
  error NONODE
  getData one version=0
pre version=1 data=v1
children [m1, pre, s-0000000003, s-0000000004, t1]
m1 child czxid == m1 czxid: true
"""


def test_multi_through_java_client(zkcli_server, tmp_path):
    """zkCli.sh 3.8 has no multi command: the Java client's multi()/transaction() do it."""
    require_zkcli()
    source = tmp_path / "ZkMulti.java"
    source.write_text(MULTI_JAVA)
    classpath = f"{ZOOKEEPER_JAR}:{ZOOKEEPER_JUTE_JAR}"
    proc = subprocess.run(
        ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", classpath, str(source),
         f"127.0.0.1:{zkcli_server.port}", "/zc-multi"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=JVM_TIMEOUT, env=java_env(), cwd=str(tmp_path),
    )
    out = proc.stdout.decode("utf-8", "replace")
    err = "\n".join(line for line in proc.stderr.decode("utf-8", "replace").splitlines()
                    if not line.startswith("SLF4J:"))
    assert proc.returncode == 0, f"java exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert out == MULTI_EXPECTED
    # The session closed: its ephemeral sequential node went with it.
    check = run_zkcli(zkcli_server.port, ["ls /zc-multi", "get /zc-multi/t1", "deleteall /zc-multi"])
    assert "[m1, pre, s-0000000003, t1]" in check
    assert "\ntx2\n" in check
