"""InformerThread: a running SharedInformer in a background thread, for plain scripts.

The ``informer`` layer: the thread facade over the asyncio core
(``lifecycle.ServiceThread``), as ``watcher.thread`` is for the ``Watcher``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kubemirror import drift, lifecycle
from kubemirror.cache import index
from kubemirror.informer import handlers

if TYPE_CHECKING:
    from kubemirror.informer.shared_informer import SharedInformer

__all__ = ["InformerThread"]


class InformerThread(lifecycle.ServiceThread):
    """A running informer in one background thread (the sync facade for scripts).

    A ``lifecycle.ServiceThread`` running ``informer.run``, started on creation.
    ``indexer`` is readable from any thread. ``wait_for_sync(timeout)`` blocks
    the caller; ``add_event_handler`` is forwarded to the loop; ``stop()`` ends
    the loop, closes ``closing`` and joins the thread (also on ``with`` exit).
    Handlers run in the background thread. A crash is logged and kept in ``error``.
    """

    def __init__(self, informer: SharedInformer, closing: Iterable[Any] = ()) -> None:
        super().__init__(informer.run, name=f"informer-{informer.name}", closing=closing)
        self.informer = informer
        self.start()

    @property
    def indexer(self) -> index.Indexer:
        return self.informer.get_indexer()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Block until the informer has synced; False after ``timeout`` seconds."""
        if self.running:
            with contextlib.suppress(RuntimeError):  # it stopped meanwhile
                return self.call(self.informer.wait_for_sync(timeout))
        return self.informer.has_synced()

    def check_drift(self, timeout: float | None = None) -> drift.DriftReport:
        """``SharedInformer.check_drift``, run in the informer's loop; blocks the caller.

        Raises ``RuntimeError`` if the thread is not running, ``TimeoutError`` after
        ``timeout`` seconds, and what the check raises.
        """

        async def check() -> drift.DriftReport:
            async with asyncio.timeout(timeout):
                return await self.informer.check_drift()

        return self.call(check())

    def add_event_handler(self, handler: object | None = None, **callbacks: handlers.Callback | None
                          ) -> handlers.HandlerRegistration:
        """``SharedInformer.add_event_handler``, run in the informer's loop.

        Raises ``RuntimeError`` if the thread is not running.
        """

        async def add() -> handlers.HandlerRegistration:
            return self.informer.add_event_handler(handler, **callbacks)

        return self.call(add())
