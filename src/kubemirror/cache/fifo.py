"""FIFO: a work queue that holds the latest version of each object once, in arrival order.

Part of the cache layer (client-go ``tools/cache`` ``FIFO``). The pop machinery it
shares with ``DeltaFIFO`` lives in ``queue.KeyedQueue``.
"""

from __future__ import annotations

import builtins
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from kubemirror import errors, keys, types
from kubemirror.cache import queue

__all__ = ["FIFO"]


class FIFO(queue.KeyedQueue[Any]):
    """A producer/consumer queue keeping only the newest object per key, each key once.

    ``FIFO(key_func=keys.meta_namespace_key)``. Adding an object whose key is already queued
    replaces the queued object and keeps its place; ``delete`` drops the object (deletes
    are not delivered: use ``DeltaFIFO`` for that). ``pop(process)`` takes the oldest
    key's object, calls ``process(obj)`` *outside* the lock and returns what it
    returned; if ``process`` raises ``errors.Requeue`` the object goes back to the end
    (unless a newer one for the key arrived meanwhile, which wins); ``pop`` returns
    ``None`` after a ``Requeue()`` (client-go's ``Pop`` returns no error) and re-raises a
    ``Requeue(cause)``. Any other exception propagates and the object is not requeued.
    An interrupted process (``KeyboardInterrupt``, task cancellation) requeues like
    ``Requeue``.

    Like client-go, the queue is a sequence of keys beside a map of objects: a deleted
    object leaves its key in the sequence, and ``pop`` skips it when it gets there.
    ``has_synced`` follows client-go exactly: true once any ``add``/``update``/
    ``delete`` comes before the first ``replace``, or once as many queue entries as the
    first ``replace`` held have been popped (a deleted initial object counts when ``pop``
    passes its key, a requeued one when it was first taken); once true it stays true.

    Blocking: ``pop`` blocks the calling thread until an item arrives (``timeout``
    seconds at most, then ``TimeoutError``); ``apop`` is its asyncio twin and never
    blocks the event loop. ``close()`` wakes every waiting popper with
    ``FIFOClosedError``; items still queued can be drained after closing.

    Thread safety: all methods may be called from any thread; one lock guards the
    queue and is never held while ``process`` or the key function runs. Objects
    returned by ``get``/``list`` are shared: do not mutate them.

    Complexity: O(1) amortized for add, delete and pop; O(n) for list, list_keys and
    replace.
    """

    __slots__ = ("_initial_count", "_queue", "_synced")

    def __init__(self, key_func: types.KeyFunc = keys.meta_namespace_key) -> None:
        super().__init__(key_func)
        # Every key of ``_items`` is in ``_queue``; ``_queue`` may also hold keys of
        # deleted objects (and a key twice after a delete and an add), as client-go's.
        self._queue: deque[str] = deque()
        self._initial_count = 0  # queue entries of the first replace not yet popped
        self._synced = False

    def __repr__(self) -> str:
        return f"<FIFO {len(self._items)} queued{' closed' if self._closed else ''}>"

    # -- writes --------------------------------------------------------------

    def add(self, obj: Any) -> None:
        """Queue ``obj``, or replace the queued object with its key (keeping its place)."""
        key = self.key_of(obj)
        with self._lock:
            self._populated = True
            self._check_synced_locked()
            self._put_locked(key, obj)

    def update(self, obj: Any) -> None:
        """Same as ``add``."""
        self.add(obj)

    def delete(self, obj: Any) -> None:
        """Drop the queued object with ``obj``'s key, if any (its key stays in the
        sequence until ``pop`` passes it)."""
        key = self.key_of(obj)
        with self._lock:
            self._populated = True
            self._check_synced_locked()
            self._items.pop(key, None)

    def add_if_not_present(self, item: Any) -> None:
        """Queue ``item`` only if nothing is queued under its key (to retry a popped item)."""
        key = self.key_of(item)
        with self._lock:
            self._populated = True
            self._check_synced_locked()
            if key not in self._items:
                self._put_locked(key, item)

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        """Replace the whole queue with ``objs`` (in that order). The first call sets how
        many pops ``has_synced`` waits for. Raises ``KeyFuncError`` (queue unchanged)."""
        key_of = self.key_of
        new_items = OrderedDict((key_of(obj), obj) for obj in objs)
        with self._lock:
            if not self._populated:
                self._populated = True
                self._initial_count = len(new_items)
                self._check_synced_locked()
            self._items = new_items
            self._queue = deque(new_items)
            if new_items:
                self._waiters.wake_all()

    def resync(self) -> None:
        """Nothing to do: every stored object is already queued."""

    # -- reads ---------------------------------------------------------------

    def has_synced(self) -> bool:
        """True once an ``add``/``update``/``delete`` came before the first ``replace``, or
        once the first ``replace``'s count of queue entries has been popped (see the
        class docstring); then true for good."""
        with self._lock:
            return self._synced

    def list(self) -> builtins.list[Any]:
        """Return the queued objects in pop order (shared: do not mutate)."""
        with self._lock:
            items = self._items
            return [items[key] for key in self._live_keys_locked()]

    def list_keys(self) -> builtins.list[str]:
        """Return the queued keys in pop order."""
        with self._lock:
            return self._live_keys_locked()

    # -- helpers (``_locked``: the caller holds the lock) ----------------------

    def _put_locked(self, key: str, obj: Any) -> None:
        if key not in self._items:
            self._queue.append(key)
        self._items[key] = obj
        self._waiters.wake_all()

    def _live_keys_locked(self) -> builtins.list[str]:
        """Keys of queued objects, each once, in the order ``pop`` will take them."""
        items, seen = self._items, set()
        keys_in_order = []
        for key in self._queue:
            if key in items and key not in seen:
                seen.add(key)
                keys_in_order.append(key)
        return keys_in_order

    def _check_synced_locked(self) -> None:
        if self._populated and self._initial_count == 0:
            self._synced = True

    # -- KeyedQueue hooks ----------------------------------------------------

    def _take_locked(self) -> tuple[str, Any] | None:
        queued, items = self._queue, self._items
        while queued:
            key = queued.popleft()
            if self._initial_count > 0:
                self._initial_count -= 1  # counted as synced once this pop returns
            if key in items:
                return key, items.pop(key)
            # deleted after it was queued: skip it, as client-go does
        if self._closed:
            raise errors.FIFOClosedError()
        return None

    def _done(self, key: str) -> None:
        with self._lock:
            self._check_synced_locked()

    def _requeue(self, key: str, obj: Any) -> None:
        with self._lock:
            self._check_synced_locked()
            if key not in self._items:
                self._put_locked(key, obj)
