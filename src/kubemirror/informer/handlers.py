"""Handler registrations: each handler's own queue of notifications and delivery task.

The ``informer`` layer (client-go ``tools/cache`` ``processorListener`` and
``ResourceEventHandler``). ``SharedInformer`` turns every applied delta into
add/update/delete notifications and pushes them to each ``HandlerRegistration``;
a registration delivers them in order on its own asyncio task, so a slow handler
delays only itself. A plain-function callback whose queue is empty is called at
once for a single watch event (see ``HandlerRegistration``), which frees the
replaced object straight away.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from kubemirror import errors, lifecycle, reflector

__all__ = ["ADD", "Callback", "DELETE", "HandlerRegistration", "ResourceEventHandler",
           "UPDATE", "callback_name"]

log = logging.getLogger(__name__)

ADD, UPDATE, DELETE = 0, 1, 2
"""Notification kinds: the index of the callback in ``HandlerRegistration.callbacks``."""
_AWAIT = 3  # queued awaitable a plain callback returned when run inline
_HANDLER_NAMES = ("on_add", "on_update", "on_delete")
_YIELD_EVERY = 256

Callback = Callable[..., Any]
"""A handler callback: plain function or coroutine function."""


class ResourceEventHandler(Protocol):
    """A handler object: any of ``on_add(obj)``, ``on_update(old, new)``, ``on_delete(obj)``.

    Methods may be plain or ``async``; missing ones are skipped. ``on_delete`` may
    receive a ``DeletedFinalStateUnknown`` tombstone when the delete was missed and
    found by a relist. Objects are shared: do not mutate them.
    """


class HandlerRegistration:
    """A handler added to an informer: its own queue of notifications and delivery task.

    ``has_synced()`` is true once the informer has synced and this handler has
    processed every notification up to that point (for a late handler: the adds
    replaying the store's content). ``errors`` counts callbacks that raised.
    Driven from the informer's event loop. Coroutine functions always run on the
    delivery task; plain functions run inline for single watch events when nothing
    is queued before them (an awaitable they return is awaited on the task).
    """

    def __init__(self, callbacks: tuple[Callback | None, Callback | None, Callback | None],
                 name: str, metrics: reflector.MetricsSink | None = None) -> None:
        self.callbacks = callbacks
        self.name = name
        self.metrics = metrics
        self.errors = 0
        self.delivered = 0
        self._queue: collections.deque[tuple[int, tuple[Any, ...]]] = collections.deque()
        self._enqueued = 0
        self._sync_mark: int | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # plain functions may run inline (see _push); coroutine functions never do
        self._inline = tuple(c is not None and not inspect.iscoroutinefunction(c)
                             for c in callbacks)

    def has_synced(self) -> bool:
        return self._sync_mark is not None and self.delivered >= self._sync_mark

    @property
    def pending(self) -> int:
        """Notifications queued and not delivered yet."""
        return len(self._queue)

    def _push(self, kind: int, args: tuple[Any, ...], inline: bool = False) -> None:
        """Queue a notification; with ``inline`` (one watch event at a time) a plain
        function runs at once when nothing is queued before it and the delivery task
        is running, which keeps the order and frees the old object straight away."""
        callback = self.callbacks[kind]
        if callback is None:
            return
        self._enqueued += 1
        if (inline and not self._queue and self._inline[kind] and self._task is not None
                and not self._task.done()):
            pending = self._call(kind, callback, args)
            self.delivered += 1
            if pending is not None:  # a plain function that returned an awaitable
                self._queue.append((_AWAIT, (kind, pending, args)))
                self._enqueued += 1
                self._wake_up()
            return
        self._queue.append((kind, args))
        self._wake_up()

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    def _call(self, kind: int, callback: Callback, args: tuple[Any, ...]
              ) -> Awaitable[Any] | None:
        """Run one callback; returns what it returned if that is awaitable."""
        try:
            result = callback(*args)
        except Exception:
            self._failed(kind, args)
            return None
        return result if inspect.isawaitable(result) else None

    def _failed(self, kind: int, args: tuple[Any, ...]) -> None:
        self.errors += 1
        if self.metrics is not None:
            self.metrics.inc("errors", self.name)
        log.exception("%s: handler %s.%s failed on %s", self.name,
                      callback_name(self.callbacks[kind]), _HANDLER_NAMES[kind],
                      errors.describe_object(args[-1]))

    def _mark_synced(self) -> None:
        if self._sync_mark is None:
            self._sync_mark = self._enqueued
        if self._wake is not None:
            self._wake.set()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            if self._queue:
                self._wake.set()
            self._task = asyncio.get_running_loop().create_task(self._deliver())

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await lifecycle.cancel_and_wait([task])

    async def _deliver(self) -> None:
        queue = self._queue
        callbacks = self.callbacks
        wake = self._wake
        assert wake is not None
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            kind, args = queue.popleft()
            if kind == _AWAIT:
                kind, pending, args = args
            else:
                pending = self._call(kind, callbacks[kind], args)  # type: ignore[arg-type]
            if pending is not None:
                try:
                    await pending
                except Exception:
                    self._failed(kind, args)
            self.delivered += 1
            if self.delivered % _YIELD_EVERY == 0:
                await asyncio.sleep(0)


def callback_name(fn: Any) -> str:
    """A callback's name for logs: its qualified name, else its type's name."""
    return getattr(fn, "__qualname__", None) or type(fn).__name__
