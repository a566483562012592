"""Tests for kubemirror.cache.fifo: FIFO semantics, blocking and asyncio pops, closing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kubemirror import cache, errors
from kubemirror.cache import queue
from tests.objects import obj


def name_of(o: Any) -> str:
    return str(o["metadata"]["name"])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true (bounded by ``timeout``); no fixed sleeps."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def sync_poppers(q: cache.FIFO) -> int:
    """Threads currently blocked in ``q.pop`` (white-box: read from its waiter set)."""
    waiters: queue.PopWaiters = q._waiters
    with q._lock:
        return waiters._sleepers


def async_poppers(q: cache.FIFO) -> int:
    """Tasks currently awaiting ``q.apop`` (white-box: read from its waiter set)."""
    waiters: queue.PopWaiters = q._waiters
    with q._lock:
        return len(waiters._futures)


def test_pops_in_arrival_order() -> None:
    q = cache.FIFO()
    for n in "abc":
        q.add(obj(n))
    assert [q.pop(name_of) for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0


def test_latest_object_wins_and_keeps_its_place() -> None:
    q = cache.FIFO()
    q.add(obj("a", rv="1"))
    q.add(obj("b"))
    q.update(obj("a", rv="2"))
    assert q.list_keys() == ["ns/a", "ns/b"]
    assert q.pop(lambda o: o["metadata"]["resourceVersion"]) == "2"
    assert q.pop(name_of) == "b"


def test_delete_drops_the_queued_object() -> None:
    q = cache.FIFO()
    q.add(obj("a"))
    q.add(obj("b"))
    q.delete(obj("a"))
    q.delete(obj("missing"))
    assert q.pop(name_of) == "b"
    assert len(q) == 0


def test_add_if_not_present_keeps_the_queued_object() -> None:
    q = cache.FIFO()
    first = obj("a", rv="1")
    q.add(first)
    q.add_if_not_present(obj("a", rv="2"))
    assert q.get_by_key("ns/a") is first
    q.add_if_not_present(obj("b"))
    assert q.list_keys() == ["ns/a", "ns/b"]


def test_pop_returns_what_process_returns() -> None:
    q = cache.FIFO()
    q.add(obj("a"))
    assert q.pop(lambda o: ("processed", name_of(o))) == ("processed", "a")


def test_pop_times_out_on_an_empty_queue() -> None:
    q = cache.FIFO()
    with pytest.raises(TimeoutError):
        q.pop(name_of, timeout=0)
    with pytest.raises(TimeoutError):
        q.pop(name_of, timeout=0.01)


def test_pop_blocks_until_another_thread_adds() -> None:
    q = cache.FIFO()
    got: list[str | None] = []
    popper = threading.Thread(target=lambda: got.append(q.pop(name_of, timeout=30)))
    popper.start()
    wait_until(lambda: sync_poppers(q) == 1)
    assert got == []
    q.add(obj("late"))
    popper.join(30)
    assert got == ["late"]


def test_close_wakes_blocked_poppers_with_fifo_closed_error() -> None:
    q = cache.FIFO()
    outcomes: list[BaseException] = []

    def pop() -> None:
        try:
            q.pop(name_of, timeout=30)
        except BaseException as exc:
            outcomes.append(exc)

    poppers = [threading.Thread(target=pop) for _ in range(3)]
    for t in poppers:
        t.start()
    wait_until(lambda: sync_poppers(q) == 3)
    q.close()
    for t in poppers:
        t.join(30)
    assert len(outcomes) == 3
    assert all(isinstance(e, errors.FIFOClosedError) for e in outcomes)
    assert q.is_closed


def test_a_closed_queue_can_be_drained() -> None:
    q = cache.FIFO()
    q.add(obj("a"))
    q.close()
    assert q.pop(name_of) == "a"
    with pytest.raises(errors.FIFOClosedError):
        q.pop(name_of)


def test_requeue_puts_the_object_back_and_propagates() -> None:
    q = cache.FIFO()
    q.add(obj("a"))
    q.add(obj("b"))
    cause = ValueError("transient")

    def fail(o: Any) -> None:
        raise errors.Requeue(cause)

    with pytest.raises(errors.Requeue) as info:
        q.pop(fail)
    assert info.value.cause is cause
    assert q.list_keys() == ["ns/b", "ns/a"]  # back of the queue


def test_requeue_loses_to_a_newer_object() -> None:
    q = cache.FIFO()
    q.add(obj("a", rv="1"))

    def fail_after_newer_arrived(o: Any) -> None:
        q.add(obj("a", rv="2"))
        raise errors.Requeue()

    assert q.pop(fail_after_newer_arrived) is None
    assert q.get_by_key("ns/a") == obj("a", rv="2")


def test_other_exceptions_propagate_without_requeue() -> None:
    q = cache.FIFO()
    q.add(obj("a"))

    def fail(o: Any) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        q.pop(fail)
    assert len(q) == 0


def test_sync_pop_rejects_a_coroutine_process() -> None:
    q = cache.FIFO()
    q.add(obj("a"))

    async def process(o: Any) -> None:
        return None

    # The coroutine is closed: no "never awaited" warning (warnings are errors here).
    with pytest.raises(TypeError, match="apop"):
        q.pop(process)


def test_replace_swaps_the_queue() -> None:
    q = cache.FIFO()
    q.add(obj("old"))
    q.replace([obj("x"), obj("y")], "5")
    assert q.list_keys() == ["ns/x", "ns/y"]
    q.resync()
    assert q.list_keys() == ["ns/x", "ns/y"]


def test_has_synced_after_the_first_replace_is_popped() -> None:
    q = cache.FIFO()
    assert not q.has_synced()
    q.replace([obj("a"), obj("b"), obj("c")])
    assert not q.has_synced()
    q.pop(name_of)
    assert q.pop(lambda o: (_ for _ in ()).throw(errors.Requeue())) is None
    assert not q.has_synced()  # "c" is still queued
    q.delete(obj("c"))  # deleted, but its queue entry not yet passed
    assert not q.has_synced()
    q.replace([obj("b"), obj("d")])  # a second replace does not extend the batch
    assert q.list_keys() == ["ns/b", "ns/d"]
    q.pop(name_of)
    assert q.has_synced()


def test_a_deleted_initial_object_counts_only_when_pop_passes_its_key() -> None:
    """client-go decrements initialPopulationCount per queue entry popped, deleted or not."""
    q = cache.FIFO()
    q.replace([obj("a"), obj("b"), obj("c")])
    q.delete(obj("a"))
    assert q.list_keys() == ["ns/b", "ns/c"]
    assert q.pop(name_of) == "b"  # passes "a" too: two of three entries consumed
    assert not q.has_synced()
    assert q.pop(name_of) == "c"
    assert q.has_synced()


def test_a_requeued_initial_object_counts_when_first_taken() -> None:
    q = cache.FIFO()
    q.replace([obj("a")])
    assert q.pop(lambda o: (_ for _ in ()).throw(errors.Requeue())) is None
    assert q.has_synced()  # client-go: the count went down when "a" was taken
    assert q.list_keys() == ["ns/a"]


def test_has_synced_is_latched() -> None:
    q = cache.FIFO()
    q.add(obj("a"))
    assert q.has_synced()
    q.replace([obj("b"), obj("c")])
    assert q.has_synced()


def test_a_delete_after_the_first_replace_does_not_sync_it() -> None:
    """Only pops count down; with the last initial entry deleted and passed while the
    queue runs dry, client-go reports synced at the next write (no pop returned)."""
    q = cache.FIFO()
    q.replace([obj("a"), obj("b")])
    q.delete(obj("b"))
    assert q.pop(name_of) == "a"
    assert not q.has_synced()
    with pytest.raises(TimeoutError):
        q.pop(name_of, timeout=0.01)  # passes the deleted "b", then finds nothing
    assert not q.has_synced()
    q.add(obj("c"))
    assert q.has_synced()


def test_a_key_deleted_and_added_again_pops_at_its_first_place() -> None:
    """As client-go: the re-added key is appended, but the earlier entry is reached first."""
    q = cache.FIFO()
    for n in "abc":
        q.add(obj(n))
    q.delete(obj("a"))
    q.add(obj("a", rv="2"))
    assert q.list_keys() == ["ns/a", "ns/b", "ns/c"]
    assert [q.pop(name_of) for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0
    with pytest.raises(TimeoutError):
        q.pop(name_of, timeout=0.01)  # the stale second entry of "a" is skipped


def test_has_synced_when_another_write_comes_first() -> None:
    q = cache.FIFO()
    q.add(obj("a"))
    assert q.has_synced()
    q.replace([obj("b")])
    assert q.has_synced()


def test_repr() -> None:
    q = cache.FIFO()
    q.add(obj("a"))
    q.close()
    assert repr(q) == "<FIFO 1 queued closed>"


# -- asyncio -------------------------------------------------------------------


async def test_apop_does_not_block_the_event_loop() -> None:
    q = cache.FIFO()
    ticked = asyncio.Event()
    stop = asyncio.Event()

    async def ticker() -> None:
        ticks = 0
        while not stop.is_set():
            ticks += 1
            if ticks == 200:
                ticked.set()
            await asyncio.sleep(0)

    pop_task = asyncio.create_task(q.apop(name_of))
    tick_task = asyncio.create_task(ticker())
    await asyncio.wait_for(ticked.wait(), 30)  # the loop kept running while apop waits
    assert not pop_task.done()
    assert async_poppers(q) == 1
    producer = threading.Thread(target=q.add, args=(obj("from-thread"),))
    producer.start()
    assert await asyncio.wait_for(pop_task, 30) == "from-thread"
    producer.join(30)
    stop.set()
    await tick_task


async def test_apop_with_a_coroutine_process() -> None:
    q = cache.FIFO()
    q.add(obj("a"))

    async def process(o: Any) -> str:
        await asyncio.sleep(0)
        return name_of(o).upper()

    assert await q.apop(process) == "A"


async def test_close_wakes_async_poppers() -> None:
    q = cache.FIFO()
    tasks = [asyncio.create_task(q.apop(name_of)) for _ in range(3)]
    await asyncio.sleep(0)  # one loop turn: each task runs up to its wait
    assert async_poppers(q) == 3
    threading.Thread(target=q.close).start()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    assert all(isinstance(r, errors.FIFOClosedError) for r in results)


async def test_cancelled_apop_takes_nothing_and_leaves_no_waiter() -> None:
    q = cache.FIFO()
    task = asyncio.create_task(q.apop(name_of))
    await asyncio.sleep(0)
    assert async_poppers(q) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert async_poppers(q) == 0
    q.add(obj("a"))
    assert q.pop(name_of, timeout=0) == "a"


async def test_apop_timeout_via_asyncio_timeout() -> None:
    q = cache.FIFO()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await q.apop(name_of)
    assert async_poppers(q) == 0


async def test_cancel_during_process_requeues() -> None:
    q = cache.FIFO()
    q.add(obj("a"))
    entered = asyncio.Event()

    async def slow(o: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(q.apop(slow))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert q.list_keys() == ["ns/a"]


async def test_wake_of_a_closed_loop_is_ignored() -> None:
    """A waiter whose loop has gone away must not break producers."""
    q = cache.FIFO()
    other = asyncio.new_event_loop()
    try:
        fut = other.create_future()
    finally:
        other.close()
    with q._lock:
        q._waiters._futures.append(fut)
    q.add(obj("a"))  # would raise RuntimeError('Event loop is closed') if not handled
    assert async_poppers(q) == 0
