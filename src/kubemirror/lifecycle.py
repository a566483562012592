"""The lifecycle every long-running asyncio component shares: ``run(stop)``, ``start()``,
``stop()`` and ``async with``.

Bottom layer of kubemirror (beside ``keys``, ``selectors`` and ``paths``; imports
nothing of ours), so that any layer's component can inherit it. A component writes
one half and inherits the other:

- ``Service``: write ``async run(stop)``, which works until ``stop`` is set; inherit
  ``start()`` (run it as a background task), ``await stop()`` and ``async with``.
  For loops such as a reflector, an informer or a watcher.
- ``StartStopService``: write ``start()`` (spawn background tasks; may be a
  coroutine) and ``async stop()`` (cancel them); inherit ``run(stop)`` and
  ``async with``. For components that must be usable as soon as ``start()``
  returns, such as the kvstore stores.

Neither is thread-safe: drive a component from the event loop it was started on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from types import TracebackType
from typing import Any, Self

__all__ = ["Service", "StartStopService", "cancel_and_wait", "wait_stopped"]


async def wait_stopped(stop: asyncio.Event | None) -> None:
    """Return once ``stop`` is set; never, if it is ``None`` (cancel the task instead)."""
    await (stop.wait() if stop is not None else asyncio.Event().wait())


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel every task, then wait for each in turn to end.

    The ``CancelledError`` a task ends with is swallowed; any other exception it ends
    with propagates (the tasks after it are cancelled but not awaited).
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _AsyncContext:
    """``async with``: ``_start()`` on entry, ``stop()`` on exit (for the two bases)."""

    async def _start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Service(_AsyncContext):
    """Base class: implement ``run(stop)``; get ``start()``, ``stop()`` and ``async with``.

    ``run(stop)`` must return soon after ``stop`` is set (``None`` means run until
    cancelled). ``start()`` runs it as a task of the running loop and returns the
    task; calling it again while that task is alive returns the same task.
    ``await stop()`` sets the event ``start()`` passed and waits for the task,
    re-raising what ``run`` raised; it does nothing if not started. ``async with``
    starts on entry and stops on exit.
    """

    _task: asyncio.Task[None] | None = None
    _stop_event: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Work until ``stop`` is set (forever if ``None``). Subclasses implement this."""
        raise NotImplementedError

    def start(self) -> asyncio.Task[None]:
        """Run ``run`` in the background of the running loop (idempotent); return the task."""
        if self._task is None or self._task.done():
            self._stop_event = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self.run(self._stop_event))
        return self._task

    async def stop(self) -> None:
        """Ask the task ``start()`` made to stop and wait for it (no-op if not started)."""
        task, event = self._task, self._stop_event
        if task is None or event is None:
            return
        event.set()
        try:
            await task
        finally:
            self._task = None

    async def _start(self) -> None:
        self.start()


class StartStopService(_AsyncContext):
    """Base class: implement ``start()`` and ``stop()``; get ``run(stop)`` and ``async with``.

    ``start()`` brings the component up and returns once it is usable; it may be a
    plain method or a coroutine function (its awaitable is awaited). ``stop()``
    brings it down and is awaited. ``run(stop)`` starts, waits until ``stop`` is
    set (forever if ``None``: cancel the task to end it) and always stops, also
    when cancelled; if ``start()`` raises, ``stop()`` is not called. ``async with``
    starts on entry and stops on exit.
    """

    def start(self) -> Awaitable[None] | None:
        """Bring the component up. Subclasses implement this."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Bring the component down. Subclasses implement this."""
        raise NotImplementedError

    async def _start(self) -> None:
        started = self.start()
        if started is not None:
            await started

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Start, wait until ``stop`` is set (forever if ``None``), then stop."""
        await self._start()
        try:
            await wait_stopped(stop)
        finally:
            await self.stop()
