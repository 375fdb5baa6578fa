"""Differential harness: run the same operations against Apache ZooKeeper 3.8 and zktwist, compare every reply.

A *scenario* is a function ``scenario(z)`` that drives sessions through a :class:`Run`::

    def scenario(z):
        z.connect("a"); z.connect("b")
        z.a.create(z.root + "/x", b"1")
        z.b.get_data(z.root + "/x", True)
        z.a.set_data(z.root + "/x", b"2")
        z.barrier()

``diff(pair, scenario)`` runs it once per server (reference first, then candidate), each run recording a
*normalised transcript*, and fails with a readable report at the first step where the two differ.

Normalisation (what is compared, and how):

* zxids (reply headers, Stat czxid/mzxid/pzxid, notification zxids) are made relative to the server's
  lastProcessedZxid at the start of the run (measured with a ping on a hidden control session), shown as
  ``+N``; ``0`` and negative values are kept as they are; positive values older than the start are ``old``.
  Session creation and closeSession are txns in ZooKeeper, so they consume zxids on both sides.
* ctime/mtime: only structure (zero or set; plausible wall-clock ms; mtime vs ctime: ``=`` while
  version is 0, ``>=`` afterwards).
* ephemeralOwner and session ids: mapped to the label of the session that owns them (``a#1`` = first
  session opened under the name ``a``); a new session id also has its top byte (server id) compared.
* Session passwords: only length / all-zero / same-as-before.
* children lists and getEphemerals lists: compared as sorted lists (the server order is a HashSet's).
  ACL lists and whoAmI lists are compared in order (an ``auth`` ACL expands, and whoAmI lists, in the
  ConcurrentHashMap order of the connection's auth ids, which a compatible server reproduces).
* Watch notifications: every notification a session receives is attached to the next reply on that
  session (so their position relative to replies is compared). Within one such window the order is
  compared too, except after closeSession (the order of ephemeral deletion is Java HashSet order).
* Everything else (xid, err, data bytes incl. null vs empty, ACLs, multi result types and errs, leftover
  bytes, connection closes) is compared exactly.

Environment:

* ``ZKDIFF_SELF=1`` runs Apache ZooKeeper on *both* sides (validates the harness: it must pass).
* ``ZKDIFF_VERBOSE=1`` prints each transcript.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.conftest import require_apache_zookeeper
from tests.support import rawclient as rc
from tests.support.processes import ApacheZooKeeperProcess, ZKTwistProcess, four_letter

SELF_MODE = os.environ.get("ZKDIFF_SELF", "").lower() in ("1", "true", "yes")
VERBOSE = os.environ.get("ZKDIFF_VERBOSE", "").lower() in ("1", "true", "yes")

# Keys every differential server gets.
#  - zookeeper.extendedTypesEnabled: TTL nodes (Apache: -D property; zktwist: the same key in zoo.cfg).
#  - znode.container.checkIntervalMs: keep the container/TTL reaper from running during the suite, because
#    it deletes nodes (and consumes zxids) on its own clock. Apache: -D property; zktwist: zoo.cfg key.
EXTENDED_TYPES_KEY = "zookeeper.extendedTypesEnabled"
CONTAINER_INTERVAL_KEY = "znode.container.checkIntervalMs"
BASE_CONFIG = {EXTENDED_TYPES_KEY: "true", CONTAINER_INTERVAL_KEY: "86400000"}


# --------------------------------------------------------------------------- server processes


class _NoWhitelistMixin:
    """Optionally drop the base ``4lw.commands.whitelist=*`` line so the server's default applies."""

    default_whitelist = False

    def config_lines(self):  # type: ignore[override]
        lines = super().config_lines()  # type: ignore[misc]
        if self.default_whitelist:
            lines = [line for line in lines if not line.startswith("4lw.commands.whitelist=")]
        return lines


class DiffApacheProcess(_NoWhitelistMixin, ApacheZooKeeperProcess):
    """Apache ZooKeeper with the container reaper parked (a JVM property, not a zoo.cfg key)."""

    def command(self, config: Path) -> List[str]:
        cmd = super().command(config)
        extra = []
        if CONTAINER_INTERVAL_KEY in self.extra_config:
            extra.append(f"-D{CONTAINER_INTERVAL_KEY}={self.extra_config[CONTAINER_INTERVAL_KEY]}")
        idx = cmd.index("-cp")
        return cmd[:idx] + extra + cmd[idx:]


class DiffZKTwistProcess(_NoWhitelistMixin, ZKTwistProcess):
    pass


class ServerPair:
    """The reference server (Apache ZooKeeper) and the candidate (zktwist, or a 2nd Apache with ZKDIFF_SELF=1)."""

    def __init__(self, workdir: Path, extra_config: Optional[Dict[str, str]] = None,
                 default_whitelist: bool = False) -> None:
        self.workdir = workdir
        self.extra_config = dict(BASE_CONFIG)
        self.extra_config.update(extra_config or {})
        self.default_whitelist = default_whitelist
        self.reference: Any = None
        self.candidate: Any = None
        self.starts = 0

    @property
    def candidate_name(self) -> str:
        return "apache-2" if SELF_MODE else "zktwist"

    def _make(self):
        self.starts += 1
        n = self.starts
        ref = DiffApacheProcess(workdir=self.workdir / f"apache-{n}", extra_config=self.extra_config)
        if SELF_MODE:
            cand = DiffApacheProcess(workdir=self.workdir / f"apache2-{n}", extra_config=self.extra_config)
        else:
            cand = DiffZKTwistProcess(workdir=self.workdir / f"zktwist-{n}", extra_config=self.extra_config)
        for p in (ref, cand):
            p.default_whitelist = self.default_whitelist
        return ref, cand

    def start(self) -> "ServerPair":
        require_apache_zookeeper()
        self.reference, self.candidate = self._make()
        try:
            self.reference.start()
            self.candidate.start()
            for p in (self.reference, self.candidate):
                _wait_serving(p.port)
        except Exception:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        return all(p is not None and p.proc is not None and p.proc.poll() is None
                   for p in (self.reference, self.candidate))

    def dead_report(self) -> str:
        out = []
        for name, p in (("apache", self.reference), (self.candidate_name, self.candidate)):
            if p is None or p.proc is None or p.proc.poll() is not None:
                out.append(f"{name} is not running; log tail:\n{p.log_text() if p else ''}")
        return "\n".join(out)

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        for p in (self.reference, self.candidate):
            if p is not None:
                p.cleanup()

    def sides(self) -> List[Tuple[str, Any]]:
        return [("apache", self.reference), (self.candidate_name, self.candidate)]


def _wait_serving(port: int, timeout: float = 30.0) -> None:
    """Wait until a session can actually be created (the port opens before the server is ready)."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            c = rc.RawClient.open_session("127.0.0.1", port, timeout=5.0)
            try:
                if c.connect_response and c.connect_response.session_id:
                    c.close_session()
                    return
            finally:
                c.close()
        except (OSError, rc.ConnectionClosed, rc.DecodeError) as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"server on {port} never accepted a session: {last!r}")


def make_pair_fixture(extra_config: Optional[Dict[str, str]] = None, default_whitelist: bool = False,
                      scope: Any = "module"):
    """Build a pytest fixture yielding a started :class:`ServerPair` (stopped afterwards)."""

    @pytest.fixture(scope=scope)
    def _pair(tmp_path_factory) -> Iterator[ServerPair]:
        pair = ServerPair(tmp_path_factory.mktemp("zkdiff"), extra_config, default_whitelist)
        pair.start()
        try:
            yield pair
        finally:
            pair.stop()

    return _pair


pair = make_pair_fixture()


@pytest.fixture
def zk_pair(pair: ServerPair) -> ServerPair:
    """The module's server pair, restarted first if a previous test killed one of the servers."""
    if not pair.alive():
        pair.restart()
    return pair


# --------------------------------------------------------------------------- normalisation

WALL_CLOCK_SLACK_MS = 24 * 3600 * 1000


def _hexdump(b: bytes, limit: int = 400) -> str:
    h = b.hex()
    return h if len(h) <= limit else h[:limit] + f"...(+{len(b) - limit // 2} bytes)"


def _fmt_arg(a: Any) -> str:
    """Readable form of a call argument (multi sub-ops are shown as name(path, ...))."""
    if isinstance(a, list) and a and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], bytes)
                                         for x in a):
        return "[" + ", ".join(_fmt_subop(op, rec) for op, rec in a) + "]"
    if isinstance(a, list) and a and all(isinstance(x, rc.ACL) for x in a):
        return "[" + ", ".join(f"{x.perms}:{x.scheme}:{x.id}" for x in a) + "]"
    return repr(a)


def _fmt_subop(op: int, rec: bytes) -> str:
    name = rc.OP_NAMES.get(op, str(op))
    try:
        r = rc.Reader(rec)
        path = r.string()
        if op in (rc.OP_CREATE, rc.OP_CREATE2, rc.OP_CREATE_CONTAINER, rc.OP_CREATE_TTL):
            data = r.buffer()
            acl = r.acl_list()
            flags = r.int()
            ttl = f", ttl={r.long()}" if op == rc.OP_CREATE_TTL else ""
            return f"{name}({path!r}, {data!r}, {_fmt_arg(acl)}, flags={flags}{ttl})"
        if op in (rc.OP_DELETE, rc.OP_CHECK):
            return f"{name}({path!r}, version={r.int()})"
        if op == rc.OP_SET_DATA:
            return f"{name}({path!r}, {r.buffer()!r}, version={r.int()})"
        if op in (rc.OP_GET_DATA, rc.OP_GET_CHILDREN):
            return f"{name}({path!r}, watch={r.bool()})"
        return f"{name}({path!r}, ...)"
    except rc.DecodeError:
        return f"{name}(<{rec.hex()}>)"


class Entry:
    """One recorded step: what was done (``call``, for display) and the normalised outcome (``norm``)."""

    __slots__ = ("session", "call", "norm", "raw")

    def __init__(self, session: str, call: str, norm: Any, raw: bytes = b"") -> None:
        self.session = session
        self.call = call
        self.norm = norm
        self.raw = raw

    def __repr__(self) -> str:
        return f"{self.session}: {self.call} -> {self.norm!r}"


class SessionHandle:
    """``z.a.create(...)``: calls the :class:`rawclient.RawClient` method on session ``a`` and records it."""

    def __init__(self, run: "Run", name: str) -> None:
        self._run = run
        self._name = name

    def __getattr__(self, method: str) -> Callable[..., Optional[rc.Reply]]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Optional[rc.Reply]:
            return self._run.call(self._name, method, *args, **kwargs)

        return call

    @property
    def client(self) -> rc.RawClient:
        return self._run.clients[self._name]

    @property
    def last_zxid(self) -> int:
        return self._run.clients[self._name].last_zxid


class Run:
    """Drives one server through a scenario and records the normalised transcript."""

    def __init__(self, side: str, port: int, root: str) -> None:
        self.side = side
        self.port = port
        self.root = root
        self.clients: Dict[str, rc.RawClient] = {}
        self.entries: List[Entry] = []
        self.labels: Dict[int, str] = {}            # session id -> label
        self.incarnation: Dict[str, int] = {}
        self.sessions_to_close: Dict[str, Tuple[int, bytes]] = {}  # label -> (id, passwd)
        self.passwords: Dict[int, bytes] = {}
        self.base = 0
        self.close_count = 0                        # closeSessions so far (see _window_unordered)
        self.now_ms = int(time.time() * 1000)
        self.control = rc.RawClient.open_session("127.0.0.1", port)
        self.base = self.control.ping().zxid

    # ---- session management

    def __getattr__(self, name: str) -> SessionHandle:
        if name.startswith("_") or name not in self.__dict__.get("clients", {}):
            raise AttributeError(name)
        return SessionHandle(self, name)

    def __getitem__(self, name: str) -> SessionHandle:
        return SessionHandle(self, name)

    def _new_client(self) -> rc.RawClient:
        c = rc.RawClient("127.0.0.1", self.port)
        c._zkdiff_close_mark = self.close_count  # type: ignore[attr-defined]
        return c

    def _label_for(self, name: str, sid: int) -> str:
        if sid == 0:
            return "0"
        if sid not in self.labels:
            k = self.incarnation.get(name, 0) + 1
            self.incarnation[name] = k
            self.labels[sid] = f"{name}#{k}"
        return self.labels[sid]

    def _norm_connect(self, name: str, resp: Optional[rc.ConnectResponse], *, reattach_of: int = 0) -> Any:
        if resp is None:
            return ("no ConnectResponse: connection closed",)
        sid = resp.session_id
        if sid == 0:
            label = "0"
        elif reattach_of and sid == reattach_of:
            label = self.labels.get(sid, "?")
        elif sid in self.labels:
            label = self.labels[sid]
        else:
            label = self._label_for(name, sid)
        pw = resp.passwd
        if pw is None:
            pwn = "null"
        elif pw == bytes(len(pw)):
            pwn = f"{len(pw)} zero bytes"
        elif sid in self.passwords and self.passwords[sid] == pw:
            pwn = f"{len(pw)} bytes, same as before"
        else:
            pwn = f"{len(pw)} bytes"
        return ("ConnectResponse", resp.protocol_version, resp.timeout, label,
                f"server id byte {sid >> 56}" if sid else "-", pwn, resp.read_only, f"len {resp.length}")

    def connect(self, name: str, *, session_timeout: int = 30000, read_only: Optional[bool] = False,
                last_zxid: int = 0) -> Optional[rc.ConnectResponse]:
        """Open a new session under ``name`` (replacing any previous client with that name)."""
        c = self._new_client()
        resp = c.handshake(timeout=session_timeout, read_only=read_only, last_zxid=last_zxid)
        norm = self._norm_connect(name, resp)
        self.entries.append(Entry(name, f"connect(timeout={session_timeout}, read_only={read_only}, "
                                        f"last_zxid={last_zxid})", norm))
        if resp is not None and resp.session_id:
            self.passwords[resp.session_id] = resp.passwd or b""
            self.sessions_to_close[self.labels[resp.session_id]] = (resp.session_id, resp.passwd or bytes(16))
        self.clients[name] = c
        return resp

    def reattach(self, name: str, *, passwd: Optional[bytes] = None, last_zxid: Optional[int] = None,
                 read_only: Optional[bool] = False, session_timeout: int = 30000,
                 keep_old_as: Optional[str] = None) -> Optional[rc.ConnectResponse]:
        """Open a second connection to session ``name`` (its id, its password unless ``passwd`` is given,
        and the client's lastZxidSeen unless ``last_zxid`` is given).

        Recorded: the ConnectResponse (or the close), then a probe of the *old* connection (a ping: the
        server is expected to close it when the re-attach succeeds and keep it when it fails). On success
        the new connection becomes ``name``; the old one is closed, or kept as ``keep_old_as``.
        """
        old = self.clients[name]
        sid = old.session_id
        pw = self.passwords.get(sid, old.passwd) if passwd is None else passwd
        lz = old.last_zxid if last_zxid is None else last_zxid
        c = self._new_client()
        resp = c.handshake(timeout=session_timeout, session_id=sid, passwd=pw, last_zxid=lz, read_only=read_only)
        desc = "right password" if passwd is None or passwd == self.passwords.get(sid) else "wrong password"
        lzd = "client's lastZxid" if last_zxid is None else f"last_zxid={self._nz(last_zxid)}"
        ok = resp is not None and resp.session_id != 0
        after = "then open" if ok else ("then closed" if c.wait_closed(3.0) else "then open")
        self.entries.append(Entry(name, f"reattach({self.labels.get(sid, '?')}, {desc}, {lzd}, "
                                        f"read_only={read_only})",
                                  (self._norm_connect(name, resp, reattach_of=sid), after)))
        self.entries.append(Entry(name, "probe old connection with a ping", self._probe(old)))
        if ok:
            c.last_zxid = max(lz, 0)
            self.clients[name] = c
            if keep_old_as:
                self.clients[keep_old_as] = old
            else:
                old.close()
        else:
            c.close()
        return resp

    def _probe(self, c: rc.RawClient) -> Any:
        if c.closed:
            return ("already closed",)
        try:
            reply = c.ping()
            out: Any = ("open", self._norm_reply(reply))
        except (rc.ConnectionClosed, ConnectionError, BrokenPipeError):
            c.closed = True
            out = ("closed",)
        except socket.timeout:
            out = ("no reply (timeout)",)
        return out + (self._norm_events(c.take_events(), self._window_unordered(c)),)

    def drop(self, name: str) -> None:
        """Close the client's socket without closeSession (the session lives on)."""
        c = self.clients[name]
        c.close()
        self.entries.append(Entry(name, "drop connection (client side)", None))

    def handshake_raw(self, name: str, payload: bytes, *, note: str = "") -> Optional[rc.ConnectResponse]:
        """Open a new connection and send ``payload`` as the first frame; record the ConnectResponse and
        whether the connection stays usable (a ping when a session was granted, else a wait for close).
        A granted session is stored as ``name``."""
        c = self._new_client()
        c.send_frame(payload)
        resp = None
        try:
            frame = c.read_frame(timeout=5.0)
        except socket.timeout:
            frame = None
            norm: Any = ("no reply within 5s",)
        else:
            if frame is None:
                norm = ("connection closed, no reply",)
            else:
                resp = rc.decode_connect_response(frame)
                norm = self._norm_connect(name, resp)
        if resp is not None and resp.session_id:
            self.passwords[resp.session_id] = resp.passwd or b""
            self.sessions_to_close[self.labels[resp.session_id]] = (resp.session_id, resp.passwd or bytes(16))
            c.connect_response, c.session_id, c.passwd = resp, resp.session_id, resp.passwd or bytes(16)
            after = self._probe(c)
            self.clients[name] = c
        else:
            after = "then closed" if c.wait_closed(3.0) else "then open"
            c.close()
        self.entries.append(Entry(name, f"raw handshake {note or payload.hex()}", (norm, after)))
        return resp

    def expect_eof(self, name: str, timeout: float = 3.0) -> bool:
        """Record whether the server closes ``name``'s connection within ``timeout``."""
        c = self.clients[name]
        closed = c.wait_closed(timeout)
        evs = c.take_events()
        stash = [self._norm_reply_frame(p) for p in c._stash]
        c._stash.clear()
        self.entries.append(Entry(name, f"wait for server close ({timeout}s)",
                                  ("closed" if closed else "open", self._norm_events(evs, self._window_unordered(c)),
                                   stash)))
        return closed

    def four_letter(self, word: str) -> str:
        text = four_letter(self.port, word)
        self.entries.append(Entry("-", f"4lw {word}", text))
        return text

    def note(self, name: str, what: str, value: Any) -> None:
        """Record a derived value (already normalised by the scenario)."""
        self.entries.append(Entry(name, what, value))

    # ---- requests

    def call(self, name: str, method: str, *args: Any, **kwargs: Any) -> Optional[rc.Reply]:
        c = self.clients[name]
        fn = getattr(c, method)
        timeout = kwargs.pop("_timeout", None)
        saved_timeout = c.timeout
        if timeout is not None:
            c.timeout = timeout
        argstr = ", ".join([_fmt_arg(a) for a in args] + [f"{k}={_fmt_arg(v)}" for k, v in kwargs.items()])
        reply: Optional[rc.Reply] = None
        try:
            reply = fn(*args, **kwargs)
            norm: Any = self._norm_reply(reply)
            raw = reply.raw
        except (rc.ConnectionClosed, ConnectionError, BrokenPipeError) as e:
            norm = ("connection closed",)   # EOF, reset or broken pipe: which one is a timing detail
            raw = b""
            c.closed = True
        except socket.timeout:
            norm = ("no reply (timeout)",)
            raw = b""
        except rc.DecodeError as e:
            norm = ("undecodable reply", str(e))
            raw = b""
        finally:
            c.timeout = saved_timeout
        evs = c.take_events()
        unordered = self._window_unordered(c) or method == "close_session"
        outcome: Any = (self._norm_events(evs, unordered), norm)
        if method == "close_session":
            self.close_count += 1
        if method == "close_session" and reply is not None:
            closed = c.wait_closed(3.0)
            outcome += ("then closed" if closed else "then open", self._norm_events(c.take_events(), True))
            if reply.err == 0:
                self.mark_closed(name)
        self.entries.append(Entry(name, f"{method}({argstr})", outcome, raw))
        return reply

    def _window_unordered(self, c: rc.RawClient) -> bool:
        """True if a closeSession happened since this client's previous recorded reply: the events it
        caused (one per deleted ephemeral) come in Java HashSet order, so that window is compared sorted."""
        prev = getattr(c, "_zkdiff_close_mark", None)
        c._zkdiff_close_mark = self.close_count  # type: ignore[attr-defined]
        return prev is not None and prev != self.close_count

    def barrier(self) -> None:
        """Ping every open session so each one's pending notifications are read and recorded."""
        for name in sorted(self.clients):
            c = self.clients[name]
            if c.closed and not c._buf and not c._stash:
                continue
            if c.closed:
                evs = c.take_events()
                c.read_until_eof(0.5)
                evs += c.take_events()
                self.entries.append(Entry(name, "barrier (connection closed)",
                                          self._norm_events(evs, self._window_unordered(c))))
                continue
            try:
                reply = c.ping()
                norm: Any = self._norm_reply(reply)
            except (rc.ConnectionClosed, ConnectionError, BrokenPipeError):
                norm = ("connection closed",)
                c.closed = True
            except socket.timeout:
                norm = ("no reply (timeout)",)
            evs = c.take_events()
            self.entries.append(Entry(name, "barrier ping", (self._norm_events(evs, self._window_unordered(c)),
                                                             norm)))

    # ---- cleanup

    def cleanup(self) -> None:
        """Close every session this run created (so none expires later and consumes a zxid mid-test)."""
        for c in self.clients.values():
            c.close()
        for label, (sid, pw) in self.sessions_to_close.items():
            try:
                c = rc.RawClient.open_session("127.0.0.1", self.port, session_id=sid, passwd=pw, timeout=5.0)
            except (OSError, rc.ConnectionClosed):
                continue
            try:
                if c.connect_response and c.connect_response.session_id:
                    c.close_session()
                    c.wait_closed(2.0)
            except (OSError, rc.ConnectionClosed):
                pass
            finally:
                c.close()
        try:
            self.control.close_session()
        except (OSError, rc.ConnectionClosed):
            pass
        self.control.close()

    def mark_closed(self, name: str) -> None:
        """The scenario closed this session on purpose (closeSession was recorded)."""
        sid = self.clients[name].session_id
        label = self.labels.get(sid)
        if label:
            self.sessions_to_close.pop(label, None)

    # ---- normalisers

    def _nz(self, z: int) -> Any:
        if z <= 0:
            return z
        if z < self.base:
            return "old"
        return f"+{z - self.base}"

    def _norm_time(self, t: int) -> str:
        if t == 0:
            return "0"
        if abs(t - self.now_ms) > WALL_CLOCK_SLACK_MS:
            return f"implausible({t})"
        return "set"

    def _norm_owner(self, owner: int) -> Any:
        if owner == 0:
            return 0
        return self.labels.get(owner, f"unknown(0x{owner & 0xffffffffffffffff:016x})")

    def norm_stat(self, s: Optional[rc.Stat]) -> Any:
        if s is None:
            return None
        if s.ctime == s.mtime:
            rel = "="
        elif s.mtime > s.ctime:
            rel = ">"
        else:
            rel = "<"
        if s.version != 0 and rel in ("=", ">"):
            rel = ">="
        return (("czxid", self._nz(s.czxid)), ("mzxid", self._nz(s.mzxid)),
                ("ctime", self._norm_time(s.ctime)), ("mtime", self._norm_time(s.mtime) + " " + rel + "ctime"),
                ("version", s.version), ("cversion", s.cversion), ("aversion", s.aversion),
                ("ephemeralOwner", self._norm_owner(s.ephemeralOwner)), ("dataLength", s.dataLength),
                ("numChildren", s.numChildren), ("pzxid", self._nz(s.pzxid)))

    def _norm_children(self, ch: Optional[List[Any]]) -> Any:
        return None if ch is None else ("children", sorted(ch, key=lambda x: (x is None, x or "")))

    def _norm_body(self, op: int, body: Any) -> Any:
        if body is None:
            return None
        if isinstance(body, rc.Stat):
            return self.norm_stat(body)
        if isinstance(body, rc.DataResponse):
            return ("data", body.data, self.norm_stat(body.stat))
        if isinstance(body, rc.ChildrenResponse):
            return (self._norm_children(body.children), self.norm_stat(body.stat))
        if isinstance(body, rc.ACLResponse):
            return ("acl", None if body.acl is None else [tuple(a) for a in body.acl], self.norm_stat(body.stat))
        if isinstance(body, rc.Create2Response):
            return ("path", body.path, self.norm_stat(body.stat))
        if op in (rc.OP_MULTI, rc.OP_MULTI_READ):
            return [(r.type, r.err, self._norm_body(r.type, r.body)) for r in body]
        if op in (rc.OP_GET_CHILDREN, rc.OP_GET_EPHEMERALS):
            return self._norm_children(body)
        if op == rc.OP_WHO_AM_I:
            # in order: ZooKeeper iterates the connection's ConcurrentHashMap-backed set of Ids, and so
            # must a compatible server (the same order shows in ACLs expanded from the auth scheme)
            return [tuple(ci) for ci in body]
        return body

    def _norm_reply(self, r: rc.Reply) -> Any:
        out: Tuple[Any, ...] = (r.xid, self._nz(r.zxid), r.err, self._norm_body(r.op, r.body))
        if r.extra:
            out += (("extra bytes", r.extra.hex()),)
        return out

    def _norm_reply_frame(self, payload: bytes) -> Any:
        rd = rc.Reader(payload)
        try:
            return ("stray frame", rd.int(), self._nz(rd.long()), rd.int(), len(payload))
        except rc.DecodeError:
            return ("stray frame", payload.hex())

    def _norm_events(self, evs: List[rc.WatchEvent], unordered: bool) -> Any:
        out = [(e.type, e.state, e.path, self._nz(e.zxid)) for e in evs]
        if unordered:
            out.sort(key=repr)
        return ("events", out) if out else ()


# --------------------------------------------------------------------------- running and comparing


class DifferentialMismatch(AssertionError):
    pass


def run_scenario(side: str, port: int, scenario: Callable[[Run], None], root: str) -> Run:
    run = Run(side, port, root)
    error: Optional[BaseException] = None
    try:
        scenario(run)
        run.barrier()
    except (OSError, rc.ConnectionClosed, rc.DecodeError) as e:
        # the server did something the scenario could not continue from: that is an outcome to compare
        run.entries.append(Entry("-", "scenario stopped", f"{type(e).__name__}: {e}"))
    except BaseException as e:  # a bug in the scenario itself: surface it
        error = e
    finally:
        run.cleanup()
    if VERBOSE:
        print(f"\n===== {side} (root {root}, base zxid {run.base})")
        for i, entry in enumerate(run.entries):
            print(f"  [{i}] {entry!r}")
    if error is not None:
        raise error
    return run


def compare_runs(ref: Run, cand: Run, title: str, cand_name: str) -> None:
    __tracebackhide__ = True
    n = max(len(ref.entries), len(cand.entries))
    first = None
    mismatches = 0
    for i in range(n):
        a = ref.entries[i] if i < len(ref.entries) else None
        b = cand.entries[i] if i < len(cand.entries) else None
        if a is None or b is None or a.norm != b.norm or a.session != b.session:
            mismatches += 1
            if first is None:
                first = i
    if first is None:
        return
    lines = [f"{title}: {cand_name} differs from Apache ZooKeeper at step {first} "
             f"({mismatches} differing step(s) of {n}; root {ref.root})", "steps sent (as run on apache):"]
    lo = 0
    for i in range(lo, first + 1):
        if i < len(ref.entries):
            e = ref.entries[i]
            lines.append(f"  [{i}] {e.session}: {e.call}")
        elif i < len(cand.entries):
            e = cand.entries[i]
            lines.append(f"  [{i}] ({cand_name} only) {e.session}: {e.call}")
    a = ref.entries[first] if first < len(ref.entries) else None
    b = cand.entries[first] if first < len(cand.entries) else None
    lines.append(f"apache  : {a.norm if a else '<no step>'!r}")
    lines.append(f"{cand_name:8s}: {b.norm if b else '<no step>'!r}")
    if b is not None and a is not None and b.call != a.call:
        lines.append(f"({cand_name} step was: {b.session}: {b.call})")
    if a is not None and a.raw:
        lines.append(f"apache raw  : {_hexdump(a.raw)}")
    if b is not None and b.raw:
        lines.append(f"{cand_name} raw: {_hexdump(b.raw)}")
    lines.append(f"(zxid base: apache {ref.base}, {cand_name} {cand.base})")
    raise DifferentialMismatch("\n".join(lines))


_root_ids = itertools.count(1)


def fresh_root(prefix: str = "d") -> str:
    return f"/{prefix}{os.getpid() % 1000}_{next(_root_ids)}"


def diff(pair: ServerPair, scenario: Callable[[Run], None], title: Optional[str] = None,
         root: Optional[str] = None) -> Tuple[Run, Run]:
    """Run ``scenario`` on both servers and compare the transcripts; raises DifferentialMismatch."""
    __tracebackhide__ = True
    title = str(title or getattr(scenario, "__name__", "scenario"))
    root = root or fresh_root()
    ref = run_scenario("apache", pair.reference.port, scenario, root)
    cand = run_scenario(pair.candidate_name, pair.candidate.port, scenario, root)
    try:
        compare_runs(ref, cand, title, pair.candidate_name)
    finally:
        if not pair.alive():
            report = pair.dead_report()
            pair.restart()
            raise DifferentialMismatch(f"{title}: a server died during the scenario\n{report}")
    return ref, cand
