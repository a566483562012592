"""``WatcherThread``: the thread facade that runs a watcher for plain, non-async code.

Part of the ``watcher`` layer: the async watcher core on its own event loop in a
daemon thread, with blocking ``wait_for_sync``/``stop``.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Protocol, Self

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


class WatcherThread:
    """A ``Watcher`` or ``SingleWatcher`` running on its own loop in a daemon thread.

    For plain scripts: ``handle = watcher.start_in_thread()``, then
    ``handle.wait_for_sync(timeout)`` and ``handle.stop()`` (also a context
    manager). ``watcher.store`` is thread-safe to read meanwhile; a
    ``CachedStore``'s sync ``get`` fetches through the thread's loop. A
    ``KubeClient`` given to the watcher is used on that loop and closed when the
    thread stops.
    """

    def __init__(self, watcher: Runnable) -> None:
        self.watcher = watcher
        self._thread = threading.Thread(
            target=self._main, name=f"kubemirror {watcher.name}", daemon=True
        )
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> Self:
        """Start the thread and wait until its loop runs."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
            self._ready.set()

    async def _amain(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self.watcher.run(self._stop)
        finally:
            if isinstance(self.watcher.source, transport.KubeClient):
                await self.watcher.source.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The thread's event loop while it runs."""
        return self._loop

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Block until the watcher has synced; ``False`` after ``timeout`` seconds."""
        loop = self._loop
        if loop is None or not self._thread.is_alive():
            return self.watcher.has_synced()
        future = asyncio.run_coroutine_threadsafe(self.watcher.wait_for_sync(), loop)
        try:
            future.result(timeout)
        except TimeoutError:
            future.cancel()
            return False
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Stop the watcher (pending changes are flushed) and join the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
