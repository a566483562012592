"""FIFO: a work queue that holds the latest version of each object once, in arrival order.

Part of the cache layer (client-go ``tools/cache`` ``FIFO``, ``Queue``). Also home of
``PopWaiters``, the wake-up machinery that lets a blocking pop be awaited from
asyncio without a thread per waiter; ``DeltaFIFO`` uses it too.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, overload

from kubemirror import errors, keys, types

__all__ = ["FIFO", "PopWaiters"]

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741


class PopWaiters:
    """The poppers blocked on one queue: threads and asyncio tasks alike.

    A thread waits on a ``threading.Condition`` over the queue's lock. An asyncio
    task registers a future (under the lock) and awaits it; ``wake_all`` resolves it
    from any thread with ``loop.call_soon_threadsafe``, so waiting never blocks an
    event loop and never parks a helper thread (cancelling the task simply forgets
    its future). ``wake_all`` must be called with the lock held; ``wait``/``await_``
    take the lock themselves.
    """

    __slots__ = ("_cond", "_futures", "_lock", "_sleepers")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._cond = threading.Condition(lock)
        self._sleepers = 0
        self._futures: list[asyncio.Future[None]] = []

    def wake_all(self) -> None:
        """Wake every waiting popper so it re-checks the queue. Call with the lock held."""
        if self._sleepers:
            self._cond.notify_all()
        if self._futures:
            futures, self._futures = self._futures, []
            for fut in futures:
                # A closed loop raises RuntimeError: nobody awaits that future any more.
                with contextlib.suppress(RuntimeError):
                    fut.get_loop().call_soon_threadsafe(_resolve, fut)

    def wait(self, take: Callable[[], I | None], timeout: float | None) -> I:
        """Block the calling thread until ``take()`` (run under the lock) returns an item.

        ``take`` raises ``FIFOClosedError`` to end the wait. Raises ``TimeoutError`` once
        ``timeout`` seconds have passed without an item.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                item = take()
                if item is not None:
                    return item
                remaining = None
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"no item within {timeout} s")
                self._sleepers += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._sleepers -= 1

    async def await_(self, take: Callable[[], I | None]) -> I:
        """Like ``wait`` but suspends the current task instead of blocking its loop.

        Cancellation takes nothing (bound the wait with ``asyncio.timeout``).
        """
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                item = take()
                if item is not None:
                    return item
                fut: asyncio.Future[None] = loop.create_future()
                self._futures.append(fut)
            try:
                await fut
            finally:
                # Cancelled (then ``fut`` is cancelled too): forget it. Woken: it is
                # already gone from the list.
                if not fut.done() or fut.cancelled():
                    with self._lock:
                        if fut in self._futures:
                            self._futures.remove(fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def check_not_awaitable(result: object, queue: object) -> None:
    """Reject a coroutine returned to a synchronous ``pop`` (it would never run)."""
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(
            f"{type(queue).__name__}.pop got an awaitable from process; use 'await apop(...)'"
        )


class FIFO:
    """A producer/consumer queue keeping only the newest object per key, each key once.

    Adding an object whose key is already queued replaces the queued object and keeps
    its place; ``delete`` drops it from the queue (deletes are not delivered: use
    ``DeltaFIFO`` for that). ``pop(process)`` takes the oldest key's object, calls
    ``process(obj)`` *outside* the lock and returns what it returned; if ``process``
    raises ``errors.Requeue`` the object goes back (unless a newer one for the key
    arrived meanwhile, which wins) and the ``Requeue`` propagates. Any other exception
    propagates and the object is not requeued. An interrupted process
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

    __slots__ = ("_closed", "_initial", "_items", "_key_func", "_lock", "_populated", "_waiters")

    def __init__(self, key_func: types.KeyFunc = keys.meta_namespace_key) -> None:
        self._key_func = key_func
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._waiters = PopWaiters(self._lock)
        self._closed = False
        self._populated = False
        self._initial: set[str] = set()  # keys of the first replace not yet popped

    def __repr__(self) -> str:
        return f"<FIFO {len(self._items)} queued{' closed' if self._closed else ''}>"

    def key_of(self, obj: Any) -> str:
        """Return ``obj``'s key; raises ``KeyFuncError`` naming the object."""
        try:
            return self._key_func(obj)
        except errors.KubemirrorError:
            raise
        except Exception as exc:
            raise errors.KeyFuncError(obj, repr(exc)) from exc

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

    def add_if_not_present(self, obj: Any) -> None:
        """Queue ``obj`` only if nothing is queued under its key (used to retry an item)."""
        key = self.key_of(obj)
        with self._lock:
            self._populated = True
            if key not in self._items:
                self._items[key] = obj
                self._waiters.wake_all()

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

    def close(self) -> None:
        """Close the queue: waiting and future poppers of an empty queue get
        ``FIFOClosedError``."""
        with self._lock:
            self._closed = True
            self._waiters.wake_all()

    # -- reads ---------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def has_synced(self) -> bool:
        """True once every object of the first ``replace`` has been popped (or once any
        other write came first)."""
        with self._lock:
            return self._populated and not self._initial

    def list(self) -> builtins.list[Any]:
        """Return the queued objects in queue order (shared: do not mutate)."""
        with self._lock:
            return list(self._items.values())

    def list_keys(self) -> builtins.list[str]:
        """Return the queued keys in queue order."""
        with self._lock:
            return list(self._items)

    def get(self, obj: Any) -> Any | None:
        """Return the queued object with ``obj``'s key (shared: do not mutate), or ``None``."""
        return self.get_by_key(self.key_of(obj))

    def get_by_key(self, key: str) -> Any | None:
        """Return the object queued under ``key`` (shared: do not mutate), or ``None``."""
        with self._lock:
            return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)

    # -- pop -----------------------------------------------------------------

    def pop(self, process: Callable[[Any], T], timeout: float | None = None) -> T:
        """Take the oldest object, run ``process(obj)`` on it and return its result.

        Blocks until an object is queued (at most ``timeout`` seconds: then
        ``TimeoutError``). Raises ``FIFOClosedError`` if the queue is closed and empty,
        and re-raises what ``process`` raised (see the class docstring for requeueing).
        """
        key, obj = self._waiters.wait(self._take_locked, timeout)
        try:
            result = process(obj)
            check_not_awaitable(result, self)
        except errors.Requeue:
            self._requeue(key, obj)
            raise
        except Exception:
            self._done(key)
            raise
        except BaseException:
            self._requeue(key, obj)
            raise
        self._done(key)
        return result

    @overload
    async def apop(self, process: Callable[[Any], Awaitable[T]]) -> T: ...

    @overload
    async def apop(self, process: Callable[[Any], T]) -> T: ...

    async def apop(self, process: Callable[[Any], Any]) -> Any:
        """Async twin of ``pop``: waits without blocking the event loop.

        ``process`` may be a plain function or a coroutine function. Cancelling the
        task while it waits takes nothing; cancelling it while ``process`` runs puts
        the object back. Bound the wait with ``asyncio.timeout`` if needed.
        """
        key, obj = await self._waiters.await_(self._take_locked)
        try:
            result = process(obj)
            if inspect.isawaitable(result):
                result = await result
        except errors.Requeue:
            self._requeue(key, obj)
            raise
        except Exception:
            self._done(key)
            raise
        except BaseException:
            self._requeue(key, obj)
            raise
        self._done(key)
        return result

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
