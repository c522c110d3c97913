"""Snapshots per node group, and the watches through which streams learn of new ones.

``set_snapshot`` checks a snapshot before it replaces anything: an inconsistent snapshot is
rejected and the group keeps its previous one. Watchers of a group are told only when its
snapshot version changed; each stream then works out which types differ for it.

Watch callbacks run on the event loop that created the watch; ``set_snapshot`` may be called
from that loop (direct call) or from another thread (handed over with call_soon_threadsafe).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from controlplane.xds.snapshot import Snapshot

SnapshotCallback = Callable[[Snapshot], None]


class Watch:
    """One stream's interest in one group; ``cancel`` when the stream ends."""

    def __init__(self, cache: SnapshotCache, group: str, callback: SnapshotCallback) -> None:
        self.group = group
        self._cache = cache
        self._callback = callback
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread = threading.get_ident()

    def notify(self, snapshot: Snapshot) -> None:
        if self._loop is None or threading.get_ident() == self._thread:
            self._callback(snapshot)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._callback, snapshot)

    def cancel(self) -> None:
        self._cache._unwatch(self)


class SnapshotCache:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._watches: dict[str, set[Watch]] = {}
        self._lock = threading.Lock()

    def set_snapshot(self, group: str, snapshot: Snapshot, *, checked: bool = False) -> bool:
        """Publish ``snapshot`` for ``group``; False if it was already the current version.

        Raises InconsistentSnapshotError (and keeps the previous snapshot) if its
        cross-references do not hold. ``checked=True``: the caller has already run
        ``snapshot.check_consistent()`` (off the event loop), so it is not run again.
        """
        if not checked:
            snapshot.check_consistent()
        with self._lock:
            current = self._snapshots.get(group)
            if current is not None and current.version == snapshot.version:
                return False
            self._snapshots[group] = snapshot
            watches = list(self._watches.get(group, ()))
        for watch in watches:
            watch.notify(snapshot)
        return True

    def get(self, group: str) -> Snapshot | None:
        return self._snapshots.get(group)

    def groups(self) -> list[str]:
        return sorted(self._snapshots)

    def clear(self, group: str) -> None:
        with self._lock:
            self._snapshots.pop(group, None)

    def watch(self, group: str, callback: SnapshotCallback) -> Watch:
        watch = Watch(self, group, callback)
        with self._lock:
            self._watches.setdefault(group, set()).add(watch)
        return watch

    def watcher_count(self, group: str | None = None) -> int:
        if group is not None:
            return len(self._watches.get(group, ()))
        return sum(len(w) for w in self._watches.values())

    def _unwatch(self, watch: Watch) -> None:
        with self._lock:
            watches = self._watches.get(watch.group)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[watch.group]
