"""The lifecycle every long-running asyncio component shares: ``run(stop)``, ``start()``,
``stop()`` and ``async with``, and the thread that runs one for plain code.

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
- ``BlockingService``: write blocking ``start()`` and ``stop()`` (child processes:
  ``EnvTest``, ``EtcdServer``); inherit ``astart``/``astop`` (run in a worker
  thread), ``with`` and ``async with`` (which end with ``close()``, ``stop()`` unless
  overridden).
- ``ServiceThread``: runs a ``run(stop)`` on a new event loop in a daemon thread;
  the one thread facade under ``InformerThread``, ``WatcherThread`` and the demo.

Neither base is thread-safe: drive a component from the event loop it was started
on. ``run_until_stopped``, ``wait_stopped`` and ``cancel_and_wait`` are the pieces
``run`` methods are written with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = [
    "BlockingService",
    "Service",
    "ServiceThread",
    "StartStopService",
    "cancel_and_wait",
    "run_until_stopped",
    "wait_stopped",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


async def wait_stopped(stop: asyncio.Event | None) -> None:
    """Return once ``stop`` is set; never, if it is ``None`` (cancel the task instead)."""
    await (stop.wait() if stop is not None else asyncio.Event().wait())


async def run_until_stopped(body: Awaitable[_T], stop: asyncio.Event | None) -> _T | None:
    """Await ``body`` until it ends or ``stop`` is set, whichever comes first.

    Returns ``body``'s result, or ``None`` once ``stop`` is set (``body`` is then
    cancelled and waited for). Exceptions of ``body`` propagate; if this is
    cancelled, so is ``body``. ``stop=None`` awaits ``body`` alone.
    """
    if stop is None:
        return await body
    task = asyncio.ensure_future(body)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, waiter):
            pending.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()


async def cancel_and_wait(
    tasks: Iterable[asyncio.Future[Any]], *, recancel_every: float = 0.2
) -> None:
    """Cancel every task, then wait for each in turn to end.

    A task that swallows its cancellation (a bug below us: Python 3.11's
    ``asyncio.wait_for``, which aetcd uses to create watches, can lose one) is cancelled
    again every ``recancel_every`` seconds until it ends, so a stop never hangs on it.
    The ``CancelledError`` a task ends with is swallowed; any other exception it ends
    with propagates (the tasks after it are cancelled but not awaited).
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        while not task.done():
            await asyncio.wait({task}, timeout=recancel_every)
            if not task.done():
                task.cancel()
        if not task.cancelled():
            task.result()


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


class BlockingService:
    """Base class: implement blocking ``start()`` and ``stop()``; get the asyncio twins
    ``astart()``/``astop()`` (run in a worker thread, so the loop keeps serving) and
    ``with``/``async with``, which start on entry and call ``close()`` on exit.

    ``close()`` is ``stop()`` unless a subclass also releases what outlives a stop
    (a data directory). Thread safety is the subclass's to state.
    """

    def start(self) -> None:
        """Bring the service up; return once it is usable (blocks)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Bring the service down (blocks)."""
        raise NotImplementedError

    def close(self) -> None:
        """What leaving ``with``/``async with`` does: ``stop()``, unless overridden."""
        self.stop()

    async def astart(self) -> None:
        """``start()`` without blocking the event loop."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """``stop()`` without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)


class ServiceThread:
    """Runs ``run(stop)`` (a ``Service``'s or any such coroutine function) on a new event
    loop in a daemon thread: the sync facade plain scripts get over an asyncio core.

    ``start()`` starts the thread and returns once its loop runs (raising what
    kept it from starting). ``call(coro)`` runs a coroutine on that loop and
    blocks for its result; ``call_soon(fn)`` schedules a plain callback there.
    ``stop()`` sets the ``stop`` event ``run`` was given and joins the thread;
    also on ``with`` exit. After ``run`` ends, each object in ``closing`` is
    closed on the loop (its ``close()`` or ``aclose()``, awaited if it returns an
    awaitable; a failure is logged). If ``run`` raises, the error is logged at
    once and kept in ``error``; ``stop()`` does not raise it.

    Thread-safe: ``start``, ``call``, ``call_soon`` and ``stop`` may be called from
    any thread but the service's own (``call`` and ``stop`` block).
    """

    def __init__(
        self,
        run: Callable[[asyncio.Event], Awaitable[None]],
        *,
        name: str,
        closing: Iterable[object] = (),
    ) -> None:
        self.name = name
        self._run = run
        self._closing = list(closing)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # set while callbacks may be sent
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The thread's event loop while ``run`` is running (``None`` before and after)."""
        return self._loop

    @property
    def running(self) -> bool:
        """True from ``start()`` until ``run`` has ended."""
        return self._loop is not None

    @property
    def error(self) -> BaseException | None:
        """What ended the thread abnormally (``None`` while running or after a clean stop)."""
        return self._error

    def start(self) -> Self:
        """Start the thread and wait until its loop runs; raises what made it fail to."""
        self._thread.start()
        self._ready.wait()
        if self._loop is None and self._error is not None:
            raise self._error
        return self

    def call_soon(self, callback: Callable[[], object]) -> bool:
        """Schedule ``callback()`` on the thread's loop; False (not called) if not running."""
        with self._lock:
            if self._loop is None:
                return False
            self._loop.call_soon_threadsafe(callback)
            return True

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the thread's loop and block until it returns; its result.

        Raises what ``coro`` raises; ``TimeoutError`` after ``timeout`` seconds (``coro``
        is then cancelled); ``RuntimeError`` if the thread is not running or stops
        before ``coro`` finishes.
        """
        with self._lock:
            if self._loop is None:
                coro.close()
                raise RuntimeError(f"{self.name} is not running")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise
        except concurrent.futures.CancelledError as exc:
            raise RuntimeError(f"{self.name} stopped") from exc

    def stop(self, timeout: float | None = None) -> None:
        """Set the stop event and join the thread (idempotent; waits at most ``timeout``)."""
        stop = self._stop
        if stop is not None:
            self.call_soon(stop.set)
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as exc:  # kept in error, never lost
            self._error = exc
            log.error("%s crashed", self.name, exc_info=exc)
        finally:
            self._ready.set()

    async def _amain(self) -> None:
        self._stop = asyncio.Event()
        with self._lock:
            self._loop = asyncio.get_running_loop()
        self._ready.set()
        try:
            await self._run(self._stop)
        finally:
            await _close_all(self._closing)
            # Past this, nothing new reaches the loop; what did is cancelled by asyncio.run.
            with self._lock:
                self._loop = None


async def _close_all(objs: Iterable[object]) -> None:
    for obj in objs:
        close = getattr(obj, "close", None) or getattr(obj, "aclose", None)
        if close is None:
            continue
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("closing %r failed", obj)
