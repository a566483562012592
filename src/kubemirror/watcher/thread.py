"""``WatcherThread``: the thread facade that runs a watcher for plain, non-async code.

Part of the ``watcher`` layer: the async watcher core on its own event loop in a
daemon thread (a ``lifecycle.ServiceThread``), with blocking ``wait_for_sync``/``stop``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from kubemirror import lifecycle
from kubemirror.client import transport

__all__ = ["Runnable", "WatcherThread"]


class Runnable(Protocol):
    """What ``WatcherThread`` drives: ``Watcher`` and ``SingleWatcher`` fit."""

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> object: ...

    async def run(self, stop: asyncio.Event | None = None) -> None: ...

    async def wait_for_sync(self) -> None: ...

    def has_synced(self) -> bool: ...


class WatcherThread(lifecycle.ServiceThread):
    """A ``Watcher`` or ``SingleWatcher`` running on its own loop in a daemon thread.

    For plain scripts: ``handle = watcher.start_in_thread()``, then
    ``handle.wait_for_sync(timeout)`` and ``handle.stop()`` (also a context
    manager). ``watcher.store`` is thread-safe to read meanwhile; a
    ``CachedStore``'s sync ``get`` fetches through the thread's loop. A
    ``KubeClient`` given to the watcher is used on that loop and closed when the
    thread stops. A ``lifecycle.ServiceThread``: a crash is logged at once, and
    ``stop()`` raises it.
    """

    def __init__(self, watcher: Runnable) -> None:
        source = watcher.source
        super().__init__(
            watcher.run,
            name=f"kubemirror {watcher.name}",
            closing=[source] if isinstance(source, transport.KubeClient) else [],
        )
        self.watcher = watcher

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Block until the watcher has synced; ``False`` after ``timeout`` seconds."""
        if self.running:
            try:
                self.call(self.watcher.wait_for_sync(), timeout)
            except TimeoutError:
                return False
            except RuntimeError:  # it stopped meanwhile
                pass
            else:
                return True
        return self.watcher.has_synced()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the watcher (pending changes are flushed), join the thread, raise its crash."""
        super().stop(timeout)
        if self.error is not None:
            raise self.error
