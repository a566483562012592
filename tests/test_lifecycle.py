"""Tests for kubemirror.lifecycle: the run/start/stop/async-with bases and helpers."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from kubemirror import lifecycle


class Loop(lifecycle.Service):
    """A ``Service`` recording what its ``run`` saw."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.runs = 0
        self.running = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        self.runs += 1
        self.running.set()
        await lifecycle.wait_stopped(stop)
        if self.fail:
            raise ValueError("run failed")


class Recorder(lifecycle.StartStopService):
    """A ``StartStopService`` logging its calls (subclasses add ``start``)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.started = asyncio.Event()

    async def stop(self) -> None:
        self.calls.append("stop")


class Tasks(Recorder):
    def start(self) -> None:
        self.calls.append("start")
        self.started.set()


class AsyncTasks(Recorder):
    async def start(self) -> None:
        await asyncio.sleep(0)
        self.calls.append("astart")
        self.started.set()


class FailingStart(Recorder):
    def start(self) -> None:
        raise RuntimeError("cannot start")


async def test_service_start_is_idempotent_and_stop_waits() -> None:
    svc = Loop()
    task = svc.start()
    assert svc.start() is task
    await svc.running.wait()
    await svc.stop()
    assert task.done()
    assert svc.runs == 1


async def test_service_stop_reraises_what_run_raised_and_forgets_the_task() -> None:
    svc = Loop(fail=True)
    svc.start()
    await svc.running.wait()
    with pytest.raises(ValueError, match="run failed"):
        await svc.stop()
    await svc.stop()  # nothing left to stop


async def test_service_stop_without_start_does_nothing() -> None:
    svc = Loop()
    await svc.stop()
    assert svc.runs == 0


async def test_service_async_with_runs_in_the_background() -> None:
    async with Loop() as svc:
        await svc.running.wait()
        task = svc.start()
        assert not task.done()
    assert task.done()


@pytest.mark.parametrize(
    ("cls", "started"), [(Tasks, "start"), (AsyncTasks, "astart")], ids=["sync", "async"]
)
async def test_start_stop_service_run_until_stop_is_set(
    cls: type[Recorder], started: str
) -> None:
    svc = cls()
    stop = asyncio.Event()
    runner = asyncio.create_task(svc.run(stop))
    await svc.started.wait()
    assert svc.calls == [started]
    stop.set()
    async with asyncio.timeout(5):
        await runner
    assert svc.calls == [started, "stop"]


async def test_start_stop_service_run_stops_when_cancelled() -> None:
    svc = Tasks()
    runner = asyncio.create_task(svc.run())
    await svc.started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert svc.calls == ["start", "stop"]


async def test_start_stop_service_does_not_stop_what_failed_to_start() -> None:
    svc = FailingStart()
    with pytest.raises(RuntimeError):
        await svc.run(asyncio.Event())
    with pytest.raises(RuntimeError):
        async with svc:
            pass
    assert svc.calls == []


async def test_start_stop_service_async_with() -> None:
    async with AsyncTasks() as svc:
        assert svc.calls == ["astart"]
    assert svc.calls == ["astart", "stop"]


async def test_cancel_and_wait_swallows_only_cancellation() -> None:
    never = asyncio.Event()
    waiting = asyncio.create_task(never.wait())

    async def cleanup_fails() -> None:
        try:
            await never.wait()
        finally:
            raise ValueError("cleanup failed")

    failing = asyncio.create_task(cleanup_fails())
    await asyncio.sleep(0)
    await lifecycle.cancel_and_wait([waiting])
    assert waiting.cancelled()
    with pytest.raises(ValueError, match="cleanup failed"):
        await lifecycle.cancel_and_wait([failing])


async def test_wait_stopped_returns_once_set() -> None:
    stop = asyncio.Event()
    waiter = asyncio.create_task(lifecycle.wait_stopped(stop))
    await asyncio.sleep(0)
    assert not waiter.done()
    stop.set()
    async with asyncio.timeout(5):
        await waiter


# -- run_until_stopped ------------------------------------------------------------------------


async def test_run_until_stopped_returns_the_result_of_a_body_that_ends_first() -> None:
    async def body() -> int:
        return 7

    assert await lifecycle.run_until_stopped(body(), asyncio.Event()) == 7
    assert await lifecycle.run_until_stopped(body(), None) == 7


async def test_run_until_stopped_cancels_the_body_once_stop_is_set() -> None:
    stop = asyncio.Event()
    started = asyncio.Event()
    cancelled = False

    async def body() -> int:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled = True
            raise
        return 1

    runner = asyncio.create_task(lifecycle.run_until_stopped(body(), stop))
    await started.wait()
    stop.set()
    async with asyncio.timeout(5):
        assert await runner is None
    assert cancelled


async def test_run_until_stopped_propagates_what_the_body_raises() -> None:
    async def body() -> None:
        raise ValueError("body failed")

    with pytest.raises(ValueError, match="body failed"):
        await lifecycle.run_until_stopped(body(), asyncio.Event())


async def test_cancelling_run_until_stopped_cancels_the_body() -> None:
    started = asyncio.Event()
    body = asyncio.create_task(asyncio.Event().wait())

    async def watched() -> None:
        started.set()
        await body

    runner = asyncio.create_task(lifecycle.run_until_stopped(watched(), asyncio.Event()))
    await started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert body.cancelled()


# -- ServiceThread ----------------------------------------------------------------------------


class Closable:
    """Counts ``close()`` calls; ``kind`` picks a sync or async ``close`` (or a failing one)."""

    def __init__(self, kind: str = "async") -> None:
        self.kind = kind
        self.closed = 0

    def close(self) -> Any:
        if self.kind == "fail":
            raise OSError("cannot close")
        if self.kind == "sync":
            self.closed += 1
            return None

        async def aclose() -> None:
            self.closed += 1

        return aclose()


def test_service_thread_runs_the_service_on_its_own_loop_until_stopped() -> None:
    svc = Loop()
    closing = [Closable("async"), Closable("sync")]
    thread = lifecycle.ServiceThread(svc.run, name="loop-thread", closing=closing)
    with thread.start() as handle:
        assert handle is thread
        assert thread.running
        loop = thread.loop
        assert loop is not None

        async def on_loop() -> asyncio.AbstractEventLoop:
            await svc.running.wait()
            return asyncio.get_running_loop()

        assert thread.call(on_loop(), timeout=5) is loop
        assert [c.closed for c in closing] == [0, 0]
    assert not thread.running
    assert thread.loop is None
    assert thread.error is None
    assert svc.runs == 1
    assert [c.closed for c in closing] == [1, 1]
    thread.stop()  # idempotent


def test_service_thread_call_raises_when_not_running_and_times_out() -> None:
    thread = lifecycle.ServiceThread(Loop().run, name="idle-thread")

    async def answer() -> int:
        return 42

    with pytest.raises(RuntimeError, match="idle-thread is not running"):
        thread.call(answer())  # closed, never awaited: no warning under filterwarnings=error
    assert not thread.call_soon(lambda: None)
    thread.stop()  # never started: nothing to do
    with thread.start():
        assert thread.call(answer()) == 42
        with pytest.raises(TimeoutError):
            thread.call(asyncio.Event().wait(), timeout=0.01)
        flag = threading.Event()
        assert thread.call_soon(flag.set)
        assert flag.wait(5)
    with pytest.raises(RuntimeError):
        thread.call(answer())


def test_service_thread_call_pending_when_the_thread_stops_raises_instead_of_hanging() -> None:
    thread = lifecycle.ServiceThread(Loop().run, name="stopping-thread").start()
    entered = threading.Event()
    outcome: list[BaseException] = []

    async def forever() -> None:
        entered.set()
        await asyncio.Event().wait()

    def caller() -> None:
        try:
            thread.call(forever())
        except BaseException as exc:  # recorded for the assertion below
            outcome.append(exc)

    worker = threading.Thread(target=caller)
    worker.start()
    assert entered.wait(5)
    thread.stop(5)
    worker.join(5)
    assert not worker.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError)


def test_service_thread_keeps_and_logs_a_crash_and_still_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = Loop(fail=True)
    failing, closable = Closable("fail"), Closable("async")
    thread = lifecycle.ServiceThread(svc.run, name="crashing-thread", closing=[failing, closable])
    with caplog.at_level(logging.ERROR, logger="kubemirror.lifecycle"):
        thread.start()
        thread.stop(5)
    assert isinstance(thread.error, ValueError)
    assert closable.closed == 1
    messages = [r.getMessage() for r in caplog.records]
    assert "crashing-thread crashed" in messages
    assert any(m.startswith("closing") and "failed" in m for m in messages)


class _Recorder(lifecycle.BlockingService):
    """A BlockingService that records the thread of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def start(self) -> None:
        self.calls.append(("start", threading.current_thread() is threading.main_thread()))

    def stop(self) -> None:
        self.calls.append(("stop", threading.current_thread() is threading.main_thread()))


def test_blocking_service_with_starts_and_closes_on_the_calling_thread() -> None:
    service = _Recorder()
    with service as entered:
        assert entered is service
    assert service.calls == [("start", True), ("stop", True)]


async def test_blocking_service_async_twins_run_in_a_worker_thread() -> None:
    service = _Recorder()
    async with service:
        pass
    await service.astart()
    await service.astop()
    assert service.calls == [("start", False), ("stop", False)] * 2


async def test_cancel_and_wait_repeats_a_swallowed_cancellation() -> None:
    """FAULT INJECTION: a task that swallows its first cancellation, as a library that
    loses one (Python 3.11's asyncio.wait_for) does; the stop must not hang on it."""
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 1:
                    raise

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(lifecycle.cancel_and_wait([task], recancel_every=0.01), 5)
    assert task.cancelled()
    assert swallowed == 2


async def test_cancel_and_wait_propagates_a_tasks_own_error() -> None:
    async def failing() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ValueError("cleanup failed") from None

    task = asyncio.ensure_future(failing())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="cleanup failed"):
        await lifecycle.cancel_and_wait([task])
