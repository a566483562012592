"""Tests for kubemirror.lifecycle: the run/start/stop/async-with bases and helpers."""

from __future__ import annotations

import asyncio

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
