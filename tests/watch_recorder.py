"""``Recorder``: the Watcher callbacks of the watcher tests, recording every call in order.

Shared by tests/test_watcher.py (kubemirror's own server) and
tests/real_apiserver/test_watcher.py (the same scenarios against kube-apiserver).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kubemirror.stores import IndexedStore
from kubemirror.watcher import ChangeStats


class Recorder:
    """Records ``on_change`` and ``on_sync_complete`` calls in order: plain callbacks (run
    in a worker thread by the Watcher), or coroutine ones with ``asynchronous``."""

    def __init__(self, asynchronous: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.asynchronous = asynchronous

    def on_change(self) -> Callable[[IndexedStore, ChangeStats], Any]:
        def sync(store: IndexedStore, stats: ChangeStats) -> None:
            self.calls.append(("change", stats))

        async def coro(store: IndexedStore, stats: ChangeStats) -> None:
            self.calls.append(("change", stats))

        return coro if self.asynchronous else sync

    def on_sync_complete(self) -> Callable[[IndexedStore, int], Any]:
        def sync(store: IndexedStore, count: int) -> None:
            self.calls.append(("sync", count))

        async def coro(store: IndexedStore, count: int) -> None:
            self.calls.append(("sync", count))

        return coro if self.asynchronous else sync

    def changes(self) -> list[ChangeStats]:
        return [stats for kind, stats in self.calls if kind == "change"]

    def syncs(self) -> list[int]:
        return [count for kind, count in self.calls if kind == "sync"]

    def total(self) -> ChangeStats:
        """All changes added up."""
        return functools.reduce(ChangeStats.__add__, self.changes(), ChangeStats())


def names(objs: Any) -> list[str]:
    """The ``metadata.name`` of each object, in order."""
    return [o["metadata"]["name"] for o in objs]
