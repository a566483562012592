"""FIFO: a work queue that holds the latest version of each object once, in arrival order.

Part of the cache layer (client-go ``tools/cache`` ``FIFO``). The pop machinery it
shares with ``DeltaFIFO`` lives in ``queue.KeyedQueue``.
"""

from __future__ import annotations

import builtins
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from kubemirror import errors
from kubemirror.cache import queue

__all__ = ["FIFO"]


class FIFO(queue.KeyedQueue[Any]):
    """A producer/consumer queue keeping only the newest object per key, each key once.

    ``FIFO(key_func=keys.meta_namespace_key)``. Adding an object whose key is already queued
    replaces the queued object and keeps its place; ``delete`` drops it from the queue
    (deletes are not delivered: use ``DeltaFIFO`` for that). ``pop(process)`` takes the
    oldest key's object, calls ``process(obj)`` *outside* the lock and returns what it
    returned; if ``process`` raises ``errors.Requeue`` the object goes back (unless a newer
    one for the key arrived meanwhile, which wins); ``pop`` returns ``None`` after a
    ``Requeue()`` (client-go's ``Pop`` returns no error) and re-raises a
    ``Requeue(cause)``. Any other
    exception propagates and the object is not requeued. An interrupted process
    (``KeyboardInterrupt``, task cancellation) requeues like ``Requeue``.

    Blocking: ``pop`` blocks the calling thread until an item arrives (``timeout``
    seconds at most, then ``TimeoutError``); ``apop`` is its asyncio twin and never
    blocks the event loop. ``close()`` wakes every waiting popper with
    ``FIFOClosedError``; items still queued can be drained after closing.

    Thread safety: all methods may be called from any thread; one lock guards the
    queue and is never held while ``process`` or the key function runs. Objects
    returned by ``get``/``list`` are shared: do not mutate them.

    Complexity: O(1) for add, delete and pop; O(n) for list and replace.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<FIFO {len(self._items)} queued{' closed' if self._closed else ''}>"

    # -- writes --------------------------------------------------------------

    def add(self, obj: Any) -> None:
        """Queue ``obj``, or replace the queued object with its key (keeping its place)."""
        key = self.key_of(obj)
        with self._lock:
            self._populated = True
            self._items[key] = obj
            self._waiters.wake_all()

    def update(self, obj: Any) -> None:
        """Same as ``add``."""
        self.add(obj)

    def delete(self, obj: Any) -> None:
        """Drop the queued object with ``obj``'s key, if any."""
        key = self.key_of(obj)
        with self._lock:
            self._populated = True
            self._items.pop(key, None)
            self._initial.discard(key)

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        """Replace the whole queue with ``objs`` (in that order); the first call sets the
        initial population that ``has_synced`` waits for. Raises ``KeyFuncError``
        (queue unchanged)."""
        key_of = self.key_of
        new_items = OrderedDict((key_of(obj), obj) for obj in objs)
        with self._lock:
            self._items = new_items
            if not self._populated:
                self._populated = True
                self._initial = set(new_items)
            else:
                self._initial.intersection_update(new_items)
            self._waiters.wake_all()

    def resync(self) -> None:
        """Nothing to do: every stored object is already queued."""

    # -- reads ---------------------------------------------------------------

    def list(self) -> builtins.list[Any]:
        """Return the queued objects in queue order (shared: do not mutate)."""
        with self._lock:
            return list(self._items.values())

    # -- KeyedQueue hooks ----------------------------------------------------

    def _take_locked(self) -> tuple[str, Any] | None:
        if self._items:
            return self._items.popitem(last=False)
        if self._closed:
            raise errors.FIFOClosedError()
        return None

    def _done(self, key: str) -> None:
        if self._initial:
            with self._lock:
                self._initial.discard(key)

    def _requeue(self, key: str, obj: Any) -> None:
        with self._lock:
            if key not in self._items:
                self._items[key] = obj
                self._waiters.wake_all()
