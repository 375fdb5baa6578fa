"""Linearizability checking of client histories recorded by the simulator.

Two validators work on the same history format (a sequence of :class:`Op`):

:func:`check`
    The Wing-Gong search with Lowe's extension, as in porcupine's ``checkSingle``
    (anishathalye/porcupine, ``checker.go``; Lowe, "Testing for linearizability",
    2017). The history becomes a time-ordered, doubly linked list of call and return
    entries. A depth-first search repeatedly tries to linearize an operation whose
    call entry precedes the first remaining return entry. It lifts the operation's
    two entries out of the list when the model accepts the recorded result, and it
    backtracks when it reaches a return entry. A memo of (bitset of linearized
    operations, model state) prunes states seen before. Every ZooKeeper operation
    here touches a single znode, so the history is split per path
    (P-compositionality) and each partition is checked on its own.

:func:`check_sync_reads`
    Freshness of ``syncread`` operations (a sync followed by a read on the same
    connection). ZooKeeper does not promise that plain reads are linearizable, so
    :func:`check` leaves them out unless asked. The rule is in the docstring of
    :func:`check_sync_reads`.

The znode model, per path. The state is ``None`` (absent) or ``(data, version)``.

==========  ==================================================================
kind        outcome in state ``s``
==========  ==================================================================
create      ``'ok'`` and ``s := (value, 0)`` if absent, else ``'nodeexists'``
delete      ``'nonode'`` if absent; ``'badversion'`` if ``version`` is not -1
            and differs from the current version; else ``'ok'`` and ``s := None``
set         ``'nonode'`` / ``'badversion'`` as for delete, else
            ``('ok', v+1)`` and ``s := (value, v+1)``
check       ``'nonode'`` / ``'badversion'`` as for delete, else ``'ok'``
cas         multi [check(version), setData(value, -1)], so the same as ``set``
read        ``('ok', data, version)`` or ``'nonode'``
==========  ==================================================================

A version of -1 means "any" for every kind, as in ZooKeeper. The model assumes that
the parent znode exists, so a create never fails with ``nonode``. Failed writes
(``nodeexists``, ``nonode``, ``badversion``) are kept in the search: ZooKeeper
decides them at the leader in zxid order, so they are linearizable observations.
A successful set or cas may be recorded as ``('ok', new_version)`` or as just
``'ok'``. The bare form matches any new version.

Operations with ``ret=None`` (connection loss, crash) have an unknown outcome. They
may take effect at any point after ``call``, or never. Porcupine gives them an
infinite return time and an output that matches anything. Here such an operation
has no return entry, and the search succeeds once every operation with a known
outcome is linearized, so unknown operations left over are dropped. One more
pruning step is both sound and complete: an unknown operation is never linearized
where it would not change the state. Dropping it there is equivalent, and it stays
available for later. Unknown operations that cannot change the state (read, check,
syncread) are ignored altogether.

Ties in time are treated as overlap: at equal times, calls sort before returns.

Cost: each partition's search is exponential in the worst case, in the number of
ops in flight on that path at once. Ops of unknown outcome count as in flight
forever. Measured on generated histories with about 2% unknown ops: 2,000 ops
over 20 paths with 5 clients check in milliseconds. On one path with 10 clients
it takes about 0.2 s, but one path with 20 clients does not finish within
3,000,000 steps. Pass ``timeout_steps`` in that regime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import (
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

__all__ = ["Op", "Result", "check", "check_sync_reads"]

State = Optional[Tuple[Optional[bytes], int]]
Initial = Union[None, Tuple[bytes, int], Mapping[str, Optional[Tuple[bytes, int]]]]

KINDS = frozenset({"create", "delete", "set", "check", "cas", "read", "syncread"})
WRITE_KINDS = frozenset({"create", "delete", "set", "cas"})
READ_KINDS = frozenset({"read", "syncread"})
_ERRORS = frozenset({"nonode", "nodeexists", "badversion"})
_MAX_LISTED_OPS = 200


@dataclass
class Op:
    """One client operation in a recorded history (see the module docstring)."""

    client: int
    call: int
    ret: Optional[int]
    kind: str
    path: str
    value: Optional[bytes] = None
    version: int = -1
    result: Any = None


@dataclass
class Result:
    """The verdict of :func:`check` or :func:`check_sync_reads`.

    ``ok`` is True only when every partition passed. When the step budget ran out
    first, ``unknown`` is True and ``ok`` is False; that means neither pass nor fail.
    """

    ok: bool
    path: Optional[str]
    explanation: str
    steps: int
    unknown: bool = False


# --------------------------------------------------------------------------- model


def _step(kind: str, value: Optional[bytes], version: int, state: State) -> Tuple[Any, State]:
    """Apply one operation to a znode state; return (canonical output, new state)."""
    if kind == "create":
        if state is None:
            return "ok", (value, 0)
        return "nodeexists", state
    if kind in READ_KINDS:
        if state is None:
            return "nonode", None
        return ("ok", state[0], state[1]), state
    if state is None:
        return "nonode", None
    if version != -1 and version != state[1]:
        return "badversion", state
    if kind == "delete":
        return "ok", None
    if kind == "check":
        return "ok", state
    # set, cas
    nv = state[1] + 1
    return ("ok", nv), (value, nv)


def _matches(expected: Any, out: Any) -> bool:
    """Does a recorded (canonical) result agree with the model's output?"""
    if expected == out:
        return True
    # ('ok', None): a set/cas recorded as bare 'ok', any new version
    return (
        isinstance(expected, tuple)
        and len(expected) == 2
        and expected[1] is None
        and isinstance(out, tuple)
        and len(out) == 2
        and out[0] == "ok"
    )


def _canonical_result(index: int, op: Op) -> Any:
    """Validate ``op.result`` for a completed op and bring it to canonical form."""
    r = op.result
    if isinstance(r, list):
        r = tuple(r)
    kind = op.kind
    bad = ValueError(f"history[{index}]: {kind} on {op.path!r} has an invalid result {op.result!r}")
    if kind in READ_KINDS:
        if r == "nonode":
            return r
        if isinstance(r, tuple) and len(r) == 3 and r[0] == "ok" and isinstance(r[2], int):
            return r
        raise bad
    if kind in ("set", "cas"):
        if r == "ok":
            return ("ok", None)
        if isinstance(r, tuple) and len(r) == 2 and r[0] == "ok" and isinstance(r[1], int):
            return r
        if r in ("nonode", "badversion"):
            return r
        raise bad
    allowed = {"create": ("ok", "nodeexists"), "delete": ("ok", "nonode", "badversion"),
               "check": ("ok", "nonode", "badversion")}[kind]
    if isinstance(r, str) and r in allowed:
        return r
    raise bad


def _is_ok(result: Any) -> bool:
    return result == "ok" or (isinstance(result, tuple) and len(result) >= 1 and result[0] == "ok")


# --------------------------------------------------------------------- preparation


@dataclass
class _POp:
    """A validated op inside one partition; ``index`` is its place in the history."""

    index: int
    op: Op
    known: bool
    expected: Any  # canonical result, None when unknown
    bit: int = 0  # position in the partition's bitset
    relaxed: bool = False  # result known but ignored (see check_sync_reads)


def _validate(history: Sequence[Op]) -> List[_POp]:
    out = []
    for i, op in enumerate(history):
        if op.kind not in KINDS:
            raise ValueError(f"history[{i}]: unknown kind {op.kind!r}")
        if op.ret is not None and op.ret < op.call:
            raise ValueError(f"history[{i}]: returns ({op.ret}) before its call ({op.call})")
        known = op.ret is not None
        out.append(_POp(i, op, known, _canonical_result(i, op) if known else None))
    return out


def _initial_for(initial: Initial, path: str) -> State:
    if initial is None:
        return None
    if isinstance(initial, tuple):
        return (initial[0], initial[1])
    got = initial.get(path)
    return None if got is None else (got[0], got[1])


def _partition(ops: Iterable[_POp]) -> Dict[str, List[_POp]]:
    parts: Dict[str, List[_POp]] = {}
    for p in ops:
        parts.setdefault(p.op.path, []).append(p)
    return parts


def _wgl_ops(ops: Iterable[_POp], include_reads: bool) -> List[_POp]:
    """The ops the search considers: unknown read-only ops can never matter."""
    chosen = []
    for p in ops:
        kind = p.op.kind
        if kind in READ_KINDS and not include_reads:
            continue
        if not p.known and kind not in WRITE_KINDS:
            continue
        chosen.append(p)
    return chosen


# ------------------------------------------------------------------------ search


class _Node:
    __slots__ = ("pop", "match", "prev", "next")

    def __init__(self, pop: Optional[_POp], match: Optional["_Node"]) -> None:
        self.pop = pop
        self.match = match  # call entries: the return entry (None if unknown outcome)
        self.prev: Optional[_Node] = None
        self.next: Optional[_Node] = None


@dataclass
class _Outcome:
    ok: bool
    timed_out: bool
    steps: int
    prefix: List[_POp]  # longest linearizable prefix found (the full one on success)
    prefix_state: State
    blocked: Optional[_POp]  # the op whose return entry stopped that prefix
    pending: List[_POp]  # other ops that could have gone next at that point


def _search(ops: List[_POp], init: State, budget: Optional[int]) -> _Outcome:
    """porcupine's checkSingle over one partition."""
    for bit, q in enumerate(ops):
        q.bit = bit
    n_known = sum(1 for q in ops if q.known)
    if n_known == 0:
        return _Outcome(True, False, 0, [], init, None, [])

    # time-ordered entries; at equal times calls (0) precede returns (1)
    keyed: List[Tuple[int, int, int, _POp]] = []
    for q in ops:
        keyed.append((q.op.call, 0, q.bit, q))
        if q.known:
            assert q.op.ret is not None
            keyed.append((q.op.ret, 1, q.bit, q))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))

    head = _Node(None, None)
    returns: Dict[int, _Node] = {}
    tail = head
    for _t, is_ret, bit, q in keyed:
        if is_ret:
            node = returns[bit]
        else:
            match = None
            if q.known:
                match = _Node(q, None)
                returns[bit] = match
            node = _Node(q, match)
        node.prev = tail
        tail.next = node
        tail = node

    state: State = init
    linearized = 0
    done_known = 0
    calls: List[Tuple[_Node, State]] = []
    cache = set()
    steps = 0
    best_len = -1
    best: Tuple[List[_POp], State, Optional[_POp], List[_POp]] = ([], init, None, [])
    entry = head.next

    while True:
        if budget is not None and steps >= budget:
            return _Outcome(False, True, steps, *best)
        steps += 1
        assert entry is not None  # a known op's return entry is always left
        p = entry.pop
        assert p is not None
        if entry.match is not None or not p.known:  # a call entry
            op = p.op
            out, new_state = _step(op.kind, op.value, op.version, state)
            if p.known:
                accept = _matches(p.expected, out)
            else:
                accept = new_state != state
            if accept:
                new_lin = linearized | (1 << p.bit)
                key = (new_lin, new_state)
                if key not in cache:
                    cache.add(key)
                    calls.append((entry, state))
                    state = new_state
                    linearized = new_lin
                    # lift the call entry and its return entry out of the list
                    entry.prev.next = entry.next  # type: ignore[union-attr]
                    if entry.next is not None:
                        entry.next.prev = entry.prev
                    m = entry.match
                    if m is not None:
                        m.prev.next = m.next  # type: ignore[union-attr]
                        if m.next is not None:
                            m.next.prev = m.prev
                        done_known += 1
                        if done_known == n_known:
                            full = [c[0].pop for c in calls]
                            return _Outcome(True, False, steps, full, state, None, [])  # type: ignore[arg-type]
                    entry = head.next
                    continue
            entry = entry.next
        else:  # a return entry: its op could not be linearized before it
            if len(calls) > best_len:
                best_len = len(calls)
                pending = []
                walk = head.next
                while walk is not None and walk is not entry:
                    if walk.pop is not None and walk.pop is not p:
                        pending.append(walk.pop)
                    walk = walk.next
                best = ([c[0].pop for c in calls], state, p, pending)  # type: ignore[misc]
            if not calls:
                return _Outcome(False, False, steps, *best)
            node, state = calls.pop()
            np = node.pop
            assert np is not None
            linearized &= ~(1 << np.bit)
            m = node.match
            if m is not None:
                done_known -= 1
                m.prev.next = m  # type: ignore[union-attr]
                if m.next is not None:
                    m.next.prev = m
            node.prev.next = node  # type: ignore[union-attr]
            if node.next is not None:
                node.next.prev = node
            entry = node.next


# ------------------------------------------------------------------- explanations


def _t(v: Optional[int]) -> str:
    return "?" if v is None else str(v)


def _describe(p: _POp) -> str:
    op = p.op
    args = [repr(op.path)]
    if op.kind in ("create", "set", "cas"):
        args.append(repr(op.value))
    if op.kind in ("delete", "set", "check", "cas") and op.version != -1:
        args.append(f"version={op.version}")
    if p.relaxed:
        res = f"{op.result!r} (taken as unknown: replied after the syncread)"
    else:
        res = repr(op.result) if p.known else "? (outcome unknown)"
    return f"#{p.index} client {op.client} [{op.call}, {_t(op.ret)}] {op.kind}({', '.join(args)}) -> {res}"


def _short(p: _POp) -> str:
    return f"#{p.index} {p.op.kind}" + ("" if p.known else "?")


def _state_str(s: State) -> str:
    return "absent" if s is None else f"(data={s[0]!r}, version={s[1]})"


def _list_ops(ops: Sequence[_POp]) -> List[str]:
    shown = sorted(ops, key=lambda p: (p.op.call, p.index))
    lines = ["  " + _describe(p) for p in shown[:_MAX_LISTED_OPS]]
    if len(shown) > _MAX_LISTED_OPS:
        lines.append(f"  ... and {len(shown) - _MAX_LISTED_OPS} more")
    return lines


def _explain_failure(path: str, ops: Sequence[_POp], res: _Outcome, what: str) -> str:
    lines = [f"path {path!r}: {what} ({len(ops)} ops in the search)."]
    lines.append("ops on this path, by call time:")
    lines.extend(_list_ops(ops))
    pre = res.prefix
    lines.append(
        f"longest linearizable prefix found ({len(pre)} of {len(ops)} ops): "
        + (", ".join(_short(p) for p in pre) if pre else "(empty)")
    )
    lines.append(f"state after that prefix: {_state_str(res.prefix_state)}")
    if res.blocked is not None:
        b = res.blocked
        out, _ = _step(b.op.kind, b.op.value, b.op.version, res.prefix_state)
        if _matches(b.expected, out):
            why = "it fits there, but every continuation after it dead-ends"
        else:
            why = f"in that state the model answers {out!r}"
        lines.append(f"could not place {_describe(b)}: it must take effect before it returns, and {why}")
        if res.pending:
            lines.append(
                "also pending then (each tried first, none led to a full linearization): "
                + ", ".join(_short(p) for p in res.pending)
            )
    return "\n".join(lines)


# -------------------------------------------------------------------------- check


def check(
    history: Sequence[Op],
    *,
    initial: Initial = None,
    reads: str = "exclude",
    timeout_steps: Optional[int] = None,
) -> Result:
    """Is ``history`` linearizable with respect to the znode model?

    ``initial`` is the state of every path before the history: ``None`` (absent), one
    ``(data, version)`` for every path, or a mapping from path to state (paths missing
    from it start absent). ``reads='exclude'`` (the default) leaves ``read`` and
    ``syncread`` out of the search, because ZooKeeper reads may be stale.
    ``reads='linearizable'`` checks them as linearizable reads. ``timeout_steps``
    bounds the search steps of each partition. A partition that runs out makes the
    result ``unknown``, unless another partition fails outright. Partitions are
    checked in order of first appearance in the history. ``Result.path`` names the
    first one that fails.
    """
    if reads not in ("exclude", "linearizable"):
        raise ValueError(f"reads must be 'exclude' or 'linearizable', not {reads!r}")
    include_reads = reads == "linearizable"
    prepared = _validate(history)
    steps = 0
    gave_up: Optional[Tuple[str, str]] = None
    n_checked = 0
    parts = _partition(prepared)
    for path, part in parts.items():
        ops = _wgl_ops(part, include_reads)
        n_checked += len(ops)
        res = _search(ops, _initial_for(initial, path), timeout_steps)
        steps += res.steps
        if res.timed_out:
            if gave_up is None:
                gave_up = (path, _explain_failure(
                    path, ops, res, f"search gave up after {res.steps} steps (timeout_steps)"))
            continue
        if not res.ok:
            return Result(False, path, _explain_failure(path, ops, res, "not linearizable"), steps)
    if gave_up is not None:
        return Result(False, gave_up[0], gave_up[1], steps, unknown=True)
    how = "reads checked as linearizable" if include_reads else "reads excluded"
    return Result(True, None, f"linearizable: {n_checked} ops over {len(parts)} paths ({how})", steps)


# --------------------------------------------------------------- sync-read checks


def _produces(p: _POp, target: State) -> bool:
    """Could the write ``p`` (acknowledged ok, or of unknown outcome) leave ``target``?"""
    op = p.op
    if p.known and not _is_ok(p.expected):
        return False
    if target is None:
        return op.kind == "delete"
    data, version = target
    if op.kind == "create":
        return op.value == data and version == 0
    if op.kind in ("set", "cas"):
        if op.value != data:
            return False
        if p.known and p.expected[1] is not None:
            return bool(p.expected[1] == version)
        return op.version == -1 or op.version + 1 == version
    return False


def _returned_state(p: _POp) -> State:
    r = p.expected
    return None if r == "nonode" else (r[1], r[2])


def _before_reply(base: List[_POp], s: _POp) -> List[_POp]:
    """The ops that can bear on syncread ``s``, plus ``s`` (see check_sync_reads, layer 2)."""
    cut = s.op.ret
    assert cut is not None
    ops = [s]
    for p in base:
        if p.op.call > cut:
            continue
        if p.known and p.op.ret is not None and p.op.ret > cut:
            if p.op.kind not in WRITE_KINDS:
                continue
            p = _POp(p.index, p.op, False, None, relaxed=True)
        ops.append(p)
    ops.sort(key=lambda p: p.index)
    return ops


def _stale_by_real_time(path: str, writes: List[_POp], s: _POp, init: State) -> Optional[str]:
    """The real-time rule (see check_sync_reads); an explanation if ``s`` breaks it."""
    call, ret = s.op.call, s.op.ret
    assert ret is not None
    target = _returned_state(s)
    acked_before = [w for w in writes if w.known and _is_ok(w.expected) and w.op.ret is not None
                    and w.op.ret < call]
    latest = max(acked_before, key=lambda w: w.op.call, default=None)
    candidates = [w for w in writes if _produces(w, target) and w.op.call <= ret]
    initial_fits = target == init
    if candidates or initial_fits:
        if latest is None:
            return None
        # the initial state is overwritten by any acknowledged write, so by latest
        if any(w.op.ret is None or not w.op.ret < latest.op.call for w in candidates):
            return None
    lines = [f"path {path!r}: stale sync read {_describe(s)}"]
    lines.append(f"  it returned {_state_str(target)}; the sync was sent at {call}.")
    if not candidates and not initial_fits:
        lines.append("  No write called before the read returned could have left that state"
                     " (and it is not the initial state).")
        return "\n".join(lines)
    assert latest is not None
    lines.append(f"  acknowledged write {_describe(latest)} finished before that,")
    lines.append("  and it was called only after every possible source of that state had returned:")
    if initial_fits:
        lines.append("    the initial state")
    for w in candidates:
        lines.append("    " + _describe(w))
    return "\n".join(lines)


def check_sync_reads(
    history: Sequence[Op],
    *,
    initial: Initial = None,
    timeout_steps: Optional[int] = None,
) -> Result:
    """Check that no ``syncread`` returns a state older than a write acknowledged before its sync.

    The guarantee being checked: take a syncread ``S`` on path ``p`` with a known
    result, sync sent at ``S.call`` and reply at ``S.ret``. There is an order of the
    path's writes that is consistent with real time and with every recorded result
    (a linearization, as :func:`check` searches for). There is also a read point in
    that order such that:

    * every write acknowledged (``ret`` not None) before ``S.call`` comes before the
      read point (*not stale*);
    * every write called after ``S.ret`` comes after it (*not from the future*);
    * ``S`` returned the state at the read point.

    Relative to the writes, that is exactly a linearizable read over
    ``[S.call, S.ret]``. Each syncread is judged separately, with its own
    linearization of the writes, so nothing is assumed about ordering between
    syncreads (stale plain reads are not checked here at all). Two layers run:

    1. **Real-time rule.** It needs no search and does not assume the writes are
       linearizable. It catches the plain cases and explains them well. A
       *source* of the returned state is the initial state, or any write that could
       leave that state: an ok or unknown-outcome create/set/cas with the same data
       and a compatible version (create gives 0; a set/cas gives its recorded new
       version, or expected version + 1, or any version for -1), or, for
       ``'nonode'``, any ok or unknown-outcome delete. Sources called after
       ``S.ret`` are ignored. Let ``L`` be the acknowledged successful write, with
       ``L.ret < S.call``, that was *called* last. Every successful write changes
       the state (even a set of equal data bumps the version). So a source that
       returned before ``L.call`` was overwritten by ``L`` before the read point,
       and so was the initial state. ``S`` fails when every source is like that,
       or when there is no source at all. This is sound: the write that really
       produced the state read is a source, and ``L`` cannot come after it. It is
       incomplete when the order comes from results rather than from real time
       (two overlapping sets returning versions 3 and 4).
    2. **Search.** First the path's writes and checks alone are searched. If they
       are not linearizable, the result fails and says so, because the guarantee
       is then undefined; :func:`check` reports the same problem. Next, the writes
       and all syncreads are searched together, as linearizable reads. If that
       passes, every syncread passes, since dropping the other reads from a
       linearization leaves a linearization. This is the usual, cheap case.
       Otherwise each syncread ``S`` gets its own search: the WGL search over the
       writes and checks called no later than ``S.ret``, plus ``S`` as a
       linearizable read over ``[S.call, S.ret]``. Ops that replied after
       ``S.ret`` are kept as writes of unknown outcome. This relaxation is sound:
       in any full linearization, every op called after ``S.ret`` comes after
       ``S`` and after every op that returned by then. Only what later ops reveal
       about the order of earlier writes is lost. With that caveat, this layer
       decides the guarantee above exactly.

    Syncreads with ``ret=None`` say nothing and are skipped. ``timeout_steps``
    bounds each search, as in :func:`check`.
    """
    prepared = _validate(history)
    parts = _partition(prepared)
    steps = 0
    n_reads = 0
    gave_up: Optional[Tuple[str, str]] = None
    for path, part in parts.items():
        syncreads = [p for p in part if p.op.kind == "syncread" and p.known]
        if not syncreads:
            continue
        init = _initial_for(initial, path)
        writes = [p for p in part if p.op.kind in WRITE_KINDS]
        for s in syncreads:
            why = _stale_by_real_time(path, writes, s, init)
            if why is not None:
                return Result(False, path, why, steps)
        base = _wgl_ops(part, include_reads=False)
        res = _search(base, init, timeout_steps)
        steps += res.steps
        if res.timed_out:
            gave_up = gave_up or (path, _explain_failure(
                path, base, res, f"search of the writes gave up after {res.steps} steps"))
            continue
        if not res.ok:
            return Result(False, path, _explain_failure(
                path, base, res,
                "the writes alone are not linearizable, so sync reads cannot be judged"), steps)
        n_reads += len(syncreads)
        # Fast path: if the syncreads are even linearizable together, each one is.
        both = sorted(base + syncreads, key=lambda p: p.index)
        res = _search(both, init, timeout_steps)
        steps += res.steps
        if res.ok:
            continue
        order = sorted(syncreads, key=lambda p: (p.op.call, p.index))
        if res.blocked is not None and res.blocked.op.kind == "syncread":
            order.remove(res.blocked)
            order.insert(0, res.blocked)
        for s in order:
            ops = _before_reply(base, s)
            res = _search(ops, init, timeout_steps)
            steps += res.steps
            if res.timed_out:
                gave_up = gave_up or (path, _explain_failure(
                    path, ops, res, f"search for syncread #{s.index} gave up after {res.steps} steps"))
                continue
            if not res.ok:
                head = (f"syncread #{s.index} returned {_state_str(_returned_state(s))}, which no "
                        f"order of the writes allows between its sync ({s.op.call}) and its "
                        f"reply ({s.op.ret}); it is stale or from the future")
                return Result(False, path, _explain_failure(path, ops, res, head), steps)
    if gave_up is not None:
        return Result(False, gave_up[0], gave_up[1], steps, unknown=True)
    return Result(True, None, f"sync reads fresh: {n_reads} syncreads checked", steps)
