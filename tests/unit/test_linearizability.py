"""Tests for zktwist.sim.linearizability: the WGL checker and the sync-read validator.

Hand-written histories pin down the semantics: what must pass, what must fail and what
the explanation says. Property tests generate sequential runs of the znode model,
widen their intervals (which keeps them linearizable), and corrupt single results
(which must be caught). A timing test runs a 2,000-op history from 5 clients
and reports how long it took.
"""

from __future__ import annotations

import random
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zktwist.sim.linearizability import Op, Result, check, check_sync_reads

State = Optional[Tuple[Optional[bytes], int]]


def op(client: int, call: int, ret: Optional[int], kind: str, result: Any = None, *,
       path: str = "/a", value: Optional[bytes] = None, version: int = -1) -> Op:
    return Op(client=client, call=call, ret=ret, kind=kind, path=path, value=value,
              version=version, result=result)


def assert_fails(res: Result, path: str, blocked: Optional[int] = None) -> None:
    assert not res.ok, res.explanation
    assert not res.unknown
    assert res.path == path
    if blocked is not None:
        assert f"could not place #{blocked} " in res.explanation, res.explanation


# ------------------------------------------------------------ linearizable by hand


def test_empty_history_passes() -> None:
    res = check([])
    assert res.ok and res.path is None and not res.unknown
    assert check_sync_reads([]).ok


def test_concurrent_creates_winner_may_return_last() -> None:
    h = [
        op(1, 0, 20, "create", "ok", value=b"x"),
        op(2, 5, 10, "create", "nodeexists", value=b"y"),  # returns first, yet lost
        op(3, 25, 30, "read", ("ok", b"x", 0)),
    ]
    assert check(h, reads="linearizable").ok


def test_overlapping_sets_take_versions_in_either_order() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"v0"),
        op(1, 2, 20, "set", ("ok", 2), value=b"p"),
        op(2, 3, 10, "set", ("ok", 1), value=b"q"),  # returns first, linearized first
        op(3, 21, 22, "read", ("ok", b"p", 2)),
        op(2, 23, 24, "cas", ("ok", 3), value=b"r", version=2),
        op(1, 23, 30, "cas", "badversion", value=b"s", version=2),
    ]
    res = check(h, reads="linearizable")
    assert res.ok, res.explanation
    assert res.steps > 0


def test_bare_ok_for_set_matches_any_new_version() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b""),
        op(1, 2, 3, "set", "ok", value=b"x"),
        op(1, 4, 5, "read", ("ok", b"x", 1)),
    ]
    assert check(h, reads="linearizable").ok


def test_unknown_write_that_took_effect_late() -> None:
    # the set's reply was lost; it was applied after a later, acknowledged check
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(1, 2, None, "set", value=b"b", version=0),
        op(2, 50, 51, "check", "ok", version=0),
        op(2, 60, 61, "read", ("ok", b"b", 1)),
    ]
    assert check(h, reads="linearizable").ok
    assert check(h).ok


def test_unknown_write_that_never_happened() -> None:
    h = [
        op(1, 0, None, "create", value=b"lost"),
        op(2, 10, 11, "create", "ok", value=b"mine"),
        op(2, 12, 13, "read", ("ok", b"mine", 0)),
        op(3, 20, None, "delete"),  # never happened either
        op(3, 30, 31, "check", "ok", version=0),
    ]
    assert check(h, reads="linearizable").ok


def test_unknown_read_only_ops_are_ignored() -> None:
    h = [op(1, 0, None, "read"), op(1, 1, None, "check", version=7), op(2, 2, 3, "create", "ok", value=b"")]
    assert check(h, reads="linearizable").ok


def test_stale_read_excluded_by_default() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"old"),
        op(1, 2, 3, "set", ("ok", 1), value=b"new"),
        op(2, 10, 11, "read", ("ok", b"old", 0)),  # a lagging follower: legal in ZooKeeper
    ]
    assert check(h).ok
    assert_fails(check(h, reads="linearizable"), "/a", blocked=2)


def test_initial_state_single_and_per_path() -> None:
    h = [
        op(1, 0, 1, "set", ("ok", 4), value=b"x", version=3),
        op(1, 2, 3, "create", "ok", path="/b", value=b""),
    ]
    assert check(h, initial=(b"i", 3)).ok is False  # /b exists under a global initial
    assert check(h, initial={"/a": (b"i", 3)}).ok
    assert_fails(check(h), "/a", blocked=0)  # /a absent: the set would be nonode


def test_touching_intervals_count_as_concurrent() -> None:
    # the read is called at the very moment the write returns: either order is allowed
    h = [op(1, 0, 5, "create", "ok", value=b""), op(2, 5, 9, "read", "nonode")]
    assert check(h, reads="linearizable").ok


# -------------------------------------------------------- not linearizable by hand


def test_read_your_write_violation() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(1, 2, 3, "set", ("ok", 1), value=b"b"),
        op(1, 4, 5, "read", ("ok", b"a", 0)),
    ]
    res = check(h, reads="linearizable")
    assert_fails(res, "/a", blocked=2)
    assert "longest linearizable prefix found (2 of 3 ops): #0 create, #1 set" in res.explanation
    assert "the model answers ('ok', b'b', 1)" in res.explanation


def test_two_successful_cas_with_the_same_expected_version() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"0"),
        op(1, 10, 20, "cas", ("ok", 1), value=b"x", version=0),
        op(2, 11, 19, "cas", ("ok", 1), value=b"y", version=0),
    ]
    res = check(h)
    assert_fails(res, "/a")
    assert "could not place #2 " in res.explanation or "could not place #1 " in res.explanation
    assert "'badversion'" in res.explanation
    # the same pair with bare 'ok' results is just as wrong
    h[1].result = h[2].result = "ok"
    assert_fails(check(h), "/a")


def test_lost_acknowledged_write() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(1, 2, 3, "set", ("ok", 1), value=b"b"),
        op(2, 10, 11, "set", ("ok", 1), value=b"c", version=0),  # as if #1 never happened
    ]
    assert_fails(check(h), "/a", blocked=2)


def test_acknowledged_delete_lost() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(1, 2, 3, "delete", "ok"),
        op(2, 4, 5, "create", "nodeexists", value=b"b"),
    ]
    assert_fails(check(h), "/a", blocked=2)


def test_create_succeeds_twice_without_delete() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(2, 2, 3, "set", ("ok", 1), value=b"b"),
        op(3, 4, 5, "create", "ok", value=b"c"),
    ]
    res = check(h)
    assert_fails(res, "/a", blocked=2)
    assert "the model answers 'nodeexists'" in res.explanation
    # a delete with an unknown outcome between them explains it
    h.insert(2, op(4, 3, None, "delete"))
    assert check(h).ok


def test_unknown_op_cannot_act_before_its_call() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(2, 2, 3, "check", "nonode"),
        op(3, 10, None, "delete"),  # called only after the check returned
    ]
    assert_fails(check(h), "/a", blocked=1)


def test_failure_in_one_partition_names_its_path() -> None:
    h = [
        op(1, 0, 1, "create", "ok", path="/ok", value=b""),
        op(2, 0, 1, "create", "ok", path="/bad", value=b""),
        op(1, 2, 3, "delete", "ok", path="/ok"),
        op(2, 2, 3, "delete", "badversion", path="/bad", version=0),
    ]
    res = check(h)
    assert_fails(res, "/bad", blocked=3)
    assert "'/ok'" not in res.explanation


def test_explanation_lists_partition_ops_and_pending_ops() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(2, 10, 30, "set", ("ok", 5), value=b"x"),
        op(3, 11, 20, "check", "ok", version=0),
        op(4, 12, 21, "delete", "nonode"),
    ]
    res = check(h)
    assert not res.ok
    text = res.explanation
    assert "ops on this path, by call time:" in text
    for i in range(4):
        assert f"#{i} client " in text
    assert "state after that prefix:" in text
    assert "also pending then" in text


def test_timeout_steps_gives_unknown() -> None:
    h = [op(c, 0, 100, "set", "badversion", value=b"", version=9) for c in range(6)]
    h.insert(0, op(0, -10, -5, "create", "ok", value=b""))
    h.append(op(9, 200, 201, "create", "ok", value=b""))  # impossible: forces full search
    full = check(h)
    assert not full.ok and not full.unknown
    res = check(h, timeout_steps=3)
    assert res.unknown and not res.ok and res.path == "/a"
    assert res.steps <= 3
    assert "gave up" in res.explanation


def test_definite_failure_beats_timeout_elsewhere() -> None:
    # /slow needs over a thousand steps to fail (2^8 subsets of concurrent checks)
    h = [op(c, 0, 100, "check", "nonode", path="/slow") for c in range(8)]
    h.append(op(9, 200, 201, "create", "nodeexists", path="/slow", value=b""))
    h += [op(1, 0, 1, "create", "ok", path="/bad", value=b""),
          op(1, 2, 3, "create", "ok", path="/bad", value=b"")]
    assert check(h).path == "/slow"
    res = check(h, timeout_steps=50)
    assert not res.ok and not res.unknown and res.path == "/bad"


@pytest.mark.parametrize(
    "bad",
    [
        op(1, 0, 1, "rename", "ok"),
        op(1, 5, 4, "create", "ok"),
        op(1, 0, 1, "create", "nonode"),
        op(1, 0, 1, "set", ("ok", "1")),
        op(1, 0, 1, "read", "ok"),
        op(1, 0, 1, "delete", ("ok", 1)),
    ],
)
def test_malformed_history_is_rejected(bad: Op) -> None:
    with pytest.raises(ValueError):
        check([bad])


def test_reads_mode_is_validated() -> None:
    with pytest.raises(ValueError):
        check([], reads="stale")


# --------------------------------------------------------------------- sync reads


def test_syncread_fresh_cases_pass() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(2, 2, 3, "syncread", ("ok", b"a", 0)),
        op(1, 10, 20, "set", ("ok", 1), value=b"b"),
        op(2, 12, 14, "syncread", ("ok", b"a", 0)),  # concurrent with the set: old is fine
        op(3, 12, 15, "syncread", ("ok", b"b", 1)),  # ... and so is new
        op(1, 21, None, "delete"),
        op(2, 30, 31, "syncread", ("ok", b"b", 1)),  # the delete may not have happened
        op(3, 32, 33, "syncread", "nonode"),  # ... or it did
        op(4, 40, None, "syncread"),  # no reply: says nothing
    ]
    res = check_sync_reads(h)
    assert res.ok, res.explanation
    assert check(h).ok  # check() leaves syncreads out by default
    # a plain read that is stale is not this validator's business
    h.append(op(5, 50, 51, "read", ("ok", b"a", 0)))
    assert check_sync_reads(h).ok


def test_syncread_stale_by_real_time() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(1, 2, 3, "set", ("ok", 1), value=b"b"),
        op(2, 5, 6, "syncread", ("ok", b"a", 0)),
    ]
    res = check_sync_reads(h)
    assert_fails(res, "/a")
    assert "stale sync read #2" in res.explanation
    assert "acknowledged write #1" in res.explanation


def test_syncread_of_initial_state_after_a_write() -> None:
    h = [op(1, 0, 1, "set", ("ok", 8), value=b"n", version=7), op(2, 5, 6, "syncread", ("ok", b"i", 7))]
    assert check_sync_reads(h, initial=(b"i", 7)).path == "/a"
    h[1].call = 0  # overlapping the write: the initial state is fine
    assert check_sync_reads(h, initial=(b"i", 7)).ok


def test_syncread_stale_by_version_order_needs_the_search() -> None:
    # overlapping sets: only their versions say which came last
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(1, 10, 20, "set", ("ok", 1), value=b"p"),
        op(2, 11, 21, "set", ("ok", 2), value=b"q"),
        op(3, 30, 31, "syncread", ("ok", b"p", 1)),
    ]
    res = check_sync_reads(h)
    assert_fails(res, "/a", blocked=3)
    assert "syncread #3 returned (data=b'p', version=1)" in res.explanation
    h[3].result = ("ok", b"q", 2)
    assert check_sync_reads(h).ok


def test_syncread_from_the_future_fails() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(2, 5, 6, "syncread", ("ok", b"b", 1)),
        op(1, 10, 11, "set", ("ok", 1), value=b"b"),
    ]
    res = check_sync_reads(h)
    assert_fails(res, "/a")
    assert "No write called before the read returned" in res.explanation


def test_syncread_of_a_value_never_written_fails() -> None:
    h = [op(1, 0, 1, "create", "ok", value=b"a"), op(2, 0, 6, "syncread", ("ok", b"zz", 0))]
    assert_fails(check_sync_reads(h), "/a")


def test_syncread_with_non_linearizable_writes_fails() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(2, 2, 3, "create", "ok", value=b"a"),
        op(3, 0, 5, "syncread", ("ok", b"a", 0)),
    ]
    res = check_sync_reads(h)
    assert_fails(res, "/a")
    assert "writes alone are not linearizable" in res.explanation


def test_syncreads_checked_as_reads_when_linearizable() -> None:
    h = [
        op(1, 0, 1, "create", "ok", value=b"a"),
        op(1, 2, 3, "set", ("ok", 1), value=b"b"),
        op(2, 5, 6, "syncread", ("ok", b"a", 0)),
    ]
    assert check(h).ok
    assert_fails(check(h, reads="linearizable"), "/a", blocked=2)


# ------------------------------------------------------------- property tests

PATHS = ("/a", "/b", "/c")
VALUES = (b"", b"x", b"y")
KINDS = ("create", "delete", "set", "check", "cas", "read", "syncread")


def model_step(kind: str, value: Optional[bytes], version: int, s: State) -> Tuple[Any, State]:
    """An independent restatement of the znode semantics from the brief."""
    if kind == "create":
        return ("ok", (value, 0)) if s is None else ("nodeexists", s)
    if kind in ("read", "syncread"):
        return ("nonode", None) if s is None else (("ok", s[0], s[1]), s)
    if s is None:
        return "nonode", None
    if version not in (-1, s[1]):
        return "badversion", s
    if kind == "delete":
        return "ok", None
    if kind == "check":
        return "ok", s
    return ("ok", s[1] + 1), (value, s[1] + 1)


Sequential = Tuple[List[Op], List[List[State]]]


@st.composite
def sequential_histories(draw: Any, unknown: bool = True, bare_ok: bool = True) -> Sequential:
    """Ops at [10i, 10i+5] applied to the model in order. Returns the history and,
    per op, the states its path went through before that op (for stale-read tests)."""
    n = draw(st.integers(0, 30))
    state: Dict[str, State] = {p: None for p in PATHS}
    seen: Dict[str, List[State]] = {p: [None] for p in PATHS}
    ops: List[Op] = []
    past: List[List[State]] = []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        path = draw(st.sampled_from(PATHS))
        cur = state[path]
        value = draw(st.sampled_from(VALUES)) if kind in ("create", "set", "cas") else None
        version = -1
        if kind in ("delete", "set", "check", "cas"):
            near = [-1, 0, 1] + ([cur[1], cur[1] + 1] if cur is not None else [])
            version = draw(st.sampled_from(near))
        fate = draw(st.sampled_from(("known", "known", "known", "applied", "dropped"))) if unknown else "known"
        out, new = model_step(kind, value, version, cur)
        past.append(list(seen[path]))
        if fate != "dropped":
            state[path] = new
            if new != cur:
                seen[path].append(new)
        if fate == "known":
            if bare_ok and kind in ("set", "cas") and out != "nonode" and out != "badversion" and draw(st.booleans()):
                out = "ok"
            ops.append(Op(draw(st.integers(0, 4)), 10 * i, 10 * i + 5, kind, path, value, version, out))
        else:
            ops.append(Op(draw(st.integers(0, 4)), 10 * i, None, kind, path, value, version, None))
    return ops, past


@st.composite
def widened_histories(draw: Any) -> List[Op]:
    """Stretch each interval left and right, never overlapping two ops of one client.
    The original sequential order still fits inside every interval."""
    ops, _ = draw(sequential_histories())
    next_call: Dict[int, int] = {}
    caps: List[int] = [0] * len(ops)
    for i in range(len(ops) - 1, -1, -1):
        caps[i] = next_call.get(ops[i].client, 10**9)
        next_call[ops[i].client] = ops[i].call
    busy_until: Dict[int, int] = {}
    out = []
    for i, o in enumerate(ops):
        call = max(busy_until.get(o.client, -(10**9)), o.call - draw(st.integers(0, 40)))
        end = o.call + 5 if o.ret is None else o.ret
        end = min(caps[i], end + draw(st.integers(0, 40)))
        busy_until[o.client] = end
        out.append(Op(o.client, call, None if o.ret is None else end, o.kind, o.path,
                      o.value, o.version, o.result))
    return out


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(sequential_histories())
def test_sequential_model_histories_pass(gen: Sequential) -> None:
    h, _ = gen
    for reads in ("exclude", "linearizable"):
        res = check(h, reads=reads)
        assert res.ok, res.explanation
    res = check_sync_reads(h)
    assert res.ok, res.explanation


@PROPERTY
@given(widened_histories())
def test_widened_histories_pass(h: List[Op]) -> None:
    for reads in ("exclude", "linearizable"):
        res = check(h, reads=reads)
        assert res.ok, res.explanation
    res = check_sync_reads(h)
    assert res.ok, res.explanation


def alternatives(o: Op) -> List[Any]:
    if o.kind == "create":
        outs: List[Any] = ["ok", "nodeexists"]
    elif o.kind in ("delete", "check"):
        outs = ["ok", "nonode", "badversion"]
    elif o.kind in ("set", "cas"):
        outs = ["nonode", "badversion"] + [("ok", v) for v in range(4)]
    else:
        outs = ["nonode"] + [("ok", d, v) for d in VALUES for v in range(3)]
    return [r for r in outs if r != o.result]


@PROPERTY
@given(sequential_histories(unknown=False, bare_ok=False), st.data())
def test_corrupted_result_is_detected(gen: Sequential, data: Any) -> None:
    h, _ = gen
    if not h:
        return
    i = data.draw(st.integers(0, len(h) - 1))
    h[i].result = data.draw(st.sampled_from(alternatives(h[i])))
    res = check(h, reads="linearizable")
    assert_fails(res, h[i].path, blocked=i)
    if h[i].kind not in ("read", "syncread"):
        assert_fails(check(h), h[i].path, blocked=i)


@PROPERTY
@given(sequential_histories(unknown=False), st.data())
def test_stale_syncread_is_detected(gen: Sequential, data: Any) -> None:
    h, past = gen
    reads = [i for i, o in enumerate(h) if o.kind == "syncread"]
    if not reads:
        return
    i = data.draw(st.sampled_from(reads))
    now = None if h[i].result == "nonode" else (h[i].result[1], h[i].result[2])
    older = [s for s in past[i] if s != now]
    if not older:
        return
    s = data.draw(st.sampled_from(older))
    h[i].result = "nonode" if s is None else ("ok", s[0], s[1])
    res = check_sync_reads(h)
    assert not res.ok and not res.unknown, res.explanation
    assert res.path == h[i].path
    assert check(h).ok  # plain check() ignores syncreads


# --------------------------------------------------------------------- timing


def concurrent_history(n_ops: int, n_paths: int, n_clients: int, seed: int) -> List[Op]:
    """A linearizable history: each client issues ops back to back with random
    latency; every op takes effect at a random moment inside its interval; about 2%
    lose their reply (half of those never take effect)."""
    rng = random.Random(seed)
    paths = [f"/k{j}" for j in range(n_paths)]
    clock = [0] * n_clients
    planned = []  # (point, order, op, fate)
    for n in range(n_ops):
        c = n % n_clients
        call = clock[c] + rng.randint(0, 3)
        ret = call + rng.randint(1, 30)
        clock[c] = ret
        kind = rng.choice(KINDS)
        value = rng.choice(VALUES) if kind in ("create", "set", "cas") else None
        version = rng.choice((-1, -1, 0, 1, 2)) if kind in ("delete", "set", "check", "cas") else -1
        o = Op(c, call, ret, kind, rng.choice(paths), value, version)
        fate = rng.choices(("known", "applied", "dropped"), (98, 1, 1))[0]
        planned.append((rng.uniform(call, ret), n, o, fate))
    state: Dict[str, State] = {p: None for p in paths}
    for _point, _n, o, fate in sorted(planned, key=lambda t: (t[0], t[1])):
        out, new = model_step(o.kind, o.value, o.version, state[o.path])
        if fate != "dropped":
            state[o.path] = new
        if fate == "known":
            o.result = out
        else:
            o.ret = None
    return [t[2] for t in planned]


def test_performance_2000_ops_20_paths_5_clients(capsys: pytest.CaptureFixture[str]) -> None:
    h = concurrent_history(2000, 20, 5, seed=5)
    lines = []
    for reads in ("exclude", "linearizable"):
        t0 = time.perf_counter()
        res = check(h, reads=reads)
        dt = time.perf_counter() - t0
        assert res.ok, res.explanation
        lines.append(f"check(reads={reads!r}): {dt * 1000:.0f} ms, {res.steps} steps")
    t0 = time.perf_counter()
    res = check_sync_reads(h)
    dt = time.perf_counter() - t0
    assert res.ok, res.explanation
    lines.append(f"check_sync_reads: {dt * 1000:.0f} ms, {res.steps} steps")
    # a set in the middle claims a version no state ever reaches: the search must
    # exhaust every linearization of that path's ops before it
    victim = next(i for i in range(len(h) // 2, len(h)) if h[i].ret is not None and h[i].kind == "set")
    h[victim].result = ("ok", 999)
    t0 = time.perf_counter()
    res = check(h)
    dt = time.perf_counter() - t0
    assert not res.ok and res.path == h[victim].path
    lines.append(f"check of a corrupted copy: {dt * 1000:.0f} ms, {res.steps} steps (fails)")
    with capsys.disabled():
        print("\n[linearizability timing, 2000 ops / 20 paths / 5 clients] " + "; ".join(lines))
