"""Wake-ups of the per-object loops: one asyncio.Event per object, plus who watches what."""

from __future__ import annotations

import asyncio
from collections import defaultdict

ObjectKey = tuple[str, str]  # (namespace, name)


class Wakers:
    """One asyncio.Event per object, plus reverse indexes: a Deployment or ShadowRun event wakes its rollouts."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, ObjectKey], asyncio.Event] = {}
        self.watchers: dict[tuple[str, ObjectKey], set[tuple[str, ObjectKey]]] = defaultdict(set)

    def event(self, kind: str, key: ObjectKey) -> asyncio.Event:
        return self.events.setdefault((kind, key), asyncio.Event())

    def wake(self, kind: str, key: ObjectKey) -> None:
        ev = self.events.get((kind, key))
        if ev is not None:
            ev.set()
        for watcher in self.watchers.get((kind, key), ()):
            ev = self.events.get(watcher)
            if ev is not None:
                ev.set()

    def watch(self, watcher_kind: str, watcher: ObjectKey, kind: str, keys: list[ObjectKey]) -> None:
        """`watcher` wants a wake-up whenever one of `keys` (of `kind`) changes."""
        for key in keys:
            self.watchers[(kind, key)].add((watcher_kind, watcher))

    def forget(self, kind: str, key: ObjectKey) -> None:
        self.events.pop((kind, key), None)
        for watchers in self.watchers.values():
            watchers.discard((kind, key))
