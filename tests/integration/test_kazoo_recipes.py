"""Every single-server kazoo recipe, checked for its guarantee, on a real server.

Runs against zktwist by default; ``ZKTWIST_TEST_TARGET=apache`` runs the same
tests against Apache ZooKeeper 3.8.  Every wait is bounded.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Callable, List

import pytest
from kazoo.exceptions import (BadVersionError, CancelledError, ConnectionClosedError, LockTimeout,
                              NoNodeError, RolledBackError, SessionExpiredError)
from kazoo.protocol.states import EventType
from kazoo.recipe.cache import TreeCache, TreeEvent
from kazoo.recipe.watchers import PatientChildrenWatch

from tests.integration.conftest import WAIT, EventRecorder, settle, wait_until


def run_threads(targets: List[Callable[[], None]], timeout: float = WAIT * 2) -> None:
    """Run callables in threads, join them (bounded) and re-raise the first error."""
    errors: list = []

    def wrap(fn):
        def runner():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        return runner

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    if errors:
        raise errors[0]
    assert not alive, f"{len(alive)} thread(s) still running after {timeout}s"


class Occupancy:
    """Counts how many threads are inside a critical section at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside = 0
        self.max_inside = 0
        self.entries = 0

    def __enter__(self):
        with self._lock:
            self.inside += 1
            self.entries += 1
            self.max_inside = max(self.max_inside, self.inside)
        return self

    def __exit__(self, *exc):
        with self._lock:
            self.inside -= 1


# ------------------------------------------------------------------ Lock


def test_lock_mutual_exclusion_under_threads(zk_factory, base_path):
    clients = [zk_factory() for _ in range(2)]
    lock_path = f"{base_path}/lock"
    counter_path = f"{base_path}/counter"
    clients[0].create(counter_path, b"0")
    occupancy = Occupancy()
    rounds = 5

    def worker(client, ident):
        def run():
            lock = client.Lock(lock_path, ident)
            for _ in range(rounds):
                with lock:
                    with occupancy:
                        # unprotected read-modify-write: only the lock makes it safe
                        value = int(client.get(counter_path)[0])
                        time.sleep(0.005)
                        client.set(counter_path, str(value + 1).encode())
        return run

    workers = [worker(clients[i % 2], f"worker-{i}") for i in range(4)]
    run_threads(workers)
    assert occupancy.max_inside == 1
    assert occupancy.entries == 4 * rounds
    assert int(clients[0].get(counter_path)[0]) == 4 * rounds
    assert clients[0].get_children(lock_path) == []


def test_lock_contention_and_blocking_acquire(zk_factory, base_path):
    a, b = zk_factory(), zk_factory()
    path = f"{base_path}/lock"
    lock_a = a.Lock(path, "holder-a")
    lock_b = b.Lock(path, "waiter-b")
    assert lock_a.acquire(timeout=WAIT)
    assert lock_a.is_acquired
    assert lock_b.acquire(blocking=False) is False
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        lock_b.acquire(timeout=0.3)
    assert time.monotonic() - started >= 0.25
    assert lock_a.contenders() == ["holder-a"]

    acquired = threading.Event()

    def blocking_acquire():
        assert lock_b.acquire(timeout=WAIT)
        acquired.set()

    t = threading.Thread(target=blocking_acquire, daemon=True)
    t.start()
    wait_until(lambda: len(lock_a.contenders()) == 2, message="b queued on the lock")
    assert lock_a.contenders() == ["holder-a", "waiter-b"]
    time.sleep(0.1)
    assert not acquired.is_set()
    lock_a.release()
    assert acquired.wait(WAIT), "b never got the lock after a released it"
    t.join(WAIT)
    assert lock_b.contenders() == ["waiter-b"]
    assert lock_a.acquire(blocking=False) is False
    lock_b.release()
    assert lock_a.acquire(blocking=False) is True
    lock_a.release()


def test_lock_released_when_holder_session_closes(zk_factory, base_path):
    a, b = zk_factory(), zk_factory()
    path = f"{base_path}/lock"
    assert a.Lock(path, "a").acquire(timeout=WAIT)
    lock_b = b.Lock(path, "b")
    got = threading.Event()
    t = threading.Thread(target=lambda: lock_b.acquire(timeout=WAIT) and got.set(), daemon=True)
    t.start()
    wait_until(lambda: len(b.get_children(path)) == 2, message="b waiting")
    assert not got.is_set()
    a.stop()  # the holder's ephemeral lock node disappears
    assert got.wait(WAIT)
    t.join(WAIT)
    lock_b.release()


def test_lock_cancel_releases_waiter(zk_factory, base_path):
    a, b = zk_factory(), zk_factory()
    path = f"{base_path}/lock"
    lock_a = a.Lock(path)
    lock_a.acquire()
    lock_b = b.Lock(path)
    result = []

    def acquire():
        try:
            result.append(lock_b.acquire(timeout=WAIT))
        except CancelledError:
            result.append("cancelled")

    t = threading.Thread(target=acquire, daemon=True)
    t.start()
    wait_until(lambda: len(a.get_children(path)) == 2, message="b waiting")
    lock_b.cancel()
    t.join(WAIT)
    assert not t.is_alive()
    assert result == ["cancelled"]  # woken by the cancel, never acquired
    wait_until(lambda: len(a.get_children(path)) == 1, message="b's node cleaned up")
    lock_a.release()


def test_read_write_lock(zk_factory, base_path):
    c1, c2, c3 = zk_factory(), zk_factory(), zk_factory()
    path = f"{base_path}/rw"
    r1 = c1.ReadLock(path, "r1")
    r2 = c2.ReadLock(path, "r2")
    w = c3.WriteLock(path, "w")
    assert r1.acquire(timeout=WAIT)
    assert r2.acquire(timeout=WAIT)  # readers share
    assert w.acquire(blocking=False) is False
    got_write = threading.Event()
    t = threading.Thread(target=lambda: w.acquire(timeout=WAIT) and got_write.set(), daemon=True)
    t.start()
    wait_until(lambda: len(c1.get_children(path)) == 3, message="writer queued")
    r1.release()
    time.sleep(0.2)
    assert not got_write.is_set(), "writer got the lock while a reader held it"
    r2.release()
    assert got_write.wait(WAIT)
    t.join(WAIT)
    # while the writer holds it, neither readers nor writers get in
    r3 = c1.ReadLock(path, "r3")
    assert r3.acquire(blocking=False) is False
    w2 = c2.WriteLock(path, "w2")
    assert w2.acquire(blocking=False) is False
    w.release()
    assert r3.acquire(timeout=WAIT)
    r3.release()


def test_read_write_lock_exclusion_under_threads(zk_factory, base_path):
    clients = [zk_factory() for _ in range(2)]
    path = f"{base_path}/rw"
    state_lock = threading.Lock()
    state = {"readers": 0, "writers": 0, "max_readers": 0, "violations": 0}

    def enter(kind):
        with state_lock:
            if kind == "w":
                if state["readers"] or state["writers"]:
                    state["violations"] += 1
                state["writers"] += 1
            else:
                if state["writers"]:
                    state["violations"] += 1
                state["readers"] += 1
                state["max_readers"] = max(state["max_readers"], state["readers"])

    def leave(kind):
        with state_lock:
            state["writers" if kind == "w" else "readers"] -= 1

    def worker(client, kind):
        def run():
            lock = client.WriteLock(path) if kind == "w" else client.ReadLock(path)
            for _ in range(3):
                with lock:
                    enter(kind)
                    time.sleep(0.02)
                    leave(kind)
        return run

    run_threads([worker(clients[i % 2], kind) for i, kind in enumerate("rrrww")])
    assert state["violations"] == 0
    assert state["readers"] == 0 and state["writers"] == 0


# ------------------------------------------------------------------ Semaphore


def test_semaphore_limits_holders(zk_factory, base_path):
    c1, c2, c3 = zk_factory(), zk_factory(), zk_factory()
    path = f"{base_path}/sem"
    s1 = c1.Semaphore(path, "one", max_leases=2)
    s2 = c2.Semaphore(path, "two", max_leases=2)
    s3 = c3.Semaphore(path, "three", max_leases=2)
    assert s1.acquire(timeout=WAIT)
    assert s2.acquire(timeout=WAIT)
    assert s3.acquire(blocking=False) is False
    assert sorted(s3.lease_holders()) == ["one", "two"]
    with pytest.raises(LockTimeout):
        s3.acquire(timeout=0.3)
    got = threading.Event()
    t = threading.Thread(target=lambda: s3.acquire(timeout=WAIT) and got.set(), daemon=True)
    t.start()
    time.sleep(0.1)
    assert not got.is_set()
    c1.stop()  # lease of "one" vanishes with its session
    assert got.wait(WAIT)
    t.join(WAIT)
    assert sorted(s2.lease_holders()) == ["three", "two"]
    # a different max_leases for the same semaphore is refused
    with pytest.raises(ValueError):
        c2.Semaphore(path, "bad", max_leases=3).acquire(blocking=False)
    s2.release()
    s3.release()
    assert s2.lease_holders() == []


def test_semaphore_bound_under_threads(zk_factory, base_path):
    clients = [zk_factory() for _ in range(2)]
    path = f"{base_path}/sem"
    occupancy = Occupancy()

    def worker(client, i):
        def run():
            sem = client.Semaphore(path, f"w{i}", max_leases=2)
            for _ in range(3):
                with sem:
                    with occupancy:
                        time.sleep(0.02)
        return run

    run_threads([worker(clients[i % 2], i) for i in range(5)])
    assert occupancy.entries == 15
    assert occupancy.max_inside <= 2


# ------------------------------------------------------------------ Election


def test_election_one_leader_at_a_time(zk_factory, base_path):
    clients = [zk_factory() for _ in range(3)]
    path = f"{base_path}/election"
    occupancy = Occupancy()
    leaders: list = []
    elections = [c.Election(path, f"candidate-{i}") for i, c in enumerate(clients)]
    first_leader = threading.Event()
    proceed = threading.Event()

    def campaign(i):
        def lead():
            with occupancy:
                leaders.append(i)
                first_leader.set()
                if len(leaders) == 1:
                    assert proceed.wait(WAIT)
                time.sleep(0.05)
        return lambda: elections[i].run(lead)

    runners = [threading.Thread(target=campaign(i), daemon=True) for i in range(3)]
    for t in runners:
        t.start()
    assert first_leader.wait(WAIT)
    wait_until(lambda: len(elections[0].contenders()) == 3, message="all three contending")
    contenders = elections[0].contenders()
    assert sorted(contenders) == ["candidate-0", "candidate-1", "candidate-2"]
    assert contenders[0] == f"candidate-{leaders[0]}"  # the leader is first in line
    assert len(leaders) == 1
    proceed.set()
    for t in runners:
        t.join(WAIT)
    assert not any(t.is_alive() for t in runners)
    assert sorted(leaders) == [0, 1, 2]  # everybody led exactly once, in turn
    assert occupancy.max_inside == 1
    assert elections[0].contenders() == []


def test_election_cancel_and_leader_session_loss(zk_factory, base_path):
    a, b, c = zk_factory(), zk_factory(), zk_factory()
    path = f"{base_path}/election"
    leading = threading.Event()
    b_led = threading.Event()
    ea = a.Election(path, "a")
    eb = b.Election(path, "b")
    ec = c.Election(path, "c")
    release = threading.Event()

    def lead_until_session_lost() -> None:
        # the leader's client is stopped under it: releasing its lock node then fails
        try:
            ea.run(lambda: (leading.set(), release.wait(WAIT)))
        except (ConnectionClosedError, SessionExpiredError):
            pass

    ta = threading.Thread(target=lead_until_session_lost, daemon=True)
    ta.start()
    assert leading.wait(WAIT)
    tc = threading.Thread(target=lambda: ec.run(lambda: None), daemon=True)
    tc.start()
    wait_until(lambda: ea.contenders() == ["a", "c"], message="c contending")
    ec.cancel()
    tc.join(WAIT)
    assert not tc.is_alive()
    wait_until(lambda: ea.contenders() == ["a"], message="c withdrawn")
    tb = threading.Thread(target=lambda: eb.run(b_led.set), daemon=True)
    tb.start()
    wait_until(lambda: eb.contenders() == ["a", "b"], message="b contending")
    assert not b_led.is_set()
    a.stop()  # leader's session ends: leadership passes on
    assert b_led.wait(WAIT)
    tb.join(WAIT)
    release.set()
    ta.join(WAIT)
    assert not ta.is_alive()


# ------------------------------------------------------------------ Queues


def test_queue_priority_and_fifo(zk, base_path):
    q = zk.Queue(f"{base_path}/q")
    assert q.get() is None
    for i in range(5):
        q.put(f"normal-{i}".encode())
    q.put(b"urgent", priority=1)
    q.put(b"late", priority=500)
    assert len(q) == 7
    got = [q.get() for _ in range(7)]
    assert got == [b"urgent"] + [f"normal-{i}".encode() for i in range(5)] + [b"late"]
    assert q.get() is None
    assert len(q) == 0


def test_queue_each_item_consumed_once(zk_factory, base_path):
    producer = zk_factory()
    consumers = [zk_factory() for _ in range(2)]
    path = f"{base_path}/q"
    items = [f"item-{i:02d}".encode() for i in range(30)]
    q = producer.Queue(path)
    for item in items:
        q.put(item)
    taken: list = []
    taken_lock = threading.Lock()

    def consume(client):
        def run():
            cq = client.Queue(path)
            mine = []
            while True:
                item = cq.get()
                if item is None:
                    break
                mine.append(item)
            # each consumer sees the items it took in queue order
            assert mine == sorted(mine)
            with taken_lock:
                taken.extend(mine)
        return run

    run_threads([consume(c) for c in consumers] * 2)
    assert sorted(taken) == items


def test_locking_queue(zk_factory, base_path):
    c1, c2 = zk_factory(), zk_factory()
    path = f"{base_path}/lq"
    q1 = c1.LockingQueue(path)
    q2 = c2.LockingQueue(path)
    assert q1.get(timeout=0.2) is None
    q1.put(b"first")
    q1.put_all([b"second", b"third"])
    q1.put(b"zero", priority=10)
    assert len(q1) == 4

    assert q1.get(timeout=WAIT) == b"zero"
    assert q1.holds_lock()
    assert q1.get(timeout=WAIT) == b"zero"  # unconsumed entry is returned again
    # the other consumer skips the locked entry
    assert q2.get(timeout=WAIT) == b"first"
    assert q2.release()  # back to the queue, unconsumed
    assert q1.consume()
    assert len(q1) == 3
    assert q1.get(timeout=WAIT) == b"first"
    assert q1.consume()

    # a consumer that dies with an entry locked gives it back
    assert q2.get(timeout=WAIT) == b"second"
    c2.stop()
    assert q1.get(timeout=WAIT) == b"second"
    assert q1.consume()
    assert q1.get(timeout=WAIT) == b"third"
    assert q1.consume()
    assert len(q1) == 0
    assert q1.get(timeout=0.2) is None


def test_locking_queue_blocking_get_wakes_on_put(zk_factory, base_path):
    c1, c2 = zk_factory(), zk_factory()
    path = f"{base_path}/lq"
    consumer = c1.LockingQueue(path)
    producer = c2.LockingQueue(path)
    result = []
    t = threading.Thread(target=lambda: result.append(consumer.get(timeout=WAIT)), daemon=True)
    t.start()
    time.sleep(0.2)
    producer.put(b"wake")
    t.join(WAIT)
    assert result == [b"wake"]
    assert consumer.consume()


# ------------------------------------------------------------------ Barriers


def test_barrier(zk_factory, base_path):
    a, b = zk_factory(), zk_factory()
    path = f"{base_path}/barrier"
    assert a.Barrier(path).wait(timeout=0.1) is True  # no barrier: pass straight through
    barrier = a.Barrier(path)
    barrier.create()
    assert b.Barrier(path).wait(timeout=0.2) is False
    passed = []
    waiters = [threading.Thread(target=lambda c=c: passed.append(c.Barrier(path).wait(timeout=WAIT)), daemon=True)
               for c in (a, b)]
    for t in waiters:
        t.start()
    time.sleep(0.2)
    assert passed == []
    assert barrier.remove() is True
    for t in waiters:
        t.join(WAIT)
    assert passed == [True, True]
    assert barrier.remove() is False


def test_double_barrier(zk_factory, base_path):
    clients = [zk_factory() for _ in range(3)]
    path = f"{base_path}/double"
    log: list = []
    log_lock = threading.Lock()

    def note(what, i):
        with log_lock:
            log.append((what, i))

    def participant(i):
        def run():
            barrier = clients[i].DoubleBarrier(path, 3, identifier=f"p{i}")
            time.sleep(0.05 * i)
            note("entering", i)
            barrier.enter()
            note("entered", i)
            time.sleep(0.05 * (2 - i))
            note("leaving", i)
            barrier.leave()
            note("left", i)
        return run

    run_threads([participant(i) for i in range(3)])
    positions = {event: n for n, event in enumerate(log)}
    last_entering = max(positions[("entering", i)] for i in range(3))
    first_entered = min(positions[("entered", i)] for i in range(3))
    assert last_entering < first_entered, log  # nobody gets in before all arrive
    last_leaving = max(positions[("leaving", i)] for i in range(3))
    first_left = min(positions[("left", i)] for i in range(3))
    assert last_leaving < first_left, log  # nobody gets out before all are leaving
    assert clients[0].get_children(path) == []


# ------------------------------------------------------------------ Counter


def test_counter_int_and_float(zk, base_path):
    counter = zk.Counter(f"{base_path}/int")
    assert counter.value == 0
    counter += 5
    assert (counter.pre_value, counter.post_value) == (0, 5)
    counter -= 2
    assert counter.value == 3
    assert zk.get(f"{base_path}/int")[0] == b"3"
    with pytest.raises(TypeError):
        counter += 1.5

    fcounter = zk.Counter(f"{base_path}/float", default=1.5)
    assert fcounter.value == 1.5
    fcounter += 2.25
    assert fcounter.value == 3.75
    fcounter -= 0.75
    assert fcounter.value == 3.0

    curator = zk.Counter(f"{base_path}/curator", support_curator=True)
    curator += 7
    assert curator.value == 7
    assert zk.get(f"{base_path}/curator")[0] == b"\x00\x00\x00\x07"


def test_counter_concurrent_increments_are_exact(zk_factory, base_path):
    clients = [zk_factory() for _ in range(2)]
    path = f"{base_path}/counter"

    def worker(client):
        def run():
            counter = client.Counter(path)
            for _ in range(10):
                counter += 1
        return run

    run_threads([worker(clients[i % 2]) for i in range(4)])
    assert clients[0].Counter(path).value == 40
    assert clients[0].exists(path).version == 40


# ------------------------------------------------------------------ Party


def test_party_and_shallow_party(zk_factory, base_path):
    a, b, observer = zk_factory(), zk_factory(), zk_factory()
    for cls_name in ("Party", "ShallowParty"):
        path = f"{base_path}/{cls_name}"
        pa = getattr(a, cls_name)(path, "alice")
        pb = getattr(b, cls_name)(path, "bob")
        watch = getattr(observer, cls_name)(path)
        assert len(watch) == 0
        pa.join()
        pb.join()
        assert len(watch) == 2
        assert sorted(watch) == ["alice", "bob"]
        pa.leave()
        assert list(watch) == ["bob"]
        pa.join()
        assert sorted(watch) == ["alice", "bob"]
        b.stop()  # ephemeral membership ends with the session
        assert list(watch) == ["alice"]
        pa.leave()
        assert len(watch) == 0
        b.restart()


# ------------------------------------------------------------------ SetPartitioner


def test_set_partitioner(zk_factory, base_path):
    a, b = zk_factory(), zk_factory()
    path = f"{base_path}/partition"
    items = [f"part-{i}" for i in range(6)]

    pa = a.SetPartitioner(path, set=items, identifier="a", time_boundary=0.3)
    pa.wait_for_acquire(timeout=WAIT)
    assert pa.acquired
    assert sorted(pa) == items  # alone: it gets everything

    pb = b.SetPartitioner(path, set=items, identifier="b", time_boundary=0.3)
    wait_until(lambda: pa.release, message="a asked to release after b joined")
    pa.release_set()

    deadline = time.monotonic() + WAIT
    while not (pa.acquired and pb.acquired):
        assert time.monotonic() < deadline, (pa.state, pb.state)
        for p in (pa, pb):
            if p.failed:
                pytest.fail("partitioner failed")
            if p.release:
                p.release_set()
            elif p.allocating:
                p.wait_for_acquire(timeout=0.5)
    mine_a, mine_b = set(pa), set(pb)
    assert mine_a and mine_b
    assert not (mine_a & mine_b)  # each item to exactly one member
    assert mine_a | mine_b == set(items)

    pb.finish()
    deadline = time.monotonic() + WAIT
    while not (pa.acquired and sorted(pa) == items):
        assert time.monotonic() < deadline, pa.state
        if pa.release:
            pa.release_set()
        elif pa.allocating:
            pa.wait_for_acquire(timeout=0.5)
        else:
            time.sleep(0.02)
    pa.finish()


# ------------------------------------------------------------------ Leases


def test_non_blocking_leases(zk_factory, base_path):
    a, b, c = zk_factory(), zk_factory(), zk_factory()
    path = f"{base_path}/lease"
    hour = datetime.timedelta(hours=1)
    assert a.NonBlockingLease(path, hour, identifier="a")
    assert not b.NonBlockingLease(path, hour, identifier="b")
    assert a.NonBlockingLease(path, hour, identifier="a")  # renewal by the holder
    # an expired lease can be taken over
    later = lambda: datetime.datetime.utcnow() + datetime.timedelta(hours=2)  # noqa: E731
    assert b.NonBlockingLease(path, hour, identifier="b", utcnow=later)

    mpath = f"{base_path}/multi"
    assert a.MultiNonBlockingLease(2, mpath, hour, identifier="a")
    assert b.MultiNonBlockingLease(2, mpath, hour, identifier="b")
    assert not c.MultiNonBlockingLease(2, mpath, hour, identifier="c")


# ------------------------------------------------------------------ Watchers


def test_data_watch_events_and_stop(zk_factory, zk, base_path):
    other = zk_factory()
    path = f"{base_path}/dw"
    zk.create(path, b"0")
    calls = []

    def watcher(data, stat, event):
        calls.append((data, event.type if event else None))
        return data != b"stop"

    zk.DataWatch(path, watcher)
    wait_until(lambda: calls, message="first DataWatch call")
    assert calls[0] == (b"0", None)
    other.set(path, b"1")
    wait_until(lambda: len(calls) >= 2, message="DataWatch change")
    assert calls[1] == (b"1", EventType.CHANGED)
    other.set(path, b"stop")
    wait_until(lambda: len(calls) >= 3, message="DataWatch stop value")
    other.set(path, b"after-stop")
    settle(zk)
    settle(other)
    assert [c[0] for c in calls] == [b"0", b"1", b"stop"]


def test_children_watch_with_events(zk_factory, zk, base_path):
    other = zk_factory()
    calls = []

    def watcher(children, event):
        calls.append((sorted(children), event.type if event else None))

    zk.ChildrenWatch(base_path, watcher, send_event=True)
    wait_until(lambda: calls, message="first ChildrenWatch call")
    assert calls[0] == ([], None)
    other.create(f"{base_path}/a")
    wait_until(lambda: any(c[0] == ["a"] for c in calls), message="child a")
    other.create(f"{base_path}/b")
    wait_until(lambda: any(c[0] == ["a", "b"] for c in calls), message="child b")
    other.delete(f"{base_path}/a")
    wait_until(lambda: calls[-1][0] == ["b"], message="child a removed")
    assert all(c[1] == EventType.CHILD for c in calls[1:])


def test_patient_children_watch(zk_factory, zk, base_path):
    other = zk_factory()
    watch = PatientChildrenWatch(zk, base_path, time_boundary=0.3)
    result = watch.start()
    for i in range(3):
        other.create(f"{base_path}/c{i}")
        time.sleep(0.05)
    children, changed = result.get(timeout=WAIT)
    assert sorted(children) == ["c0", "c1", "c2"]
    assert not changed.ready()
    other.create(f"{base_path}/c3")
    changed.get(timeout=WAIT)  # set when the children change later


# ------------------------------------------------------------------ TreeCache


def test_tree_cache(zk_factory, zk, base_path):
    other = zk_factory()
    root = f"{base_path}/tree"
    zk.create(f"{root}/a/b", b"ab", makepath=True)
    zk.create(f"{root}/c", b"c")
    cache = TreeCache(zk, root)
    events: list = []
    initialized = threading.Event()

    def listener(event):
        events.append(event)
        if event.event_type == TreeEvent.INITIALIZED:
            initialized.set()

    cache.listen(listener)
    faults = []
    cache.listen_fault(faults.append)
    cache.start()
    try:
        assert initialized.wait(WAIT)
        added = {e.event_data.path for e in events if e.event_type == TreeEvent.NODE_ADDED}
        assert added == {root, f"{root}/a", f"{root}/a/b", f"{root}/c"}
        assert cache.get_data(f"{root}/a/b").data == b"ab"
        assert sorted(cache.get_children(root)) == ["a", "c"]

        other.set(f"{root}/c", b"c2")
        wait_until(lambda: cache.get_data(f"{root}/c").data == b"c2", message="cache update")
        assert cache.get_data(f"{root}/c").stat.version == 1
        other.create(f"{root}/a/new", b"n")
        wait_until(lambda: cache.get_data(f"{root}/a/new") is not None, message="cache add")
        other.delete(f"{root}/a", recursive=True)
        wait_until(lambda: cache.get_data(f"{root}/a") is None, message="cache removal")
        assert sorted(cache.get_children(root)) == ["c"]

        def kinds():
            return {(e.event_type, e.event_data.path) for e in list(events) if e.event_data is not None}

        # listeners hear about changes a little after the cache's state changes
        expected = {
            (TreeEvent.NODE_UPDATED, f"{root}/c"),
            (TreeEvent.NODE_ADDED, f"{root}/a/new"),
            (TreeEvent.NODE_REMOVED, f"{root}/a/new"),
            (TreeEvent.NODE_REMOVED, f"{root}/a/b"),
            (TreeEvent.NODE_REMOVED, f"{root}/a"),
        }
        wait_until(lambda: expected <= kinds(), message=f"tree events {expected - kinds()}")
        assert (TreeEvent.NODE_REMOVED, f"{root}/c") not in kinds()
        assert faults == []
    finally:
        cache.close()


# ------------------------------------------------------------------ TransactionRequest


def test_transaction_compare_and_set_exactly_one_winner(zk_factory, base_path):
    clients = [zk_factory() for _ in range(3)]
    path = f"{base_path}/cas"
    clients[0].create(path, b"initial")
    version = clients[0].exists(path).version
    barrier = threading.Barrier(3)
    outcomes: list = []
    lock = threading.Lock()

    def contender(i):
        def run():
            tx = clients[i].transaction()
            tx.check(path, version)
            tx.set_data(path, f"winner-{i}".encode())
            tx.create(f"{path}/claimed-by-{i}")
            barrier.wait(WAIT)
            results = tx.commit()
            with lock:
                outcomes.append((i, results))
        return run

    run_threads([contender(i) for i in range(3)])
    winners = [i for i, r in outcomes if r[0] is True]
    assert len(winners) == 1
    for i, results in outcomes:
        if i in winners:
            assert results[1].version == version + 1
            assert results[2] == f"{path}/claimed-by-{i}"
        else:
            assert isinstance(results[0], BadVersionError)
            assert all(isinstance(r, Exception) for r in results)
    assert clients[0].get(path)[0] == f"winner-{winners[0]}".encode()
    assert clients[0].get_children(path) == [f"claimed-by-{winners[0]}"]


def test_transaction_request_async_commit(zk, base_path):
    tx = zk.transaction()
    tx.create(f"{base_path}/x", b"1")
    tx.delete(f"{base_path}/missing")
    async_result = tx.commit_async()
    results = async_result.get(timeout=WAIT)
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], NoNodeError)
    with pytest.raises(ValueError):
        tx.create(f"{base_path}/y")  # a committed transaction is closed
    assert zk.exists(f"{base_path}/x") is None
