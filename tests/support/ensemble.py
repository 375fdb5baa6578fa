"""Real-process ensembles on loopback: Apache ZooKeeper 3.8 and zktwist members.

:class:`Ensemble` starts N members (each its own work dir, ``dataDir/myid``,
``zoo.cfg`` with ``server.N`` lines, 4lw whitelist ``*``, free 127.0.0.1
ports), optionally with every peer-to-peer link -- quorum and election, one
per ordered pair ``i -> j`` -- routed through a :class:`FaultProxy`, so a test
can cut, blackhole or delay any of them, one direction at a time.  Member i's
config names member j by the proxy port of link ``i -> j``; member j listens
on its real ports.

Helpers: :meth:`Ensemble.wait_for_leader` (``srvr``'s ``Mode:`` lines),
:meth:`leader` / :meth:`followers`, :meth:`kill` (SIGKILL), :meth:`pause`
(SIGSTOP) / :meth:`resume` (SIGCONT), :meth:`restart`, :meth:`isolate` /
:meth:`heal`, and :meth:`stop`, which always ends every process (also from an
``atexit`` hook, so an interrupted run leaves no java or twistd behind).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from tests.support.faultproxy import FaultProxy, Link
from tests.support.processes import (
    PROJECT_ROOT,
    ZOOKEEPER_CONF_DIR,
    ZOOKEEPER_JAR,
    apache_zookeeper_available,
    four_letter,
    free_port,
    twistd_executable,
    wait_for_port,
)

KINDS = ("apache", "zktwist")
_MODE = re.compile(r"^Mode:\s*(\S+)", re.M)
_LIVE: "List[Ensemble]" = []


def _free_ports(n: int) -> List[int]:
    ports: List[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


class Member:
    """One ensemble member: a child process with its own work dir and ports."""

    def __init__(self, ensemble: "Ensemble", sid: int) -> None:
        self.ensemble = ensemble
        self.sid = sid
        self.workdir = ensemble.workdir / f"{ensemble.kind}-{sid}"
        self.client_port, self.quorum_port, self.election_port = _free_ports(3)
        self.proc: Optional[subprocess.Popen] = None
        self.paused = False
        self.log_path = self.workdir / "server.log"
        self.starts = 0

    def __repr__(self) -> str:
        state = "paused" if self.paused else ("running" if self.running else "down")
        return f"<{self.ensemble.kind} member {self.sid} :{self.client_port} {state}>"

    @property
    def port(self) -> int:
        return self.client_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def config_lines(self) -> List[str]:
        e = self.ensemble
        lines = [
            f"tickTime={e.tick_time}",
            f"initLimit={e.init_limit}",
            f"syncLimit={e.sync_limit}",
            f"dataDir={self.data_dir}",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",
        ]
        for other in e.members.values():
            q, el = e.peer_ports(self.sid, other.sid)
            lines.append(f"server.{other.sid}=127.0.0.1:{q}:{el}:participant;127.0.0.1:{other.client_port}")
        lines += [f"{k}={v}" for k, v in e.extra_config.items()]
        return lines

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "myid").write_text(f"{self.sid}\n")
        path = self.workdir / "zoo.cfg"
        path.write_text("\n".join(self.config_lines()) + "\n")
        return path

    def command(self, config: Path) -> List[str]:
        raise NotImplementedError

    def env(self) -> Dict[str, str]:
        return dict(os.environ)

    def launch(self) -> None:
        """Start the process (no waiting)."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        config = self.write_config()
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {self.starts + 1} at {time.time():.3f}\n".encode())
            self.proc = subprocess.Popen(
                self.command(config), cwd=str(self.workdir), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=self.env())
        self.starts += 1
        self.paused = False

    def wait_listening(self, timeout: float = 60.0) -> None:
        try:
            wait_for_port(self.client_port, timeout, self.proc)
        except Exception as e:
            raise RuntimeError(f"{self!r} is not listening: {e}; log:\n{self.log_text()}") from e

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> float:
        """SIGKILL the member and reap it; the monotonic time the signal was sent."""
        t = time.monotonic()
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self.paused = False
        return t

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self, grace: float = 5.0) -> None:
        """End the process whatever its state: SIGCONT, SIGTERM, then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        self.paused = False

    def four_letter(self, word: str, timeout: float = 2.0) -> str:
        return four_letter(self.client_port, word, timeout)

    def mode(self, timeout: float = 1.0) -> Optional[str]:
        """``leader``/``follower``/``observer``/``standalone`` from ``srvr``; None when not serving."""
        if not self.running or self.paused:
            return None
        try:
            text = self.four_letter("srvr", timeout)
        except OSError:
            return None
        m = _MODE.search(text)
        return m.group(1) if m else None

    def log_text(self, tail: int = 5000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


class ApacheMember(Member):
    """Apache ZooKeeper 3.8's ``QuorumPeerMain`` from Debian's package."""

    def config_lines(self) -> List[str]:
        return super().config_lines() + ["admin.enableServer=false"]

    def command(self, config: Path) -> List[str]:
        return [
            "java", f"-Xmx{self.ensemble.java_heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dzookeeper.log.dir={self.workdir}", "-Dzookeeper.root.logger=INFO,CONSOLE",
            "-cp", f"{ZOOKEEPER_CONF_DIR}:{ZOOKEEPER_JAR}",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(config),
        ]


class ZKTwistMember(Member):
    """``twistd -n zktwist`` with the ensemble keys and quorum TLS from ``zktwist tls init``."""

    def config_lines(self) -> List[str]:
        tls = self.ensemble.tls_dir
        return super().config_lines() + [
            "sslQuorum=true",
            f"ssl.quorum.keyFile={tls}/server{self.sid}.key",
            f"ssl.quorum.certFile={tls}/server{self.sid}.pem",
            f"ssl.quorum.caFile={tls}/ca.pem",
        ]

    def command(self, config: Path) -> List[str]:
        return [twistd_executable(), "-n", "--pidfile=", "--logfile=-", "zktwist", "--config", str(config)]

    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        # Run from the checkout so the code under test is what runs.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        return env


class Ensemble:
    """N members of one kind on loopback; use as a context manager or call :meth:`stop`."""

    def __init__(self, kind: str = "apache", size: int = 3, workdir: Optional[Path] = None,
                 proxy: bool = False, tick_time: int = 500, init_limit: int = 10,
                 sync_limit: int = 4, extra_config: Optional[Dict[str, str]] = None,
                 java_heap: str = "256m") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.kind = kind
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"ensemble-{kind}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tick_time, self.init_limit, self.sync_limit = tick_time, init_limit, sync_limit
        self.extra_config = dict(extra_config or {})
        self.java_heap = java_heap
        self.tls_dir = self.workdir / "tls"
        cls = ApacheMember if kind == "apache" else ZKTwistMember
        self.members: Dict[int, Member] = {}
        for sid in range(1, size + 1):
            self.members[sid] = cls(self, sid)
        self.proxy: Optional[FaultProxy] = None
        self.links: Dict[Tuple[int, int, str], Link] = {}
        if proxy:
            self.proxy = FaultProxy()
            for i in self.members:
                for j, mj in self.members.items():
                    if i == j:
                        continue
                    self.links[(i, j, "quorum")] = self.proxy.add_link(f"{i}->{j} quorum", mj.quorum_port)
                    self.links[(i, j, "election")] = self.proxy.add_link(f"{i}->{j} election", mj.election_port)

    # -- addresses ---------------------------------------------------------

    def peer_ports(self, me: int, other: int) -> Tuple[int, int]:
        """(quorum, election) port member ``me``'s config gives for member ``other``."""
        m = self.members[other]
        if me == other or self.proxy is None:
            return m.quorum_port, m.election_port
        return self.links[(me, other, "quorum")].port, self.links[(me, other, "election")].port

    @property
    def hosts(self) -> str:
        """A client connect string naming every member."""
        return ",".join(m.address for m in self.members.values())

    def hosts_of(self, sids: Iterable[int]) -> str:
        return ",".join(self.members[s].address for s in sids)

    def __getitem__(self, sid: int) -> Member:
        return self.members[sid]

    # -- life cycle --------------------------------------------------------

    def __enter__(self) -> "Ensemble":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> "Ensemble":
        """Start every member, then wait for one leader and all members serving."""
        if self.kind == "apache" and not apache_zookeeper_available():
            raise RuntimeError("Apache ZooKeeper 3.8 (Debian package 'zookeeper') or java is missing")
        if self.kind == "zktwist":
            self.init_tls()
        _LIVE.append(self)
        try:
            for m in self.members.values():
                m.launch()
            for m in self.members.values():
                m.wait_listening(timeout)
            self.wait_for_leader(timeout, all_serving=True)
        except BaseException:
            logs = "\n".join(f"--- member {m.sid}:\n{m.log_text(3000)}" for m in self.members.values())
            self.stop()
            raise RuntimeError(f"the {self.kind} ensemble did not come up; logs:\n{logs}")
        return self

    def init_tls(self) -> None:
        """CA and per-server certificates through ``zktwist tls init``."""
        if (self.tls_dir / "ca.pem").exists():
            return
        ids = ",".join(str(s) for s in self.members)
        subprocess.run([sys.executable, "-m", "zktwist.cli.main", "tls", "init", "--servers", ids,
                        "--out", str(self.tls_dir)], check=True, cwd=str(PROJECT_ROOT),
                       capture_output=True, env=ZKTwistMember.env(self.members[1]))  # type: ignore[arg-type]

    def stop(self) -> None:
        """End every member and the proxy; idempotent."""
        for m in self.members.values():
            try:
                m.stop()
            except Exception:
                m.signal(signal.SIGKILL)
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None
        if self in _LIVE:
            _LIVE.remove(self)

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- roles -------------------------------------------------------------

    def modes(self) -> Dict[int, Optional[str]]:
        return {sid: m.mode() for sid, m in self.members.items()}

    def wait_for_leader(self, timeout: float = 30.0, all_serving: bool = False,
                        exclude: Iterable[int] = ()) -> int:
        """Wait until exactly one member says leader (and, with ``all_serving``, every
        running, unpaused member not in ``exclude`` says leader or follower); its id."""
        excluded = set(exclude)
        deadline = time.monotonic() + timeout
        modes: Dict[int, Optional[str]] = {}
        while True:
            modes = {sid: m.mode() for sid, m in self.members.items() if sid not in excluded}
            leaders = [sid for sid, mode in modes.items() if mode == "leader"]
            ok = len(leaders) == 1
            if ok and all_serving:
                ok = all(modes[sid] in ("leader", "follower", "observer")
                         for sid, m in self.members.items()
                         if sid not in excluded and m.running and not m.paused)
            if ok:
                return leaders[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no single leader after {timeout}s: modes {modes}")
            time.sleep(0.05)

    def leader(self) -> Optional[int]:
        leaders = [sid for sid, mode in self.modes().items() if mode == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def followers(self) -> List[int]:
        return [sid for sid, mode in self.modes().items() if mode == "follower"]

    def serving(self) -> List[int]:
        return [sid for sid, mode in self.modes().items() if mode in ("leader", "follower", "observer")]

    # -- faults ------------------------------------------------------------

    def kill(self, sid: int) -> float:
        """SIGKILL member ``sid``; the monotonic time of the kill."""
        return self.members[sid].kill()

    def pause(self, sid: int) -> None:
        self.members[sid].pause()

    def resume(self, sid: int) -> None:
        self.members[sid].resume()

    def restart(self, sid: int, wait_serving: bool = True, timeout: float = 60.0) -> None:
        """Start a stopped or killed member again with the same ports and data dir."""
        m = self.members[sid]
        if m.running:
            m.stop()
        m.launch()
        m.wait_listening(timeout)
        if wait_serving:
            deadline = time.monotonic() + timeout
            while m.mode() not in ("leader", "follower", "observer"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"member {sid} did not rejoin; log:\n{m.log_text()}")
                time.sleep(0.05)

    def link(self, src: int, dst: int, kind: str = "quorum") -> Link:
        """The proxy link member ``src`` uses to reach member ``dst`` (``quorum``/``election``)."""
        if self.proxy is None:
            raise RuntimeError("this ensemble was started without proxy=True")
        return self.links[(src, dst, kind)]

    def links_of(self, sid: int) -> List[Link]:
        """Every link to or from member ``sid``."""
        return [link for (i, j, _), link in self.links.items() if sid in (i, j)]

    def isolate(self, sid: int, how: str = "cut") -> None:
        """Cut (or blackhole) every peer link to and from member ``sid``."""
        for link in self.links_of(sid):
            link.cut() if how == "cut" else link.blackhole()

    def heal(self) -> None:
        """Every link passes again."""
        if self.proxy is not None:
            self.proxy.restore_all()


@atexit.register
def _stop_all() -> None:
    for e in list(_LIVE):
        e.stop()
