"""WorkQueue and rate limiters: unit tests and a hypothesis state machine."""

from __future__ import annotations

import asyncio
import collections

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kubemirror import errors
from kubemirror.kvstore import workqueue

from .conftest import eventually


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


async def test_add_coalesces_waiting_items() -> None:
    q: workqueue.WorkQueue[str] = workqueue.WorkQueue()
    for item in ["a", "b", "a", "c", "b"]:
        q.add(item)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_item_added_while_processing_comes_back_after_done() -> None:
    q: workqueue.WorkQueue[str] = workqueue.WorkQueue()
    q.add("a")
    item = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed to a second worker while processing
    assert q.is_processing("a")
    assert q.is_queued("a")
    q.done(item)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_get_waits_for_an_add() -> None:
    q: workqueue.WorkQueue[str] = workqueue.WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_shut_down_wakes_getters_and_drains() -> None:
    q: workqueue.WorkQueue[str] = workqueue.WorkQueue()
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shut_down()
    with pytest.raises(errors.FIFOClosedError):
        await asyncio.wait_for(waiting, 1)
    q2: workqueue.WorkQueue[str] = workqueue.WorkQueue()
    q2.add("left")
    q2.shut_down()
    q2.add("ignored")
    assert await q2.get() == "left"  # what was queued is still handed out
    with pytest.raises(errors.FIFOClosedError):
        await q2.get()


async def test_add_after_keeps_the_earliest_schedule() -> None:
    q: workqueue.WorkQueue[str] = workqueue.WorkQueue()
    q.add_after("a", 30.0)
    q.add_after("a", 0.01)
    q.add_after("a", 60.0)
    assert q.num_delayed() == 1
    assert await asyncio.wait_for(q.get(), 5) == "a"
    assert q.num_delayed() == 0
    q.add_after("b", 30.0)
    q.shut_down()
    assert q.num_delayed() == 0


async def test_add_rate_limited_backs_off_and_forget_resets() -> None:
    limiter = workqueue.ExponentialFailureRateLimiter(0.001, 0.004)
    q: workqueue.WorkQueue[str] = workqueue.WorkQueue(limiter)
    for _ in range(4):
        q.add_rate_limited("a")
        assert await asyncio.wait_for(q.get(), 5) == "a"
        q.done("a")
    assert q.num_requeues("a") == 4
    q.forget("a")
    assert q.num_requeues("a") == 0


def test_exponential_limiter_doubles_up_to_the_cap() -> None:
    limiter = workqueue.ExponentialFailureRateLimiter(0.01, 0.1)
    delays = [limiter.when("x") for _ in range(6)]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.1, 0.1])
    assert limiter.when("y") == pytest.approx(0.01)
    for _ in range(100):
        limiter.when("z")
    assert limiter.when("z") == 0.1


def test_bucket_limiter_allows_burst_then_paces() -> None:
    clock = FakeClock()
    limiter = workqueue.BucketRateLimiter(qps=10, burst=2, clock=clock)
    assert limiter.when("a") == 0
    assert limiter.when("b") == 0
    assert limiter.when("c") == pytest.approx(0.1)
    assert limiter.when("d") == pytest.approx(0.2)
    clock.t += 10
    assert limiter.when("e") == 0


def test_max_of_limiter_and_default() -> None:
    limiter = workqueue.default_controller_rate_limiter()
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.num_requeues("a") == 1
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: workqueue.ExponentialFailureRateLimiter(0, 1), "rate_limiter"),
        (lambda: workqueue.ExponentialFailureRateLimiter(2, 1), "rate_limiter"),
        (lambda: workqueue.BucketRateLimiter(0, 1), "rate_limiter"),
        (lambda: workqueue.MaxOfRateLimiter(), "rate_limiter"),
    ],
    ids=["zero-base", "max-below-base", "zero-qps", "no-limiters"],
)
def test_bad_limiter_arguments(make: object, field: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        make()  # type: ignore[operator]
    assert info.value.field == field


async def test_concurrent_workers_never_share_an_item() -> None:
    q: workqueue.WorkQueue[int] = workqueue.WorkQueue()
    active: set[int] = set()
    handled: collections.Counter[int] = collections.Counter()

    async def worker() -> None:
        while True:
            try:
                item = await q.get()
            except errors.FIFOClosedError:
                return
            assert item not in active
            active.add(item)
            await asyncio.sleep(0)
            handled[item] += 1
            active.discard(item)
            q.done(item)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for round_ in range(20):
        for item in range(10):
            q.add(item)
        await asyncio.sleep(0)
        del round_
    await eventually(lambda: not len(q) and not q.num_processing())
    q.shut_down()
    await asyncio.gather(*workers)
    assert set(handled) == set(range(10))


class WorkQueueMachine(RuleBasedStateMachine):
    """Model: a FIFO of distinct waiting items, a processing set, a dirty set."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.q: workqueue.WorkQueue[str] = workqueue.WorkQueue()
        self.queue: list[str] = []
        self.dirty: set[str] = set()
        self.processing: set[str] = set()

    def teardown(self) -> None:
        self.loop.close()

    @rule(item=st.sampled_from("abcde"))
    def add(self, item: str) -> None:
        self.q.add(item)
        if item in self.dirty:
            return
        self.dirty.add(item)
        if item not in self.processing:
            self.queue.append(item)

    @precondition(lambda self: bool(self.queue))
    @rule()
    def get(self) -> None:
        item = self.loop.run_until_complete(self.q.get())
        assert item == self.queue.pop(0)
        self.processing.add(item)
        self.dirty.discard(item)

    @precondition(lambda self: bool(self.processing))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(sorted(self.processing)))
        self.q.done(item)
        self.processing.discard(item)
        if item in self.dirty:
            self.queue.append(item)

    @invariant()
    def matches_model(self) -> None:
        assert len(self.q) == len(self.queue)
        assert len(set(self.queue)) == len(self.queue)
        assert not set(self.queue) & self.processing
        for item in "abcde":
            assert self.q.is_processing(item) == (item in self.processing)
            assert self.q.is_queued(item) == (item in self.dirty)


TestWorkQueueMachine = WorkQueueMachine.TestCase
TestWorkQueueMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
