"""The machinery shared by ``FIFO`` and ``DeltaFIFO``: a keyed queue with blocking pops.

Part of the cache layer (client-go ``tools/cache`` ``Queue``). ``KeyedQueue`` keeps
the queued items by key in pop order under one lock, tracks closing and the initial
population behind ``has_synced``, and implements ``pop`` and its asyncio twin
``apop`` once, over three hooks its subclasses fill in (what a pop takes, and what
happens to a popped item once processed or requeued). ``PopWaiters`` is the
wake-up machinery that lets a blocking pop be awaited from asyncio without a
thread per waiter.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, overload

from kubemirror import errors, keys, types
from kubemirror.cache import store

__all__ = ["KeyedQueue", "PopWaiters"]

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


class KeyedQueue(Generic[I]):
    """A closable queue of items of type ``I`` by key, in pop order; a base class.

    Subclasses write into ``_items`` (under ``_lock``, calling ``_waiters.wake_all()``
    when something becomes poppable) and implement the hooks ``_take_locked`` (with
    the lock held: remove and return the next ``(key, item)``, ``None`` when nothing
    can be taken yet, or raise ``FIFOClosedError`` once closed and drained),
    ``_done(key)`` (the item was processed) and ``_requeue(key, item)`` (put it back).

    ``pop(process)`` takes an item, calls ``process(item)`` *outside* the lock and
    returns its result. If ``process`` raises ``errors.Requeue``, or is interrupted
    (``KeyboardInterrupt``, task cancellation), the item is requeued; a
    ``Requeue()`` without a cause then makes ``pop`` return ``None`` (client-go's
    ``Pop`` returns no error), a ``Requeue(cause)`` and an interruption propagate. Any
    other exception propagates and the item counts as processed.
    ``pop`` blocks its thread (``timeout`` -> ``TimeoutError``); ``apop`` is the
    asyncio twin and never blocks the loop. ``close()`` wakes every waiting popper.

    Thread safety: any thread; the lock is never held while ``process`` or the key
    function runs. Items returned by ``get``/``get_by_key`` are shared: do not mutate.
    """

    __slots__ = ("_closed", "_initial", "_items", "_key_func", "_lock", "_populated", "_waiters")

    def __init__(self, key_func: types.KeyFunc = keys.meta_namespace_key) -> None:
        self._key_func = key_func
        self._lock = threading.Lock()
        self._items: OrderedDict[str, I] = OrderedDict()
        self._waiters = PopWaiters(self._lock)
        self._closed = False
        self._populated = False
        self._initial: set[str] = set()  # keys of the first replace not processed yet

    def key_of(self, obj: Any) -> str:
        """Return ``obj``'s key; raises ``KeyFuncError`` naming the object."""
        return store.key_of(self._key_func, obj)

    def add_if_not_present(self, item: I) -> None:
        """Queue ``item`` only if nothing is queued under its key (to retry a popped item)."""
        key = self.key_of(item)
        with self._lock:
            self._populated = True
            if key not in self._items:
                self._items[key] = item
                self._waiters.wake_all()

    def close(self) -> None:
        """Close the queue: poppers waiting on (or later popping) an empty queue get
        ``FIFOClosedError``; what is still queued may be drained first."""
        with self._lock:
            self._closed = True
            self._waiters.wake_all()

    # -- reads ---------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def has_synced(self) -> bool:
        """True once every key of the first ``replace`` has been popped and processed,
        or if another write came before any ``replace``."""
        with self._lock:
            return self._populated and not self._initial

    def list_keys(self) -> builtins.list[str]:
        """Return the queued keys in pop order."""
        with self._lock:
            return list(self._items)

    def get(self, obj: Any) -> I | None:
        """Return the item queued under ``obj``'s key (shared: do not mutate), or ``None``."""
        return self.get_by_key(self.key_of(obj))

    def get_by_key(self, key: str) -> I | None:
        """Return the item queued under ``key`` (shared: do not mutate), or ``None``."""
        with self._lock:
            return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)

    # -- pop -----------------------------------------------------------------

    def pop(self, process: Callable[[I], T], timeout: float | None = None) -> T | None:
        """Take the next item, run ``process(item)`` on it and return its result
        (``None`` when it raised ``Requeue()`` without a cause).

        Blocks until an item can be taken (at most ``timeout`` seconds: then
        ``TimeoutError``). Raises ``FIFOClosedError`` when closed and empty, and
        re-raises what ``process`` raised (see the class docstring for requeueing).
        Raises ``TypeError`` if ``process`` returns an awaitable (the item then counts
        as processed).
        """
        key, item = self._waiters.wait(self._take_locked, timeout)
        try:
            result = process(item)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError(
                    f"{type(self).__name__}.pop got an awaitable from process; "
                    "use 'await apop(...)'"
                )
        except BaseException as exc:
            if self._settle(key, item, exc):
                return None
            raise
        self._done(key)
        return result

    @overload
    async def apop(self, process: Callable[[I], Awaitable[T]]) -> T | None: ...

    @overload
    async def apop(self, process: Callable[[I], T]) -> T | None: ...

    async def apop(self, process: Callable[[I], Any]) -> Any:
        """Async twin of ``pop``: waits without blocking the event loop.

        ``process`` may be a plain or a coroutine function. Cancelling the task while
        it waits takes nothing; cancelling it while ``process`` runs requeues the item.
        Bound it with ``asyncio.timeout``: a timeout that fires during ``process``
        requeues.
        """
        key, item = await self._waiters.await_(self._take_locked)
        try:
            result = process(item)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            if self._settle(key, item, exc):
                return None
            raise
        self._done(key)
        return result

    def _settle(self, key: str, item: I, exc: BaseException) -> bool:
        """After ``process`` raised ``exc``: requeue on ``Requeue`` or an interruption
        (not an ``Exception``), else count the item as processed. True when the pop
        returns normally: a ``Requeue()`` without a cause, as client-go's ``Pop``
        returns no error for ``ErrRequeue`` without an inner error."""
        if isinstance(exc, errors.Requeue) or not isinstance(exc, Exception):
            self._requeue(key, item)
            return isinstance(exc, errors.Requeue) and exc.cause is None
        self._done(key)
        return False

    # -- hooks (``_locked``: the caller holds the lock) ------------------------

    def _take_locked(self) -> tuple[str, I] | None:
        raise NotImplementedError

    def _done(self, key: str) -> None:
        raise NotImplementedError

    def _requeue(self, key: str, item: I) -> None:
        raise NotImplementedError
