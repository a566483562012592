"""Tests for kubemirror.cache.queue: the ``KeyedQueue`` contract, over FIFO and DeltaFIFO.

Both queues inherit reads, closing and the pop/apop machinery from ``KeyedQueue``;
this suite runs that shared contract against each of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from kubemirror import cache, errors
from kubemirror.cache import queue
from tests.objects import obj

Queue = cache.FIFO | cache.DeltaFIFO
QUEUES: list[Callable[[], Queue]] = [cache.FIFO, cache.DeltaFIFO]


@pytest.fixture(params=QUEUES, ids=["FIFO", "DeltaFIFO"])
def q(request: pytest.FixtureRequest) -> Queue:
    make: Callable[[], Queue] = request.param
    made = make()
    assert isinstance(made, queue.KeyedQueue)
    return made


def test_reads_see_queued_keys_in_pop_order(q: Queue) -> None:
    for name in "ba":
        q.add(obj(name))
    assert q.list_keys() == ["ns/b", "ns/a"]
    assert len(q) == 2
    assert q.get(obj("a")) is q.get_by_key("ns/a") is not None
    assert q.get_by_key("ns/zz") is None


def test_key_of_wraps_key_function_failures(q: Queue) -> None:
    with pytest.raises(errors.KeyFuncError) as info:
        q.key_of({"no": "metadata"})
    assert info.value.obj == {"no": "metadata"}


@pytest.mark.parametrize(
    ("exc", "requeued", "raises"),
    [
        (errors.Requeue(), True, False),  # client-go: Pop returns no error
        (errors.Requeue(ValueError("why")), True, True),
        (KeyboardInterrupt(), True, True),
        (ValueError("x"), False, True),
    ],
    ids=["requeue", "requeue-with-cause", "interrupt", "error"],
)
async def test_pop_settles_on_what_process_raised(
    q: Queue, exc: BaseException, requeued: bool, raises: bool
) -> None:
    def process(item: Any) -> None:
        raise exc

    q.add(obj("a"))
    if raises:
        with pytest.raises(type(exc)):
            q.pop(process)
    else:
        assert q.pop(process) is None
    assert q.list_keys() == (["ns/a"] if requeued else [])
    if not isinstance(exc, Exception):
        return  # an interruption of apop is a cancellation, tested apart
    q.add(obj("b"))
    keys_before = q.list_keys()
    if raises:
        with pytest.raises(type(exc)):
            await q.apop(process)
    else:
        assert await q.apop(process) is None  # type: ignore[func-returns-value]
    assert sorted(q.list_keys()) == sorted(keys_before if requeued else keys_before[1:])


def test_close_ends_pops_of_an_empty_queue(q: Queue) -> None:
    q.add(obj("a"))
    q.close()
    assert q.is_closed
    assert q.pop(lambda item: "drained") == "drained"
    with pytest.raises(errors.FIFOClosedError):
        q.pop(lambda item: None, timeout=5)


async def test_apop_awaits_a_coroutine_process(q: Queue) -> None:
    async def process(item: Any) -> str:
        await asyncio.sleep(0)
        return "done"

    popper = asyncio.create_task(q.apop(process))
    await asyncio.sleep(0)
    assert not popper.done()
    q.add(obj("a"))
    async with asyncio.timeout(5):
        assert await popper == "done"
    assert len(q) == 0


def test_has_synced_once_the_first_replace_is_processed(q: Queue) -> None:
    assert not q.has_synced()
    q.replace([obj("a")])
    assert not q.has_synced()
    q.pop(lambda item: None)
    assert q.has_synced()
