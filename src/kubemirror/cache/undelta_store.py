"""UndeltaStore: a ``Store`` that pushes its complete state to a callback after every change.

Part of the cache layer (client-go ``tools/cache`` ``UndeltaStore``). Turns the
incremental stream a Reflector writes (add, update, delete, replace) into a series
of full snapshots, for consumers that want "the current list" rather than events.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable
from typing import Any

from kubemirror import errors, keys, types
from kubemirror.cache import index

__all__ = ["PushFunc", "UndeltaStore"]

PushFunc = Callable[[list[Any]], None]
"""Receives the complete list of stored objects (a new list; the objects are shared)."""


class UndeltaStore:
    """A thread-safe ``Store`` calling ``push_func(all_objects)`` once per change.

    Every ``add``, ``update``, ``delete`` and ``replace`` changes the state and then
    calls ``push_func`` exactly once with the complete new state, before returning.
    Writes are serialized, so pushes arrive in the order of the changes and never
    show an older state after a newer one; readers are not held up by a slow push.
    The store's lock is not held during the push (a separate write-serializing lock
    is, which only other writers wait on); ``push_func`` may read this store, but
    writing to it from inside ``push_func`` raises ``StoreError`` before changing
    anything. If ``push_func`` raises, the change stays and the error propagates.

    ``delete`` of an absent key still pushes (the state is unchanged). Objects are
    shared with the pushed lists and readers: do not mutate them. Each write costs
    O(n) for the snapshot. Writes raise ``KeyFuncError`` for an object without a key.
    """

    __slots__ = ("_push", "_pushing", "_store", "_write_lock")

    def __init__(
        self, push_func: PushFunc, key_func: types.KeyFunc = keys.meta_namespace_key
    ) -> None:
        self._push = push_func
        self._store = index.new_store(key_func)
        self._write_lock = threading.Lock()
        self._pushing: int | None = None  # ident of the thread running push_func

    def __repr__(self) -> str:
        return f"<UndeltaStore {len(self._store)} objects>"

    def add(self, obj: Any) -> None:
        """Store ``obj`` under its key, then push the full state."""
        self._write(self._store.add, obj)

    def update(self, obj: Any) -> None:
        """Store ``obj`` under its key, then push the full state."""
        self._write(self._store.update, obj)

    def delete(self, obj: Any) -> None:
        """Remove the object with ``obj``'s key, then push the full state."""
        self._write(self._store.delete, obj)

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        """Swap the whole content for ``objs``, then push the full state once."""
        self._write(self._store.replace, objs)

    def resync(self) -> None:
        """Nothing to do (part of the ``Store`` protocol); does not push."""

    def list(self) -> builtins.list[Any]:
        """Return every stored object (shared: do not mutate)."""
        return self._store.list()

    def list_keys(self) -> builtins.list[str]:
        """Return every key."""
        return self._store.list_keys()

    def get(self, obj: Any) -> Any | None:
        """Return the object with ``obj``'s key (shared: do not mutate), or ``None``."""
        return self._store.get(obj)

    def get_by_key(self, key: str) -> Any | None:
        """Return the object stored under ``key`` (shared: do not mutate), or ``None``."""
        return self._store.get_by_key(key)

    def __len__(self) -> int:
        return len(self._store)

    def _write(self, change: Callable[[Any], None], arg: Any) -> None:
        me = threading.get_ident()
        if self._pushing == me:
            raise errors.StoreError("push_func must not write to the UndeltaStore that calls it")
        with self._write_lock:
            change(arg)
            state = self._store.list()
            self._pushing = me
            try:
                self._push(state)
            finally:
                self._pushing = None
