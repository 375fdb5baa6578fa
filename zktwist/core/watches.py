"""Watch tables, with Apache ZooKeeper 3.8's WatchManager semantics.

Two managers exist per tree: the data table (exists/getData watches, persistent
and persistent-recursive watches) and the child table (getChildren watches and
persistent watches).  A watcher is any object with
``process_event(event_type, path)`` -- a client connection in the server, a
recorder in tests.  Each watcher has one mode per path in a manager (the last
one set wins, as in 3.8).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from zktwist.proto.consts import EventType

STANDARD = 0
PERSISTENT = 1
PERSISTENT_RECURSIVE = 2


def parent_paths(path: str) -> Iterator[str]:
    """The path's ancestors, nearest first, ending with '/'."""
    while True:
        i = path.rfind("/")
        if i <= 0:
            if path != "/":
                yield "/"
            return
        path = path[:i]
        yield path


class WatchManager:
    """One watch table (data or child) keyed by path."""

    def __init__(self) -> None:
        # ``event_filter(watcher, acl) -> bool`` drops events a watcher may not
        # read (ZOOKEEPER-4799 / CVE-2024-23944, in Debian's 3.8.0 and 3.8.4+).
        self.event_filter: Optional[Callable[[object, object], bool]] = None
        self.table: Dict[str, Set[object]] = {}
        self.by_watcher: Dict[object, Set[str]] = {}
        self.modes: Dict[Tuple[object, str], int] = {}
        self.recursive_count = 0

    def add(self, path: str, watcher: object, mode: int = STANDARD) -> None:
        watchers = self.table.get(path)
        if watchers is None:
            watchers = self.table[path] = set()
        watchers.add(watcher)
        paths = self.by_watcher.get(watcher)
        if paths is None:
            paths = self.by_watcher[watcher] = set()
        paths.add(path)
        self._set_mode(watcher, path, mode)

    def _set_mode(self, watcher: object, path: str, mode: int) -> None:
        key = (watcher, path)
        old = self.modes.pop(key, STANDARD)
        if old == PERSISTENT_RECURSIVE:
            self.recursive_count -= 1
        if mode != STANDARD:
            self.modes[key] = mode
            if mode == PERSISTENT_RECURSIVE:
                self.recursive_count += 1

    def remove_watcher(self, watcher: object) -> None:
        """Forget every watch of ``watcher`` (its connection closed)."""
        paths = self.by_watcher.pop(watcher, None)
        if not paths:
            return
        for p in paths:
            watchers = self.table.get(p)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self.table[p]
            self._set_mode(watcher, p, STANDARD)

    def remove(self, path: str, watcher: object) -> bool:
        paths = self.by_watcher.get(watcher)
        if paths is None or path not in paths:
            return False
        paths.discard(path)
        if not paths:
            del self.by_watcher[watcher]
        watchers = self.table.get(path)
        if watchers is None or watcher not in watchers:
            return False
        watchers.discard(watcher)
        if not watchers:
            del self.table[path]
        self._set_mode(watcher, path, STANDARD)
        return True

    def remove_mode(self, path: str, watcher: object, mode: int) -> bool:
        """Remove the watch only if it has ``mode`` (removeWatches types 4/5, 3.9)."""
        if self.modes.get((watcher, path), STANDARD) != mode:
            return False
        return self.remove(path, watcher)

    def contains(self, path: str, watcher: object) -> bool:
        # 3.8.0 quirk kept on purpose: at the leaf, any registration on the
        # path counts (WatchManager.containsWatcher).
        if path in self.table:
            return True
        return self.modes.get((watcher, path), STANDARD) == PERSISTENT_RECURSIVE

    def has(self, path: str, watcher: object) -> bool:
        watchers = self.table.get(path)
        return watchers is not None and watcher in watchers

    def mode_of(self, path: str, watcher: object) -> int:
        return self.modes.get((watcher, path), STANDARD)

    def trigger(self, path: str, event_type: int,
                suppress: Optional[Set[object]] = None,
                acl: object = None) -> Optional[Set[object]]:
        """Deliver ``event_type`` for ``path``; return the set of watchers it matched.

        ``acl`` is the ACL of the node the event is about: a watcher that may
        not read it is matched (and a one-shot watch consumed) but gets nothing.
        """
        fired: Optional[Set[object]] = None
        watchers = self.table.get(path)
        if watchers:
            modes = self.modes
            for w in list(watchers):
                mode = modes.get((w, path), STANDARD)
                if mode == PERSISTENT_RECURSIVE:
                    if event_type == EventType.NodeChildrenChanged:
                        continue
                elif mode == STANDARD:
                    watchers.discard(w)
                    paths = self.by_watcher.get(w)
                    if paths is not None:
                        paths.discard(path)
                        if not paths:
                            del self.by_watcher[w]
                if fired is None:
                    fired = set()
                fired.add(w)
            if not watchers:
                del self.table[path]
        if self.recursive_count and event_type != EventType.NodeChildrenChanged:
            for p in parent_paths(path):
                parents = self.table.get(p)
                if not parents:
                    continue
                for w in parents:
                    if self.modes.get((w, p), STANDARD) == PERSISTENT_RECURSIVE:
                        if fired is None:
                            fired = set()
                        fired.add(w)
        if fired:
            allowed = self.event_filter if acl is not None else None
            for w in fired:
                if suppress is not None and w in suppress:
                    continue
                if allowed is not None and not allowed(w, acl):
                    continue
                w.process_event(event_type, path)  # type: ignore[attr-defined]
        return fired

    def watch_count(self) -> int:
        return sum(len(p) for p in self.by_watcher.values())

    def paths_of(self, watcher: object) -> Set[str]:
        return set(self.by_watcher.get(watcher, ()))

    def __len__(self) -> int:
        return sum(len(w) for w in self.table.values())


def merge_triggered(*sets: Optional[Set[object]]) -> Set[object]:
    out: Set[object] = set()
    for s in sets:
        if s:
            out |= s
    return out
